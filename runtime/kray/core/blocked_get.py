"""The blocked-get watchdog: a `get()` (or a `wait()` without a timeout) that has waited longer than
KRAY_GET_BLOCKED_WARNING_S (10 s by default; 0 switches it off) logs ONE warning line saying what it
waits for, so that a hang is never silent (Ray users' most common complaint).

The line names a few of the object ids, the task that makes the first ones, that task's state from the
task events (PENDING_NODE_ASSIGNMENT, RUNNING, ...), the node it runs on, and, while it is not scheduled
yet, the resources it is pending on. It is built from what this process knows (the owner's submitter)
and one short query to the GCS's task events; a failing query only makes the line shorter.

Runs on the waiting user thread: the wait is split in two, before and after the warning.
"""

from __future__ import annotations

import logging
from typing import Any

from kray import config, ids
from kray.protocol import task_event_messages as tem

log = logging.getLogger("kray.get")

# How many object ids (and the tasks that make them) the warning names.
NAMED_OBJECTS = 3
# The GCS query for the task's state must not hold the wait up for long.
QUERY_TIMEOUT_S = 2.0
PENDING_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT")


def wait(core: Any, waiter: Any, missing: list[Any], timeout: float | None, what: str = "get") -> bool:
    """waiter.wait(timeout) for the ObjectRefs `missing`, logging one warning if it lasts longer than the
    configured threshold (a `wait()` only when it has no timeout)."""
    threshold = config.blocked_get_warning_s()
    if threshold <= 0 or (timeout is not None and (what == "wait" or timeout <= threshold)):
        return bool(waiter.wait(timeout))
    if waiter.wait(threshold):
        return True
    object_ids = [ref._id for ref in missing]
    try:
        log.warning(describe(core, object_ids, threshold, what))
    except Exception as e:  # noqa: BLE001 - the warning must never break the get
        log.warning("%s() has been blocked for %gs waiting for %d object(s) (%s)", what, threshold,
                    len(object_ids), e)
    return bool(waiter.wait(None if timeout is None else timeout - threshold))


def describe(core: Any, object_ids: list[bytes], waited_s: float, what: str = "get") -> str:
    """The warning line: which objects, which tasks make them, in which state, where, pending on what."""
    named = ", ".join(oid.hex() for oid in object_ids[:NAMED_OBJECTS])
    more = f" and {len(object_ids) - NAMED_OBJECTS} more" if len(object_ids) > NAMED_OBJECTS else ""
    parts = [f"{what}() has been blocked for {waited_s:g}s waiting for {len(object_ids)} object(s): {named}{more}"]
    seen: set[bytes] = set()
    for oid in object_ids[:NAMED_OBJECTS]:
        task_id = ids.task_of(oid)
        if task_id in seen:
            continue
        seen.add(task_id)
        parts.append(_task_text(core, task_id, oid))
    return "; ".join(parts) + "."


def _task_text(core: Any, task_id: bytes, object_id: bytes) -> str:
    local = _local_task(core, task_id)
    row = _task_row(core, task_id)
    if local is None and row is None:
        entry = core.objects.get(object_id)
        if entry is not None and not entry.owned:
            return f"object {object_id.hex()} is borrowed from its owner at {entry.owner} (no task of this process makes it)"
        return f"task {task_id.hex()} is unknown here (no task events for it yet)"
    name = (row or {}).get("name") or (local.spec.name if local is not None else "?")
    state = (row or {}).get("state") or ("PENDING_NODE_ASSIGNMENT" if local is not None else "UNKNOWN")
    text = f"it is made by task {name} ({task_id.hex()}), state {state}"
    node = (row or {}).get("node_id")
    if node:
        text += f" on node {node}"
        pid = (row or {}).get("worker_pid")
        if pid:
            text += f" (worker pid {pid})"
    if state in PENDING_STATES or (row is None and local is not None):
        resources = (row or {}).get("required_resources") or (dict(local.spec.resources) if local is not None else {})
        text += f", pending on resources {_resources_text(resources)}"
        if state == "PENDING_ARGS_AVAIL":
            text += " and on its arguments"
        available = _available(core)
        if available is not None:
            available = {k: available.get(k, 0.0) for k in resources}
            text += f" (cluster available now: {_resources_text(available)})"
    return text


def _local_task(core: Any, task_id: bytes) -> Any:
    """The owner's record of the task, when this process submitted it and it has not finished."""
    submitter = getattr(core, "submitter", None)
    tasks = getattr(submitter, "tasks", None)
    return tasks.get(task_id) if isinstance(tasks, dict) else None


def _task_row(core: Any, task_id: bytes) -> dict[str, Any] | None:
    """The task's latest attempt in the GCS's task events, or None."""
    if not core.gcs_address:
        return None
    try:
        answer = core.call(core.gcs_address, lambda rid: tem.GetTaskEvents(rid, [("task_id", "=", task_id.hex())], 100),
                           timeout=QUERY_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - no events is an answer too
        return None
    rows: list[dict[str, Any]] = (answer.get("rows") or []) if isinstance(answer, dict) else []
    if not rows:
        return None
    latest: dict[str, Any] = max(rows, key=lambda r: r.get("attempt_number") or 0)
    return dict(latest)


def _available(core: Any) -> dict[str, float] | None:
    from kray.protocol import messages

    try:
        state = core.call(core.gcs_address, lambda rid: messages.GetClusterState(rid), timeout=QUERY_TIMEOUT_S)
    except Exception:  # noqa: BLE001
        return None
    total: dict[str, float] = {}
    for node in state.get("nodes", []):
        if node.get("alive"):
            for key, value in (node.get("resources_available") or {}).items():
                total[key] = total.get(key, 0.0) + float(value)
    return total


def _resources_text(resources: dict[str, Any]) -> str:
    shown = {k: v for k, v in resources.items() if not k.startswith("node:") and k != "object_store_memory"}
    return "{" + ", ".join(f"{k}: {v:g}" if isinstance(v, (int, float)) else f"{k}: {v}"
                           for k, v in sorted(shown.items())) + "}"
