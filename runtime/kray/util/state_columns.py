"""The state API's schema: each resource's columns under Ray's names (ray.util.state.common), which of
them can be filtered on and which only appear with `detail=True`; filter checking and matching.

Pure: rows in, rows out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

SupportedFilterType = str | bool | int | float
Filter = tuple[str, str, SupportedFilterType]

# (column, filterable, detail-only), in Ray's order.
_Col = tuple[str, bool, bool]

COLUMNS: dict[str, tuple[_Col, ...]] = {
    "actors": (
        ("actor_id", True, False), ("class_name", True, False), ("state", True, False), ("job_id", True, False),
        ("name", True, False), ("node_id", True, False), ("pid", True, False), ("ray_namespace", True, False),
        ("serialized_runtime_env", False, True), ("required_resources", False, True), ("death_cause", False, True),
        ("is_detached", False, True), ("placement_group_id", True, True), ("repr_name", True, True),
        ("num_restarts", False, True), ("num_restarts_due_to_lineage_reconstruction", False, True),
    ),
    "tasks": (
        ("task_id", True, False), ("attempt_number", True, False), ("name", True, False), ("state", True, False),
        ("job_id", True, False), ("actor_id", True, False), ("type", True, False),
        ("func_or_class_name", True, False), ("parent_task_id", True, False), ("node_id", True, False),
        ("worker_id", True, False), ("worker_pid", True, False), ("error_type", True, False),
        ("language", True, True), ("required_resources", False, True), ("runtime_env_info", False, True),
        ("placement_group_id", True, True), ("events", False, True), ("profiling_data", False, True),
        ("creation_time_ms", False, True), ("start_time_ms", False, True), ("end_time_ms", False, True),
        ("task_log_info", False, True), ("error_message", False, True), ("is_debugger_paused", True, True),
    ),
    "nodes": (
        ("node_id", True, False), ("node_ip", True, False), ("is_head_node", True, False), ("state", True, False),
        ("state_message", False, False), ("node_name", True, False), ("resources_total", False, False),
        ("labels", False, False), ("start_time_ms", False, True), ("end_time_ms", False, True),
    ),
    "placement_groups": (
        ("placement_group_id", True, False), ("name", True, False), ("creator_job_id", True, False),
        ("state", True, False), ("bundles", False, True), ("is_detached", True, True), ("stats", False, True),
    ),
    "workers": (
        ("worker_id", True, False), ("is_alive", True, False), ("worker_type", True, False),
        ("exit_type", True, False), ("node_id", True, False), ("ip", True, False), ("pid", True, False),
        ("exit_detail", False, True), ("worker_launch_time_ms", False, True),
        ("worker_launched_time_ms", False, True), ("start_time_ms", False, True), ("end_time_ms", False, True),
        ("debugger_port", True, True), ("num_paused_threads", True, True),
    ),
    "objects": (
        ("object_id", True, False), ("object_size", True, False), ("task_status", True, False),
        ("attempt_number", True, False), ("reference_type", True, False), ("call_site", True, False),
        ("type", True, False), ("pid", True, False), ("ip", True, False),
    ),
    "jobs": (
        ("job_id", True, False), ("submission_id", True, False), ("entrypoint", False, False),
        ("type", True, False), ("status", True, False), ("message", False, False),
        ("error_type", False, False), ("driver_info", False, False),
    ),
}

# The id column of each resource (`get_*`, `kray get RESOURCE ID`) and the one rows are sorted by.
ID_COLUMN = {"actors": "actor_id", "tasks": "task_id", "nodes": "node_id", "placement_groups": "placement_group_id",
             "workers": "worker_id", "objects": "object_id", "jobs": "job_id"}


def filterable(resource: str) -> set[str]:
    return {name for name, can_filter, _ in COLUMNS[resource] if can_filter}


def check_filters(resource: str, filters: Iterable[Sequence[Any]] | None) -> list[Filter]:
    """Filters as (column, predicate, value), checked; ValueError names a bad column or predicate."""
    allowed = filterable(resource)
    checked: list[Filter] = []
    for flt in filters or ():
        if len(flt) != 3:
            raise ValueError(f"A filter is a (column, predicate, value) tuple, got {flt!r}")
        column, predicate, value = flt
        column = str(column).lower()
        if column not in allowed:
            raise ValueError(f"The given filter column {column} is not supported. "
                             f"Supported filter columns: {sorted(allowed)}")
        if predicate not in ("=", "!="):
            raise ValueError(f"Unsupported filter predicate {predicate} is given. Available predicates: =, !=.")
        checked.append((column, predicate, value))
    return checked


def matches(row: dict[str, Any], flt: Filter) -> bool:
    """Whether a row passes one filter; strings compare case-insensitively, numbers by value."""
    column, predicate, value = flt
    actual = row.get(column)
    if isinstance(value, str) and isinstance(actual, str):
        equal = actual.lower() == value.lower()
    elif isinstance(value, str) and isinstance(actual, (bool, int, float)) and actual is not None:
        text = value.strip().lower()
        if isinstance(actual, bool):
            equal = text == str(actual).lower()
        else:
            try:
                equal = float(text) == float(actual)
            except ValueError:
                equal = False
    elif isinstance(value, str) and actual is None:
        equal = value.lower() in ("", "none", "null")
    else:
        equal = actual == value
    return equal if predicate == "=" else not equal


def apply(resource: str, rows: list[dict[str, Any]], filters: list[Filter], limit: int,
          detail: bool) -> list[dict[str, Any]]:
    """Filter, sort by id, trim to `limit` and keep the resource's columns (detail ones with detail=True)."""
    kept = [row for row in rows if all(matches(row, f) for f in filters)]
    if resource != "tasks":  # tasks stay in the order the GCS saw them (oldest first)
        key = ID_COLUMN[resource]
        kept.sort(key=lambda row: str(row.get(key) or ""))
    return [project(resource, row, detail) for row in kept[: max(limit, 0)]]


def project(resource: str, row: dict[str, Any], detail: bool) -> dict[str, Any]:
    if resource == "jobs" and detail:
        return dict(row)  # Ray's detailed job rows are the whole JobDetails
    return {name: row.get(name) for name, _, only_detail in COLUMNS[resource] if detail or not only_detail}
