"""Generator tasks on the owner's side: the streams of items that generator tasks and actor methods
yield, `ObjectRefGenerator` (num_returns="streaming") and `DynamicObjectRefGenerator` (num_returns="dynamic").

An executor reports each yielded value as a GeneratorItem (before the task's TaskDone, on the same
connection); the owner keeps it as an object it owns, with the deterministic id of return index+2
(return 1 is the task's completion ref, as in Ray). The I/O thread adds items; the user's thread
takes them. No I/O beyond messages sent through the core worker.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from typing import Any

from kray import ids
from kray.core import object_table, refs
from kray.protocol import generator_messages

# How a generator task travels in TaskSpec.num_returns (non-negative values are ordinary return counts).
STREAMING = -1
DYNAMIC = -2
_BACKPRESSURE_BASE = -2  # streaming with backpressure b >= 1 travels as -(b + 2)
_UNBLOCKED = 1 << 62  # "consumed" sent when the consumer is gone: the executor never waits again


def encode(num_returns: Any, backpressure: Any, is_generator: bool) -> int:
    """The wire form of a task's or method's num_returns and _generator_backpressure_num_objects options."""
    if num_returns is None:
        num_returns = "streaming" if is_generator else 1
    if backpressure is not None and backpressure != -1:
        if not isinstance(backpressure, int) or isinstance(backpressure, bool) or backpressure < 1:
            raise ValueError(f"_generator_backpressure_num_objects must be a positive integer or -1 (no backpressure), "
                             f"got {backpressure!r}.")
        if num_returns != "streaming":
            raise ValueError("_generator_backpressure_num_objects applies only to streaming generators "
                             f"(num_returns='streaming'), not to num_returns={num_returns!r}.")
        return _BACKPRESSURE_BASE - backpressure
    if num_returns == "streaming":
        return STREAMING
    if num_returns == "dynamic":
        return DYNAMIC
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative integer, 'streaming' or 'dynamic', got {num_returns!r}.")
    return num_returns


def decode(num_returns: int) -> Any:
    """The num_returns option a wire num_returns came from ("streaming", "dynamic" or the count)."""
    if num_returns >= 0:
        return num_returns
    return "dynamic" if num_returns == DYNAMIC else "streaming"


def backpressure_of(num_returns: int) -> int:
    """The _generator_backpressure_num_objects a wire num_returns carries (0: none)."""
    return _BACKPRESSURE_BASE - num_returns if num_returns < DYNAMIC else 0


def item_id(task_id: bytes, index: int) -> bytes:
    """The object id of a generator task's index-th (0-based) item."""
    return ids.return_object_id(task_id, index + 2)


class Stream:
    """The items one generator task yielded so far, as owned ObjectRefs, until its consumer takes them."""

    def __init__(self, table: StreamTable, task_id: bytes, backpressure: int, dynamic: bool) -> None:
        self.table = table
        self.task_id = task_id
        self.backpressure = backpressure
        self.dynamic = dynamic  # num_returns="dynamic": the task's return value holds the items once it ends
        self.items: dict[int, refs.ObjectRef] = {}
        self.received = 0  # items 0..received-1 arrived
        self.consumed = 0
        self.ended = False  # the completion ref is ready: no item arrives any more
        self.dropped = False  # the consumer is gone: nobody takes items any more
        self.worker_address = ""
        self.worker_nodes: dict[int, bytes] = {}  # index -> node of a shared-memory item

    def take(self, index: int) -> refs.ObjectRef | None:
        with self.table.lock:
            ref = self.items.pop(index, None)
            if ref is None:
                return None
            self.consumed = index + 1
            address = self.worker_address
        if self.backpressure and address:
            self.table.core.send(address, generator_messages.GeneratorConsumed(self.task_id, index + 1))
        return ref

    def has(self, index: int) -> bool:
        return index in self.items


