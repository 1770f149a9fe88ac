"""Task retries after a node dies (issue 15 defect 4): a retried task whose argument lived on the dead
node fetches it from a live copy on another node, or waits while it is re-created from its lineage, and
fails with ObjectLostError when neither is left; it never waits on the dead node's stale location.

Starts a 3-node local cluster with the real `kray start` (head on 127.0.0.1, nodes on 127.0.0.2 and
127.0.0.3 with a "flaky" resource, so work avoids the head) and kills node 2 with SIGKILL.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import kray
import numpy as np
import pytest
from kray import exceptions
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import helpers, multinode

NODE_TIMEOUT_S = 3.0
N = 100_000  # 800 kB: kept in the object store of the node that made it, not inline with its owner
WAIT_S = 180.0


def _node_id() -> str:
    return kray.get_runtime_context().get_node_id()


def _attempt(attempts_dir: str) -> int:
    """Record this attempt (with its node); return how many were recorded so far."""
    attempts = Path(attempts_dir)
    (attempts / f"{uuid.uuid4().hex}.json").write_text(json.dumps({"node": _node_id(), "pid": os.getpid()}))
    return len(list(attempts.glob("*.json")))


@kray.remote(num_cpus=0, resources={"flaky": 1})
def make(attempts_dir: str) -> np.ndarray:
    _attempt(attempts_dir)
    return np.full(N, 7, dtype=np.int64)


@kray.remote(num_cpus=0, resources={"flaky": 1})
def read_here(array: np.ndarray) -> str:
    """Reading the argument leaves a copy of it on this task's node."""
    assert int(array.sum()) == 7 * N
    return _node_id()


@kray.remote(num_cpus=0, resources={"flaky": 1}, max_retries=2)
def total_after_first_attempt_hangs(array: np.ndarray, attempts_dir: str) -> tuple[int, str]:
    """The first attempt reads its argument and then hangs (until its node is killed); a retry answers."""
    if _attempt(attempts_dir) == 1:
        time.sleep(600)
    return int(array.sum()), _node_id()


def _node_of(ip: str) -> str:
    ids = [n["NodeID"] for n in kray.nodes() if n["NodeManagerAddress"] == ip and n["Alive"]]
    assert len(ids) == 1, kray.nodes()
    return ids[0]


def _attempts(path: Path, count: int) -> list[dict]:
    helpers.wait_until(lambda: len(list(path.glob("*.json"))) >= count, WAIT_S, f"{count} attempt(s) in {path.name}")
    return [json.loads(p.read_text()) for p in path.glob("*.json")]


def test_retried_tasks_fetch_arguments_from_a_live_copy_or_their_re_creation_or_fail_as_lost(
        tmp_path: Path, connect: Callable) -> None:
    with multinode.running(tmp_path / "cluster", num_cpus=1, resources=[None, {"flaky": 3}, {"flaky": 3}],
                           extra_env={"KRAY_NODE_TIMEOUT_S": f"{NODE_TIMEOUT_S:g}"}) as cluster:
        connect(cluster)
        victim, survivor = _node_of("127.0.0.2"), _node_of("127.0.0.3")
        on_victim = NodeAffinitySchedulingStrategy(victim, soft=True)
        on_survivor = NodeAffinitySchedulingStrategy(survivor, soft=False)
        dirs = {name: tmp_path / name for name in ("lineage", "copied", "lost", "run1", "run2", "run3")}
        for path in dirs.values():
            path.mkdir()
        # Three arguments, all made on node 2: one can be re-created (retryable task), one has a copy on
        # node 3, one has neither.
        rebuildable = make.options(max_retries=2, scheduling_strategy=on_victim).remote(str(dirs["lineage"]))
        copied = make.options(max_retries=0, scheduling_strategy=on_victim).remote(str(dirs["copied"]))
        lost = make.options(max_retries=0, scheduling_strategy=on_victim).remote(str(dirs["lost"]))
        ready, _ = kray.wait([rebuildable, copied, lost], num_returns=3, timeout=WAIT_S, fetch_local=False)
        assert len(ready) == 3
        assert {a["node"] for name in ("lineage", "copied", "lost") for a in _attempts(dirs[name], 1)} == {victim}
        assert kray.get(read_here.options(scheduling_strategy=on_survivor).remote(copied), timeout=WAIT_S) == survivor
        # Each consumer's first attempt runs on node 2 with its argument's location resolved to node 2.
        runs = [total_after_first_attempt_hangs.options(scheduling_strategy=on_victim).remote(arg, str(dirs[name]))
                for arg, name in ((rebuildable, "run1"), (copied, "run2"), (lost, "run3"))]
        for name in ("run1", "run2", "run3"):
            assert [a["node"] for a in _attempts(dirs[name], 1)] == [victim]
        cluster.kill_node(1)
        assert kray.get(runs[0], timeout=WAIT_S) == (7 * N, survivor)  # waited for the argument's re-creation
        assert len(_attempts(dirs["lineage"], 2)) == 2
        assert kray.get(runs[1], timeout=WAIT_S) == (7 * N, survivor)  # read the copy on node 3
        assert len(list(dirs["copied"].glob("*.json"))) == 1, "the copied argument was made again"
        with pytest.raises(exceptions.ObjectLostError):
            kray.get(runs[2], timeout=WAIT_S)
        with pytest.raises(exceptions.ObjectLostError):
            kray.get(lost, timeout=WAIT_S)
        assert int(kray.get(copied, timeout=WAIT_S).sum()) == 7 * N
