"""The state API (Ray's ray.util.state): list, get and summarize the cluster's actors, tasks, nodes,
objects, jobs, placement groups and workers, with Ray's column names, filters, `limit` and `detail`.

Runs in the caller's process: rows come from the GCS and the raylets (kray.util.state_sources), are
filtered, sorted and trimmed by kray.util.state_columns. Works from a connected driver, or anywhere
that can reach the cluster (`address="auto"`, "HOST:PORT"), as the `kray list|get|summary` commands do.
The same answers are served over HTTP on the head (kray.dashboard.state_routes, Ray's /api/v0/ paths).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kray.util import state_columns, state_sources
from kray.util.log_state import get_log, list_logs  # the logs half (Ray's names), kept in its own module
from kray.util.state_columns import Filter, SupportedFilterType

DEFAULT_LIMIT = 100
DEFAULT_RPC_TIMEOUT = 30
# A summary reads at most this many task attempts (the GCS keeps 100,000 by default).
MAX_LIMIT = 100_000
# "auto", "HOST:PORT" or None; the head's HTTP server passes a StateSource of its own.
Address = str | state_sources.StateSource | None


class StateRow(dict):  # type: ignore[type-arg]
    """One row, readable as a dict (`a["state"]`) or by attribute (`a.state`), as Ray's state dataclasses."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class ActorState(StateRow): ...
class TaskState(StateRow): ...
class NodeState(StateRow): ...
class ObjectState(StateRow): ...
class JobState(StateRow): ...
class PlacementGroupState(StateRow): ...
class WorkerState(StateRow): ...


_ROW_TYPES: dict[str, type[StateRow]] = {
    "actors": ActorState, "tasks": TaskState, "nodes": NodeState, "objects": ObjectState, "jobs": JobState,
    "placement_groups": PlacementGroupState, "workers": WorkerState,
}
RESOURCES = tuple(_ROW_TYPES)


