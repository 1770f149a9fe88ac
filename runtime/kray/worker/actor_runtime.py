"""How an actor's method calls run inside its worker: in order on the main thread (the default),
on threads (max_concurrency > 1 or concurrency groups), or as coroutines on one asyncio event loop
(async actors).

Starts threads and an event loop in the actor's worker process; results go back through the
executor's completion path.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import sys
import threading
from typing import TYPE_CHECKING, Any

from kray.protocol import messages

if TYPE_CHECKING:
    import asyncio  # imported for real only by an async actor: sync workers and drivers never load it

DEFAULT_ASYNC_CONCURRENCY = 1000


def is_cancellation(e: BaseException) -> bool:
    """KeyboardInterrupt, or asyncio's CancelledError (raised only where asyncio was imported)."""
    aio = sys.modules.get("asyncio")
    return isinstance(e, KeyboardInterrupt) or (aio is not None and isinstance(e, aio.CancelledError))


def construct(executor: Any, cls: Any, args: list, kwargs: dict, options: messages.ActorOptions) -> ActorRuntime:
    """Create the actor's instance and its runtime. An `async def __init__` runs as in Ray: the instance is
    made with `cls.__new__(cls)`, then its __init__ is awaited on the actor's event loop (where its
    methods will run) before any call; an exception it raises fails the actor's creation."""
    init = getattr(cls, "__init__", None)
    if not inspect.iscoroutinefunction(init):
        return ActorRuntime(executor, cls(*args, **kwargs), options)
    import asyncio

    instance = cls.__new__(cls)
    runtime = ActorRuntime(executor, instance, options)
    if runtime.loop is None:
        asyncio.run(init(instance, *args, **kwargs))
    else:
        asyncio.run_coroutine_threadsafe(init(instance, *args, **kwargs), runtime.loop).result()
    return runtime


def is_async_class(cls: type) -> bool:
    return any(inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
               for _, member in inspect.getmembers(cls, predicate=inspect.isfunction))


class ActorRuntime:
    def __init__(self, executor: Any, instance: Any, options: messages.ActorOptions) -> None:
        self.executor = executor
        self.instance = instance
        self.options = options
        self.loop: asyncio.AbstractEventLoop | None = None
        self.semaphores: dict[str, asyncio.Semaphore] = {}
        self.pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        # Calls held, by task id, so that kray.cancel can reach them.
        self.async_calls: dict[bytes, asyncio.Task | None] = {}
        self.cancel_before_start: set[bytes] = set()
        self.thread_calls: dict[bytes, tuple[concurrent.futures.Future, messages.TaskSpec]] = {}
        groups = dict(options.concurrency_groups)
        if options.is_async:
            import asyncio

            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self._run_loop, name="kray-actor-loop", daemon=True).start()
            # max_concurrency=1 is honoured (calls wait their turn), as in Ray; unset means 1000 (set by the caller)
            default = options.max_concurrency or DEFAULT_ASYNC_CONCURRENCY
            sizes = {"": default, **groups}
            for name, size in sizes.items():
                self.semaphores[name] = asyncio.Semaphore(size)
        elif options.max_concurrency > 1 or groups:
            sizes = {"": options.max_concurrency, **groups}
            for name, size in sizes.items():
                self.pools[name] = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, size),
                                                                          thread_name_prefix=f"kray-actor-{name or 'default'}")

    @property
    def concurrent(self) -> bool:
        return self.loop is not None or bool(self.pools)

    def _run_loop(self) -> None:
        import asyncio

        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def method(self, name: str) -> Any:
        try:
            return getattr(self.instance, name)
        except AttributeError:
            if name == "__ray_ready__":  # Ray's built-in method of every actor (see kray.api.actor)
                return _ready
            raise AttributeError(
                f"The actor {self.options.class_name} has no method {name!r}."
            ) from None

    def group_of(self, spec: messages.TaskSpec) -> str:
        group = spec.concurrency_group or self.options.methods.get(spec.method, {}).get("concurrency_group", "")
        return group if group in (self.semaphores or self.pools) else ""

    def dispatch(self, spec: messages.TaskSpec) -> None:
        """Run a call concurrently with others: on the event loop or on the group's thread pool."""
        group = self.group_of(spec)
        task_id = spec.task_id
        if self.loop is not None:
            import asyncio

            prepared = self.executor.prepare_or_fail(spec)
            if prepared is None:
                return
            self.async_calls[task_id] = None  # dispatched, not started
            asyncio.run_coroutine_threadsafe(self._run_async(spec, group, *prepared), self.loop)
        else:
            future = self.pools[group].submit(self.executor.run_task, spec)
            self.thread_calls[task_id] = (future, spec)
            future.add_done_callback(lambda _f: self.thread_calls.pop(task_id, None))

    def cancel(self, task_id: bytes) -> bool:
        """kray.cancel of a call this actor holds (called on the I/O thread); False if it holds none.

        As in Ray: an async call's asyncio task is cancelled (CancelledError inside it, or it never
        starts); a threaded call still waiting for a thread never runs; a running one is not
        interrupted but sees is_canceled(), and its caller gets TaskCancelledError.
        """
        if self.loop is not None:
            if task_id not in self.async_calls:
                return False
            self.loop.call_soon_threadsafe(self._cancel_async, task_id)
            return True
        held = self.thread_calls.get(task_id)
        if held is None:
            return False
        future, spec = held
        if future.cancel():
            self.executor.report_cancelled(spec)
        elif not future.done():  # running: it finishes, then its caller gets TaskCancelledError
            self.executor.cancel_requested.add(task_id)
        return True

    def _cancel_async(self, task_id: bytes) -> None:
        if task_id not in self.async_calls:
            return  # it finished meanwhile
        task = self.async_calls[task_id]
        if task is None:
            self.cancel_before_start.add(task_id)
        else:
            task.cancel()

    async def _run_async(self, spec: messages.TaskSpec, group: str, function: Any, args: list, kwargs: dict) -> None:
        import asyncio

        task_id = spec.task_id
        cancelled = self.executor.cancelled
        if task_id in self.cancel_before_start or (cancelled and task_id in cancelled):
            self.cancel_before_start.discard(task_id)
            cancelled.pop(task_id, None)
            self.async_calls.pop(task_id, None)
            self.executor.report_cancelled(spec)
            return
        self.async_calls[task_id] = asyncio.current_task()
        try:
            async with self.semaphores[group]:
                result = function(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                if spec.num_returns < 0:  # a generator method: its items are reported as they come
                    result = await self.executor.generators.drive_async(spec, result)
        except BaseException as e:  # noqa: BLE001 - reported to the caller (CancelledError included)
            self.executor.complete_error(spec, e)
            return
        finally:
            self.async_calls.pop(task_id, None)
        self.executor.complete_ok(spec, result)


def _ready() -> bool:
    """`__ray_ready__`: the actor exists (the call only runs once its constructor has)."""
    return True
