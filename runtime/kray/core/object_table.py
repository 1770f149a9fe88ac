"""The object table of one process: objects it owns or borrows, their values and reference counts.

Shared by the user's threads and the I/O thread under one lock; no I/O itself. The owner of an
object counts local references (live ObjectRefs in this process), borrowers (other processes
holding refs) and frees the value when both reach zero. Waiters (a blocked `get`/`wait`, a task
waiting for its arguments, a remote `GetObject`) are notified when a value arrives.
"""

from __future__ import annotations

import _thread
import collections
import threading
from collections.abc import Callable
from typing import Any

from kray.core import memory

PENDING = 0
READY = 1

# The table is compacted when it had this many entries and fewer than 1/COMPACT_FRACTION are left.
COMPACT_MIN_PEAK = 50_000
COMPACT_FRACTION = 8

# value kinds
INLINE = "inline"
SHM = "shm"
ERROR = "error"


class Entry:
    __slots__ = (
        "borrowers",
        "contained",
        "copies",
        "fetching",
        "frames",
        "kind",
        "lineage",
        "local",
        "mapped",
        "node_id",
        "owned",
        "owner",
        "size",
        "state",
        "waiters",
    )

    def __init__(self, owned: bool, owner: str) -> None:
        self.owned = owned
        self.owner = owner
        self.state = PENDING
        self.kind = ""
        self.frames: list[Any] | None = None
        self.node_id = b""
        self.size = 0
        self.local = 0
        self.borrowers = 0
        self.waiters: list[Any] = []
        self.contained: list[Any] = []  # ObjectRefs kept alive while this value lives
        self.fetching = False
        self.mapped: list[Any] | None = None  # shared-memory frames, mapped on first read
        self.copies: set[bytes] | None = None  # other nodes holding a fetched copy
        self.lineage: Any = None  # the task record that can re-create this value if it is lost


class Waiter:
    """Wakes a thread blocked in get/wait once `needed` objects are ready.

    A bare lock used as a one-shot latch: releasing it is much cheaper than setting an Event.
    """

    __slots__ = ("_done", "_latch", "_mutex", "needed")

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self._latch = _thread.allocate_lock()
        self._latch.acquire()
        self._done = False
        self._mutex = _thread.allocate_lock()  # notify() runs on the user's and the I/O thread

    def notify(self, object_id: bytes) -> None:
        with self._mutex:
            self.needed -= 1
            if self.needed > 0 or self._done:
                return
            self._done = True
        self._latch.release()

    def is_set(self) -> bool:
        return self._done

    def wait(self, timeout: float | None) -> bool:
        if self._done:
            return True
        if timeout is None:
            self._latch.acquire()
            return True
        return self._latch.acquire(timeout=max(0.0, timeout)) or self._done


