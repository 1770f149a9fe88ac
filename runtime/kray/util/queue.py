"""Queue: a first-in, first-out queue shared by tasks and actors, held by one async actor (Ray's ray.util.queue).

The Queue object is a thin client (picklable: pass it to tasks and actors); the items live in an
asyncio.Queue inside the actor, whose event loop serves blocked put/get calls concurrently.
"""

from __future__ import annotations

import asyncio
import queue as std_queue
from collections.abc import Iterable
from typing import Any

import kray


class Empty(std_queue.Empty):
    """Raised by `get` when the queue is empty (non-blocking, or after the timeout)."""


class Full(std_queue.Full):
    """Raised by `put` when the queue is full (non-blocking, or after the timeout)."""


class Queue:
    """A first-in, first-out queue on the cluster, as Ray's `ray.util.queue.Queue`.

    Behaves like asyncio.Queue, with sync and async put/get: a put on a full queue or a get on an
    empty one blocks (up to `timeout`) or raises `Full`/`Empty` at once with `block=False`.

    Args:
        maxsize: maximum number of items; 0 (the default) means unbounded.
        actor_options: options for the queue's actor, passed to `.options(...)`
            (for example custom resources or a name).

    Examples:
        >>> q = Queue()
        >>> for item in range(3):
        ...     q.put(item)
        >>> [q.get() for _ in range(3)]
        [0, 1, 2]
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        self.maxsize = maxsize
        self.actor: Any = _queue_actor_class().options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return kray.get(self.actor.qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return kray.get(self.actor.empty.remote())

    def full(self) -> bool:
        """Whether the queue is full (never, when maxsize is 0)."""
        return kray.get(self.actor.full.remote())

    # --- put --------------------------------------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add an item to the queue.

        If `block` is True and the queue is full, wait until there is room, up to `timeout`
        seconds (None: forever). Several producers blocked on one full queue are served in no
        guaranteed order.

        Raises:
            Full: the queue is full and `block` is False, or it stayed full for `timeout` seconds.
            ValueError: `timeout` is negative.
        """
        if not block:
            if not kray.get(self.actor.put_nowait.remote(item)):
                raise Full
            return
        _check_timeout(timeout)
        if not kray.get(self.actor.put.remote(item, timeout)):
            raise Full

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """`put` for asyncio code: awaits instead of blocking the thread."""
        if not block:
            if not await self.actor.put_nowait.remote(item):
                raise Full
            return
        _check_timeout(timeout)
        if not await self.actor.put.remote(item, timeout):
            raise Full

    def put_nowait(self, item: Any) -> None:
        """Equivalent to `put(item, block=False)`."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Put the items into the queue in order, all or none.

        Raises:
            Full: the items do not all fit in the queue (none is added).
            TypeError: `items` is not iterable.
        """
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        items = list(items)
        ok, size = kray.get(self.actor.put_nowait_batch.remote(items))
        if not ok:
            raise Full(f"Cannot add {len(items)} items to queue of size {size} and maxsize {self.maxsize}.")

    # --- get --------------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item.

        If `block` is True and the queue is empty, wait for an item, up to `timeout` seconds
        (None: forever). Several consumers blocked on one empty queue are served in no guaranteed order.

        Raises:
            Empty: the queue is empty and `block` is False, or it stayed empty for `timeout` seconds.
            ValueError: `timeout` is negative.
        """
        if not block:
            found, item = kray.get(self.actor.get_nowait.remote())
        else:
            _check_timeout(timeout)
            found, item = kray.get(self.actor.get.remote(timeout))
        if not found:
            raise Empty
        return item

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """`get` for asyncio code: awaits instead of blocking the thread."""
        if not block:
            found, item = await self.actor.get_nowait.remote()
        else:
            _check_timeout(timeout)
            found, item = await self.actor.get.remote(timeout)
        if not found:
            raise Empty
        return item

    def get_nowait(self) -> Any:
        """Equivalent to `get(block=False)`."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return `num_items` items in FIFO order, all or none.

        Raises:
            Empty: the queue holds fewer than `num_items` items (none is removed).
            TypeError: `num_items` is not an int.
            ValueError: `num_items` is negative.
        """
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        ok, result = kray.get(self.actor.get_nowait_batch.remote(num_items))
        if not ok:
            raise Empty(f"Cannot get {num_items} items from queue of size {result}.")
        return result

    # --- lifetime ---------------------------------------------------------------------------------

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Terminate the queue's actor, releasing its resources; the queue is unusable afterwards.

        With `force=False` the actor first finishes the calls already sent to it (for up to
        `grace_period_s` seconds) and is then killed; with `force=True` it is killed at once.
        """
        if self.actor is None:
            return
        if not force:
            # The actor answers in order of arrival per caller, so a reply to this call means
            # every earlier call of ours has been served.
            kray.wait([self.actor.qsize.remote()], timeout=grace_period_s)
        kray.kill(self.actor, no_restart=True)
        self.actor = None


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class _QueueActor:
    """The actor that holds the items. Every method is async, so all run on the actor's one event loop
    (a blocked put or get waits there without holding up other calls); outcomes are values, never raised."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.queue.qsize()

    async def empty(self) -> bool:
        return self.queue.empty()

    async def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def get(self, timeout: float | None = None) -> tuple[bool, Any]:
        try:
            return True, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return False, None

    async def put_nowait(self, item: Any) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    async def put_nowait_batch(self, items: list[Any]) -> tuple[bool, int]:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return False, self.queue.qsize()
        for item in items:
            self.queue.put_nowait(item)
        return True, self.queue.qsize()

    async def get_nowait(self) -> tuple[bool, Any]:
        try:
            return True, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return False, None

    async def get_nowait_batch(self, num_items: int) -> tuple[bool, Any]:
        if num_items > self.queue.qsize():
            return False, self.queue.qsize()
        return True, [self.queue.get_nowait() for _ in range(num_items)]


_REMOTE_QUEUE_ACTOR: Any = None


def _queue_actor_class() -> Any:
    """The remote class of the queue's actor, made once per process (after `import kray` completes)."""
    global _REMOTE_QUEUE_ACTOR
    if _REMOTE_QUEUE_ACTOR is None:
        _REMOTE_QUEUE_ACTOR = kray.remote(_QueueActor)
    return _REMOTE_QUEUE_ACTOR


__all__ = ["Empty", "Full", "Queue"]
