"""What a raylet tells the state API about its node (`kray list workers`, `kray list objects`): its
worker processes and the objects in its store, as plain rows added to its GetNodeStats answer.

Pure reads of the raylet's worker pool and object store, on the raylet's loop thread.
"""

from __future__ import annotations

import time
from typing import Any

# At most this many objects per node in one answer (a store may hold millions of small files).
MAX_OBJECTS = 10_000


def worker_rows(pool: Any) -> list[dict[str, Any]]:
    """The node's worker processes: id, pid, state (STARTING, IDLE, LEASED, ...), job and start time."""
    now_mono, now = time.monotonic(), time.time()
    return [
        {"worker_id": w.worker_id.hex(), "pid": w.pid, "state": w.state,
         "job_id": w.lease_job or (w.job if w.job >= 0 else None),
         "start_time_ms": int((now - (now_mono - w.started_at)) * 1000), "name": w.name}
        for w in list(pool.workers.values())
    ]


def object_rows(store: Any) -> list[dict[str, Any]]:
    """The objects in the node's store (in shared memory or spilled), with their size and job."""
    rows: list[dict[str, Any]] = []
    primary = store._primary
    for table, spilled in ((store._in_memory, False), (store._spilled, True)):
        for hex_id, size in list(table.items()):
            if len(rows) >= MAX_OBJECTS:
                return rows
            rows.append({"object_id": hex_id, "size": size, "spilled": spilled, "primary": hex_id in primary,
                         "job_id": primary.get(hex_id)})
    return rows