class StreamTable:
    """This process's streams of generator tasks it owns, by task id."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.lock = threading.Lock()
        self.streams: dict[bytes, Stream] = {}
        core.loop.on(generator_messages.GeneratorItem, self._on_item)

    def open(self, task_id: bytes, backpressure: int, dynamic: bool = False) -> Stream:
        """The stream of a task (made on first use, by its consumer or by its first item)."""
        with self.lock:
            stream = self.streams.get(task_id)
            if stream is not None:
                return stream
            stream = self.streams[task_id] = Stream(self, task_id, backpressure, dynamic)
        waiter = object_table.CallbackWaiter(lambda _oid: self._on_end(stream))
        if self.core.objects.add_waiter(ids.return_object_id(task_id, 1), waiter):
            self._on_end(stream)
        return stream

    def drop(self, stream: Stream) -> None:
        """The consumer is gone: release the items it never took (the task itself runs on, as in Ray)."""
        with self.lock:
            stream.dropped = True
            items, stream.items = stream.items, {}
            if stream.ended:
                self.streams.pop(stream.task_id, None)
            address = stream.worker_address
        if stream.backpressure and address and not stream.ended:
            self.core.send(address, generator_messages.GeneratorConsumed(stream.task_id, _UNBLOCKED))
        items.clear()

    def _on_end(self, stream: Stream) -> None:
        released: dict[int, refs.ObjectRef] = {}
        with self.lock:
            stream.ended = True
            if stream.dynamic:  # the items live on in the task's return value (or nobody can read them)
                stream.dropped = True
                released, stream.items = stream.items, {}
            if stream.dropped:
                self.streams.pop(stream.task_id, None)
        released.clear()  # outside the lock: an ObjectRef's release takes no lock of ours, but stays cheap here

    def _on_item(self, msg: generator_messages.GeneratorItem, payload: list, peer: Any) -> None:
        core = self.core
        record = core.submitter.tasks.get(msg.task_id)
        oid = item_id(msg.task_id, msg.index)
        value = msg.value
        stale = record is None or record.done or record.spec.attempt != msg.attempt
        stream = None
        if not stale:
            mode = record.spec.num_returns
            stream = self.open(msg.task_id, backpressure_of(mode), mode == DYNAMIC)
        if stream is None or stream.ended or stream.dropped or msg.index < stream.received:
            # A report nobody will read: from an older attempt, after the end, or an item a retry yields
            # again (its id is the same, so a copy on the same node is the very file already delivered).
            if value.kind == "shm" and (stream is None or stream.worker_nodes.get(msg.index) != value.node_id):
                core.delete_shm(value.node_id, oid.hex())
            self._resume(stream, msg)
            return
        contained = [refs.ObjectRef(cid, owner, _register=False) for cid, owner in value.contained]
        for cref, (cid, owner) in zip(contained, value.contained):
            core.objects.add_local_ref(cid, owner, precounted=True)
            cref._core = core
        ref = refs.ObjectRef(oid, core.address)  # makes the owned entry, unless the consumer waits on it already
        kind = object_table.SHM if value.kind == "shm" else value.kind
        core.objects.set_value(oid, kind, payload[: value.nframes], value.node_id, value.size, contained)
        with self.lock:
            stream.items[msg.index] = ref
            stream.received = msg.index + 1
            if value.kind == "shm":
                stream.worker_nodes[msg.index] = value.node_id
            moved = stream.worker_address != msg.worker_address
            stream.worker_address = msg.worker_address
        if moved and stream.backpressure and stream.consumed:
            core.loop.connect(msg.worker_address).send(generator_messages.GeneratorConsumed(msg.task_id, stream.consumed))

    def _resume(self, stream: Stream | None, msg: generator_messages.GeneratorItem) -> None:
        """A retry replaying items the consumer has: tell its worker how far the consumer got."""
        if stream is not None and stream.backpressure and msg.attempt and not stream.ended:
            consumed = _UNBLOCKED if stream.dropped else stream.consumed
            self.core.loop.connect(msg.worker_address).send(generator_messages.GeneratorConsumed(msg.task_id, consumed))


class ObjectRefGenerator:
    """The refs a streaming generator task yields, each available as soon as the task yields it.

    Returned by `.remote()` of a generator function or actor method (num_returns="streaming"). Iterate it
    with `next()`/`for` or, in async code, `async for`/`await gen.__anext__()`; `kray.wait([gen])` says
    when `next(gen)` would not block. If the task fails, the ref after the last item raises its error on
    `kray.get`; then iteration stops. Not thread-safe; cannot be passed to other tasks.
    """

    def __init__(self, completion: refs.ObjectRef, core: Any, backpressure: int = 0) -> None:
        self._completion = completion
        self._core = core
        self._task_id = completion.task_id()
        self._index = 0
        self._error_returned = False
        self._stream = core.generators.open(self._task_id, backpressure)

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> refs.ObjectRef:
        return self._next(None)

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> refs.ObjectRef:
        import asyncio  # only an async consumer gets here; sync drivers and workers never import asyncio

        ref = await asyncio.get_running_loop().run_in_executor(None, self._next_or_none)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def _next_or_none(self) -> refs.ObjectRef | None:
        try:
            return self._next(None)
        except StopIteration:  # cannot cross a Future
            return None

    def completed(self) -> refs.ObjectRef:
        """A ref that becomes ready when the task finishes; `kray.get` on it raises the task's error, if any."""
        return self._completion

    def next_ready(self) -> bool:
        """True when `next(gen)` returns a ref at once; False while it would wait, and once it would raise StopIteration."""
        if self._stream.has(self._index):
            return True
        return self._completion_ready() and self._pending_error()

    def is_finished(self) -> bool:
        """True once every item (and the task's error, if any) was taken: `next(gen)` raises StopIteration."""
        return not self._stream.has(self._index) and self._completion_ready() and not self._pending_error()

    def _completion_ready(self) -> bool:
        entry = self._core.objects.get(self._completion.binary())
        return entry is None or entry.state == object_table.READY

    def _pending_error(self) -> bool:
        entry = self._core.objects.get(self._completion.binary())
        return not self._error_returned and entry is not None and entry.kind == object_table.ERROR

    def _ready_now(self) -> bool:
        return self._stream.has(self._index) or self._completion_ready()

    def _watch(self) -> list[refs.ObjectRef]:
        """Refs whose readiness can make this generator ready: its next item's and its completion's."""
        return [refs.ObjectRef(item_id(self._task_id, self._index), self._core.address), self._completion]

    def _next(self, timeout: float | None) -> refs.ObjectRef:
        index = self._index
        ref = self._stream.take(index)
        if ref is None and not self._completion_ready():
            self._core.wait(self._watch(), 1, timeout, fetch_local=False)
            ref = self._stream.take(index)
        if ref is not None:
            self._index = index + 1
            return ref
        if not self._completion_ready():
            raise StopIteration  # only with a timeout; Ray returns a nil ref there
        if self._pending_error():
            self._error_returned = True
            return self._completion  # kray.get on it raises the task's error
        raise StopIteration

    def __del__(self) -> None:
        try:
            self._core.generators.drop(self._stream)
        except Exception:  # noqa: BLE001, S110 - __del__ at interpreter exit
            pass

    def __reduce__(self) -> Any:
        raise TypeError("You cannot return or pass a generator to other task. Serializing an ObjectRefGenerator "
                        "is not allowed; pass the refs it yields instead.")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._completion.hex()})"