def list_resource(
    resource: str, address: Address = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False,
) -> list[Any]:
    """Rows of one resource ("actors", "tasks", ...) matching every filter, at most `limit` of them."""
    if resource not in _ROW_TYPES:
        raise ValueError(f"Unknown resource {resource!r}; one of: {', '.join(RESOURCES)}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    checked = state_columns.check_filters(resource, filters)
    # The head's HTTP server passes its own StateSource as the address.
    source = address if isinstance(address, state_sources.StateSource) else state_sources.resolve(address, timeout)
    rows = _rows(source, resource, checked, limit)
    row_type = _ROW_TYPES[resource]
    return [row_type(row) for row in state_columns.apply(resource, rows, checked, limit, detail)]


def _rows(source: state_sources.StateSource, resource: str, filters: list[Filter], limit: int) -> list[dict[str, Any]]:
    if resource == "tasks":
        return source.tasks(filters, limit)[0]  # filtered and trimmed by the GCS
    rows: list[dict[str, Any]] = getattr(source, resource)()
    return rows


def list_actors(address: str | None = None, filters: Sequence[Filter] | None = None, limit: int = DEFAULT_LIMIT,
                timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False) -> list[ActorState]:
    """Actors (alive, pending, restarting and dead), e.g. `list_actors(filters=[("state", "=", "ALIVE")])`."""
    return list_resource("actors", address, filters, limit, timeout, detail)


def list_tasks(address: str | None = None, filters: Sequence[Filter] | None = None, limit: int = DEFAULT_LIMIT,
               timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[TaskState]:
    """Task attempts (one row per attempt) from the task events, oldest first."""
    return list_resource("tasks", address, filters, limit, timeout, detail)


def list_nodes(address: str | None = None, filters: Sequence[Filter] | None = None, limit: int = DEFAULT_LIMIT,
               timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[NodeState]:
    return list_resource("nodes", address, filters, limit, timeout, detail)


def list_objects(address: str | None = None, filters: Sequence[Filter] | None = None, limit: int = DEFAULT_LIMIT,
                 timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[ObjectState]:
    """Objects in the nodes' shared-memory stores (one row per copy), and the small (inline) objects that live
    in their owners' memory (one row per process holding one, with its pid and reference type)."""
    return list_resource("objects", address, filters, limit, timeout, detail)


def list_jobs(address: str | None = None, filters: Sequence[Filter] | None = None, limit: int = DEFAULT_LIMIT,
              timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
              _explain: bool = False) -> list[JobState]:
    """Submitted jobs and drivers that connected by themselves."""
    return list_resource("jobs", address, filters, limit, timeout, detail)


def list_placement_groups(address: str | None = None, filters: Sequence[Filter] | None = None,
                          limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                          raise_on_missing_output: bool = True, _explain: bool = False) -> list[PlacementGroupState]:
    return list_resource("placement_groups", address, filters, limit, timeout, detail)


def list_workers(address: str | None = None, filters: Sequence[Filter] | None = None, limit: int = DEFAULT_LIMIT,
                 timeout: int = DEFAULT_RPC_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[WorkerState]:
    """The worker processes of every live node."""
    return list_resource("workers", address, filters, limit, timeout, detail)


def _get_one(resource: str, id: str, address: str | None, timeout: int) -> Any:
    found = list_resource(resource, address, [(state_columns.ID_COLUMN[resource], "=", id)], MAX_LIMIT, timeout, True)
    return found[-1] if found else None


def get_actor(id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT,
              _explain: bool = False) -> ActorState | None:
    """The detailed row of the actor with this hex id, or None."""
    return _get_one("actors", id, address, timeout)  # type: ignore[no-any-return]


def get_task(id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False) -> TaskState | None:
    """The latest attempt of the task with this hex id, or None."""
    return _get_one("tasks", id, address, timeout)  # type: ignore[no-any-return]


def get_node(id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False) -> NodeState | None:
    return _get_one("nodes", id, address, timeout)  # type: ignore[no-any-return]


def get_placement_group(id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                        _explain: bool = False) -> PlacementGroupState | None:
    return _get_one("placement_groups", id, address, timeout)  # type: ignore[no-any-return]


def get_worker(id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT,
               _explain: bool = False) -> WorkerState | None:
    return _get_one("workers", id, address, timeout)  # type: ignore[no-any-return]


def get_job(id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT,
            _explain: bool = False) -> JobState | None:
    """A job by its job id or submission id, or None."""
    found = _get_one("jobs", id, address, timeout)
    if found is None:
        rows = list_resource("jobs", address, [("submission_id", "=", id)], MAX_LIMIT, timeout, True)
        found = rows[0] if rows else None
    return found  # type: ignore[no-any-return]


def get_objects(id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                _explain: bool = False) -> list[ObjectState]:
    """Every copy of the object with this hex id (one row per node that holds it)."""
    return list_resource("objects", address, [("object_id", "=", id)], MAX_LIMIT, timeout, True)


# ---------------------------------------------------------------- summaries (Ray's shapes)


def summarize_tasks(address: Address = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict[str, Any]:
    """Task attempts counted by function (or class) name and state."""
    rows = list_resource("tasks", address, None, MAX_LIMIT, timeout, False)
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = summary.setdefault(row["func_or_class_name"], {
            "func_or_class_name": row["func_or_class_name"], "type": row["type"], "state_counts": {}})
        counts = entry["state_counts"]
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return {"cluster": {
        "summary": summary, "total_tasks": sum(1 for r in rows if r["type"] == "NORMAL_TASK"),
        "total_actor_tasks": sum(1 for r in rows if r["type"] == "ACTOR_TASK"),
        "total_actor_scheduled": sum(1 for r in rows if r["type"] == "ACTOR_CREATION_TASK"),
        "summary_by": "func_name",
    }}


def summarize_actors(address: Address = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict[str, Any]:
    """Actors counted by class and state."""
    rows = list_resource("actors", address, None, MAX_LIMIT, timeout, False)
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = summary.setdefault(row["class_name"], {"class_name": row["class_name"], "state_counts": {}})
        entry["state_counts"][row["state"]] = entry["state_counts"].get(row["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(rows), "summary_by": "class"}}


def summarize_objects(address: Address = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                      raise_on_missing_output: bool = True, _explain: bool = False) -> dict[str, Any]:
    """Objects in the nodes' stores, counted and sized (kray records no call sites: one group)."""
    rows = list_resource("objects", address, None, MAX_LIMIT, timeout, True)
    size_mb = sum(r["object_size"] or 0 for r in rows) / (1024 * 1024)
    refs: dict[str, int] = {}
    for row in rows:
        refs[row["reference_type"]] = refs.get(row["reference_type"], 0) + 1
    group = {"total_objects": len(rows), "total_size_mb": size_mb, "total_num_workers": 0,
             "total_num_nodes": len({r["ip"] for r in rows}),
             "task_state_counts": {"FINISHED": len(rows)} if rows else {}, "ref_type_counts": refs}
    return {"cluster": {"summary": {"disabled": group} if rows else {}, "total_objects": len(rows),
                        "total_size_mb": size_mb, "callsite_enabled": False, "summary_by": "callsite"}}


__all__ = [
    "ActorState", "Filter", "JobState", "NodeState", "ObjectState", "PlacementGroupState", "SupportedFilterType",
    "TaskState", "WorkerState", "get_actor", "get_job", "get_log", "get_node", "get_objects", "get_placement_group",
    "get_task", "get_worker", "list_actors", "list_jobs", "list_logs", "list_nodes", "list_objects", "list_placement_groups",
    "list_tasks", "list_workers", "summarize_actors", "summarize_objects", "summarize_tasks",
]
