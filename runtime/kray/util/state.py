"""The state API (Ray's ray.util.state): list the cluster's actors with Ray's field names and filters.

Runs in the caller's process; reads the actor table through kray.api.actor.list_actor_records (one
GCS request), then filters, sorts and trims it here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_LIMIT = 100
DEFAULT_RPC_TIMEOUT = 30

SupportedFilterType = str | bool | int | float
Filter = tuple[str, str, SupportedFilterType]


class ActorState(dict):  # type: ignore[type-arg]
    """One actor's row, readable as a dict (`a["state"]`) or by attribute (`a.state`), as Ray's ActorState."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class _Column:
    name: str
    filterable: bool
    detail: bool  # shown only with detail=True


# Ray's ActorState columns (ray.util.state.common.ActorState), in Ray's order.
ACTOR_COLUMNS: tuple[_Column, ...] = (
    _Column("actor_id", filterable=True, detail=False),
    _Column("class_name", filterable=True, detail=False),
    _Column("state", filterable=True, detail=False),
    _Column("job_id", filterable=True, detail=False),
    _Column("name", filterable=True, detail=False),
    _Column("node_id", filterable=True, detail=False),
    _Column("pid", filterable=True, detail=False),
    _Column("ray_namespace", filterable=True, detail=False),
    _Column("serialized_runtime_env", filterable=False, detail=True),
    _Column("required_resources", filterable=False, detail=True),
    _Column("death_cause", filterable=False, detail=True),
    _Column("is_detached", filterable=False, detail=True),
    _Column("placement_group_id", filterable=True, detail=True),
    _Column("repr_name", filterable=True, detail=True),
    _Column("num_restarts", filterable=False, detail=True),
)
_FILTERABLE = {c.name for c in ACTOR_COLUMNS if c.filterable}


def list_actors(
    address: str | None = None,
    filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[ActorState]:
    """List the actors of the cluster this process is connected to (alive, pending, restarting and dead).

    Args:
        address: kept for Ray compatibility; kray lists the cluster of `kray.init()`.
        filters: (column, predicate, value) tuples, all of which must hold; the predicate is "="
            or "!=", and string values compare case-insensitively, e.g. `[("state", "=", "ALIVE")]`.
        limit: the most rows to return (after filtering, sorted by actor_id).
        timeout: kept for Ray compatibility.
        detail: also return the detail columns (death_cause, num_restarts, is_detached, ...).
        raise_on_missing_output, _explain: kept for Ray compatibility.

    Returns:
        ActorState rows (dicts) with Ray's column names: actor_id, class_name, state
        (PENDING_CREATION, ALIVE, RESTARTING or DEAD), job_id, name, node_id, pid, ray_namespace.

    Raises:
        ValueError: a filter names an unknown or unfilterable column, or a predicate other than = and !=.
    """
    from kray.api import actor as actor_api

    checked = _check_filters(filters or ())
    rows = [_row(record) for record in actor_api.list_actor_records()]
    rows = [row for row in rows if all(_matches(row, f) for f in checked)]
    rows.sort(key=lambda row: row["actor_id"])
    return [_project(row, detail) for row in rows[: max(limit, 0)]]


def get_actor(
    id: str, address: str | None = None, timeout: int = DEFAULT_RPC_TIMEOUT, _explain: bool = False
) -> ActorState | None:
    """The detailed row of the actor with this hex id, or None if the cluster has no such actor."""
    found = list_actors(filters=[("actor_id", "=", id)], limit=1, detail=True)
    return found[0] if found else None


def _row(record: dict[str, Any]) -> dict[str, Any]:
    """A record of kray.api.actor.list_actor_records() in Ray's column names and types."""
    cause = record.get("death_cause")
    return {
        "actor_id": record.get("actor_id"),
        "class_name": record.get("class_name"),
        "state": record.get("state"),
        "job_id": record.get("job_id"),
        "name": record.get("name") or "",
        "node_id": record.get("node_id"),
        "pid": record.get("pid") or 0,
        "ray_namespace": record.get("namespace"),
        "serialized_runtime_env": record.get("serialized_runtime_env"),
        "required_resources": record.get("required_resources"),
        # Ray reports the cause as a structured dict; kray's records carry the error's message.
        "death_cause": cause if cause is None or isinstance(cause, dict)
        else {"actor_died_error_context": {"error_message": str(cause)}},
        "is_detached": record.get("is_detached"),
        "placement_group_id": record.get("placement_group_id"),
        "repr_name": record.get("repr_name") or "",
        "num_restarts": record.get("num_restarts", 0),
    }


def _project(row: dict[str, Any], detail: bool) -> ActorState:
    return ActorState((c.name, row[c.name]) for c in ACTOR_COLUMNS if detail or not c.detail)


def _check_filters(filters: Iterable[Filter]) -> list[Filter]:
    checked = []
    for column, predicate, value in filters:
        column = column.lower()
        if column not in _FILTERABLE:
            raise ValueError(
                f"The given filter column {column} is not supported. "
                f"Supported filter columns: {sorted(_FILTERABLE)}"
            )
        if predicate not in ("=", "!="):
            raise ValueError(f"Unsupported filter predicate {predicate} is given. Available predicates: =, !=.")
        checked.append((column, predicate, value))
    return checked


def _matches(row: dict[str, Any], flt: Filter) -> bool:
    column, predicate, value = flt
    actual = row.get(column)
    if isinstance(value, str) and isinstance(actual, str):
        equal = actual.lower() == value.lower()
    elif isinstance(value, str) and isinstance(actual, (bool, int)):
        equal = str(actual).lower() == value.lower() or (
            not isinstance(actual, bool) and value.lstrip("-").isdigit() and actual == int(value)
        )
    else:
        equal = actual == value
    return equal if predicate == "=" else not equal


__all__ = ["ActorState", "get_actor", "list_actors"]
