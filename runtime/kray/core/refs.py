"""ObjectRef, and the process-wide pointer to the running core worker that counts references.

An ObjectRef registers itself with the current core worker when created and reports its release
when collected; pickling one records it as contained in the value being serialized, and
unpickling one in another process makes that process a borrower. No I/O here.
"""

from __future__ import annotations

from typing import Any

from kray import serialization

# The CoreWorker of this process, set by kray.init or by a worker's start-up.
_core: Any = None


def set_core(core: Any) -> None:
    global _core
    _core = core


def get_core() -> Any:
    return _core


class ObjectRef:
    """A reference to an object in the cluster, returned by `.remote()` and `kray.put`."""

    __slots__ = ("__weakref__", "_core", "_id", "_owner")

    def __init__(self, object_id: bytes, owner: str, _register: bool = True) -> None:
        self._id = object_id
        self._owner = owner
        core = _core
        self._core = core
        if core is not None and _register:
            core.add_local_ref(object_id, owner)

    def __del__(self) -> None:
        core = self._core
        if core is not None:
            try:
                core.released.append(self._id)
                core.wake_flush()
            except Exception:  # noqa: BLE001, S110 - __del__ at interpreter exit
                pass

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> bytes:
        return self._id[:16]

    def owner_address(self) -> str:
        return self._owner

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __reduce__(self) -> tuple[Any, ...]:
        if not serialization.record_contained_ref(self) and self._core is not None:
            # Pickled out of band: nobody can tell when the copy is dropped, so, as Ray does, the
            # object stays pinned for as long as its owner lives.
            self._core.add_local_ref(self._id, self._owner)
        return (_rebuild_ref, (self._id, self._owner))

    def __await__(self) -> Any:
        return self.future_async().__await__()

    async def future_async(self) -> Any:
        import asyncio

        core = self._core
        values = await asyncio.get_running_loop().run_in_executor(None, core.get_objects, [self], None)
        return values[0]

    def future(self) -> Any:
        """A concurrent.futures.Future that completes with the object's value."""
        import concurrent.futures
        import threading

        fut: concurrent.futures.Future = concurrent.futures.Future()

        def fetch() -> None:
            try:
                fut.set_result(self._core.get_objects([self], None)[0])
            except BaseException as e:  # noqa: BLE001 - handed to the future's waiter
                fut.set_exception(e)

        threading.Thread(target=fetch, daemon=True).start()
        return fut


def _rebuild_ref(object_id: bytes, owner: str) -> ObjectRef:
    return ObjectRef(object_id, owner)
