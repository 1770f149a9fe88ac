"""kray.internal: low-level calls Ray keeps in `ray._private.internal_api`; `free(refs)` here.

Changes the caller's object table and asks the nodes holding the objects to delete them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kray import exceptions, serialization
from kray.api import runtime
from kray.core import object_table, refs

__all__ = ["free"]


def free(object_refs: refs.ObjectRef | Iterable[refs.ObjectRef], local_only: bool = False) -> None:
    """Free objects at once, before their references go away, as Ray's internal_api.free.

    Their memory in the object store is given back now; a later `get` of any ref to them raises
    ObjectFreedError and they are not reconstructed. Only the owner (the process that created the
    objects by `.remote()` or `put`) can free them; a ref owned elsewhere raises ValueError.
    """
    if isinstance(object_refs, refs.ObjectRef):
        object_refs = [object_refs]
    if isinstance(object_refs, (str, bytes)) or not isinstance(object_refs, Iterable):
        raise TypeError(f"free() takes an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}.")
    given = list(object_refs)
    for ref in given:
        if not isinstance(ref, refs.ObjectRef):
            raise TypeError(f"free() takes ObjectRefs only, got {type(ref).__name__}: {ref!r}.")
    if not isinstance(local_only, bool):
        raise TypeError(f"local_only must be a bool, got {local_only!r}.")
    core = runtime.current_core()
    table = core.objects
    for ref in given:
        entry = table.get(ref.binary())
        if entry is not None and not entry.owned:
            raise ValueError(f"free() can only free objects this process owns; {ref!r} is owned by {entry.owner}.")
    for ref in given:
        _free_one(core, table, ref)


def _free_one(core: Any, table: object_table.ObjectTable, ref: refs.ObjectRef) -> None:
    error = exceptions.ObjectFreedError(ref.hex(), "it was freed by kray.internal.free()")
    frames = serialization.serialize(error)[0]
    stored: list[bytes] = []
    with table.lock:
        entry = table.entries.get(ref.binary())
        if entry is None:
            return  # nothing references it any more: already gone
        pending = entry.state != object_table.READY
        if not pending:
            if entry.kind == object_table.SHM:
                stored = [entry.node_id, *(entry.copies or ())]
            entry.kind, entry.frames, entry.mapped, entry.copies = object_table.ERROR, frames, None, None
        entry.lineage = None  # a freed object is never re-created
    if pending:
        table.set_value(ref.binary(), object_table.ERROR, frames)  # its task's result is dropped on arrival
    for node_id in stored:
        core.loop.call_soon_threadsafe(core.delete_shm, node_id, ref.hex())
