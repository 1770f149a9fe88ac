"""One driver holding worker leases on several nodes at once (a 2-node loopback cluster of its own).

Raylets number their leases independently, so a fresh cluster's first lease on every node has the
same id: the driver must still send each task to the worker of its own lease. Gates (files the test
creates) decide when each task ends; nothing depends on timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import kray
import pytest
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import helpers, multinode, tasklib
from .multinode import MultiNodeCluster


@kray.remote
def gated_where(gate: str, started: str) -> str:
    Path(started).touch()
    tasklib.wait_for_file(gate)
    return kray.get_runtime_context().get_node_id()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[MultiNodeCluster]:
    with multinode.running(tmp_path / "cluster", num_cpus=1, num_nodes=2) as started:
        yield started


def test_leases_with_the_same_id_on_two_nodes_keep_their_own_tasks(
    fresh_cluster: MultiNodeCluster, connect: Callable, tmp_path: Path
) -> None:
    connect(fresh_cluster)
    ids = {n["NodeManagerAddress"]: n["NodeID"] for n in kray.nodes() if n["Alive"]}
    head, other = ids["127.0.0.1"], ids["127.0.0.2"]

    def pinned(node_id: str, name: str) -> kray.ObjectRef:
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return gated_where.options(scheduling_strategy=strategy).remote(str(tmp_path / f"{name}.gate"),
                                                                       str(tmp_path / f"{name}.started"))

    def started(name: str) -> None:
        helpers.wait_until((tmp_path / f"{name}.started").exists, what=f"task {name} to start")

    # The first lease of each raylet: both are lease 1 of their node.
    on_head, on_other = pinned(head, "a"), pinned(other, "b")
    started("a")
    started("b")
    (tmp_path / "a.gate").touch()
    assert kray.get(on_head, timeout=120) == head
    # The head's lease is returned once idle; the other node's lease must still serve its node's tasks.
    more = [pinned(other, "c"), pinned(head, "d")]
    (tmp_path / "b.gate").touch()
    (tmp_path / "c.gate").touch()
    (tmp_path / "d.gate").touch()
    assert kray.get(on_other, timeout=120) == other
    assert kray.get(more, timeout=120) == [other, head]
