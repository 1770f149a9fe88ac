"""`kray logs` and `kray memory` across nodes (each with its own IP and session directory, started with the
real `kray start`): an actor's output is read from the worker node's own files through that node's raylet,
and the ref the actor holds is listed under the worker node's address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import kray
import numpy as np
import pytest
from kray.util import state

from . import helpers, multinode
from .multinode import MultiNodeCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    """Two nodes of 1 CPU; "side" only on node 2."""
    with multinode.running(tmp_path_factory.mktemp("memory-and-logs"), num_cpus=1, num_nodes=2,
                           resources=[None, {"side": 1}]) as started:
        yield started


@kray.remote(resources={"side": 1}, num_cpus=0)
class SideActor:
    def keep(self, refs: list[Any]) -> int:
        self.refs = refs
        print("printed on the side node", flush=True)
        return os.getpid()


def test_logs_and_memory_of_a_worker_node(cluster: MultiNodeCluster, connect: Callable,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_record_ref_creation_sites", "1")  # this driver records where its refs are made
    connect(cluster)
    put_line = sys._getframe().f_lineno + 1
    held = kray.put(np.zeros(1 << 18, dtype=np.uint8))
    actor = SideActor.remote()
    pid = kray.get(actor.keep.remote([held]), timeout=120)
    side = cluster.nodes[1]
    side_node_id = next(n["node_id"] for n in state.list_nodes() if n["node_ip"] == side.ip)

    text = helpers.wait_until(lambda: "".join(state.get_log(actor_id=actor._actor_id.hex(), tail=10)),
                              what="the actor's output in its node's log file")
    assert "printed on the side node" in text
    files = state.list_logs(node_id=side_node_id, glob_filter=f"*-{pid}.out")
    assert list(files) == ["worker_out"] and len(files["worker_out"]) == 1
    assert os.path.exists(os.path.join(side.session_dir, "logs", files["worker_out"][0]))
    head_node_id = kray.get_runtime_context().get_node_id()  # the driver's node
    assert not state.list_logs(node_id=head_node_id, glob_filter=f"*-{pid}.out")  # the file is not on the head

    env = {**os.environ, "KRAY_CLUSTER_TOKEN": cluster.token}
    shown = subprocess.run([sys.executable, "-c", "from kray.cli.main import main; main()", "memory", "--format",
                            "json", "--address", cluster.address], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL, check=False, env=env)
    assert shown.returncode == 0, shown.stderr
    table = json.loads(shown.stdout)
    on_side = [e for e in table["group"][side.ip]["entries"] if e["object_ref"] == held.hex()]
    assert [(e["pid"], e["reference_type"]) for e in on_side] == [(pid, "LOCAL_REFERENCE")]
    assert len(table["object_store"]["nodes"]) == 2
    mine = [e for e in table["group"]["127.0.0.1"]["entries"] if e["object_ref"] == held.hex()]
    assert [e["call_site"] for e in mine] == [f"(put object) | {__file__}:{put_line}:test_logs_and_memory_of_a_worker_node"]
    assert on_side[0]["call_site"] == "disabled"  # the worker node's processes do not record them
