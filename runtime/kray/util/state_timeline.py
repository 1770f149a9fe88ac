"""`kray timeline` and `kray.timeline()`: the cluster's task attempts as a Chrome trace (chrome://tracing,
Perfetto), built from the task events the GCS keeps.

Shapes state rows: one complete event ("ph": "X") per attempt that started, on a track per node ("pid")
and worker process ("tid"), from its RUNNING time to its end (or to now while it runs). Reads them through
kray.util.state; `driver_timeline` may write the JSON file it is given.
"""

from __future__ import annotations

import time
from typing import Any

from kray.util import state


def chrome_trace(rows: list[dict[str, Any]], now_ms: float | None = None) -> list[dict[str, Any]]:
    """Task rows (detail columns) as Chrome trace events."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    events = []
    for row in rows:
        start = row.get("start_time_ms")
        if not start:
            continue  # never ran: nothing to draw
        end = row.get("end_time_ms") or now_ms
        events.append({
            "cat": row.get("type", "task"), "name": row.get("func_or_class_name") or row.get("name"),
            "pid": f"Node {row.get('node_id') or '?'}", "tid": f"worker {row.get('worker_pid') or '?'}",
            "ph": "X", "ts": start * 1000, "dur": max(0.0, end - start) * 1000,
            "cname": "rail_response" if row.get("state") == "FAILED" else "generic_work",
            "args": {"task_id": row.get("task_id"), "attempt_number": row.get("attempt_number"),
                     "state": row.get("state"), "job_id": row.get("job_id"), "actor_id": row.get("actor_id"),
                     "error_type": row.get("error_type")},
        })
    return events


def timeline(address: state.Address = None, timeout: int = state.DEFAULT_RPC_TIMEOUT) -> list[dict[str, Any]]:
    """The Chrome trace events of every task attempt the GCS keeps."""
    return chrome_trace(state.list_resource("tasks", address, None, state.MAX_LIMIT, timeout, True))


def driver_timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """`kray.timeline()`, as Ray's `ray.timeline()`: the connected cluster's task attempts as Chrome trace
    events (open them in chrome://tracing or ui.perfetto.dev). With `filename`, they are written there as
    JSON and None is returned.

    Raises RuntimeError before `kray.init()`.
    """
    import json

    from kray.api import runtime

    if not runtime.is_initialized():
        raise RuntimeError("kray has not been started yet: call kray.init() before kray.timeline().")
    events = timeline()
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
