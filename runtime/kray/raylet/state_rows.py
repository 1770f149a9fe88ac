"""What a raylet tells the state API about its node (`kray list workers`, `kray list objects`): its
worker processes (with their CPU and memory) and the objects in its store, and its machine's CPU and
memory use (the dashboard's node view), as plain rows added to its GetNodeStats answer.

Reads of the raylet's worker pool and object store (and of /proc through psutil), on the raylet's loop
thread.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

# At most this many objects per node in one answer (a store may hold millions of small files).
MAX_OBJECTS = 10_000


def worker_rows(pool: Any) -> list[dict[str, Any]]:
    """The node's worker processes: id, pid, state (STARTING, IDLE, LEASED, ...), job, start time, and
    their CPU use (percent of one core since the previous answer) and resident memory (psutil)."""
    now_mono, now = time.monotonic(), time.time()
    workers = list(pool.workers.values())
    _forget_processes({w.pid for w in workers})
    rows = []
    for w in workers:
        cpu_percent, memory_rss = _usage(w.pid)
        rows.append({"worker_id": w.worker_id.hex(), "pid": w.pid, "state": w.state,
                     "job_id": w.lease_job or (w.job if w.job >= 0 else None),
                     "start_time_ms": int((now - (now_mono - w.started_at)) * 1000), "name": w.name,
                     "cpu_percent": cpu_percent, "memory_rss": memory_rss})
    return rows


# psutil measures a process's CPU use between two calls on the same Process object: keep one per worker.
_processes: dict[int, psutil.Process] = {}


def _usage(pid: int) -> tuple[float | None, int | None]:
    """(CPU percent since the last call, resident bytes) of a process; Nones when it cannot be read."""
    try:
        proc = _processes.get(pid)
        if proc is None:
            proc = _processes[pid] = psutil.Process(pid)
        with proc.oneshot():
            return proc.cpu_percent(None), proc.memory_info().rss
    except (psutil.Error, OSError):
        _processes.pop(pid, None)
        return None, None


def _forget_processes(live: set[int]) -> None:
    for pid in [p for p in _processes if p not in live]:
        del _processes[pid]


def host_usage() -> dict[str, Any]:
    """The node's machine: CPU percent (all cores, since the last call), cores, memory used and total."""
    memory = psutil.virtual_memory()
    return {"cpu_percent": psutil.cpu_percent(None), "num_cpus": psutil.cpu_count(),
            "memory_used": memory.total - memory.available, "memory_total": memory.total}


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
