"""Between the RayCluster and the policy: the worker groups as the policy sees them, the JSON patch that
applies a decision (replicas and scaleStrategy.workersToDelete in one patch, as KubeRay's autoscaler
writes them), and the status condition that reports infeasible demand.

Pure: a RayCluster model, its manifest and PodViews in, data out; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kray_operator import models
from kray_operator.autoscaler import capacity, policy
from kray_operator.builders import observed, scaling

# The status condition and the Event reason of demand that fits no worker group.
INFEASIBLE = "InfeasibleDemand"
SCALED = "AutoscalerScaled"
ALL_FIT = "every pending shape fits a worker group"


def enabled(spec: models.RayClusterSpec) -> bool:
    """Whether the operator autoscales this cluster now (not while it is suspended)."""
    return bool(spec.enable_in_tree_autoscaling) and not spec.suspend


def options(spec: models.RayClusterSpec) -> tuple[str, float]:
    """upscalingMode and idleTimeoutSeconds, with KubeRay's defaults (Default, 60 s)."""
    opts = spec.autoscaler_options
    mode = (opts.upscaling_mode if opts is not None else None) or policy.DEFAULT
    idle = opts.idle_timeout_seconds if opts is not None and opts.idle_timeout_seconds is not None else None
    return mode, float(policy.DEFAULT_IDLE_TIMEOUT_S if idle is None else idle)


def groups(spec: models.RayClusterSpec, pods: Sequence[observed.PodView]) -> list[policy.Group]:
    """Every worker group with its capacity (one node's), bounds, current replicas and live Pods; a
    multi-host group's complete replicas by their ray.io/worker-group-replica-name (suspended groups are
    left to their replicas)."""
    out = []
    for group in spec.worker_group_specs:
        if group.suspend:
            continue
        views = [p for p in observed.workers(pods, group.group_name) if not p.deleting and not p.terminated]
        live = tuple(p.name for p in views)
        replicas = tuple(tuple(sorted(p.name for p in members))
                         for name, members in sorted(scaling.replicas_of(views).items())
                         if name and len(members) == group.num_of_hosts) if group.num_of_hosts > 1 else ()
        out.append(policy.Group(
            name=group.group_name, capacity=capacity.group_capacity(group),
            min_replicas=group.min_replicas, max_replicas=group.max_replicas,
            replicas=scaling.clamp_replicas(group), pods=live,
            deleting=bool(group.scale_strategy.workers_to_delete),
            idle_timeout_s=float(group.idle_timeout_seconds) if group.idle_timeout_seconds is not None else None,
            hosts=group.num_of_hosts, replica_pods=replicas,
        ))
    return out


def patch(body: dict[str, Any], decision: policy.Decision) -> list[dict[str, Any]]:
    """JSON-patch operations setting each changed group's replicas and workersToDelete; `test` ops make
    the patch fail (409/422) when the group moved or its replicas changed since `body` was read."""
    operations: list[dict[str, Any]] = []
    for index, group in enumerate((body.get("spec") or {}).get("workerGroupSpecs") or []):
        change = decision.change(group.get("groupName", ""))
        if change is None:
            continue
        path = f"/spec/workerGroupSpecs/{index}"
        operations.append({"op": "test", "path": f"{path}/groupName", "value": group["groupName"]})
        if "replicas" in group:
            operations.append({"op": "test", "path": f"{path}/replicas", "value": group["replicas"]})
        operations.append({"op": "add", "path": f"{path}/replicas", "value": change.replicas})
        if change.workers_to_delete:
            strategy = dict(group.get("scaleStrategy") or {})
            strategy["workersToDelete"] = list(change.workers_to_delete)
            operations.append({"op": "add", "path": f"{path}/scaleStrategy", "value": strategy})
    return operations


def infeasible_message(decision: policy.Decision) -> str:
    """One line for every infeasible shape ("" when there are none)."""
    return "; ".join(decision.infeasible)


def conditions(status: dict[str, Any], message: str, now: str, generation: int | None) -> list[dict[str, Any]] | None:
    """The status conditions with InfeasibleDemand set to `message` (False when empty), or None when that
    is what they say already."""
    current = [dict(c) for c in status.get("conditions") or []]
    mine = next((c for c in current if c.get("type") == INFEASIBLE), None)
    wanted_status = "True" if message else "False"
    if mine is None and not message:
        return None
    if mine is not None and mine.get("status") == wanted_status and mine.get("message") == (message or ALL_FIT):
        return None
    others = [c for c in current if c.get("type") != INFEASIBLE]
    transition = now if mine is None or mine.get("status") != wanted_status else mine.get("lastTransitionTime", now)
    others.append({
        "type": INFEASIBLE, "status": wanted_status, "reason": INFEASIBLE if message else "AllDemandFits",
        "message": message or ALL_FIT, "lastTransitionTime": transition,
        "observedGeneration": generation,
    })
    return others
