"""Actor failures on one shared local cluster: kill (with and without restart), processes dying inside
a method (os._exit) with max_restarts and max_task_retries, errors in __init__ and in methods.

One cluster for the module (4 CPUs); every test kills the actors it made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kray
import psutil
import pytest
from kray import exceptions

from . import helpers, tasklib

cluster = helpers.module_cluster(num_cpus=4)
pytestmark = pytest.mark.usefixtures("cluster")



class InitError(Exception):
    """A user's exception raised by an actor's constructor."""


class MethodError(Exception):
    """A user's exception raised by an actor's method."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@kray.remote
class Fragile:
    """A counter whose process can be made to die in the middle of a call."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def incr(self) -> int:
        self.value += 1
        return self.value

    def pid(self) -> int:
        return os.getpid()

    def die(self) -> None:
        os._exit(1)

    def die_once(self, marker: str) -> tuple[str, int]:
        """Die the first time it is called with `marker` (its first run leaves the file behind)."""
        if not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)
        return "survived", os.getpid()

    def wait_for(self, gate: str) -> bool:
        return tasklib.wait_for_file(gate)

    def fail(self, message: str, code: int) -> None:
        raise MethodError(message, code)

    def context(self) -> dict[str, Any]:
        ctx = kray.get_runtime_context()
        return {"actor_id": ctx.get_actor_id(), "name": ctx.get_actor_name(), "handle": ctx.current_actor,
                "reconstructed": ctx.was_current_actor_reconstructed, "task_id": ctx.get_task_id()}


@kray.remote
class BrokenInit:
    def __init__(self, message: str) -> None:
        raise InitError(message)

    def ping(self) -> str:
        return "pong"


def _pid_or_none(actor: Any) -> int | None:
    """The actor's current pid, or None while calls fail (it is dying or restarting)."""
    try:
        return kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    except (exceptions.ActorDiedError, exceptions.ActorUnavailableError):
        return None


def _gone(pid: int) -> bool:
    try:
        return not helpers.alive([psutil.Process(pid)])
    except psutil.NoSuchProcess:
        return True


def _pid_other_than(actor: Any, old_pid: int) -> int | None:
    pid = _pid_or_none(actor)
    return pid if pid not in (None, old_pid) else None


def _new_pid(actor: Any, old_pid: int) -> int:
    """Wait until calls reach a restarted instance of the actor; return its pid."""
    return helpers.wait_until(
        lambda: _pid_other_than(actor, old_pid),
        what="the actor to be restarted in a new process",
    )


def test_runtime_context_inside_an_actor_across_a_restart(actors) -> None:
    actor = Fragile.options(name="contextual", max_restarts=1).remote()
    actors.append(actor)
    first = kray.get(actor.context.remote(), timeout=helpers.WAIT_S)
    assert first["actor_id"] == actor._actor_id.hex() and first["name"] == "contextual"
    assert first["reconstructed"] is False and first["task_id"]
    assert first["handle"] == actor  # current_actor is a handle to this very actor
    pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    with pytest.raises(exceptions.ActorUnavailableError):
        kray.get(actor.die.remote(), timeout=helpers.WAIT_S)
    _new_pid(actor, pid)
    again = kray.get(actor.context.remote(), timeout=helpers.WAIT_S)
    assert again["reconstructed"] is True and again["actor_id"] == first["actor_id"]
    unnamed = Fragile.remote()
    actors.append(unnamed)
    assert kray.get(unnamed.context.remote(), timeout=helpers.WAIT_S)["name"] == ""
    driver = kray.get_runtime_context()
    assert driver.get_actor_id() is None and driver.get_actor_name() is None
    with pytest.raises(RuntimeError):
        _ = driver.current_actor


# --- kill -----------------------------------------------------------------------------------------


def test_kill_then_calls_raise_actor_died_error(actors) -> None:
    actor = Fragile.remote()
    actors.append(actor)
    pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    kray.kill(actor)
    helpers.wait_until(lambda: _gone(pid), what="the killed actor's process to exit")
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.incr.remote(), timeout=helpers.WAIT_S)
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.incr.remote(), timeout=helpers.WAIT_S)
    # Killing a dead actor again is harmless.
    kray.kill(actor)


def test_kill_fails_the_call_in_flight(actors, tmp_path: Path) -> None:
    actor = Fragile.remote()
    actors.append(actor)
    kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    blocked = actor.wait_for.remote(str(tmp_path / "never-opened"))
    ready, _ = kray.wait([blocked], timeout=0.5)
    assert not ready
    kray.kill(actor)
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(blocked, timeout=helpers.WAIT_S)


def test_kill_with_no_restart_false_restarts_the_actor(actors) -> None:
    actor = Fragile.options(max_restarts=1).remote(10)
    actors.append(actor)
    assert kray.get([actor.incr.remote(), actor.incr.remote()], timeout=helpers.WAIT_S) == [11, 12]
    old_pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    kray.kill(actor, no_restart=False)
    _new_pid(actor, old_pid)
    assert _gone(old_pid)
    # __init__ ran again with the creation arguments: the state starts over.
    assert kray.get(actor.incr.remote(), timeout=helpers.WAIT_S) == 11


def test_kill_with_no_restart_true_does_not_restart(actors) -> None:
    actor = Fragile.options(max_restarts=5).remote()
    actors.append(actor)
    pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    kray.kill(actor, no_restart=True)
    helpers.wait_until(lambda: _gone(pid), what="the killed actor's process to exit")
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.incr.remote(), timeout=helpers.WAIT_S)


# --- the actor's process dies ---------------------------------------------------------------------


