"""Who holds which object in the cluster (`kray memory`, Ray's `ray memory`): every driver's and worker's
reference table, gathered and turned into Ray's memory table (one entry per process and object, with
its reference type), grouped by node or call site, sorted, and summarized with the object stores'
usage.

The processes are found in the GCS's registry of owners (every driver and worker announces its address
there at start), asked in parallel (GetReferenceTable, kray.core.reference_table); a process that does
not answer in time is left out and named in `warnings`. The stores' used/total bytes come from each
raylet's GetNodeStats. Synchronous; runs where the state API runs (a driver, the CLI, the head's HTTP).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from kray import ids
from kray.protocol import client, memory_messages

# A process that does not answer within this long is left out (it may be exiting).
PROCESS_TIMEOUT_S = 5.0
# Ray's reference types, in the order Ray decides them.
ACTOR_HANDLE = "ACTOR_HANDLE"
PINNED_IN_MEMORY = "PINNED_IN_MEMORY"
USED_BY_PENDING_TASK = "USED_BY_PENDING_TASK"
LOCAL_REFERENCE = "LOCAL_REFERENCE"
CAPTURED_IN_OBJECT = "CAPTURED_IN_OBJECT"
REFERENCE_TYPES = (ACTOR_HANDLE, PINNED_IN_MEMORY, USED_BY_PENDING_TASK, LOCAL_REFERENCE, CAPTURED_IN_OBJECT)
GROUP_BY = ("NODE_ADDRESS", "STACK_TRACE")
SORT_BY = ("PID", "OBJECT_SIZE", "REFERENCE_TYPE")
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}
_SUMMARY_KEYS = {
    LOCAL_REFERENCE: "total_local_ref_count", PINNED_IN_MEMORY: "total_pinned_in_memory",
    USED_BY_PENDING_TASK: "total_used_by_pending_task", CAPTURED_IN_OBJECT: "total_captured_in_objects",
    ACTOR_HANDLE: "total_actor_handles",
}


def reference_tables(source: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Every live process's reference table, and a warning per process that did not answer."""
    owners = source._gcs(lambda rid: memory_messages.ListOwners(rid))
    timeout = min(float(source.timeout), PROCESS_TIMEOUT_S)

    def ask(owner: dict[str, Any]) -> dict[str, Any]:
        return client.request(owner["address"], lambda rid: memory_messages.GetReferenceTable(rid), timeout=timeout)

    tables: list[dict[str, Any]] = []
    warnings: list[str] = []
    if not owners:
        return tables, warnings
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(owners))) as pool:
        futures = {pool.submit(ask, owner): owner for owner in owners}
        for future in concurrent.futures.as_completed(futures):
            try:
                tables.append(future.result())
            except (client.NoReply, client.TokenRefused, RuntimeError) as e:
                warnings.append(f"process at {futures[future]['address']} did not answer: {e}")
    return tables, warnings


def reference_type(row: dict[str, Any]) -> str | None:
    """Ray's reference type of one process's hold on one object, or None when it holds nothing."""
    if row.get("pinned_in_memory"):
        return PINNED_IN_MEMORY
    if row.get("submitted_task_ref_count"):
        return USED_BY_PENDING_TASK
    if row.get("local_ref_count"):
        return LOCAL_REFERENCE
    if row.get("contained_in_owned"):
        return CAPTURED_IN_OBJECT
    return None


