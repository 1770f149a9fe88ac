"""Resource arithmetic for the autoscaler: shapes, what a worker group's node offers, and the head's
demand report (`GET /api/cluster/demand`) read into plain data.

Pure: dictionaries in, dataclasses out; no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from kray_operator import models
from kray_operator.builders import command, names

Shape = dict[str, float]
EPSILON = 1e-9
# Node labels the raylet reports (runtime/kray/config.py sets them from the Pod's environment).
GROUP_LABEL = "ray.io/node-group"
POD_LABEL = "kray.io/pod-name"
# Resources every node has that demand never asks for by name in a way a group's spec could promise.
_IMPLICIT = ("object_store_memory",)


def fits(shape: Mapping[str, float], free: Mapping[str, float]) -> bool:
    """Whether `shape` fits into `free` (resources the shape does not ask for are ignored)."""
    return all(amount <= free.get(name, 0.0) + EPSILON for name, amount in shape.items()
               if amount > 0 and name not in _IMPLICIT)


def take(shape: Mapping[str, float], free: Shape) -> None:
    """Subtract `shape` from `free` in place (the caller checked that it fits)."""
    for name, amount in shape.items():
        if name in free:
            free[name] = max(0.0, free[name] - amount)


def add(shapes: Sequence[Mapping[str, float]]) -> Shape:
    """The sum of `shapes` (a STRICT_PACK placement group's one node)."""
    total: Shape = {}
    for shape in shapes:
        for name, amount in shape.items():
            total[name] = total.get(name, 0.0) + amount
    return total


def describe(shape: Mapping[str, float]) -> str:
    """`{CPU: 1, GPU: 1}`: a shape as people read it (whole numbers without a decimal point)."""
    parts = [f"{k}: {int(v) if float(v).is_integer() else v}" for k, v in sorted(shape.items()) if v > 0]
    return "{" + ", ".join(parts) + "}"


def needs_gpu(shape: Mapping[str, float]) -> bool:
    return shape.get("GPU", 0.0) > 0


def group_capacity(group: models.WorkerGroupSpec) -> Shape | None:
    """What one node of `group` offers, as `kray start` would be told: rayStartParams num-cpus, num-gpus,
    memory and resources, else the kray container's resource limits; None when the CPU count is unknown
    (then `kray start` would count the machine's CPUs, which the operator cannot know in advance)."""
    resources = group.template.spec.containers[0].resources
    try:
        params = command.effective_params(names.WORKER, group.ray_start_params, resources, head_address="head")
    except ValueError:
        return None
    if "num-cpus" not in params:
        return None
    capacity: Shape = {"CPU": float(params["num-cpus"])}
    if float(params.get("num-gpus", "0")) > 0:
        capacity["GPU"] = float(params["num-gpus"])
    if "memory" in params:
        capacity["memory"] = float(params["memory"])
    if "resources" in params:
        try:
            capacity.update({k: float(v) for k, v in command.parse_resources(params["resources"]).items()})
        except ValueError:
            return None
    return capacity


@dataclasses.dataclass(frozen=True)
class Node:
    """A node of the cluster as the head reports it."""

    node_id: str
    is_head: bool
    total: Shape
    available: Shape
    group: str  # "" for the head or a node started outside the operator
    pod: str
    idle_s: float | None  # seconds it has been idle; None while busy


@dataclasses.dataclass(frozen=True)
class PlacementGroupDemand:
    """A placement group that waits to be placed."""

    strategy: str  # PACK, SPREAD, STRICT_PACK, STRICT_SPREAD
    bundles: tuple[Shape, ...]


@dataclasses.dataclass(frozen=True)
class Demand:
    """The head's report: alive nodes, pending task/actor shapes, pending placement groups, and the
    standing `request_resources` bundles."""

    nodes: tuple[Node, ...] = ()
    tasks: tuple[Shape, ...] = ()
    placement_groups: tuple[PlacementGroupDemand, ...] = ()
    requests: tuple[Shape, ...] = ()


def _shape(value: Any) -> Shape:
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_demand(report: Mapping[str, Any]) -> Demand:
    """The Demand of a `/api/cluster/demand` answer; dead nodes are left out."""
    nodes = []
    for raw in report.get("nodes") or []:
        if not raw.get("alive"):
            continue
        labels = raw.get("labels") or {}
        idle = raw.get("idle_s")
        nodes.append(Node(
            node_id=str(raw.get("node_id", "")), is_head=bool(raw.get("is_head")),
            total=_shape(raw.get("resources_total")), available=_shape(raw.get("resources_available")),
            group=str(labels.get(GROUP_LABEL, "")), pod=str(labels.get(POD_LABEL, "")),
            idle_s=float(idle) if isinstance(idle, (int, float)) else None,
        ))
    groups = tuple(
        PlacementGroupDemand(str(g.get("strategy") or "PACK"), tuple(_shape(b) for b in g.get("bundles") or []))
        for g in report.get("placement_groups") or []
    )
    tasks = report.get("task_demand")
    if tasks is None:  # a head without the split report: every shape counts as a task's
        tasks = report.get("demand") or []
    return Demand(
        nodes=tuple(nodes),
        tasks=tuple(_shape(s) for s in tasks),
        placement_groups=groups,
        requests=tuple(_shape(s) for s in report.get("resource_requests") or []),
    )
