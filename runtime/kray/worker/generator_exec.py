"""Generator tasks on the executor's side: drives the generator that a task or actor method returned,
reports each yielded value to the task's owner as soon as it is yielded (GeneratorItem), and holds the
generator while its consumer lags _generator_backpressure_num_objects items behind.

Runs on the thread that runs the task (the main thread, an actor's thread, or an async actor's event
loop); messages go out through the core worker's I/O thread, which also delivers GeneratorConsumed.
Writes large items into the node's shared memory, as large returns are.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

from kray import config, exceptions, serialization
from kray.core import generators, refs
from kray.protocol import generator_messages, messages
from kray.worker import actor_runtime


class _Flow:
    """How many items the consumer of one backpressured stream has taken (updated by the I/O thread)."""

    __slots__ = ("changed", "consumed")

    def __init__(self) -> None:
        self.consumed = 0
        self.changed = threading.Condition()


class GeneratorRunner:
    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self.core = executor.core
        self.flows: dict[bytes, _Flow] = {}
        self.core.loop.on(generator_messages.GeneratorConsumed, self._on_consumed)

    def _on_consumed(self, msg: generator_messages.GeneratorConsumed, payload: list, peer: Any) -> None:
        flow = self.flows.get(msg.task_id)
        if flow is not None:
            with flow.changed:
                flow.consumed = max(flow.consumed, msg.consumed)
                flow.changed.notify_all()

    # ------------------------------------------------------------ driving

    def drive(self, spec: messages.TaskSpec, result: Any) -> Any:
        """Run a generator task's generator to its end on this thread; returns the task's own return value
        (None for a streaming generator, the DynamicObjectRefGenerator of a dynamic one)."""
        if inspect.isasyncgen(result):
            result = _iterate_async(result)  # an async generator function run as a task
        elif not inspect.isgenerator(result):
            raise _not_a_generator(spec, result)
        backpressure = generators.backpressure_of(spec.num_returns)
        flow = _Flow() if backpressure else None
        if flow is not None:
            self.flows[spec.task_id] = flow
        made: list[refs.ObjectRef] = []
        executor = self.executor
        try:
            for value in result:
                made.append(self._report(spec, len(made), value))
                if flow is not None:
                    with flow.changed:
                        while len(made) - flow.consumed >= backpressure:
                            flow.changed.wait()
                if executor.cancel_requested and spec.task_id in executor.cancel_requested:
                    result.close()  # an actor call that kray.cancel reached: the generator stops here
                    raise exceptions.TaskCancelledError(spec.task_id.hex())
        except BaseException as e:  # user code: reported or re-raised below
            if not self._store_error(spec, made, e):
                raise
        finally:
            if flow is not None:
                self.flows.pop(spec.task_id, None)
        return generators.DynamicObjectRefGenerator(made) if spec.num_returns == generators.DYNAMIC else None

    async def drive_async(self, spec: messages.TaskSpec, result: Any) -> Any:
        """The same on an async actor's event loop (as in Ray, backpressure does not apply to async generators)."""
        if inspect.isgenerator(result):
            return self.drive(spec, result)  # a plain generator method of an async actor runs on the loop
        if not inspect.isasyncgen(result):
            raise _not_a_generator(spec, result)
        made: list[refs.ObjectRef] = []
        try:
            async for value in result:
                made.append(self._report(spec, len(made), value))
        except BaseException as e:  # user code: reported or re-raised below
            if not self._store_error(spec, made, e):
                raise
        return generators.DynamicObjectRefGenerator(made) if spec.num_returns == generators.DYNAMIC else None

    def static_returns(self, spec: messages.TaskSpec, result: Any) -> tuple[list, list]:
        """The returns of a generator called with an integer num_returns n, as in Ray: its first n values;
        if it raised (or ended) before the n-th, the returns after the values it yielded hold the error."""
        n = spec.num_returns
        values: list[Any] = []
        error: BaseException | None = None
        try:
            for value in result:
                values.append(value)
                if len(values) == n:
                    break  # as in Ray, values past the n-th are not asked for
        except Exception as e:  # user code: stored in the returns it did not make
            if self.executor._retryable(spec, e):
                raise
            error = self._task_error(spec, e)
        if error is None and len(values) < n:
            error = ValueError(f"Task {spec.name} was declared with num_returns={n} but its generator yielded "
                               f"only {len(values)} value(s).")
        made = len(values)
        returns, payload = self.executor._pack_returns(
            dataclasses.replace(spec, num_returns=made), values[0] if made == 1 else values)
        if error is not None:
            more, more_payload = self.executor._error_returns(dataclasses.replace(spec, num_returns=n - made), error)
            returns += more
            payload += more_payload
        return returns, payload

    def _task_error(self, spec: messages.TaskSpec, e: BaseException) -> BaseException:
        if isinstance(e, exceptions.RayTaskError):
            return e
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        return exceptions.RayTaskError(spec.name, tb, e, os.getpid(), self.core.node.ip)

    # ------------------------------------------------------------ reporting

    def _report(self, spec: messages.TaskSpec, index: int, value: Any) -> refs.ObjectRef:
        """Send one item to the owner; returns a ref to it (owned by the task's owner, not counted here)."""
        core = self.core
        object_id = generators.item_id(spec.task_id, index)
        frames, contained = serialization.serialize(value, f"item {index} yielded by {spec.name}")
        contained = [r for r in contained if isinstance(r, refs.ObjectRef)]
        size = sum(len(f) if isinstance(f, bytes) else memoryview(f).nbytes for f in frames)
        payload: list[Any] = []
        if size > config.INLINE_THRESHOLD:
            ret = messages.ReturnValue("shm", 0, core.node_id, core.write_shm(object_id.hex(), frames))
        else:
            # Copied now: the generator may change a yielded buffer before the I/O thread sends it.
            payload = [f if isinstance(f, bytes) else bytes(f) for f in frames]
            ret = messages.ReturnValue("inline", len(payload))
        if contained:
            ret.contained = [(r.binary(), r.owner_address()) for r in contained]
            self.executor._count_caller_as_borrower(contained, spec.owner)
        self._send(spec, generator_messages.GeneratorItem(spec.task_id, spec.attempt, index, ret, core.address), payload)
        return _uncounted_ref(object_id, spec.owner)

    def _store_error(self, spec: messages.TaskSpec, made: list[refs.ObjectRef], e: BaseException) -> bool:
        """A dynamic generator's error becomes its last item, as in Ray; False: the task fails with it instead
        (a streaming generator, a cancellation, or an error that retry_exceptions retries)."""
        if spec.num_returns != generators.DYNAMIC or actor_runtime.is_cancellation(e):
            return False
        executor = self.executor
        if (executor.cancel_requested and spec.task_id in executor.cancel_requested) or executor._retryable(spec, e):
            return False
        returns, payload = executor._error_returns(spec, self._task_error(spec, e))
        index = len(made)
        self._send(spec, generator_messages.GeneratorItem(spec.task_id, spec.attempt, index, returns[0],
                                                          self.core.address), payload)
        made.append(_uncounted_ref(generators.item_id(spec.task_id, index), spec.owner))
        return True

    def _send(self, spec: messages.TaskSpec, msg: generator_messages.GeneratorItem, payload: list) -> None:
        core = self.core

        def send() -> None:
            core.flush()  # borrower registrations of refs inside the item travel first
            core.loop.connect(spec.owner).send(msg, payload)

        core.loop.call_soon_threadsafe(send)


def _uncounted_ref(object_id: bytes, owner: str) -> refs.ObjectRef:
    """A ref to an item for the task's DynamicObjectRefGenerator: the owner counts it when the value arrives."""
    ref = refs.ObjectRef(object_id, owner, _register=False)
    ref._core = None
    return ref


def _iterate_async(agen: AsyncIterator[Any]) -> Iterator[Any]:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


def _not_a_generator(spec: messages.TaskSpec, result: Any) -> TypeError:
    mode = "dynamic" if spec.num_returns == generators.DYNAMIC else "streaming"
    return TypeError(f"{spec.name} was called with num_returns={mode!r} but returned {type(result).__name__}, "
                     "not a generator: use `yield`, or an integer num_returns.")
