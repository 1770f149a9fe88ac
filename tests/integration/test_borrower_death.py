"""Borrower death (issue 15 defect 5, the pins of a dead borrower): an owner knows which process borrows
each of its objects, and when a borrower dies (SIGKILL, no BorrowsRemoved ever sent) its borrows are
released, so the object is freed once the owner drops its own ref.

Starts local clusters with kray.init(); kills actor and worker processes with SIGKILL; reads the session's
/dev/shm directory.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kray
import numpy as np
import psutil

from . import helpers

WAIT_S = 60.0
# Set in a worker that keeps a borrowed ref in a module global (a leak the user made: only its death frees it).
_kept: list[Any] = []


@kray.remote(num_cpus=0, max_restarts=0)
class Holder:
    """Borrows the refs nested in its argument and keeps them."""

    def hold(self, refs: list[Any]) -> int:
        self.refs = refs
        return os.getpid()

    def total(self) -> int:
        return int(kray.get(self.refs[0]).sum())


@kray.remote(num_cpus=0)
def keep_in_a_global(refs: list[Any]) -> int:
    _kept.extend(refs)
    return os.getpid()


def _object_file(cluster: helpers.LocalCluster, ref: Any) -> Path:
    return cluster.shm_dir() / ref.hex()


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    helpers.wait_until(lambda: not psutil.pid_exists(pid), WAIT_S, f"the killed borrower (pid {pid}) to exit")


def test_an_object_borrowed_by_a_sigkilled_actor_and_a_sigkilled_worker_is_freed(
        cluster_factory: Callable[..., helpers.LocalCluster], actors: list) -> None:
    cluster = cluster_factory(num_cpus=2)
    by_actor = kray.put(np.ones(1 << 20, dtype=np.uint8))  # 1 MiB: in shared memory
    by_worker = kray.put(np.ones(1 << 20, dtype=np.uint8))
    holder = Holder.remote()
    actors.append(holder)
    actor_pid = kray.get(holder.hold.remote([by_actor]), timeout=WAIT_S)
    worker_pid = kray.get(keep_in_a_global.remote([by_worker]), timeout=WAIT_S)
    files = [_object_file(cluster, by_actor), _object_file(cluster, by_worker)]
    assert all(f.exists() for f in files), files
    del by_actor, by_worker  # the borrowers alone keep the objects now
    _kill(actor_pid)
    _kill(worker_pid)
    helpers.wait_until(lambda: not any(f.exists() for f in files), WAIT_S,
                       f"the objects borrowed by the killed processes to be freed: {[f.name for f in files]}")


def test_a_live_borrower_still_pins_the_object_when_another_borrower_dies(
        cluster_factory: Callable[..., helpers.LocalCluster], actors: list) -> None:
    cluster = cluster_factory(num_cpus=2)
    shared = kray.put(np.ones(1 << 20, dtype=np.uint8))
    only_doomed = kray.put(np.ones(1 << 20, dtype=np.uint8))
    doomed, survivor = Holder.remote(), Holder.remote()
    actors.extend([doomed, survivor])
    doomed_pid = kray.get(doomed.hold.remote([shared, only_doomed]), timeout=WAIT_S)
    kray.get(survivor.hold.remote([shared]), timeout=WAIT_S)
    shared_file, doomed_file = _object_file(cluster, shared), _object_file(cluster, only_doomed)
    del shared, only_doomed
    _kill(doomed_pid)
    # Once the owner has released the dead borrower's borrows, the object the survivor borrows too stays.
    helpers.wait_until(lambda: not doomed_file.exists(), WAIT_S, "the dead borrower's only object to be freed")
    assert shared_file.exists()
    assert kray.get(survivor.total.remote(), timeout=WAIT_S) == 1 << 20
    kray.kill(survivor)  # its death releases the last borrow
    helpers.wait_until(lambda: not shared_file.exists(), WAIT_S, "the shared object to be freed after its last borrower died")
