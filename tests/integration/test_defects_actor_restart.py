"""A restarted actor is rebuilt with its constructor's arguments, refs included, as often as
max_restarts allows (issue 15, defect 3).

One shared local cluster (2 CPUs). The driver drops its own copies of the argument refs, so only
the actor's pins keep them alive.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import kray
import numpy as np
import pytest
from kray import exceptions
from kray.api import runtime

from . import helpers

cluster = helpers.module_cluster(num_cpus=2)
pytestmark = pytest.mark.usefixtures("cluster")


@kray.remote
class Rebuilt:
    """Remembers what its constructor was given; can be made to die."""

    def __init__(self, small: Any, large: Any, nested: list, *, keyword: Any) -> None:
        self.seen = [float(small.sum()), float(large.sum()), float(kray.get(nested[0]).sum()), keyword]

    def arguments(self) -> list[Any]:
        return self.seen

    def pid(self) -> int:
        return os.getpid()

    def die(self) -> None:
        os._exit(1)


def _make_actor(max_restarts: int) -> Any:
    """An actor given an inline array, a large object's ref, a nested ref and a keyword (refs go out of scope)."""
    small = np.arange(16, dtype=np.float64)
    large_ref = kray.put(np.ones(256 * 1024, dtype=np.float64))  # 2 MiB: in shared memory
    nested_ref = kray.put(np.full(8, 2.0))
    return Rebuilt.options(max_restarts=max_restarts).remote(small, large_ref, [nested_ref], keyword="k")


EXPECTED = [120.0, 256.0 * 1024, 16.0, "k"]


def _restarted(actor: Any, old_pid: int) -> int | None:
    try:
        pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    except (exceptions.ActorDiedError, exceptions.ActorUnavailableError):
        return None
    return pid if pid != old_pid else None


def test_a_restarted_actor_gets_the_same_arguments_each_time() -> None:
    actor = _make_actor(max_restarts=2)
    gc.collect()
    try:
        assert kray.get(actor.arguments.remote(), timeout=helpers.WAIT_S) == EXPECTED
        for _ in range(2):
            pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
            with pytest.raises(exceptions.ActorUnavailableError):
                kray.get(actor.die.remote(), timeout=helpers.WAIT_S)
            helpers.wait_until(lambda pid=pid: _restarted(actor, pid), what="the actor to restart")
            assert kray.get(actor.arguments.remote(), timeout=helpers.WAIT_S) == EXPECTED
        with pytest.raises(exceptions.ActorDiedError):
            kray.get(actor.die.remote(), timeout=helpers.WAIT_S)  # restarts used up: dead for good
        with pytest.raises(exceptions.ActorDiedError):
            kray.get(actor.arguments.remote(), timeout=helpers.WAIT_S)
    finally:
        kray.kill(actor)


def test_arguments_of_an_actor_without_restarts_are_released_once_it_is_alive() -> None:
    # The pins are only kept for restarts: without any, the large argument's shared memory is freed.
    actor = _make_actor(max_restarts=0)
    gc.collect()
    try:
        assert kray.get(actor.arguments.remote(), timeout=helpers.WAIT_S) == EXPECTED
        core = runtime.current_core()
        helpers.wait_until(
            lambda: not any(e.kind == "shm" for e in list(core.objects.entries.values())),
            what="the constructor's large argument to be freed",
        )
    finally:
        kray.kill(actor)
