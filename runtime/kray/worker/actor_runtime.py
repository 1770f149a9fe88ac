"""How an actor's method calls run inside its worker: in order on the main thread (the default),
on threads (max_concurrency > 1 or concurrency groups), or as coroutines on one asyncio event loop
(async actors).

Starts threads and an event loop in the actor's worker process; results go back through the
executor's completion path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from typing import Any

from kray.protocol import messages

DEFAULT_ASYNC_CONCURRENCY = 1000


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
        groups = dict(options.concurrency_groups)
        if options.is_async:
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self._run_loop, name="kray-actor-loop", daemon=True).start()
            default = options.max_concurrency if options.max_concurrency > 1 else DEFAULT_ASYNC_CONCURRENCY
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
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def method(self, name: str) -> Any:
        try:
            return getattr(self.instance, name)
        except AttributeError:
            raise AttributeError(
                f"The actor {self.options.class_name} has no method {name!r}."
            ) from None

    def group_of(self, spec: messages.TaskSpec) -> str:
        group = spec.concurrency_group or self.options.methods.get(spec.method, {}).get("concurrency_group", "")
        return group if group in (self.semaphores or self.pools) else ""

    def dispatch(self, spec: messages.TaskSpec) -> None:
        """Run a call concurrently with others: on the event loop or on the group's thread pool."""
        group = self.group_of(spec)
        if self.loop is not None:
            prepared = self.executor.prepare_or_fail(spec)
            if prepared is None:
                return
            asyncio.run_coroutine_threadsafe(self._run_async(spec, group, *prepared), self.loop)
        else:
            self.pools[group].submit(self.executor.run_task, spec)

    async def _run_async(self, spec: messages.TaskSpec, group: str, function: Any, args: list, kwargs: dict) -> None:
        async with self.semaphores[group]:
            try:
                result = function(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except BaseException as e:  # noqa: BLE001 - reported to the caller, the loop goes on
                self.executor.complete_error(spec, e)
                return
            self.executor.complete_ok(spec, result)
