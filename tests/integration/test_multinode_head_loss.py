"""A node leaves a cluster that no longer has it: when its GCS stays silent (the head is gone) and when
the GCS rejects its heartbeats (it was declared dead while frozen). Under `kray start --block` in a
pod, that exit restarts the container, which joins the head again (see tests/k8s).

Starts multi-node clusters on loopback addresses with the real `kray start`; freezes and kills processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from . import helpers, multinode
from .multinode import MultiNodeCluster

GCS_SILENCE_S = 3.0
NODE_TIMEOUT_S = 3.0
LEAVE_BOUND_S = 60.0


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[MultiNodeCluster]:
    with multinode.running(tmp_path, num_cpus=1, num_nodes=2, extra_env={
            "KRAY_GCS_RECONNECT_TIMEOUT_S": f"{GCS_SILENCE_S:g}", "KRAY_NODE_TIMEOUT_S": f"{NODE_TIMEOUT_S:g}"}) as started:
        yield started


def _raylet(cluster: MultiNodeCluster, index: int) -> psutil.Process:
    found = [p for p in cluster.nodes[index].processes() if "kray.raylet" in " ".join(p.cmdline())]
    assert len(found) == 1, f"expected one raylet on node {index}, found {found}"
    return found[0]


def test_a_node_whose_head_is_gone_leaves(two_nodes: MultiNodeCluster) -> None:
    worker = two_nodes.nodes[1]
    assert worker.processes()
    two_nodes.kill_node(0)
    helpers.wait_until(lambda: not worker.processes(), LEAVE_BOUND_S,
                       "node 2's raylet and workers to exit once its GCS fell silent")
    helpers.wait_until(lambda: not worker.shm_entries(), LEAVE_BOUND_S, "node 2's /dev/shm entries to go")
    worker.stopped = True  # nothing of it is left for `kray stop`


def test_a_node_declared_dead_while_frozen_is_told_to_leave(two_nodes: MultiNodeCluster) -> None:
    worker = two_nodes.nodes[1]
    raylet = _raylet(two_nodes, 1)
    raylet.suspend()
    try:
        status = two_nodes.run_cli(["status", f"--address={two_nodes.address}"],
                                   two_nodes.node_env(two_nodes.nodes[0], two_nodes.token))

        def declared_dead() -> bool:
            out = two_nodes.run_cli(["status", f"--address={two_nodes.address}"],
                                    two_nodes.node_env(two_nodes.nodes[0], two_nodes.token)).stdout
            return "127.0.0.2 dead" in out

        helpers.wait_until(declared_dead, LEAVE_BOUND_S, f"the GCS to declare node 2 dead ({status.stdout})")
    finally:
        raylet.resume()
    helpers.wait_until(lambda: not raylet.is_running() or raylet.status() == psutil.STATUS_ZOMBIE, LEAVE_BOUND_S,
                       "node 2's raylet to exit once the GCS rejected it")
    helpers.wait_until(lambda: not worker.processes(), LEAVE_BOUND_S, "node 2's workers to exit with it")
    worker.stopped = True
    assert _raylet(two_nodes, 0).is_running(), "the head stays"
