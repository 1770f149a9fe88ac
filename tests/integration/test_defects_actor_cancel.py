"""kray.cancel on actor calls, as in Ray (issue 15, defect 7): an async actor's call is cancelled as an
asyncio task (running or waiting for its turn); a threaded actor's waiting call never runs; a running
call of a regular or threaded actor is not interrupted, sees is_canceled() and its caller gets
TaskCancelledError; force=True is refused for actor calls.

One shared local cluster (2 CPUs). Calls signal through files in tmp_path; every actor is killed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import kray
import pytest
from kray import exceptions

from . import helpers, tasklib

cluster = helpers.module_cluster(num_cpus=2)
pytestmark = pytest.mark.usefixtures("cluster")



async def _until_exists(path: str) -> None:
    while not os.path.exists(path):
        await asyncio.sleep(0.02)


@kray.remote
class AsyncWaiter:
    async def wait(self, gate: str, started: str, caught: str) -> str:
        Path(started).touch()
        try:
            await _until_exists(gate)
        except asyncio.CancelledError:
            Path(caught).touch()
            raise
        return "opened"

    async def touch(self, path: str) -> str:
        Path(path).touch()
        return "ran"


@kray.remote
class SyncWaiter:
    """A regular (or, with max_concurrency, threaded) actor whose calls wait for a gate."""

    def __init__(self) -> None:
        self.calls = 0

    def wait(self, gate: str, started: str, seen: str) -> str:
        self.calls += 1
        Path(started).touch()
        tasklib.wait_for_file(gate)
        Path(seen).write_text(str(kray.get_runtime_context().is_canceled()))
        return "opened"

    def touch(self, path: str) -> str:
        self.calls += 1
        Path(path).touch()
        return "ran"

    def count(self) -> int:
        return self.calls


def test_cancel_a_running_async_call_cancels_its_asyncio_task(actors, tmp_path: Path) -> None:
    actor = AsyncWaiter.remote()
    actors.append(actor)
    started, caught = tmp_path / "started", tmp_path / "caught"
    ref = actor.wait.remote(str(tmp_path / "gate"), str(started), str(caught))
    helpers.wait_until(started.exists, what="the call to start")
    kray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError, match="was cancelled"):
        kray.get(ref, timeout=helpers.WAIT_S)
    assert caught.exists()  # asyncio.CancelledError was raised inside the call
    assert kray.get(actor.touch.remote(str(tmp_path / "after")), timeout=helpers.WAIT_S) == "ran"


def test_cancel_a_queued_async_call_never_runs_it(actors, tmp_path: Path) -> None:
    actor = AsyncWaiter.options(max_concurrency=1).remote()
    actors.append(actor)
    gate, started = tmp_path / "gate", tmp_path / "started"
    first = actor.wait.remote(str(gate), str(started), str(tmp_path / "caught"))
    helpers.wait_until(started.exists, what="the first call to start")
    queued = actor.touch.remote(str(tmp_path / "queued-ran"))
    kray.cancel(queued)
    with pytest.raises(exceptions.TaskCancelledError, match=queued.task_id().hex()):
        kray.get(queued, timeout=helpers.WAIT_S)
    gate.touch()
    assert kray.get(first, timeout=helpers.WAIT_S) == "opened"
    assert not (tmp_path / "queued-ran").exists()


def test_cancel_on_a_threaded_actor(actors, tmp_path: Path) -> None:
    actor = SyncWaiter.options(max_concurrency=2).remote()
    actors.append(actor)
    gate = tmp_path / "gate"
    running = [
        actor.wait.remote(str(gate), str(tmp_path / f"started{i}"), str(tmp_path / f"seen{i}")) for i in range(2)
    ]
    helpers.wait_until(lambda: all((tmp_path / f"started{i}").exists() for i in range(2)),
                       what="both threads to be busy")
    queued = actor.touch.remote(str(tmp_path / "queued-ran"))
    kray.cancel(queued)
    # A call waiting for a thread is removed at once, while both threads are still busy.
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(queued, timeout=helpers.WAIT_S)
    kray.cancel(running[0])  # running: not interrupted, but it sees is_canceled()
    gate.touch()
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(running[0], timeout=helpers.WAIT_S)
    assert kray.get(running[1], timeout=helpers.WAIT_S) == "opened"
    assert (tmp_path / "seen0").read_text() == "True"
    assert (tmp_path / "seen1").read_text() == "False"
    assert not (tmp_path / "queued-ran").exists()
    assert kray.get(actor.count.remote(), timeout=helpers.WAIT_S) == 2


def test_cancel_a_running_call_of_a_regular_actor_does_not_interrupt_it(actors, tmp_path: Path) -> None:
    actor = SyncWaiter.remote()
    actors.append(actor)
    gate, started, seen = tmp_path / "gate", tmp_path / "started", tmp_path / "seen"
    ref = actor.wait.remote(str(gate), str(started), str(seen))
    queued = actor.touch.remote(str(tmp_path / "queued-ran"))
    helpers.wait_until(started.exists, what="the call to start")
    kray.cancel(queued)
    kray.cancel(ref)
    gate.touch()
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(ref, timeout=helpers.WAIT_S)
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(queued, timeout=helpers.WAIT_S)
    assert seen.read_text() == "True"  # it ran to its end and saw the cancellation
    assert not (tmp_path / "queued-ran").exists()
    assert kray.get(actor.count.remote(), timeout=helpers.WAIT_S) == 1  # same process, state kept


def test_force_cancel_of_an_actor_call_is_refused(actors, tmp_path: Path) -> None:
    actor = SyncWaiter.remote()
    actors.append(actor)
    ref = actor.touch.remote(str(tmp_path / "ran"))
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        kray.cancel(ref, force=True)
    assert kray.get(ref, timeout=helpers.WAIT_S) == "ran"


def test_is_canceled_is_refused_in_a_driver() -> None:
    with pytest.raises(RuntimeError, match="is_canceled"):
        kray.get_runtime_context().is_canceled()
