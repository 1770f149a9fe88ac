"""Pool: the standard library's process pool API (map, imap, starmap, apply, their async forms,
close/terminate/join) over a set of kray actors, as Ray's `ray.util.multiprocessing.Pool`.

Creates actors and submits their calls through the public API; a background thread per async
result delivers its callbacks.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError
from typing import Any

import kray

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"
_PRUNE_AT = 512


class _PoolWorker:
    """One pool process: runs the initializer once, then batches of calls."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run_batch(self, func: Callable[..., Any], batch: list[Any], star: bool) -> list[Any]:
        return [func(*item) if star else func(item) for item in batch]

    def ping(self) -> bool:
        return True


class AsyncResult:
    """The result of `apply_async`/`map_async`/`starmap_async`: `get(timeout)`, `wait`, `ready`, `successful`."""

    def __init__(self, refs: list[Any], single: bool, callback: Callable[[Any], Any] | None = None,
                 error_callback: Callable[[BaseException], Any] | None = None) -> None:
        self._refs = refs
        self._single = single
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._collect, args=(callback, error_callback), daemon=True,
                         name="kray-pool-result").start()

    def _collect(self, callback: Callable[[Any], Any] | None, error_callback: Callable[[BaseException], Any] | None) -> None:
        try:
            batches = kray.get(self._refs)
            values = [v for batch in batches for v in batch]
            self._value = values[0] if self._single else values
        except BaseException as e:  # noqa: BLE001 - handed to get() and error_callback
            self._error = e
        self._done.set()
        if self._error is None and callback is not None:
            callback(self._value)
        elif self._error is not None and error_callback is not None:
            error_callback(self._error)

    def ready(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def get(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the pool's result was not ready within {timeout}s")
        if self._error is not None:
            raise self._error
        return self._value


class Pool:
    """A pool of `processes` kray actors (default: the cluster's CPUs), each holding `ray_remote_args`
    resources (default one CPU), running `initializer(*initargs)` first.

    `context` is accepted and ignored, as in Ray; `maxtasksperchild` is not supported.
    """

    def __init__(self, processes: int | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: Iterable[Any] | None = None, maxtasksperchild: int | None = None,
                 context: Any = None, ray_address: str | None = None,
                 ray_remote_args: dict[str, Any] | None = None) -> None:
        if maxtasksperchild is not None:
            raise ValueError("maxtasksperchild is not supported by kray's Pool; leave it out.")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {initializer!r}.")
        if not kray.is_initialized():  # as Ray: join ray_address, else start a local cluster of `processes` CPUs
            if ray_address:
                kray.init(address=ray_address)
            else:
                kray.init(num_cpus=processes) if processes else kray.init()
        cpus = int(kray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = max(cpus, 1)
        if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
            raise ValueError(f"processes must be a positive integer, got {processes!r}.")
        remote_args = {"num_cpus": 1, **(ray_remote_args or {})}
        if remote_args.get("num_cpus", 0) and processes * remote_args["num_cpus"] > cpus:
            raise ValueError(f"Tried to start a pool with {processes} processes of {remote_args['num_cpus']} CPU "
                             f"each, but the cluster has only {cpus} CPUs.")
        actor_class = kray.remote(_PoolWorker).options(**remote_args)
        self._actors = [actor_class.remote(initializer, tuple(initargs or ())) for _ in range(processes)]
        self._next = itertools.cycle(range(processes))
        self._state = _RUN
        self._pending: list[Any] = []
        kray.get([a.ping.remote() for a in self._actors])  # the initializers ran (or raise here)

    # --- submission --------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _submit(self, func: Callable[..., Any], batch: list[Any], star: bool) -> Any:
        ref = self._actors[next(self._next)].run_batch.remote(func, batch, star)
        self._pending.append(ref)
        if len(self._pending) >= _PRUNE_AT:  # forget finished work now and then, not on every call
            _, self._pending = kray.wait(self._pending, num_returns=len(self._pending), timeout=0)
        return ref

    def _batches(self, iterable: Iterable[Any], chunksize: int | None) -> Iterator[list[Any]]:
        items = list(iterable) if chunksize is None else iterable
        if chunksize is None:
            chunksize = max(1, -(-len(items) // (len(self._actors) * 4)))  # type: ignore[arg-type]
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, got {chunksize!r}.")
        iterator = iter(items)
        while batch := list(itertools.islice(iterator, chunksize)):
            yield batch

    def _map_refs(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None, star: bool) -> list[Any]:
        self._check_running()
        return [self._submit(func, batch, star) for batch in self._batches(iterable, chunksize)]

    # --- the stdlib Pool API -----------------------------------------------------------------

    def apply(self, func: Callable[..., Any], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> Any:
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., Any], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None,
                    callback: Callable[[Any], Any] | None = None,
                    error_callback: Callable[[BaseException], Any] | None = None) -> AsyncResult:
        self._check_running()
        call = _Call(func, dict(kwds or {}))
        return AsyncResult([self._submit(call, [tuple(args)], True)], True, callback, error_callback)

    def map(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None,
                  callback: Callable[[Any], Any] | None = None,
                  error_callback: Callable[[BaseException], Any] | None = None) -> AsyncResult:
        return AsyncResult(self._map_refs(func, iterable, chunksize, False), False, callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]], chunksize: int | None = None) -> list[Any]:
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]], chunksize: int | None = None,
                      callback: Callable[[Any], Any] | None = None,
                      error_callback: Callable[[BaseException], Any] | None = None) -> AsyncResult:
        items = [tuple(args) for args in iterable]
        return AsyncResult(self._map_refs(func, items, chunksize, True), False, callback, error_callback)

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        """Results in the order of `iterable`, each as soon as it and those before it are done."""
        refs = self._map_refs(func, iterable, chunksize, False)
        return (value for ref in refs for value in kray.get(ref))

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        """Results in the order they finish."""
        refs = self._map_refs(func, iterable, chunksize, False)

        def finished() -> Iterator[Any]:
            left = list(refs)
            while left:
                done, left = kray.wait(left, num_returns=1)
                yield from kray.get(done[0])

        return finished()

    def close(self) -> None:
        """Accept no more work; the work already given finishes."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self) -> None:
        """Stop the pool's processes now; unfinished work is lost."""
        self._state = _TERMINATE
        for actor in self._actors:
            kray.kill(actor)
        self._pending = []

    def join(self) -> None:
        """Wait for the work given so far to finish (after close() or terminate()), then end the processes."""
        if self._state == _RUN:
            raise ValueError("Pool is still running: call close() or terminate() before join().")
        if self._pending:
            kray.wait(self._pending, num_returns=len(self._pending))
        self._pending = []
        for actor in self._actors:
            kray.kill(actor)

    def __enter__(self) -> Pool:  # noqa: PYI034
        self._check_running()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()


class _Call:
    """A function with keyword arguments, called with positional ones (apply's `kwds`)."""

    def __init__(self, func: Callable[..., Any], kwds: dict[str, Any]) -> None:
        self.func = func
        self.kwds = kwds

    def __call__(self, *args: Any) -> Any:
        return self.func(*args, **self.kwds)
