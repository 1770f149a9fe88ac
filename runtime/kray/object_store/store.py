"""The node's object store ledger: which sealed objects live in shared memory, how much room is left,
and spilling of the least recently sealed objects to disk when the store is over capacity.

Runs inside the raylet process (as Ray's plasma store does) on its I/O thread; touches only the
node's shared-memory and spill directories. Writers create object files themselves and then report
them sealed; the store never copies an object except to spill it.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import time

from kray.object_store import shm

log = logging.getLogger(__name__)


class ObjectStore:
    """Capacity accounting and spilling for one node's shared-memory objects."""

    def __init__(self, shm_dir: str, spill_dir: str, capacity: int) -> None:
        self.shm_dir = shm_dir
        self.spill_dir = spill_dir
        self.capacity = capacity
        os.makedirs(shm_dir, exist_ok=True)
        os.makedirs(spill_dir, exist_ok=True)
        # oid hex -> size, oldest first: the spill order
        self._in_memory: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._spilled: dict[str, int] = {}
        self.used = 0
        self.spilled_bytes_total = 0
        self.spilled_objects_total = 0

    def sealed(self, oid_hex: str, size: int) -> None:
        """A writer finished an object file; account for it and spill older objects if needed."""
        path = os.path.join(self.shm_dir, oid_hex)
        if oid_hex in self._in_memory or not os.path.exists(path):
            return  # a duplicate report, or deleted before the report arrived
        self._in_memory[oid_hex] = size
        self.used += size
        if self.used > self.capacity:
            self.spill_until(self.capacity)

    def make_room(self, size: int) -> bool:
        """Spill until `size` more bytes fit; False if the object is larger than the store."""
        if size > self.capacity:
            return False
        self.spill_until(self.capacity - size)
        return True

    def spill_until(self, target: int) -> None:
        self.drain_pool()
        while self.used > target and self._in_memory:
            oid_hex, size = self._in_memory.popitem(last=False)
            self.used -= size
            src, dst = shm.object_paths(self.shm_dir, self.spill_dir, oid_hex)
            try:
                # Copy first, unlink after: a reader looking in shm then in the spill dir always finds it.
                shutil.copyfile(src, dst + ".part")
                os.rename(dst + ".part", dst)
                os.unlink(src)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.error("spilling object %s failed: %s", oid_hex, e)
                continue
            self._spilled[oid_hex] = size
            self.spilled_bytes_total += size
            self.spilled_objects_total += 1

    def delete(self, oid_hexes: list[str]) -> None:
        """Free objects: their owner holds no more references to them."""
        for oid_hex in oid_hexes:
            size = self._in_memory.pop(oid_hex, None)
            if size is not None:
                self.used -= size
                if (size >= shm.RECYCLE_MIN_BYTES and self._pool_has_room(size)
                        and shm.recycle(os.path.join(self.shm_dir, oid_hex), size)):
                    continue
            self._spilled.pop(oid_hex, None)
            for path in shm.object_paths(self.shm_dir, self.spill_dir, oid_hex):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

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

    def contains(self, oid_hex: str) -> bool:
        return oid_hex in self._in_memory or oid_hex in self._spilled

    def stats(self) -> dict[str, int]:
        return {
            "capacity": self.capacity,
            "used": self.used,
            "num_objects": len(self._in_memory),
            "num_spilled": len(self._spilled),
            "spilled_bytes_total": self.spilled_bytes_total,
        }

    def destroy(self) -> None:
        """Remove every object file of this node (the node is shutting down)."""
        shutil.rmtree(self.shm_dir, ignore_errors=True)
        shutil.rmtree(self.spill_dir, ignore_errors=True)
