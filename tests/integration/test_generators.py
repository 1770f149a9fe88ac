"""Generator tasks as Ray documents them: streaming generators (tasks, actor methods, async actors' async
generators) whose refs arrive while the task runs, `num_returns="dynamic"`, errors and worker crashes
mid-stream, cancellation, retries that do not repeat items, `kray.wait` on generators and
`_generator_backpressure_num_objects`.

One 2-CPU cluster for the module. Generators wait on gate files in tmp_path, so what the consumer sees
while a task is still running is decided by the test, never by timing.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from pathlib import Path

import kray
import pytest
from kray import exceptions

from . import helpers, tasklib

cluster = helpers.module_cluster(num_cpus=2)
pytestmark = pytest.mark.usefixtures("cluster")


@kray.remote
def gated_numbers(gate: str, n: int):  # type: ignore[no-untyped-def]
    """Yields 0, then waits for `gate`, then yields 1..n-1."""
    yield 0
    tasklib.wait_for_file(gate)
    yield from range(1, n)


@kray.remote
def numbers(n: int):  # type: ignore[no-untyped-def]
    yield from range(n)


@kray.remote
def fails_after(n: int):  # type: ignore[no-untyped-def]
    yield from range(n)
    raise ValueError("generator failed")


@kray.remote(max_retries=0)
def crashes_after(n: int, gate: str):  # type: ignore[no-untyped-def]
    """Yields n items, waits until the consumer has them (gate), then its worker dies."""
    yield from range(n)
    tasklib.wait_for_file(gate)
    os._exit(1)


@kray.remote(max_retries=1)
def crashes_once(n: int, crash_at: int, marker: str):  # type: ignore[no-untyped-def]
    """Its first attempt dies after yielding `crash_at` items; the retry yields all n."""
    for i in range(n):
        if i == crash_at and not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)
        yield i


@kray.remote(max_retries=1, retry_exceptions=[OSError])
def fails_once(n: int, fail_at: int, marker: str):  # type: ignore[no-untyped-def]
    """Its first attempt raises a retryable error after yielding `fail_at` items; the retry yields all n."""
    for i in range(n):
        if i == fail_at and not os.path.exists(marker):
            Path(marker).touch()
            raise OSError("transient")
        yield i


@kray.remote
def endless(started: str):  # type: ignore[no-untyped-def]
    i = 0
    while True:
        if i == 2:
            Path(started).touch()
        yield i
        i += 1
        time.sleep(0.01)


@kray.remote(_generator_backpressure_num_objects=1)
def paced(n: int, consumed_file: str):  # type: ignore[no-untyped-def]
    """Yields (i, what the consumer had announced when item i was made)."""
    for i in range(n):
        yield i, tasklib.count(Path(consumed_file))


@kray.remote(num_returns="dynamic")
def split(n: int, fail: bool = False):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i * 10
    if fail:
        raise KeyError("split failed")


@kray.remote
def total(ref_generator: kray.DynamicObjectRefGenerator) -> int:
    return sum(kray.get(list(ref_generator)))


@kray.remote
class Producer:
    def items(self, n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    def endless(self, started: str):  # type: ignore[no-untyped-def]
        i = 0
        while True:
            if i == 2:
                Path(started).touch()
            yield i
            i += 1
            time.sleep(0.01)


@kray.remote(max_concurrency=4)
class ThreadedProducer:
    def items(self, n: int):  # type: ignore[no-untyped-def]
        yield from range(n)


@kray.remote
class AsyncProducer:
    async def items(self, n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            await asyncio.sleep(0)
            yield i * 2

    async def fails(self):  # type: ignore[no-untyped-def]
        yield "first"
        raise RuntimeError("async generator failed")


def test_items_arrive_while_the_task_runs(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    gen = gated_numbers.remote(gate, 4)
    assert isinstance(gen, kray.ObjectRefGenerator)
    assert kray.get(next(gen)) == 0  # the task is still waiting for the gate
    ready, not_ready = kray.wait([gen], timeout=0)
    assert (ready, not_ready) == ([], [gen])
    assert not gen.next_ready() and not gen.is_finished()
    Path(gate).touch()
    ready, _ = kray.wait([gen], timeout=helpers.WAIT_S)
    assert ready == [gen]
    assert [kray.get(ref) for ref in gen] == [1, 2, 3]
    assert kray.get(gen.completed()) is None
    assert gen.is_finished()
    with pytest.raises(StopIteration):
        next(gen)
    ready, _ = kray.wait([gen], timeout=0)  # a finished generator is ready: next() does not block
    assert ready == [gen]


def test_wait_mixes_generators_and_refs(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    gen = gated_numbers.remote(gate, 2)
    plain = kray.put(5)  # ready at once
    next(gen)
    ready, not_ready = kray.wait([gen, plain], num_returns=1, timeout=helpers.WAIT_S)
    assert (ready, not_ready) == ([plain], [gen])
    with pytest.raises(ValueError, match="num_returns cannot be greater"):
        kray.wait([gen, plain], num_returns=3)
    Path(gate).touch()
    ready, not_ready = kray.wait([gen, plain], num_returns=2, timeout=helpers.WAIT_S)
    assert (ready, not_ready) == ([gen, plain], [])


def test_an_exception_mid_stream_arrives_after_the_items_before_it() -> None:
    gen = fails_after.remote(2)
    assert kray.get(next(gen)) == 0
    assert kray.get(next(gen)) == 1
    error_ref = next(gen)
    with pytest.raises(ValueError, match="generator failed") as info:
        kray.get(error_ref)
    assert isinstance(info.value, exceptions.RayTaskError)
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()
    with pytest.raises(ValueError, match="generator failed"):
        kray.get(gen.completed())


def test_a_worker_crash_mid_stream_ends_it_with_worker_crashed_error(tmp_path: Path) -> None:
    gate = str(tmp_path / "have-both")
    gen = crashes_after.remote(2, gate)
    assert [kray.get(next(gen)), kray.get(next(gen))] == [0, 1]
    Path(gate).touch()
    with pytest.raises(exceptions.WorkerCrashedError, match="crashes_after"):
        kray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)


def test_retries_do_not_repeat_items(tmp_path: Path) -> None:
    gen = crashes_once.remote(6, 3, str(tmp_path / "crashed"))
    assert [kray.get(ref) for ref in gen] == [0, 1, 2, 3, 4, 5]
    assert (tmp_path / "crashed").exists()  # the first attempt did die
    gen = fails_once.remote(5, 2, str(tmp_path / "failed"))
    assert [kray.get(ref) for ref in gen] == [0, 1, 2, 3, 4]
    assert (tmp_path / "failed").exists()


def test_cancel_stops_a_streaming_task(tmp_path: Path) -> None:
    started = tmp_path / "started"
    gen = endless.remote(str(started))
    assert kray.get(next(gen)) == 0
    helpers.wait_until(started.exists, what="the generator to yield its third item")
    kray.cancel(gen)
    refs = list(gen)  # the items yielded before the cancellation reached it, then the error
    assert refs, "the stream ended without reporting the cancellation"
    assert [kray.get(ref) for ref in refs[:-1]] == list(range(1, len(refs)))
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(refs[-1])


def test_cancel_stops_an_actor_generator(tmp_path: Path, actors: list) -> None:
    producer = Producer.remote()
    actors.append(producer)
    started = tmp_path / "started"
    gen = producer.endless.remote(str(started))
    helpers.wait_until(started.exists, what="the actor's generator to yield its third item")
    kray.cancel(gen)
    refs = list(gen)
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(refs[-1])
    assert kray.get(producer.items.remote(2).completed()) is None  # the actor serves calls again


def test_backpressure_holds_the_generator_until_items_are_taken(tmp_path: Path) -> None:
    consumed = tmp_path / "consumed"
    gen = paced.remote(5, str(consumed))
    for k in range(5):
        (tmp_path / "next").write_text(str(k + 1))
        os.replace(tmp_path / "next", consumed)  # announced (atomically) before next() takes item k
        i, seen = kray.get(next(gen))
        # With one object of backpressure, item i is made only after the consumer took items 0..i-1.
        assert (i, seen >= i) == (k, True), (i, seen)
    with pytest.raises(StopIteration):
        next(gen)


def test_generator_actor_methods_sync_threaded_and_async(actors: list) -> None:
    producer, threaded, asynchronous = Producer.remote(), ThreadedProducer.remote(), AsyncProducer.remote()
    actors.extend([producer, threaded, asynchronous])
    assert [kray.get(ref) for ref in producer.items.remote(3)] == [0, 1, 2]
    assert [kray.get(ref) for ref in threaded.items.remote(3)] == [0, 1, 2]
    assert [kray.get(ref) for ref in asynchronous.items.remote(3)] == [0, 2, 4]
    gen = asynchronous.fails.remote()
    assert kray.get(next(gen)) == "first"
    with pytest.raises(RuntimeError, match="async generator failed"):
        kray.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)
    dynamic = kray.get(producer.items.options(num_returns="dynamic").remote(2))
    assert kray.get(list(dynamic)) == [0, 1]


def test_async_iteration_in_the_driver() -> None:
    async def consume() -> list[int]:
        gen = numbers.remote(3)
        first = await gen.__anext__()
        rest = [await ref async for ref in gen]
        return [await first, *rest]

    assert asyncio.run(consume()) == [0, 1, 2]


def test_dynamic_generators_return_one_ref_to_their_refs() -> None:
    dynamic_ref = split.remote(4)
    assert isinstance(dynamic_ref, kray.ObjectRef)
    ref_generator = kray.get(dynamic_ref)
    assert isinstance(ref_generator, kray.DynamicObjectRefGenerator)
    assert len(ref_generator) == 4
    assert kray.get(list(ref_generator)) == [0, 10, 20, 30]
    assert kray.get(total.remote(split.remote(3))) == 30  # the ref passed to a task: it gets the generator
    assert kray.get(total.remote(kray.get(split.remote(2)))) == 10  # the generator itself passed


def test_a_dynamic_generators_error_is_its_last_ref() -> None:
    first, second, error_ref = kray.get(split.remote(2, fail=True))
    assert kray.get([first, second]) == [0, 10]
    with pytest.raises(KeyError, match="split failed"):
        kray.get(error_ref)


def test_integer_num_returns_of_a_generator_function() -> None:
    a, b, c = numbers.options(num_returns=3).remote(3)
    assert kray.get([a, b, c]) == [0, 1, 2]
    assert kray.get(list(numbers.options(num_returns=2).remote(3))) == [0, 1]  # as in Ray: the rest is not asked for
    x, y, missing = numbers.options(num_returns=3).remote(2)
    assert kray.get([x, y]) == [0, 1]
    with pytest.raises(ValueError, match="num_returns=3 but its generator yielded only 2"):
        kray.get(missing)
    # An exception before the last value: the values yielded before it stay readable, the rest raise it.
    first, second, third, fourth = fails_after.options(num_returns=4).remote(2)
    assert kray.get([first, second]) == [0, 1]
    for ref in (third, fourth):
        with pytest.raises(ValueError, match="generator failed"):
            kray.get(ref)


def test_misuse_gets_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_returns"):
        numbers.options(num_returns="lots")
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        numbers.options(_generator_backpressure_num_objects=0)
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        numbers.options(num_returns="dynamic", _generator_backpressure_num_objects=2)
    gen = numbers.remote(1)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        pickle.dumps(gen)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        total.remote(gen)

    @kray.remote(num_returns="streaming")
    def not_a_generator() -> int:
        return 1

    with pytest.raises(TypeError, match="not a generator"):
        kray.get(next(not_a_generator.remote()))


@kray.remote
class DyingProducer:
    def items_then_exit(self, n: int, gate: str):  # type: ignore[no-untyped-def]
        """Yields n items, waits until the consumer has them (gate), then the actor's process dies."""
        yield from range(n)
        tasklib.wait_for_file(gate)
        os._exit(1)

    def ping(self) -> str:
        return "pong"