def entries(tables: list[dict[str, Any]], task_states: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Ray's memory-table entries: one per (process, object it holds), plus one per actor handle."""
    task_states = task_states or {}
    out = []
    for table in tables:
        common = {"pid": table["pid"], "node_ip_address": table["ip"], "node_id": table["node_id"],
                  "type": "Driver" if table["is_driver"] else "Worker", "worker_id": table["worker_id"]}
        for row in table["objects"]:
            kind = reference_type(row)
            if kind is None:
                continue
            object_id = row["object_id"]
            status = task_states.get(object_id[: ids.TASK_ID_SIZE * 2])
            out.append({
                "object_ref": object_id, **common, "object_size": row["object_size"], "reference_type": kind,
                "call_site": row.get("call_site") or ("disabled" if not table.get("call_sites_enabled")
                                                      else "(unknown)" if row["owned"] else "(borrowed)"),
                "task_status": status or ("FINISHED" if row["ready"] else "PENDING" if row["owned"] else "-"),
                "attempt_number": 1, "local_ref_count": row["local_ref_count"],
                "pinned_in_memory": row["pinned_in_memory"],
                "submitted_task_ref_count": row["submitted_task_ref_count"],
                "contained_in_owned": row["contained_in_owned"], "owned": row["owned"],
                "owner_address": row["owner_address"], "borrowers": row["borrowers"],
                "stored": "shared_memory" if row["kind"] == "shm" else row["kind"] or "pending",
                "object_node_id": row["node_id"],
            })
        for actor_id in table.get("actor_handles", []):
            out.append({
                "object_ref": actor_id, **common, "object_size": -1, "reference_type": ACTOR_HANDLE,
                "call_site": "disabled", "task_status": "-", "attempt_number": 1, "local_ref_count": 1,
                "pinned_in_memory": False, "submitted_task_ref_count": 0, "contained_in_owned": [],
                "owned": False, "owner_address": None, "borrowers": 0, "stored": None, "object_node_id": None,
            })
    return out


def check_options(group_by: str, sort_by: str, units: str) -> tuple[str, str, str]:
    """The options upper-cased; ValueError names a bad one and the choices."""
    for name, value, choices in (("group_by", group_by, GROUP_BY), ("sort_by", sort_by, SORT_BY),
                                 ("units", units, tuple(UNITS))):
        if str(value).upper() not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return group_by.upper(), sort_by.upper(), units.upper()


def summarize(group: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray's per-group summary: total size, and the count and bytes of each reference type."""
    summary: dict[str, Any] = {"total_object_size": sum(max(0, e["object_size"]) for e in group)}
    for kind, key in _SUMMARY_KEYS.items():
        of_kind = [e for e in group if e["reference_type"] == kind]
        summary[key] = len(of_kind)
        summary[key.replace("total_", "total_bytes_", 1)] = sum(max(0, e["object_size"]) for e in of_kind)
    return summary


def memory_table(tables: list[dict[str, Any]], store_stats: list[dict[str, Any]], group_by: str = "NODE_ADDRESS",
                 sort_by: str = "OBJECT_SIZE", task_states: dict[str, str] | None = None,
                 warnings: list[str] | None = None) -> dict[str, Any]:
    """Ray's memory table: {"summary", "group": {key: {"entries", "summary"}}, "object_store", "warnings"}."""
    rows = entries(tables, task_states)
    sort_key = {"PID": lambda e: e["pid"], "OBJECT_SIZE": lambda e: e["object_size"],
                "REFERENCE_TYPE": lambda e: e["reference_type"]}[sort_by]
    rows.sort(key=sort_key)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = row["node_ip_address"] if group_by == "NODE_ADDRESS" else row["call_site"]
        groups.setdefault(key, []).append(row)
    used = sum(s["used"] for s in store_stats)
    capacity = sum(s["capacity"] for s in store_stats)
    return {
        "summary": summarize(rows),
        "group": {key: {"entries": group, "summary": summarize(group)} for key, group in groups.items()},
        "object_store": {"used_bytes": used, "capacity_bytes": capacity,
                         "num_objects": sum(s["num_objects"] for s in store_stats),
                         "spilled_objects": sum(s.get("num_spilled", 0) for s in store_stats), "nodes": store_stats},
        "warnings": warnings or [],
    }


def store_stats(source: Any) -> list[dict[str, Any]]:
    """Each live node's object store: {"node_id", "ip", "used", "capacity", "num_objects", "num_spilled"}."""
    out = []
    for node, stats in source.node_stats():
        store = stats.get("store", {})
        out.append({"node_id": node.node_id.hex(), "ip": node.ip, "used": store.get("used", 0),
                    "capacity": store.get("capacity", 0), "num_objects": store.get("num_objects", 0),
                    "num_spilled": store.get("num_spilled", 0)})
    return out


def task_states(source: Any) -> dict[str, str]:
    """The latest state of each task in the task events, by task id (for the entries' task status)."""
    from kray.util import state

    try:
        rows, _, _ = source.tasks([], state.MAX_LIMIT)
    except (ConnectionError, RuntimeError):
        return {}
    return {row["task_id"]: row["state"] for row in rows}


def summary(source: Any, group_by: str = "NODE_ADDRESS", sort_by: str = "OBJECT_SIZE") -> dict[str, Any]:
    """The whole cluster's memory table (see memory_table)."""
    tables, warnings = reference_tables(source)
    return memory_table(tables, store_stats(source), group_by, sort_by, task_states(source), warnings)


def inline_object_rows(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """list_objects rows of the small objects that live in their owners' memory (not in a store): one per
    holder, in the state API's columns."""
    rows = []
    all_entries = entries(tables)
    # A borrower that has not read the object does not know how it is stored: its owner does.
    inline = {e["object_ref"]: e["object_size"] for e in all_entries if e["stored"] == "inline" and e["owned"]}
    for entry in all_entries:
        if entry["object_ref"] not in inline or entry["reference_type"] == ACTOR_HANDLE:
            continue
        rows.append({
            "object_id": entry["object_ref"], "object_size": inline[entry["object_ref"]],
            "task_status": entry["task_status"],
            "attempt_number": 0, "reference_type": entry["reference_type"], "call_site": entry["call_site"],
            "type": entry["type"].upper(), "pid": entry["pid"], "ip": entry["node_ip_address"],
            "node_id": entry["node_id"], "spilled": False, "job_id": None,
        })
    return rows


__all__ = ["GROUP_BY", "REFERENCE_TYPES", "SORT_BY", "UNITS", "memory_table", "summary"]
