"""kray.util on one shared local cluster: ActorPool, the actor-backed Queue, and list_actors of the state API.

One cluster for the module (4 CPUs); every test kills the actors it made. Timeouts that must expire
are short (they prove the call waits and then raises); everything that must happen gets a generous bound.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kray
import kray.util
import psutil
import pytest
from kray import exceptions
from kray.util import state
from kray.util.actor_pool import ActorPool
from kray.util.queue import Empty, Full, Queue

from . import helpers, tasklib

cluster = helpers.module_cluster(num_cpus=4)
pytestmark = pytest.mark.usefixtures("cluster")



@kray.remote
class Doubler:
    def double(self, v: int) -> int:
        return 2 * v

    def whoami(self, v: int) -> tuple[int, int]:
        return v, os.getpid()

    def gated(self, gate: str) -> str:
        return "opened" if tasklib.wait_for_file(gate) else "gate never opened"

    def pid(self) -> int:
        return os.getpid()


def _pool(actors: list[Any], n: int) -> tuple[ActorPool, list[Any]]:
    handles = [Doubler.remote() for _ in range(n)]
    actors += handles
    kray.get([h.pid.remote() for h in handles], timeout=helpers.WAIT_S)
    return ActorPool(handles), handles


def _double(a: Any, v: int) -> Any:
    return a.double.remote(v)


# --- ActorPool ------------------------------------------------------------------------------------


def test_actor_pool_is_exported_from_kray_util() -> None:
    assert kray.util.ActorPool is ActorPool


def test_map_returns_results_in_order(actors) -> None:
    pool, _ = _pool(actors, 2)
    assert list(pool.map(_double, [1, 2, 3, 4])) == [2, 4, 6, 8]
    assert list(pool.map(_double, range(20))) == [2 * v for v in range(20)]
    assert not pool.has_next()


def test_map_unordered_returns_every_result(actors) -> None:
    pool, _ = _pool(actors, 2)
    assert sorted(pool.map_unordered(_double, [1, 2, 3, 4])) == [2, 4, 6, 8]
    assert not pool.has_next()


def test_map_spreads_values_over_all_actors(actors) -> None:
    pool, handles = _pool(actors, 3)
    pids = set(kray.get([h.pid.remote() for h in handles], timeout=helpers.WAIT_S))
    results = list(pool.map(lambda a, v: a.whoami.remote(v), range(12)))
    assert [v for v, _ in results] == list(range(12))
    assert {pid for _, pid in results} == pids


def test_submit_get_next_and_has_next(actors) -> None:
    pool, _ = _pool(actors, 2)
    assert not pool.has_next()
    for v in range(5):  # more values than actors: the rest wait in the pool
        pool.submit(_double, v)
    assert pool.has_next()
    assert [pool.get_next() for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_get_next_unordered_returns_the_first_ready_result(actors, tmp_path: Path) -> None:
    pool, _ = _pool(actors, 2)
    gate = tmp_path / "gate"
    pool.submit(lambda a, v: a.gated.remote(v), str(gate))
    pool.submit(_double, 21)
    assert pool.get_next_unordered(timeout=helpers.WAIT_S) == 42
    # The slow first result cannot be taken in order any more once a later one was returned.
    with pytest.raises(ValueError):
        pool.get_next()
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.2)
    gate.touch()
    assert pool.get_next_unordered(timeout=helpers.WAIT_S) == "opened"
    assert not pool.has_next()


def test_get_next_timeout_raises_and_keeps_the_result(actors, tmp_path: Path) -> None:
    pool, _ = _pool(actors, 1)
    gate = tmp_path / "gate"
    pool.submit(lambda a, v: a.gated.remote(v), str(gate))
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.2)
    assert pool.has_next()
    gate.touch()
    assert pool.get_next(timeout=helpers.WAIT_S) == "opened"


def test_get_next_ignore_if_timedout_drops_the_call(actors, tmp_path: Path) -> None:
    pool, _ = _pool(actors, 1)
    gate = tmp_path / "gate"
    try:
        pool.submit(lambda a, v: a.gated.remote(v), str(gate))
        with pytest.raises(TimeoutError):
            pool.get_next(timeout=0.2, ignore_if_timedout=True)
        assert not pool.has_next()
        assert pool.has_free(), "the actor of the dropped call did not return to the pool"
    finally:
        gate.touch()
    # The actor finishes the dropped call first, then serves the next one.
    pool.submit(_double, 5)
    assert pool.get_next(timeout=helpers.WAIT_S) == 10


def test_has_free_pop_idle_and_push(actors) -> None:
    pool, handles = _pool(actors, 1)
    assert pool.has_free()
    pool.submit(_double, 1)
    assert not pool.has_free()
    assert pool.pop_idle() is None
    assert pool.get_next() == 2
    assert pool.has_free()
    popped = pool.pop_idle()
    assert popped == handles[0]
    assert not pool.has_free()
    assert pool.pop_idle() is None
    # A pool without idle actors keeps submissions until an actor is pushed.
    pool.submit(_double, 3)
    assert pool.has_next() is False
    assert not pool.has_free()
    pool.push(popped)
    assert pool.has_next()
    assert pool.get_next(timeout=helpers.WAIT_S) == 6
    with pytest.raises(ValueError):
        pool.push(popped)  # already in the pool
    extra = Doubler.remote()
    actors.append(extra)
    pool.push(extra)
    assert sorted(pool.map(_double, [1, 2])) == [2, 4]


def test_map_after_uncollected_submits_starts_clean(actors) -> None:
    pool, _ = _pool(actors, 2)
    pool.submit(_double, 100)
    pool.submit(_double, 200)
    assert list(pool.map(_double, [1, 2, 3])) == [2, 4, 6]


def test_pool_drops_an_actor_that_died(actors) -> None:
    pool, handles = _pool(actors, 2)
    # The pool hands out its most recently idle actor first: with none used yet, the last one.
    dead = handles[-1]
    dead_pid = kray.get(dead.pid.remote(), timeout=helpers.WAIT_S)
    kray.kill(dead)
    helpers.wait_until(lambda: not _running(dead_pid), what="the killed actor's process to exit")
    pool.submit(_double, 1)
    with pytest.raises(exceptions.ActorDiedError):
        pool.get_next(timeout=helpers.WAIT_S)
    # The dead actor left the pool; the live one serves everything.
    assert list(pool.map(_double, [1, 2, 3])) == [2, 4, 6]
    assert pool.pop_idle() == handles[0]
    assert pool.pop_idle() is None


def _running(pid: int) -> bool:
    try:
        return bool(helpers.alive([psutil.Process(pid)]))
    except psutil.NoSuchProcess:
        return False


# --- Queue ----------------------------------------------------------------------------------------


@pytest.fixture
def queues() -> Iterator[list[Queue]]:
    made: list[Queue] = []
    yield made
    for q in made:
        q.shutdown(force=True)  # harmless after an earlier shutdown


def _queue(queues: list[Queue], maxsize: int = 0) -> Queue:
    q = Queue(maxsize=maxsize)
    queues.append(q)
    return q


def test_queue_is_first_in_first_out(queues) -> None:
    q = _queue(queues)
    assert q.empty()
    for item in range(10):
        q.put(item)
    assert q.qsize() == 10 and q.size() == 10 and len(q) == 10
    assert not q.empty()
    assert not q.full()  # maxsize 0: never full
    assert [q.get() for _ in range(10)] == list(range(10))
    assert q.empty()


def test_queue_full_and_nowait(queues) -> None:
    q = _queue(queues, maxsize=2)
    q.put_nowait("a")
    q.put("b", block=False)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait("c")
    with pytest.raises(Full):
        q.put("c", block=False)
    assert q.get_nowait() == "a"
    assert q.get(block=False) == "b"
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)


def test_queue_timeouts_raise_empty_and_full(queues) -> None:
    q = _queue(queues, maxsize=1)
    with pytest.raises(Empty):
        q.get(timeout=0.3)
    q.put(1)
    with pytest.raises(Full):
        q.put(2, timeout=0.3)
    assert q.qsize() == 1
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(ValueError):
        q.put(3, timeout=-1)
    assert q.get(timeout=helpers.WAIT_S) == 1


def test_queue_exceptions_are_the_standard_librarys() -> None:
    import queue

    assert issubclass(Empty, queue.Empty)
    assert issubclass(Full, queue.Full)


def test_queue_batches_are_all_or_nothing(queues) -> None:
    q = _queue(queues, maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])
    assert q.qsize() == 2
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.qsize() == 2
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)


@kray.remote
def consume(q: Queue, n: int) -> list[Any]:
    return [q.get(timeout=120) for _ in range(n)]


@kray.remote
def produce(q: Queue, items: list[Any]) -> int:
    for item in items:
        q.put(item, timeout=120)
    return len(items)


def test_blocked_get_returns_when_a_task_puts(queues) -> None:
    q = _queue(queues)
    consumer = consume.remote(q, 3)
    ready, _ = kray.wait([consumer], timeout=0.5)
    assert not ready, "get on an empty queue returned"
    assert kray.get(produce.remote(q, ["x", "y", "z"]), timeout=helpers.WAIT_S) == 3
    assert kray.get(consumer, timeout=helpers.WAIT_S) == ["x", "y", "z"]


def test_blocked_put_returns_when_space_frees(queues) -> None:
    q = _queue(queues, maxsize=1)
    q.put("first")
    producer = produce.remote(q, ["second"])
    ready, _ = kray.wait([producer], timeout=0.5)
    assert not ready, "put on a full queue returned"
    assert q.get(timeout=helpers.WAIT_S) == "first"
    assert kray.get(producer, timeout=helpers.WAIT_S) == 1
    assert q.get(timeout=helpers.WAIT_S) == "second"


def test_queue_async_put_and_get(queues) -> None:
    q = _queue(queues, maxsize=1)

    async def main() -> list[Any]:
        await q.put_async("a")
        with pytest.raises(Full):
            await q.put_async("b", block=False)
        with pytest.raises(Full):
            await q.put_async("b", timeout=0.2)
        got = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        with pytest.raises(Empty):
            await q.get_async(timeout=0.2)
        return [got]

    assert asyncio.run(main()) == ["a"]


def test_queue_shutdown_kills_its_actor(queues) -> None:
    q = _queue(queues)
    q.put(1)
    actor = q.actor
    q.shutdown()
    assert q.actor is None

    def dead() -> bool:
        try:
            kray.get(actor.qsize.remote(), timeout=helpers.WAIT_S)
        except exceptions.ActorDiedError:
            return True
        return False

    helpers.wait_until(dead, what="calls to the queue's actor to fail after shutdown")
    q.shutdown()  # a second shutdown is harmless


def test_queue_actor_options(queues) -> None:
    q = Queue(maxsize=3, actor_options={"name": "named-queue", "namespace": "queues"})
    queues.append(q)
    q.put("via the queue")
    found = kray.get_actor("named-queue", namespace="queues")
    assert kray.get(found.qsize.remote(), timeout=helpers.WAIT_S) == 1
    assert q.get() == "via the queue"


def test_queue_is_usable_from_an_actor(queues, actors) -> None:
    q = _queue(queues)

    @kray.remote
    class Producer:
        def fill(self, q: Queue, n: int) -> int:
            for i in range(n):
                q.put(i)
            return n

    producer = Producer.remote()
    actors.append(producer)
    assert kray.get(producer.fill.remote(q, 5), timeout=helpers.WAIT_S) == 5
    assert q.get_nowait_batch(5) == [0, 1, 2, 3, 4]


# --- list_actors ----------------------------------------------------------------------------------


@kray.remote
class Listed:
    """An actor whose restarts block in __init__ until the test opens a gate (to see RESTARTING)."""

    def __init__(self, marker: str, gate: str) -> None:
        if os.path.exists(marker):
            tasklib.wait_for_file(gate)
        else:
            Path(marker).touch()

    def info(self) -> dict[str, Any]:
        ctx = kray.get_runtime_context()
        return {"pid": os.getpid(), "actor_id": ctx.get_actor_id(), "node_id": ctx.get_node_id()}

    def die(self) -> None:
        os._exit(1)


@kray.remote(resources={"not_on_any_node": 1})
class NeverPlaced:
    def ping(self) -> str:
        return "pong"


def _rows(**filters: Any) -> list[Any]:
    return state.list_actors(filters=[(k, "=", v) for k, v in filters.items()], detail=True, limit=10_000)


def _state_of(actor_id: str) -> str | None:
    rows = _rows(actor_id=actor_id)
    return rows[0]["state"] if rows else None


def test_list_actors_shows_each_state(actors, tmp_path: Path) -> None:
    marker, gate = tmp_path / "started-once", tmp_path / "gate"
    listed = Listed.options(name="listed-actor", namespace="listing", max_restarts=1).remote(str(marker), str(gate))
    actors.append(listed)
    info = kray.get(listed.info.remote(), timeout=helpers.WAIT_S)
    actor_id = info["actor_id"]

    row = _rows(actor_id=actor_id)[0]
    assert row["state"] == "ALIVE"
    assert row["class_name"] == "Listed"
    assert row["name"] == "listed-actor"
    assert row["ray_namespace"] == "listing"
    assert row["pid"] == info["pid"]
    assert row["node_id"] == info["node_id"]
    assert row["job_id"] == kray.get_runtime_context().get_job_id()
    assert row["num_restarts"] == 0
    assert row.state == "ALIVE"  # rows also read by attribute, as Ray's ActorState

    # The process dies; the restart blocks in __init__ until the gate opens.
    with pytest.raises(exceptions.ActorUnavailableError):
        kray.get(listed.die.remote(), timeout=helpers.WAIT_S)
    helpers.wait_until(lambda: _state_of(actor_id) == "RESTARTING", what="the actor to show RESTARTING")
    gate.touch()
    helpers.wait_until(lambda: _state_of(actor_id) == "ALIVE", what="the restarted actor to show ALIVE")
    assert _rows(actor_id=actor_id)[0]["num_restarts"] == 1
    assert kray.get(listed.info.remote(), timeout=helpers.WAIT_S)["pid"] != info["pid"]

    kray.kill(listed)
    helpers.wait_until(lambda: _state_of(actor_id) == "DEAD", what="the killed actor to show DEAD")
    assert _rows(actor_id=actor_id)[0]["death_cause"] is not None


def test_list_actors_shows_pending_creation(actors) -> None:
    pending = NeverPlaced.remote()
    actors.append(pending)
    helpers.wait_until(
        lambda: [r["state"] for r in _rows(class_name="NeverPlaced")] == ["PENDING_CREATION"],
        what="the unplaceable actor to show PENDING_CREATION",
    )
    kray.kill(pending)
    helpers.wait_until(
        lambda: [r["state"] for r in _rows(class_name="NeverPlaced")] == ["DEAD"],
        what="the killed pending actor to show DEAD",
    )


def test_list_actors_filters_limit_and_columns(actors) -> None:
    handles = [Doubler.remote() for _ in range(3)]
    actors += handles
    kray.get([h.pid.remote() for h in handles], timeout=helpers.WAIT_S)

    alive = state.list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
    assert alive and all(r["state"] == "ALIVE" for r in alive)
    assert sum(r["class_name"] == "Doubler" for r in alive) >= 3
    # String filter values compare case-insensitively, as in Ray.
    assert len(state.list_actors(filters=[("state", "=", "alive")], limit=10_000)) == len(alive)
    not_alive = state.list_actors(filters=[("state", "!=", "ALIVE")], limit=10_000)
    assert all(r["state"] != "ALIVE" for r in not_alive)
    doublers = state.list_actors(filters=[("class_name", "=", "Doubler"), ("state", "=", "ALIVE")], limit=10_000)
    assert len(doublers) == 3
    assert len(state.list_actors(filters=[("class_name", "=", "Doubler")], limit=2)) == 2
    # The short listing leaves out the detail columns.
    short = state.list_actors(filters=[("class_name", "=", "Doubler")], limit=1)[0]
    for column in ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace"):
        assert column in short
    assert "death_cause" not in short and "num_restarts" not in short
    with pytest.raises(ValueError):
        state.list_actors(filters=[("state", ">", "ALIVE")])
    with pytest.raises(ValueError):
        state.list_actors(filters=[("no_such_column", "=", "x")])