def _noted_count(produced: str):  # type: ignore[no-untyped-def]
    """0, 1, 2, ... for ever, noting each item in `produced` as it is made."""
    i = 0
    while True:
        with open(produced, "a") as f:
            f.write(f"{i}\n")
        yield i
        i += 1


@kray.remote(_generator_backpressure_num_objects=1)
def held_stream(produced: str):  # type: ignore[no-untyped-def]
    """Endless, one item ahead of its consumer at most; notes each item it made in `produced`."""
    yield from _noted_count(produced)


@kray.remote
class HeldProducer:
    def stream(self, produced: str):  # type: ignore[no-untyped-def]
        yield from _noted_count(produced)

    def ping(self) -> str:
        return "pong"


def test_an_actor_dying_mid_stream_ends_it_with_actor_died_error(tmp_path: Path) -> None:
    gate = str(tmp_path / "have-both")
    producer = DyingProducer.remote()
    gen = producer.items_then_exit.remote(2, gate)
    assert [kray.get(next(gen)), kray.get(next(gen))] == [0, 1]  # the items before the death stay readable
    Path(gate).touch()
    with pytest.raises(exceptions.ActorDiedError, match="DyingProducer") as info:
        kray.get(next(gen))
    assert isinstance(info.value, exceptions.RayActorError)
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()
    with pytest.raises(exceptions.ActorDiedError):
        kray.get(producer.ping.remote())