class DynamicObjectRefGenerator:
    """The value of a num_returns="dynamic" task's ref: the refs of what it yielded, in order
    (if it raised, the last one holds the error). Iterable once; can be passed to other tasks."""

    def __init__(self, refs_: Sequence[refs.ObjectRef]) -> None:
        self._refs = collections.deque(refs_)

    def __iter__(self) -> Any:
        while self._refs:
            yield self._refs.popleft()

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


def wait(core: Any, items: Sequence[Any], num_returns: int, timeout: float | None,
         fetch_local: bool) -> tuple[list[Any], list[Any]]:
    """kray.wait over ObjectRefs and ObjectRefGenerators: a generator is ready when `next()` would not block."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def is_ready(item: Any) -> bool:
        if isinstance(item, ObjectRefGenerator):
            return item._ready_now()
        entry = core.objects.get(item.binary())
        return entry is None or entry.state == object_table.READY  # as core.wait: unknown here counts as ready

    while True:
        ready = [item for item in items if is_ready(item)]
        left = None if deadline is None else deadline - time.monotonic()
        if len(ready) >= num_returns or (left is not None and left <= 0):
            break
        watch: list[refs.ObjectRef] = []
        for item in items:
            if not is_ready(item):
                watch.extend(item._watch() if isinstance(item, ObjectRefGenerator) else [item])
        core.wait(watch, 1, left, fetch_local=False)
    ready_set = {id(item) for item in ready[:num_returns]}
    plain = [item for item in ready[:num_returns] if isinstance(item, refs.ObjectRef)]
    if fetch_local and plain:
        late = core._fetch_ready_locally(plain, deadline)
        ready_set -= {id(item) for item in plain if item.binary() in late}
    return ([item for item in items if id(item) in ready_set], [item for item in items if id(item) not in ready_set])


def returned(core: Any, completion: refs.ObjectRef, num_returns: int) -> Any:
    """What `.remote()` of a generator task returns: an ObjectRefGenerator, or (dynamic) the one ref."""
    if num_returns == DYNAMIC:
        return completion
    return ObjectRefGenerator(completion, core, backpressure_of(num_returns))
