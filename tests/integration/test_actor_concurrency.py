"""Concurrency of actors on one shared local cluster: different actors in parallel, threaded actors
(max_concurrency), async actors on one event loop, and concurrency groups.

Overlap is proven, not timed: a call that must run alongside others records its start, waits (with a
generous timeout) until the others have started too, then records its end; the recorded intervals
must overlap. Upper bounds come from intervals of calls that sleep a little. No speed thresholds.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import kray
import pytest

from . import helpers, tasklib

cluster = helpers.module_cluster(num_cpus=4)
pytestmark = pytest.mark.usefixtures("cluster")

RENDEZVOUS_TIMEOUT_S = 60.0



# --- what the actors' calls do (these functions travel to the workers by value) -----------------


def _arrive(directory: str) -> float:
    start = time.time()
    (Path(directory) / f"{uuid.uuid4().hex}.started").touch()
    return start


def _arrived(directory: str) -> int:
    return len(list(Path(directory).glob("*.started")))


def _record(directory: str, start: float, extra: dict[str, Any] | None = None) -> None:
    end = time.time()
    entry = {"interval": [start, end], **(extra or {})}
    (Path(directory) / f"{uuid.uuid4().hex}.json").write_text(json.dumps(entry))


def meet(directory: str, parties: int, hold_s: float = 0.0) -> bool:
    """Arrive, wait until `parties` calls have arrived, hold `hold_s` more, record the interval."""
    start = _arrive(directory)
    deadline = time.monotonic() + RENDEZVOUS_TIMEOUT_S
    while _arrived(directory) < parties:
        if time.monotonic() > deadline:
            _record(directory, start)
            return False
        time.sleep(0.01)
    time.sleep(hold_s)
    _record(directory, start, {"thread": threading.get_ident(), "pid": os.getpid()})
    return True


async def meet_async(directory: str, parties: int, hold_s: float = 0.0) -> bool:
    """`meet` for an event loop: waits with `await`, so one thread can hold every call."""
    start = _arrive(directory)
    deadline = time.monotonic() + RENDEZVOUS_TIMEOUT_S
    while _arrived(directory) < parties:
        if time.monotonic() > deadline:
            _record(directory, start)
            return False
        await asyncio.sleep(0.01)
    await asyncio.sleep(hold_s)
    loop = id(asyncio.get_running_loop())
    _record(directory, start, {"thread": threading.get_ident(), "pid": os.getpid(), "loop": loop})
    return True


def hold(directory: str, seconds: float) -> None:
    start = time.time()
    time.sleep(seconds)
    _record(directory, start)


async def hold_async(directory: str, seconds: float) -> None:
    start = time.time()
    await asyncio.sleep(seconds)
    _record(directory, start)


def entries(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def overlap(directory: Path) -> int:
    return tasklib.max_overlap([tuple(e["interval"]) for e in entries(directory)])  # type: ignore[misc]


# --- the actors ---------------------------------------------------------------------------------


@kray.remote
class Worker:
    def ready(self) -> int:
        return os.getpid()

    def meet(self, directory: str, parties: int, hold_s: float = 0.0) -> bool:
        return meet(directory, parties, hold_s)

    def hold(self, directory: str, seconds: float) -> None:
        hold(directory, seconds)


@kray.remote
class AsyncWorker:
    async def ready(self) -> int:
        return os.getpid()

    async def meet(self, directory: str, parties: int, hold_s: float = 0.0) -> bool:
        return await meet_async(directory, parties, hold_s)

    async def hold(self, directory: str, seconds: float) -> None:
        await hold_async(directory, seconds)

    async def gated(self, gate: str) -> str:
        while not os.path.exists(gate):
            await asyncio.sleep(0.01)
        return "opened"

    async def echo(self, x: Any) -> Any:
        return x

    async def fail(self, message: str) -> None:
        await asyncio.sleep(0)
        raise KeyError(message)


@kray.remote(concurrency_groups={"io": 2, "compute": 1})
class Grouped:
    """A threaded actor with two concurrency groups of its own."""

    def ready(self) -> int:
        return os.getpid()

    @kray.method(concurrency_group="io")
    def io(self, directory: str, gate: str) -> bool:
        start = _arrive(directory)
        opened = tasklib.wait_for_file(gate, timeout=RENDEZVOUS_TIMEOUT_S)
        _record(directory, start)
        return opened

    @kray.method(concurrency_group="compute")
    def compute(self, directory: str, seconds: float) -> str:
        hold(directory, seconds)
        return "computed"


@kray.remote(concurrency_groups={"io": 2, "compute": 1})
class AsyncGrouped:
    """An async actor with two concurrency groups, each its own event loop."""

    async def ready(self) -> int:
        return os.getpid()

    @kray.method(concurrency_group="io")
    async def io(self, directory: str, gate: str) -> bool:
        start = _arrive(directory)
        deadline = time.monotonic() + RENDEZVOUS_TIMEOUT_S
        while not os.path.exists(gate) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        _record(directory, start)
        return os.path.exists(gate)

    @kray.method(concurrency_group="compute")
    async def compute(self, directory: str, seconds: float) -> str:
        await hold_async(directory, seconds)
        return "computed"


def _dirs(tmp_path: Path, *names: str) -> list[Path]:
    made = []
    for name in names:
        (tmp_path / name).mkdir()
        made.append(tmp_path / name)
    return made


# --- different actors -----------------------------------------------------------------------------


def test_different_actors_run_in_parallel(actors, tmp_path: Path) -> None:
    workers = [Worker.remote() for _ in range(3)]
    actors += workers
    pids = kray.get([w.ready.remote() for w in workers], timeout=helpers.WAIT_S)
    assert len(set(pids)) == 3
    met = kray.get([w.meet.remote(str(tmp_path), 3) for w in workers], timeout=RENDEZVOUS_TIMEOUT_S * 2)
    assert met == [True, True, True], "the actors' calls did not all run at the same time"
    assert overlap(tmp_path) == 3


# --- threaded actors ------------------------------------------------------------------------------


def test_default_actor_runs_one_call_at_a_time(actors, tmp_path: Path) -> None:
    worker = Worker.remote()
    actors.append(worker)
    kray.get(worker.ready.remote(), timeout=helpers.WAIT_S)
    kray.get([worker.hold.remote(str(tmp_path), 0.2) for _ in range(4)], timeout=helpers.WAIT_S)
    assert len(entries(tmp_path)) == 4
    assert overlap(tmp_path) == 1


def test_threaded_actor_runs_max_concurrency_calls_at_once(actors, tmp_path: Path) -> None:
    worker = Worker.options(max_concurrency=4).remote()
    actors.append(worker)
    kray.get(worker.ready.remote(), timeout=helpers.WAIT_S)
    met = kray.get([worker.meet.remote(str(tmp_path), 4, 0.5) for _ in range(4)], timeout=RENDEZVOUS_TIMEOUT_S * 2)
    assert met == [True] * 4, "four calls of a max_concurrency=4 actor did not run at the same time"
    assert overlap(tmp_path) == 4
    # Each call ran in a thread of its own, all in the actor's one process.
    recorded = entries(tmp_path)
    assert len({e["thread"] for e in recorded}) == 4
    assert len({e["pid"] for e in recorded}) == 1


def test_threaded_actor_never_exceeds_max_concurrency(actors, tmp_path: Path) -> None:
    worker = Worker.options(max_concurrency=2).remote()
    actors.append(worker)
    kray.get(worker.ready.remote(), timeout=helpers.WAIT_S)
    kray.get([worker.hold.remote(str(tmp_path), 0.2) for _ in range(6)], timeout=helpers.WAIT_S)
    assert len(entries(tmp_path)) == 6
    assert overlap(tmp_path) <= 2


# --- async actors ---------------------------------------------------------------------------------


def test_async_actor_runs_calls_concurrently_on_one_event_loop(actors, tmp_path: Path) -> None:
    worker = AsyncWorker.remote()
    actors.append(worker)
    kray.get(worker.ready.remote(), timeout=helpers.WAIT_S)
    parties = 8
    met = kray.get(
        [worker.meet.remote(str(tmp_path), parties, 0.5) for _ in range(parties)], timeout=RENDEZVOUS_TIMEOUT_S * 2
    )
    assert met == [True] * parties, "the async actor's calls did not all run at the same time"
    assert overlap(tmp_path) == parties
    recorded = entries(tmp_path)
    assert len({e["thread"] for e in recorded}) == 1, "an async actor's calls ran in several threads"
    assert len({e["loop"] for e in recorded}) == 1, "an async actor's calls ran on several event loops"


def test_async_actor_serves_calls_while_one_awaits(actors, tmp_path: Path) -> None:
    worker = AsyncWorker.remote()
    actors.append(worker)
    gate = tmp_path / "gate"
    waiting = worker.gated.remote(str(gate))
    # Later calls complete while the first one is still waiting on its gate.
    assert kray.get([worker.echo.remote(i) for i in range(20)], timeout=helpers.WAIT_S) == list(range(20))
    ready, _ = kray.wait([waiting], timeout=0)
    assert not ready
    gate.touch()
    assert kray.get(waiting, timeout=helpers.WAIT_S) == "opened"


def test_async_method_error_raises_and_the_actor_stays_alive(actors) -> None:
    worker = AsyncWorker.remote()
    actors.append(worker)
    with pytest.raises(KeyError) as info:
        kray.get(worker.fail.remote("no such key 17"), timeout=helpers.WAIT_S)
    assert isinstance(info.value, kray.exceptions.RayTaskError)
    assert "no such key 17" in str(info.value)
    assert kray.get(worker.echo.remote("still here"), timeout=helpers.WAIT_S) == "still here"


def test_async_actor_max_concurrency_bounds_the_overlap(actors, tmp_path: Path) -> None:
    worker = AsyncWorker.options(max_concurrency=2).remote()
    actors.append(worker)
    kray.get(worker.ready.remote(), timeout=helpers.WAIT_S)
    kray.get([worker.hold.remote(str(tmp_path), 0.2) for _ in range(6)], timeout=helpers.WAIT_S)
    assert len(entries(tmp_path)) == 6
    assert overlap(tmp_path) <= 2


def test_driver_can_await_actor_calls(actors) -> None:
    worker = AsyncWorker.remote()
    actors.append(worker)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*[worker.echo.remote(i) for i in range(5)]))

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


# --- concurrency groups ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Grouped, AsyncGrouped], ids=["threaded", "async"])
def test_concurrency_groups_have_their_own_limits(cls: Any, actors, tmp_path: Path) -> None:
    io_dir, compute_dir = _dirs(tmp_path, "io", "compute")
    gate = tmp_path / "gate"
    actor = cls.remote()
    actors.append(actor)
    kray.get(actor.ready.remote(), timeout=helpers.WAIT_S)
    io_calls = [actor.io.remote(str(io_dir), str(gate)) for _ in range(3)]
    try:
        # The "io" group runs two calls at once ...
        helpers.wait_until(lambda: _arrived(str(io_dir)) >= 2, what="two io calls to start")
        # ... and while both wait on the gate, the "compute" group still serves its calls, one at a time.
        computed = kray.get([actor.compute.remote(str(compute_dir), 0.2) for _ in range(3)], timeout=helpers.WAIT_S)
        assert computed == ["computed"] * 3
        assert _arrived(str(io_dir)) == 2, "a third io call started while two held the io group"
        # A call can be sent to another group than its method's: this io call runs in "compute".
        moved_dir, moved_gate = tmp_path / "moved", tmp_path / "moved-gate"
        moved_dir.mkdir()
        moved = actor.io.options(concurrency_group="compute").remote(str(moved_dir), str(moved_gate))
        helpers.wait_until(lambda: _arrived(str(moved_dir)) == 1, what="the io call sent to the compute group to start")
        moved_gate.touch()
        assert kray.get(moved, timeout=helpers.WAIT_S) is True
    finally:
        gate.touch()
    assert kray.get(io_calls, timeout=helpers.WAIT_S) == [True] * 3
    assert overlap(io_dir) == 2
    assert overlap(compute_dir) == 1
