"""A detached actor outlives its creator, and so do its constructor's arguments (issue 15 defect 3, for a
creator that exited): restarted after its driver is gone, it is rebuilt with the same arguments, refs
included (top-level refs, in shared memory or inline, and packed arguments too large for the spec).

Starts a one-node cluster with the real `kray start` and a driver subprocess that creates the actor and
exits; kills the actor's process with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import kray
import psutil

from . import helpers, multinode

WAIT_S = 60.0

_CREATOR = """
import os, sys
import numpy as np
import kray

@kray.remote(num_cpus=0)
class Keeper:
    def __init__(self, big, small, made, *, blob):
        self.summary = [int(big.sum()), small, made, len(blob)]

    def describe(self):
        return self.summary, os.getpid()

@kray.remote(num_cpus=0)
def make():
    return "made by a task"

kray.init(address=sys.argv[1], namespace="detached-args")
big = kray.put(np.ones(1 << 20, dtype=np.uint8))  # in shared memory, owned by this driver
keeper = Keeper.options(name="keeper", lifetime="detached", max_restarts=2, max_task_retries=2).remote(
    big, kray.put("small"), make.remote(), blob=b"x" * 300_000)  # the packed arguments go to shared memory
print("created", kray.get(keeper.describe.remote(), timeout=60), flush=True)
"""

EXPECTED = [1 << 20, "small", "made by a task", 300_000]


def _describe(keeper: kray.actor.ActorHandle) -> tuple[list, int]:
    summary, pid = kray.get(keeper.describe.remote(), timeout=WAIT_S)
    return summary, pid


def test_a_detached_actor_restarts_with_its_ref_arguments_after_its_creator_exited(
        tmp_path: Path, connect: Callable) -> None:
    with multinode.running(tmp_path, num_cpus=1, num_nodes=1) as cluster:
        env = cluster.node_env(cluster.nodes[0], cluster.token)
        creator = subprocess.run([sys.executable, "-c", _CREATOR, cluster.address], env=env,
                                 capture_output=True, text=True, timeout=120, check=False)
        assert creator.returncode == 0 and "created" in creator.stdout, creator.stdout + creator.stderr
        connect(cluster)
        keeper = kray.get_actor("keeper", namespace="detached-args")
        try:
            for restart in (1, 2):
                summary, pid = _describe(keeper)
                assert summary == EXPECTED
                os.kill(pid, signal.SIGKILL)
                helpers.wait_until(lambda pid=pid: not psutil.pid_exists(pid), WAIT_S, f"the actor (pid {pid}) to exit")
                summary, new_pid = _describe(keeper)  # waits for the restart
                assert (summary, new_pid != pid) == (EXPECTED, True), f"restart {restart}: {summary}"
        finally:
            kray.kill(keeper)
