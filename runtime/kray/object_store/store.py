"""The node's object store ledger: which sealed objects live in shared memory, how much room is left,
and spilling of the least recently sealed objects to disk when the store is over capacity.

Runs inside the raylet process (as Ray's plasma store does) on its I/O thread; touches only the
node's shared-memory and spill directories. Writers create object files themselves and then report
them sealed; the store never copies an object except to spill it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import shutil
import time
from collections.abc import Callable

from kray.object_store import shm
from kray.util import safe_names

log = logging.getLogger(__name__)


class ObjectStore:
    """Capacity accounting and spilling for one node's shared-memory objects."""

    def __init__(self, shm_dir: str, spill_dir: str, capacity: int,
                 call_soon: Callable[..., None] | None = None) -> None:
        """`call_soon(fn, *args)` runs fn on the owner's loop thread: with it, spill files are copied on
        a thread of their own (a multi-GB spill never blocks the raylet's loop); without it, inline."""
        self.shm_dir = shm_dir
        self.spill_dir = spill_dir
        self.capacity = capacity
        os.makedirs(shm_dir, exist_ok=True)
        os.makedirs(spill_dir, exist_ok=True)
        # oid hex -> size, oldest first: the spill order
        self._in_memory: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._spilled: dict[str, int] = {}
        # Objects whose primary copy is here (put or returned on this node, not fetched), by the job that
        # made them: while any is left, the node holds data that exists nowhere else and that its owner
        # still references, so the autoscaler must not remove it (Ray counts a node with primary copies
        # as busy too). A job's entries go when the job ends (its owners are gone; nobody can free them).
        self._primary: dict[str, int] = {}
        # Objects being copied to the spill dir: still counted in `used` until their copy is done.
        self._spilling: dict[str, int] = {}
        self._spilling_bytes = 0
        self._deleted_while_spilling: set[str] = set()
        self._room_waiters: collections.deque[tuple[int, Callable[[bool], None]]] = collections.deque()
        self._call_soon = call_soon
        self._spill_thread = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spill") if call_soon is not None else None
        )
        self.used = 0
        self.spilled_bytes_total = 0
        self.spilled_objects_total = 0

    def sealed(self, oid_hex: str, size: int, primary: bool = True, job_id: int = 0) -> None:
        """A writer finished an object file (`primary`: created here, not a fetched copy); account for it
        and spill older objects if needed."""
        if not safe_names.is_object_hex(oid_hex):
            log.warning("ignored a sealed report for %r: not an object id", oid_hex)
            return
        path = os.path.join(self.shm_dir, oid_hex)
        if oid_hex in self._in_memory or not os.path.exists(path):
            return  # a duplicate report, or deleted before the report arrived
        if primary:
            self._primary[oid_hex] = job_id
        self._in_memory[oid_hex] = size
        self.used += size
        if self.used > self.capacity:
            self.spill_until(self.capacity)

    def make_room(self, size: int, answer: Callable[[bool], None]) -> None:
        """Spill until `size` more bytes fit, then answer(True); answer(False) at once if the object is
        larger than the store. The answer waits for the spills it needs: writers never overfill memory."""
        if size > self.capacity:
            answer(False)
            return
        self.spill_until(self.capacity - size)
        if self.used + size <= self.capacity or not (self._spilling or self._room_waiters):
            answer(True)  # fits, or nothing more can be spilled (the writer then finds out itself)
        else:
            self._room_waiters.append((size, answer))

    def spill_until(self, target: int) -> None:
        self.drain_pool()
        while self.used - self._spilling_bytes > target and self._in_memory:
            oid_hex, size = self._in_memory.popitem(last=False)
            self._spilling[oid_hex] = size
            self._spilling_bytes += size
            if self._spill_thread is None:
                self._spill_done(oid_hex, _copy_out(self.shm_dir, self.spill_dir, oid_hex))
            else:
                self._spill_thread.submit(self._spill_in_thread, oid_hex)

    def _spill_in_thread(self, oid_hex: str) -> None:
        ok = _copy_out(self.shm_dir, self.spill_dir, oid_hex)
        assert self._call_soon is not None
        self._call_soon(self._spill_done, oid_hex, ok)

    def _spill_done(self, oid_hex: str, ok: bool) -> None:
        """A copy to the spill dir finished (on the loop thread): account for it, answer waiting writers."""
        size = self._spilling.pop(oid_hex)
        self._spilling_bytes -= size
        self.used -= size
        if oid_hex in self._deleted_while_spilling:
            self._deleted_while_spilling.discard(oid_hex)
            _unlink_all(shm.object_paths(self.shm_dir, self.spill_dir, oid_hex))
        elif ok:
            self._spilled[oid_hex] = size
            self.spilled_bytes_total += size
            self.spilled_objects_total += 1
        while self._room_waiters:
            needed, answer = self._room_waiters[0]
            if self.used + needed > self.capacity and self._spilling:
                break
            self._room_waiters.popleft()
            answer(True)

    def delete(self, oid_hexes: list[str]) -> None:
        """Free objects: their owner holds no more references to them."""
        for oid_hex in oid_hexes:
            if not safe_names.is_object_hex(oid_hex):
                log.warning("ignored a delete of %r: not an object id", oid_hex)
                continue
            self._primary.pop(oid_hex, None)
            if oid_hex in self._spilling:  # its copy finishes first; the spill file goes then
                self._deleted_while_spilling.add(oid_hex)
                continue
            size = self._in_memory.pop(oid_hex, None)
            if size is not None:
                self.used -= size
                if (size >= shm.RECYCLE_MIN_BYTES and self._pool_has_room(size)
                        and shm.recycle(os.path.join(self.shm_dir, oid_hex), size)):
                    continue
            self._spilled.pop(oid_hex, None)
            _unlink_all(shm.object_paths(self.shm_dir, self.spill_dir, oid_hex))

    def _pool_has_room(self, size: int) -> bool:
        pooled, files = shm.pool_usage(self.shm_dir)
        limit = min(self.capacity // 4, 4 << 30)
        return len(files) < 8 and pooled + size <= limit and self.used + pooled + size <= self.capacity

    def drain_pool(self, older_than: float = 0.0) -> None:
        """Delete pooled freed files (those pooled more than `older_than` seconds ago).

        Called with 0 when their memory is needed for live objects, and periodically with a few
        seconds so that memory goes back to the system soon after a burst of large objects.
        """
        now = time.time()
        for path, _ in shm.pool_usage(self.shm_dir)[1]:
            try:
                if older_than and now - os.stat(path).st_ctime < older_than:
                    continue
                os.unlink(path)
            except FileNotFoundError:
                pass

    @property
    def primary_count(self) -> int:
        """Primary copies held here (in memory or spilled) that their owners have not freed."""
        return len(self._primary)

    def job_finished(self, job_id: int) -> None:
        """The job's driver is gone: its objects' primary copies no longer keep the node busy."""
        self._primary = {oid: job for oid, job in self._primary.items() if job != job_id}

    def contains(self, oid_hex: str) -> bool:
        return oid_hex in self._in_memory or oid_hex in self._spilled or oid_hex in self._spilling

    def stats(self) -> dict[str, int]:
        return {
            "capacity": self.capacity,
            "used": self.used,
            "num_objects": len(self._in_memory),
            "num_spilled": len(self._spilled),
            "num_primary": len(self._primary),
            "spilled_bytes_total": self.spilled_bytes_total,
        }

    def destroy(self) -> None:
        """Remove every object file of this node (the node is shutting down)."""
        if self._spill_thread is not None:
            self._spill_thread.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.shm_dir, ignore_errors=True)
        shutil.rmtree(self.spill_dir, ignore_errors=True)


def _copy_out(shm_dir: str, spill_dir: str, oid_hex: str) -> bool:
    """Copy an object file to the spill dir, then unlink it from shared memory: a reader looking in shm
    and then in the spill dir always finds it. False when it could not be spilled."""
    src, dst = shm.object_paths(shm_dir, spill_dir, oid_hex)
    try:
        shutil.copyfile(src, dst + ".part")
        os.rename(dst + ".part", dst)
        os.unlink(src)
    except FileNotFoundError:
        return False
    except OSError as e:
        log.error("spilling object %s failed: %s", oid_hex, e)
        return False
    return True


def _unlink_all(paths: tuple[str, ...]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