def test_process_death_without_restarts_raises_actor_died_error(actors) -> None:
    actor = Fragile.remote()
    actors.append(actor)
    pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    with pytest.raises(exceptions.ActorDiedError) as info:
        kray.get(actor.die.remote(), timeout=helpers.WAIT_S)
    assert str(info.value), "ActorDiedError carries no reason"
    helpers.wait_until(lambda: _gone(pid), what="the dead actor's process to be reaped")
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.incr.remote(), timeout=helpers.WAIT_S)


def test_process_death_restarts_up_to_max_restarts(actors) -> None:
    actor = Fragile.options(max_restarts=2).remote()
    actors.append(actor)
    pids = [kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)]
    for restart in (1, 2):
        # A fresh counter each round: the first instance's, then each restarted one's, built by __init__.
        assert kray.get([actor.incr.remote() for _ in range(3)], timeout=helpers.WAIT_S) == [1, 2, 3], restart
        # max_task_retries=0 (the default): the call that was running when the process died fails; as in
        # Ray, with ActorUnavailableError while restarts remain (the actor is coming back).
        with pytest.raises(exceptions.ActorUnavailableError):
            kray.get(actor.die.remote(), timeout=helpers.WAIT_S)
        pids.append(_new_pid(actor, pids[-1]))
    assert len(set(pids)) == 3, f"expected a new process per restart, got pids {pids}"
    assert kray.get([actor.incr.remote() for _ in range(3)], timeout=helpers.WAIT_S) == [1, 2, 3]
    # The third death is past max_restarts=2: the actor stays dead.
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.die.remote(), timeout=helpers.WAIT_S)
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.incr.remote(), timeout=helpers.WAIT_S)
    helpers.wait_until(lambda: all(_gone(pid) for pid in pids), what="every incarnation's process to exit")


def test_call_that_killed_the_process_is_retried_with_max_task_retries(actors, tmp_path: Path) -> None:
    actor = Fragile.options(max_restarts=1, max_task_retries=1).remote()
    actors.append(actor)
    assert kray.get([actor.incr.remote(), actor.incr.remote()], timeout=helpers.WAIT_S) == [1, 2]
    first_pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    marker = tmp_path / "died-once"
    outcome, pid = kray.get(actor.die_once.remote(str(marker)), timeout=helpers.WAIT_S)
    assert marker.exists(), "the first attempt never ran"
    assert outcome == "survived"
    assert pid != first_pid, "the retry ran in the process that died"
    assert kray.get(actor.incr.remote(), timeout=helpers.WAIT_S) == 1, "the restarted actor kept the old state"
    # The one restart is used up: the next death is final, retries or not.
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.die.remote(), timeout=helpers.WAIT_S)
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(actor.incr.remote(), timeout=helpers.WAIT_S)


def test_calls_queued_behind_a_dying_call_are_retried(actors, tmp_path: Path) -> None:
    actor = Fragile.options(max_restarts=1, max_task_retries=-1).remote()
    actors.append(actor)
    kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    dying = actor.die_once.remote(str(tmp_path / "died-once"))
    queued = [actor.incr.remote() for _ in range(5)]
    assert kray.get(dying, timeout=helpers.WAIT_S)[0] == "survived"
    # Submitted after the dying call, each ran once, on the restarted actor. (As in Ray, retried calls
    # may run in another order than they were submitted.)
    assert sorted(kray.get(queued, timeout=helpers.WAIT_S)) == [1, 2, 3, 4, 5]


# --- errors raised by the user's code ----------------------------------------------------------


def test_exception_in_init_surfaces_on_the_first_call(actors) -> None:
    broken = BrokenInit.remote("bad setting 4242")  # creating the handle does not raise
    actors.append(broken)
    with pytest.raises(exceptions.ActorDiedError) as info:
        kray.get(broken.ping.remote(), timeout=helpers.WAIT_S)
    assert "bad setting 4242" in str(info.value)
    assert "InitError" in str(info.value)
    # The actor stays dead.
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(broken.ping.remote(), timeout=helpers.WAIT_S)


def test_exception_in_init_is_not_retried_by_max_restarts(actors) -> None:
    broken = BrokenInit.options(max_restarts=3).remote("fails every time")
    actors.append(broken)
    with pytest.raises(exceptions.ActorDiedError) as info:
        kray.get(broken.ping.remote(), timeout=helpers.WAIT_S)
    assert "fails every time" in str(info.value)


def test_exception_in_a_method_raises_and_the_actor_stays_alive(actors) -> None:
    actor = Fragile.remote()
    actors.append(actor)
    assert kray.get(actor.incr.remote(), timeout=helpers.WAIT_S) == 1
    pid = kray.get(actor.pid.remote(), timeout=helpers.WAIT_S)
    with pytest.raises(MethodError) as info:
        kray.get(actor.fail.remote("method went wrong", 7), timeout=helpers.WAIT_S)
    error = info.value
    assert isinstance(error, exceptions.RayTaskError)
    assert isinstance(error, MethodError)
    assert "method went wrong" in str(error)
    assert error.code == 7
    # Still the same process, with its state.
    assert kray.get(actor.incr.remote(), timeout=helpers.WAIT_S) == 2
    assert kray.get(actor.pid.remote(), timeout=helpers.WAIT_S) == pid


def test_method_errors_do_not_count_as_restarts(actors) -> None:
    actor = Fragile.options(max_restarts=0).remote()
    actors.append(actor)
    for _ in range(3):
        with pytest.raises(exceptions.RayTaskError):
            kray.get(actor.fail.remote("again", 1), timeout=helpers.WAIT_S)
    assert kray.get(actor.incr.remote(), timeout=helpers.WAIT_S) == 1
