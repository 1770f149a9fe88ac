"""ActorPool: spread calls over a fixed set of actors and collect their results in order or as they finish.

Runs in the caller's process only; talks to the cluster through the public API (`kray.wait`, `kray.get`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import kray

V = TypeVar("V")

_TIMEOUT_MESSAGE = "Timed out waiting for result"


class ActorPool(Generic[V]):
    """Utility class to operate on a fixed pool of actors, as Ray's `ray.util.ActorPool`.

    Each actor runs one submitted call at a time; values submitted while every actor is busy wait
    in the pool (not in the cluster) until a result is collected and its actor becomes idle again.

    Arguments:
        actors: List of actor handles to use in this pool.

    Examples:
        >>> @kray.remote
        ... class Actor:
        ...     def double(self, v):
        ...         return 2 * v
        >>> pool = ActorPool([Actor.remote(), Actor.remote()])
        >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))
        [2, 4, 6, 8]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle_actors: list[Any] = list(actors)
        # In-flight calls: the ref (a tuple of refs for multi-return calls) -> (submission index, actor).
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}
        # Submission index -> the ref (or list of refs) that fn returned, for ordered retrieval.
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list[tuple[Callable[[Any, V], Any], V]] = []

    # --- bulk -------------------------------------------------------------------------------------

    def map(self, fn: Callable[[Any, V], Any], values: Iterable[V]) -> Iterator[Any]:
        """Apply `fn(actor, value)` over the values in parallel; return an iterator of results in order.

        `fn` must return an ObjectRef (the actor is busy until it completes). Results of earlier
        submissions that were never collected are dropped first. The calls run as the iterator is
        consumed: iterate over it to finish the computation.
        """
        self._drop_uncollected(ordered=True)
        for value in values:
            self.submit(fn, value)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(self, fn: Callable[[Any, V], Any], values: Iterable[V]) -> Iterator[Any]:
        """As `map()`, but the iterator yields each result as soon as it is ready, in any order."""
        self._drop_uncollected(ordered=False)
        for value in values:
            self.submit(fn, value)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    def _drop_uncollected(self, ordered: bool) -> None:
        """Forget results of calls made before this map (finished or not), freeing their actors."""
        while self.has_next():
            try:
                if ordered:
                    self.get_next(timeout=0, ignore_if_timedout=True)
                else:
                    self.get_next_unordered(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass

    # --- one value at a time ----------------------------------------------------------------------

    def submit(self, fn: Callable[[Any, V], Any], value: V) -> None:
        """Schedule `fn(actor, value)` on an idle actor, or queue it in the pool until one is idle.

        Collect the result with `get_next()` or `get_next_unordered()`.
        """
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        future = fn(actor, value)
        self._future_to_actor[_key(future)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    def has_next(self) -> bool:
        """Whether any submitted call has a result not yet returned by get_next/get_next_unordered."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Return the next result in submission order, waiting up to `timeout` seconds (None: forever).

        Raises:
            StopIteration: nothing is pending.
            TimeoutError: the result was not ready in time. With `ignore_if_timedout=True` the
                call is skipped (its actor returns to the pool) before the error is raised.
            ValueError: `get_next_unordered()` already returned results out of order.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = kray.wait(_refs(future), num_returns=len(_refs(future)), timeout=timeout)
            if len(ready) < len(_refs(future)):
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MESSAGE)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Return any pending result, the first to be ready, waiting up to `timeout` seconds.

        Raises:
            StopIteration: nothing is pending.
            TimeoutError: no result was ready in time. With `ignore_if_timedout=True` the oldest
                pending call is skipped (its actor returns to the pool) before the error is raised.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        by_ref: dict[Any, Any] = {}
        for future in self._index_to_future.values():
            for ref in _refs(future):
                by_ref[ref] = future
        ready, _ = kray.wait(list(by_ref), num_returns=1, timeout=timeout)
        if ready:
            future = by_ref[ready[0]]
            if isinstance(future, list):
                # A multi-return call is ready only when all of its refs are.
                kray.wait(future, num_returns=len(future), timeout=timeout)
        elif not ignore_if_timedout:
            raise TimeoutError(_TIMEOUT_MESSAGE)
        else:
            future = self._index_to_future[min(self._index_to_future)]
        index, actor = self._future_to_actor.pop(_key(future))
        del self._index_to_future[index]
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def _get_result(self, future: Any, actor: Any) -> Any:
        """`kray.get` the result; the actor goes back to the pool unless it died."""
        alive = True
        try:
            return kray.get(future)
        except kray.exceptions.ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.pop(0))

    # --- the pool's membership --------------------------------------------------------------------

    def has_free(self) -> bool:
        """Whether an actor is idle and no submitted value is waiting for one."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Any | None:
        """Remove an idle actor from the pool and return it; None if no actor is free."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (idle); it takes the oldest waiting submission if there is one.

        Raises:
            ValueError: the actor already belongs to this pool.
        """
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)


def _key(future: Any) -> Any:
    """A hashable key for what `fn` returned: a ref, or a tuple of the refs of a multi-return call."""
    return tuple(future) if isinstance(future, list) else future


def _refs(future: Any) -> list[Any]:
    return list(future) if isinstance(future, (list, tuple)) else [future]


__all__ = ["ActorPool"]
