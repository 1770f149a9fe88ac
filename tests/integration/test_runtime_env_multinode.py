"""runtime_env across nodes (a 2-node loopback cluster started with `kray start`): a driver's
working_dir, uploaded once to the GCS at init, is fetched and unpacked by the other node's raylet
workers into that node's own cache, for tasks and actors pinned there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import kray
import pytest
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import multinode
from .multinode import MultiNodeCluster


@kray.remote
def read_module() -> tuple[int, str, str]:
    import rtenv_remote_mod  # only in the working_dir

    return rtenv_remote_mod.VALUE, kray.get_runtime_context().get_node_id(), os.getcwd()


@kray.remote
class RemoteEnvActor:
    def read(self) -> tuple[int, str]:
        import rtenv_remote_mod

        return rtenv_remote_mod.VALUE, kray.get_runtime_context().get_node_id()


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[MultiNodeCluster]:
    with multinode.running(tmp_path / "cluster", num_cpus=1, num_nodes=2) as started:
        yield started


def test_working_dir_reaches_another_node(
    two_nodes: MultiNodeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "rtenv_remote_mod.py").write_text("VALUE = 99\n")
    monkeypatch.setenv("KRAY_CLUSTER_TOKEN", two_nodes.token)
    monkeypatch.delenv("KRAY_ADDRESS", raising=False)
    kray.init(address=two_nodes.address, runtime_env={"working_dir": str(project)})
    try:
        ids = {n["NodeManagerAddress"]: n["NodeID"] for n in kray.nodes() if n["Alive"]}
        other = ids["127.0.0.2"]
        pinned = NodeAffinitySchedulingStrategy(other, soft=False)
        value, node, cwd = kray.get(read_module.options(scheduling_strategy=pinned).remote(), timeout=180)
        assert (value, node) == (99, other)
        # The package was unpacked into the other node's own session directory.
        other_root = str(two_nodes.nodes[1].temp_dir)
        assert cwd.startswith(other_root) and "runtime_resources" in cwd
        actor = RemoteEnvActor.options(scheduling_strategy=pinned).remote()
        assert kray.get(actor.read.remote(), timeout=180) == (99, other)
        head = NodeAffinitySchedulingStrategy(ids["127.0.0.1"], soft=False)
        assert kray.get(read_module.options(scheduling_strategy=head).remote(), timeout=180)[0] == 99
    finally:
        kray.shutdown()
