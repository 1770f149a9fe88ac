"""Issue 15, defect 6: a worker's death is noticed by its process, not its pipes, and what it left
running is killed.

A child process that inherits the worker's stdout and stderr (and even leaves the worker's process group
with setsid) used to hide the worker's death: the raylet waited for the pipes' EOF, so the actor was
never declared dead and a caller's get() hung. Now the raylet watches the worker's pid, and as a child
subreaper it adopts and kills what the dead worker left behind, as Ray's raylet does.
"""

from __future__ import annotations

import os
import signal
import subprocess

import kray
import psutil
import pytest
from kray.exceptions import ActorDiedError

from . import helpers


@kray.remote(max_restarts=0)
class Spawner:
    def spawn(self, new_session: bool) -> tuple[int, int]:
        """Start a long sleep that inherits this worker's stdout and stderr; returns (worker pid, child pid)."""
        child = subprocess.Popen(["sleep", "600"], start_new_session=new_session)
        return os.getpid(), child.pid

    def ping(self) -> str:
        return "pong"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "own-session"])
def test_a_killed_worker_whose_child_holds_its_pipes_is_declared_dead_and_the_child_killed(
    cluster_factory, new_session: bool,
) -> None:
    cluster_factory(num_cpus=1)
    actor = Spawner.remote()
    worker_pid, child_pid = kray.get(actor.spawn.remote(new_session))
    assert psutil.Process(child_pid).is_running()
    os.kill(worker_pid, signal.SIGKILL)
    with pytest.raises(ActorDiedError):
        kray.get(actor.ping.remote(), timeout=helpers.WAIT_S)
    helpers.wait_until(lambda: _gone(child_pid), what=f"the dead worker's child (pid {child_pid}) to be killed")
    # The node still runs new work.
    assert kray.get(kray.remote(lambda: 7).remote(), timeout=helpers.WAIT_S) == 7