def _made(produced: Path) -> list[str]:
    return produced.read_text().split() if produced.exists() else []


def _cancelled_stream_ends(gen: kray.ObjectRefGenerator) -> None:
    """After kray.cancel: the items already yielded, in order, then one ref raising TaskCancelledError."""
    refs = list(gen)
    assert refs, "the stream ended without reporting the cancellation"
    assert [kray.get(ref) for ref in refs[:-1]] == list(range(1, len(refs)))
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(refs[-1])
    assert gen.is_finished()


def test_cancel_reaches_a_generator_held_by_backpressure(tmp_path: Path, actors: list) -> None:
    produced = tmp_path / "task-items"
    gen = held_stream.remote(str(produced))
    assert kray.get(next(gen)) == 0
    # Item 1 is made, then the generator waits for its consumer, who takes nothing more.
    helpers.wait_until(lambda: _made(produced)[:2] == ["0", "1"], what="the held generator's second item")
    kray.cancel(gen)
    _cancelled_stream_ends(gen)
    helpers.wait_until(lambda: kray.available_resources().get("CPU") == 2.0, what="the cancelled task's CPU back")

    producer = HeldProducer.remote()
    actors.append(producer)
    produced = tmp_path / "actor-items"
    gen = producer.stream.options(_generator_backpressure_num_objects=1).remote(str(produced))
    assert kray.get(next(gen)) == 0
    helpers.wait_until(lambda: _made(produced)[:2] == ["0", "1"], what="the held actor generator's second item")
    kray.cancel(gen)
    _cancelled_stream_ends(gen)
    assert kray.get(producer.ping.remote(), timeout=helpers.WAIT_S) == "pong"  # the actor serves calls again