class CallbackWaiter:
    """Runs a callback on the I/O thread when the object is ready."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[bytes], None]) -> None:
        self.callback = callback

    def notify(self, object_id: bytes) -> None:
        self.callback(object_id)


class ObjectTable:
    def __init__(self, my_address: str) -> None:
        self.address = my_address
        self.lock = threading.Lock()
        self.entries: dict[bytes, Entry] = {}
        self.released: collections.deque[bytes] = collections.deque()
        # Filled under the lock, drained by the core worker's I/O thread: (owner, object id, borrower), the
        # borrower being this process or, for refs inside a task's return value, the task's caller.
        self.borrow_adds: list[tuple[str, bytes, str]] = []
        self.borrow_removes: list[tuple[str, bytes, str]] = []
        # Owned objects per borrowing process (its address) with how many borrows it registered, so that
        # a dead borrower's borrows can be released (core/borrower_watch.py).
        self.borrowed_by: dict[str, dict[bytes, int]] = {}
        self.freed_shm: list[tuple[bytes, str]] = []  # (node_id, object hex) to delete
        self.wake: Callable[[], None] = _nothing  # called when the outbox gets something to send
        self._peak = 0  # the most entries seen by process_released since the table was last compacted
        # Owners known to be dead (core/owner_watch.py, the most recent ones): no borrower message goes
        # to them (it would only open a connection to a dead process).
        self.dead_owners: collections.OrderedDict[str, None] = collections.OrderedDict()

    # ------------------------------------------------------------ references

    def add_local_ref(self, object_id: bytes, owner: str, precounted: bool = False) -> bool:
        """Count one more live ObjectRef; True when a borrower registration must be sent."""
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is None:
                entry = self.entries[object_id] = Entry(owner == self.address, owner)
                entry.local = 1
                if not entry.owned and not precounted:
                    self.borrow_adds.append((owner, object_id, self.address))
                    return True
                return False
            entry.local += 1
            return False

    def new_owned(self, object_id: bytes) -> Entry:
        """Create the entry of an object this process will own (a task return or a put)."""
        entry = Entry(True, self.address)
        with self.lock:
            self.entries[object_id] = entry
        return entry

    def process_released(self) -> None:
        """Apply the decrements of collected ObjectRefs and free what nobody references."""
        released = self.released
        if not released:
            return
        dropped: list[Entry] = []
        with self.lock:
            entries = self.entries
            self._peak = max(self._peak, len(entries))
            while released:
                object_id = released.popleft()
                entry = entries.get(object_id)
                if entry is None:
                    continue
                entry.local -= 1
                if entry.local <= 0 and entry.borrowers <= 0:
                    self._drop(object_id, entry, dropped)
            compacted = self._compact_if_shrunk()
        # Contained refs are released outside the lock (their __del__ appends to `released`).
        for entry in dropped:
            entry.contained = []
        if compacted:
            dropped.clear()
            memory.give_back()

    def _compact_if_shrunk(self) -> bool:
        """A dict never shrinks: once most of a large table was freed, copy what is left into a new one,
        so that the memory a burst of refs took goes back (with the allocator's free pages, memory.py)."""
        if self._peak < COMPACT_MIN_PEAK or len(self.entries) > self._peak // COMPACT_FRACTION:
            return False
        self.entries = dict(self.entries)
        self._peak = len(self.entries)
        return True

    def remove_borrowers(self, object_ids: list[bytes], borrower: str = "") -> None:
        """`borrower` dropped its refs. A borrow it never registered (or that its death released already:
        its last BorrowsRemoved may arrive after the GCS said it died) is not counted down again."""
        dropped: list[Entry] = []
        with self.lock:
            mine = self.borrowed_by.get(borrower) if borrower else None
            for object_id in object_ids:
                entry = self.entries.get(object_id)
                if entry is None:
                    continue
                if borrower:
                    if mine is None or mine.get(object_id, 0) <= 0:
                        continue
                    mine[object_id] -= 1
                    if not mine[object_id]:
                        del mine[object_id]
                entry.borrowers -= 1
                if entry.local <= 0 and entry.borrowers <= 0:
                    self._drop(object_id, entry, dropped)
            if mine is not None and not mine:
                del self.borrowed_by[borrower]
        for entry in dropped:
            entry.contained = []

    def add_borrowers(self, object_ids: list[bytes], borrower: str = "") -> None:
        """Count `borrower`'s borrows ("" when unknown: never released by a death)."""
        with self.lock:
            mine = self.borrowed_by.get(borrower) if borrower else None
            for object_id in object_ids:
                entry = self.entries.get(object_id)
                if entry is not None:
                    entry.borrowers += 1
                    if borrower:
                        if mine is None:
                            mine = self.borrowed_by[borrower] = {}
                        mine[object_id] = mine.get(object_id, 0) + 1

    def release_borrower(self, borrower: str) -> int:
        """`borrower` died: its borrows end (it never sends BorrowsRemoved); returns how many were released."""
        dropped: list[Entry] = []
        released = 0
        with self.lock:
            for object_id, count in self.borrowed_by.pop(borrower, {}).items():
                entry = self.entries.get(object_id)
                if entry is None:
                    continue
                entry.borrowers -= count
                released += count
                if entry.local <= 0 and entry.borrowers <= 0:
                    self._drop(object_id, entry, dropped)
        for entry in dropped:
            entry.contained = []
        return released

    def _drop(self, object_id: bytes, entry: Entry, dropped: list[Entry]) -> None:
        del self.entries[object_id]
        dropped.append(entry)
        if entry.owned:
            if entry.kind == SHM:
                self.freed_shm.append((entry.node_id, object_id.hex()))
                for node_id in entry.copies or ():
                    self.freed_shm.append((node_id, object_id.hex()))
                self.wake()
        elif entry.owner not in self.dead_owners:
            self.borrow_removes.append((entry.owner, object_id, self.address))
            self.wake()

    # ------------------------------------------------------------ values

    def set_value(
        self, object_id: bytes, kind: str, frames: list[Any] | None = None, node_id: bytes = b"",
        size: int = 0, contained: list[Any] | None = None,
    ) -> bool:
        """Record an object's value and wake its waiters; False if nobody references it any more."""
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is None or entry.state == READY:
                return False
            entry.kind = kind
            entry.frames = frames
            entry.node_id = node_id
            entry.size = size
            if contained:
                entry.contained = contained
            entry.state = READY
            waiters, entry.waiters = entry.waiters, []
        for waiter in waiters:
            waiter.notify(object_id)
        return True

    def add_waiter(self, object_id: bytes, waiter: Any) -> bool:
        """Register `waiter`; returns True if the object is already ready (waiter not added)."""
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is None or entry.state == READY:
                return True
            entry.waiters.append(waiter)
            return False

    def add_waiter_many(self, object_ids: list[bytes], waiter: Any) -> tuple[int, list[bytes], list[tuple[bytes, str]]]:
        """Register `waiter` on every object that is not ready yet, under one lock.

        Returns how many were ready (or unknown here) already, the ids it was registered on, and the
        borrowed ones nobody fetches yet as (id, owner), now marked as being fetched.
        """
        ready = 0
        registered: list[bytes] = []
        to_fetch: list[tuple[bytes, str]] = []
        with self.lock:
            entries = self.entries
            for object_id in object_ids:
                entry = entries.get(object_id)
                if entry is None or entry.state == READY:
                    ready += 1
                    continue
                entry.waiters.append(waiter)
                registered.append(object_id)
                if not entry.owned and not entry.fetching:
                    entry.fetching = True
                    to_fetch.append((object_id, entry.owner))
        return ready, registered, to_fetch

    def remove_waiter_many(self, object_ids: list[bytes], waiter: Any) -> None:
        """Unregister `waiter` from objects that did not become ready while it waited."""
        with self.lock:
            entries = self.entries
            for object_id in object_ids:
                entry = entries.get(object_id)
                if entry is not None and entry.state != READY:
                    try:
                        entry.waiters.remove(waiter)
                    except ValueError:
                        pass

    def remove_waiter(self, object_id: bytes, waiter: Any) -> None:
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is not None:
                try:
                    entry.waiters.remove(waiter)
                except ValueError:
                    pass

    def reset(self, object_id: bytes) -> bool:
        """Make a ready object pending again (its only copy was lost and it will be re-created)."""
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is None:
                return False
            entry.state = PENDING
            entry.kind = ""
            entry.frames = None
            entry.mapped = None
            entry.copies = None
            return True

    def on_node(self, node_id: bytes) -> list[tuple[bytes, Entry]]:
        """Node `node_id` died: owned shared-memory objects that had their only copy there.

        An object with a copy on another node lives on: that copy becomes its location (a reader
        fetches it from there), and the dead node is forgotten as a holder of copies.
        """
        lost: list[tuple[bytes, Entry]] = []
        with self.lock:
            for oid, e in self.entries.items():
                if not (e.owned and e.state == READY and e.kind == SHM):
                    continue
                if e.copies:
                    e.copies.discard(node_id)
                if e.node_id != node_id:
                    continue
                if e.copies:
                    e.node_id = e.copies.pop()  # a live copy is the object's location now
                    e.mapped = None
                else:
                    lost.append((oid, e))
        return lost

    def add_copy(self, object_id: bytes, node_id: bytes) -> None:
        with self.lock:
            entry = self.entries.get(object_id)
            if entry is not None and entry.owned and node_id != entry.node_id:
                if entry.copies is None:
                    entry.copies = set()
                entry.copies.add(node_id)

    def get(self, object_id: bytes) -> Entry | None:
        return self.entries.get(object_id)

    def take_outbox(self) -> tuple[list, list, list]:
        with self.lock:
            adds, removes, freed = self.borrow_adds, self.borrow_removes, self.freed_shm
            self.borrow_adds, self.borrow_removes, self.freed_shm = [], [], []
            dead = self.dead_owners
            if dead:  # queued before the owner's death was heard: nobody is left to tell
                adds = [item for item in adds if item[0] not in dead]
                removes = [item for item in removes if item[0] not in dead]
        return adds, removes, freed


def _nothing() -> None:
    pass
