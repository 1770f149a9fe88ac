"""What the GCS tells the autoscaler besides the raw demand: how long each node has been idle, pending
placement groups with their strategy, task shapes alone, and the standing `request_resources` bundles.

A node is idle while every resource it has is free, nothing waits at its raylet and its store holds no
primary copy of an object still referenced (Ray's definition: its raylet counts a node with primary copies
as busy): no leased worker, no running task, no actor holding resources, no placement-group bundle, no
object that would be lost with the node. Runs on the GCS loop; keeps only timestamps (no I/O).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

# The KV key `kray.autoscaler.sdk.request_resources` writes: a JSON list of bundles (Ray's name for it).
RESOURCE_REQUEST_KEY = "__autoscaler_resource_request"
_EPSILON = 1e-9


def is_idle(total: Mapping[str, float], available: Mapping[str, float], pending: Sequence[Any],
            primary_objects: int = 0) -> bool:
    """Whether a node with these totals, free resources, waiting shapes and primary object copies is idle."""
    if pending or primary_objects > 0:
        return False
    return all(available.get(name, 0.0) >= amount - _EPSILON for name, amount in total.items())


class IdleTracker:
    """Since when each node has been idle (monotonic seconds), updated from its heartbeats."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._since: dict[bytes, float | None] = {}
        self._objects: dict[bytes, int] = {}  # primary copies each node last reported

    def update(self, node_id: bytes, total: Mapping[str, float], available: Mapping[str, float],
               pending: Sequence[Any], primary_objects: int = 0) -> None:
        self._objects[node_id] = primary_objects
        if is_idle(total, available, pending, primary_objects):
            if self._since.get(node_id) is None:
                self._since[node_id] = self._clock()
        else:
            self._since[node_id] = None

    def forget(self, node_id: bytes) -> None:
        self._since.pop(node_id, None)
        self._objects.pop(node_id, None)

    def primary_objects(self, node_id: bytes) -> int:
        """Primary object copies the node last reported holding."""
        return self._objects.get(node_id, 0)

    def idle_s(self, node_id: bytes) -> float | None:
        """Seconds the node has been idle, None while it is busy (or unknown)."""
        since = self._since.get(node_id)
        return None if since is None else round(self._clock() - since, 3)


def resource_requests(raw: bytes | None) -> list[dict[str, float]]:
    """The bundles of the last `request_resources` call (none when never called or cleared)."""
    if not raw:
        return []
    try:
        bundles = json.loads(raw)
    except ValueError:
        log.warning("ignoring a malformed resource request in the KV: %r", raw[:200])
        return []
    if not isinstance(bundles, list):
        return []
    return [{str(k): float(v) for k, v in b.items()} for b in bundles if isinstance(b, dict)]


def task_shapes(pending: Mapping[bytes, Sequence[dict[str, float]]]) -> list[dict[str, float]]:
    """Shapes of tasks and actors waiting at raylets; tasks waiting for a placement group's bundle are
    left out (the group's own bundles are its demand while it is pending)."""
    shapes = [shape for shapes in pending.values() for shape in shapes]
    return [s for s in shapes if not any("_group_" in name for name in s)]


def report(state: dict[str, Any], idle: IdleTracker, node_ids: Sequence[bytes],
           pending: Mapping[bytes, Sequence[dict[str, float]]], groups: list[dict[str, Any]],
           requests: bytes | None) -> dict[str, Any]:
    """`state` (GetClusterState's answer) with idle_s and primary_objects per node (same order as
    `node_ids`), task_demand, placement_groups and resource_requests added."""
    for node, node_id in zip(state["nodes"], node_ids, strict=True):
        node["idle_s"] = idle.idle_s(node_id) if node.get("alive") else None
        node["primary_objects"] = idle.primary_objects(node_id)
    state["task_demand"] = task_shapes(pending)
    state["placement_groups"] = groups
    state["resource_requests"] = resource_requests(requests)
    return state
