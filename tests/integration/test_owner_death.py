"""Owner death (issue 15 defect 5): a borrower's `get` of an object whose owner died raises
OwnerDiedError (a subclass of ObjectLostError, as in Ray) instead of waiting out its timeout, whether the
owner was killed with kray.kill or with SIGKILL, and whether the borrower started waiting before or
after the death.

Starts local clusters with kray.init() (and one with the real `kray start`, for a driver subprocess);
kills actor and driver processes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import kray
import numpy as np
import psutil
import pytest
from kray import exceptions

from . import helpers

# Far longer than the death takes to be noticed: a hang shows up as GetTimeoutError, not as a slow pass.
GET_TIMEOUT_S = 60.0


@kray.remote(num_cpus=0)
class Owner:
    """Owns what it puts or submits, and hands out the refs nested in a list (the caller borrows them)."""

    def pid(self) -> int:
        return os.getpid()

    def put_small_and_large(self) -> list[Any]:
        return [kray.put("small"), kray.put(np.zeros(1 << 20, dtype=np.uint8))]

    def submit_waiting(self) -> list[Any]:
        return [wait_forever.remote()]


@kray.remote(num_cpus=0)
def wait_forever() -> str:
    time.sleep(3600)
    return "never"


@kray.remote(num_cpus=0)
class Borrower:
    def get(self, refs: list[Any]) -> str:
        try:
            kray.get(refs[0], timeout=GET_TIMEOUT_S)
        except exceptions.OwnerDiedError as e:
            return f"OwnerDiedError: {e}"
        except Exception as e:  # noqa: BLE001 - the test reports what it got instead
            return f"{type(e).__name__}: {e}"
        return "got a value"


def test_owner_died_error_is_an_object_lost_error() -> None:
    assert issubclass(exceptions.OwnerDiedError, exceptions.ObjectLostError)
    assert issubclass(exceptions.OwnerDiedError, exceptions.RayError)


def test_get_after_the_owner_actor_was_killed_raises_owner_died(
        cluster_factory: Callable[..., helpers.LocalCluster], actors: list) -> None:
    cluster_factory(num_cpus=2)
    owner = Owner.remote()
    owner_pid = kray.get(owner.pid.remote(), timeout=60)
    refs = kray.get(owner.put_small_and_large.remote(), timeout=60)
    kray.kill(owner)  # returns at once: a get before the process is gone may still be answered
    helpers.wait_until(lambda: not psutil.pid_exists(owner_pid), 60, "the killed owner's process to exit")
    for ref in refs:
        with pytest.raises(exceptions.OwnerDiedError) as raised:
            kray.get(ref, timeout=GET_TIMEOUT_S)
        assert ref.hex() in str(raised.value) and "owner has exited" in str(raised.value)


def test_a_borrower_waiting_when_its_owner_is_sigkilled_gets_owner_died(
        cluster_factory: Callable[..., helpers.LocalCluster], actors: list) -> None:
    cluster_factory(num_cpus=2)
    owner = Owner.remote()
    borrower = Borrower.remote()
    actors.extend([owner, borrower])
    owner_pid = kray.get(owner.pid.remote(), timeout=60)
    refs = kray.get(owner.submit_waiting.remote(), timeout=60)  # its value never comes while the owner lives
    answer = borrower.get.remote(refs)
    ready, _ = kray.wait([answer], timeout=1.0)
    assert not ready, f"the borrower answered before the owner died: {kray.get(answer)}"
    os.kill(owner_pid, signal.SIGKILL)
    got = kray.get(answer, timeout=GET_TIMEOUT_S + 30)
    assert got.startswith("OwnerDiedError") and "owner has exited" in got, got
    # The driver borrows the same ref: its get fails too, at once (the GCS remembers the death).
    with pytest.raises(exceptions.OwnerDiedError):
        kray.get(refs[0], timeout=GET_TIMEOUT_S)


_KILLED_OWNER_DRIVER = """
import sys, time
import kray

@kray.remote(num_cpus=0)
class Keeper:
    def __init__(self, refs):
        self.refs = refs  # borrowed from the driver, which owns them

    def ping(self):
        return "ok"

    def read(self):
        try:
            kray.get(self.refs[0], timeout=60)
        except kray.exceptions.OwnerDiedError:
            return "OwnerDiedError"
        except Exception as e:
            return type(e).__name__
        return "value"

kray.init(address=sys.argv[1], namespace="owner-death")
ref = kray.put(b"x" * (1 << 20))
keeper = Keeper.options(name="keeper", lifetime="detached").remote([ref])
kray.get(keeper.ping.remote(), timeout=60)
print("job", kray.get_runtime_context().get_job_id(), flush=True)
time.sleep(600)
"""


def test_a_sigkilled_driver_is_an_owner_that_died_and_its_job_is_marked_finished(
        tmp_path: Any, connect: Any) -> None:
    import subprocess
    import sys

    from kray.core import refs as core_refs
    from kray.protocol import messages

    from . import multinode

    with multinode.running(tmp_path, num_cpus=1, num_nodes=1) as pair:
        env = pair.node_env(pair.nodes[0], pair.token)
        driver = subprocess.Popen([sys.executable, "-c", _KILLED_OWNER_DRIVER, pair.address], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert driver.stdout is not None
            line = driver.stdout.readline()
            assert line.startswith("job "), f"the driver did not start: {line}{driver.stderr.read() if driver.stderr else ''}"
        finally:
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(30)
        connect(pair)
        keeper = kray.get_actor("keeper", namespace="owner-death")
        try:
            assert kray.get(keeper.read.remote(), timeout=GET_TIMEOUT_S + 30) == "OwnerDiedError"
        finally:
            kray.kill(keeper)
        core = core_refs.get_core()

        def killed_job_finished() -> bool:
            jobs = core.call(core.gcs_address, lambda rid: messages.GetClusterState(rid))["jobs"]
            return any("end_time" in job for job in jobs if job["driver_pid"] == driver.pid)

        helpers.wait_until(killed_job_finished, 60, "the SIGKILLed driver's job to be marked finished")
