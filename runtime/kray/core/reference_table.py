"""One process's reference table, for `kray memory` and `list_objects` (Ray's core worker stats): every
object this driver or worker owns or borrows, with how it holds it.

Answered on the core worker's I/O thread (GetReferenceTable), from the object table (under its lock)
and the submitter's unfinished tasks. Per object: local ObjectRefs, whether this process has its
shared-memory value mapped (PINNED_IN_MEMORY), how many unfinished tasks it submitted take it as an
argument (USED_BY_PENDING_TASK), which owned objects contain a ref to it (CAPTURED_IN_OBJECT), and the
actors whose creator handle it holds (ACTOR_HANDLE). No I/O besides the reply.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from kray import config
from kray.core import object_table
from kray.protocol import memory_messages

# At most this many objects in one answer (a process may hold millions of refs).
MAX_OBJECTS = 10_000
# Call sites kept beyond the live objects' before the stale ones are dropped.
CALL_SITES_SLACK = 10_000
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install(core: Any) -> None:
    """Answer GetReferenceTable on `core`'s loop; set core.call_sites (a dict when call sites are recorded)."""
    core.call_sites = {} if config.record_ref_creation_sites() else None
    core.loop.on(memory_messages.GetReferenceTable,
                 lambda msg, payload, peer: peer.reply(msg.req_id, snapshot(core)))


def record(core: Any, made: Any, kind: str) -> None:
    """Remember where the ObjectRef(s) `made` were created (user thread; only when call sites are recorded):
    Ray's "(put object) | FILE:LINE:FUNCTION" of the first caller outside kray."""
    sites: dict[bytes, str] | None = core.call_sites
    if sites is None or made is None:
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}:{frame.f_code.co_name}" if frame is not None else "?"
    for ref in made if isinstance(made, list) else (made,):
        oid = getattr(ref, "_id", None)
        if isinstance(oid, bytes):
            sites[oid] = f"({kind}) | {where}"
    if len(sites) > len(core.objects.entries) + CALL_SITES_SLACK:
        entries = core.objects.entries
        for oid in [o for o in sites if o not in entries]:
            sites.pop(oid, None)


def snapshot(core: Any) -> dict[str, Any]:
    """This process's references (I/O thread)."""
    submitted = _submitted_refs(core)
    sites: dict[bytes, str] = dict(core.call_sites or {})
    rows: dict[bytes, dict[str, Any]] = {}
    captured: dict[bytes, list[str]] = {}
    objects = core.objects
    with objects.lock:
        for oid, entry in list(objects.entries.items()):
            if len(rows) >= MAX_OBJECTS:
                break
            rows[oid] = _row(oid, entry, submitted.get(oid, 0), sites.get(oid, ""))
            for inner in entry.contained or ():
                inner_id = getattr(inner, "_id", None)
                if isinstance(inner_id, bytes):
                    captured.setdefault(inner_id, []).append(oid.hex())
    for oid, outer in captured.items():
        row = rows.get(oid)
        if row is not None:
            row["contained_in_owned"] = outer
    return {
        "pid": os.getpid(), "worker_id": core.worker_id.hex(), "is_driver": bool(core.is_driver),
        "ip": core.node.ip, "node_id": core.node_id.hex(), "address": core.address,
        "job_id": core.job_id, "actor_id": core.actor_id.hex() if core.actor_id else None,
        "objects": list(rows.values()), "actor_handles": _actor_handles(core),
        "call_sites_enabled": core.call_sites is not None,
    }


def _row(oid: bytes, entry: object_table.Entry, submitted: int, call_site: str) -> dict[str, Any]:
    if entry.kind == object_table.INLINE:
        size = sum(len(f) if isinstance(f, bytes) else memoryview(f).nbytes for f in entry.frames or ())
    elif entry.kind == object_table.SHM:
        size = entry.size
    else:
        size = -1
    return {
        "object_id": oid.hex(), "owned": entry.owned, "owner_address": entry.owner,
        "ready": entry.state == object_table.READY, "kind": entry.kind or None, "object_size": size,
        "node_id": entry.node_id.hex() if entry.node_id else None,
        "local_ref_count": max(0, entry.local), "borrowers": max(0, entry.borrowers) if entry.owned else 0,
        "pinned_in_memory": entry.mapped is not None, "submitted_task_ref_count": submitted,
        "contained_in_owned": [], "call_site": call_site,
    }


def _submitted_refs(core: Any) -> dict[bytes, int]:
    """How many unfinished tasks this process submitted take each object as an argument."""
    counts: dict[bytes, int] = {}
    submitter = getattr(core, "submitter", None)
    records: list[Any] = list(getattr(submitter, "tasks", {}).values())
    actors = getattr(getattr(submitter, "actors", None), "actors", {})
    for queue in list(actors.values()):
        records.extend(getattr(queue, "queue", ()))
        records.extend(getattr(queue, "in_flight", {}).values())
    for record in records:
        if getattr(record, "done", False):
            continue
        seen: set[bytes] = set()
        for pin in getattr(record, "pins", ()):
            for ref in pin if isinstance(pin, list) else (pin,):
                oid = getattr(ref, "_id", None)
                if isinstance(oid, bytes) and oid not in seen:
                    seen.add(oid)
                    counts[oid] = counts.get(oid, 0) + 1
    return counts


def _actor_handles(core: Any) -> list[str]:
    """Actors this process created and still holds the original handle of (hex ids)."""
    actors = getattr(getattr(getattr(core, "submitter", None), "actors", None), "actors", {})
    return [actor_id.hex() for actor_id, queue in list(actors.items())
            if not getattr(queue, "released", True) and getattr(queue, "info", None) is not None
            and getattr(queue.info, "state", "") != "DEAD"]
