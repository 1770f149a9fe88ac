"""Retried actor calls after a node dies (issue 15 defect 4, for actors): an actor restarted on another
node after its node died re-runs the call it was running, and an argument of that call which lived on the
dead node is fetched from where it lives now (here: re-created from its lineage), never from the dead
node's stale location.

Starts a 3-node local cluster with the real `kray start` (head on 127.0.0.1, nodes on 127.0.0.2 and
127.0.0.3 with a "flaky" resource) and kills node 2 with SIGKILL. Requests get a long timeout, so a
request to the dead node's raylet would hang the call instead of failing over after a while.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import kray
import numpy as np
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import multinode

# The cluster shape, the attempt log and the 800 kB argument's maker are the task retry test's.
from .test_retry_after_node_death import (
    NODE_TIMEOUT_S,
    WAIT_S,
    N,
    _attempt,
    _attempts,
    _node_id,
    _node_of,
    make,
)


@kray.remote(num_cpus=0, resources={"flaky": 1}, max_restarts=1, max_task_retries=1)
class Summer:
    def node(self) -> str:
        return _node_id()

    def total_after_first_attempt_hangs(self, array: np.ndarray, attempts_dir: str) -> tuple[int, str]:
        """The first attempt reads its argument and then hangs (until its node is killed); the retry answers."""
        if _attempt(attempts_dir) == 1:
            time.sleep(600)
        return int(array.sum()), _node_id()


def test_a_retried_actor_call_fetches_its_argument_from_its_re_creation_not_the_dead_node(
        tmp_path: Path, connect: Callable) -> None:
    with multinode.running(tmp_path / "cluster", num_cpus=1, resources=[None, {"flaky": 3}, {"flaky": 3}],
                           extra_env={"KRAY_NODE_TIMEOUT_S": f"{NODE_TIMEOUT_S:g}",
                                      "KRAY_REQUEST_TIMEOUT_S": "3600"}) as cluster:
        connect(cluster)
        victim, survivor = _node_of("127.0.0.2"), _node_of("127.0.0.3")
        on_victim = NodeAffinitySchedulingStrategy(victim, soft=True)
        made, calls = tmp_path / "made", tmp_path / "calls"
        made.mkdir()
        calls.mkdir()
        arg = make.options(scheduling_strategy=on_victim).remote(str(made))
        ready, _ = kray.wait([arg], timeout=WAIT_S, fetch_local=False)
        assert ready and [a["node"] for a in _attempts(made, 1)] == [victim]
        summer = Summer.options(scheduling_strategy=on_victim).remote()
        assert kray.get(summer.node.remote(), timeout=WAIT_S) == victim
        # The call's first attempt runs on node 2 with its argument's location resolved to node 2.
        answer = summer.total_after_first_attempt_hangs.remote(arg, str(calls))
        assert [a["node"] for a in _attempts(calls, 1)] == [victim]
        cluster.kill_node(1)
        assert kray.get(answer, timeout=WAIT_S) == (7 * N, survivor)
        assert len(_attempts(made, 2)) == 2  # the argument was made again, on the survivor
        kray.kill(summer)
