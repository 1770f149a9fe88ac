"""RayCluster .status computed from the spec, the observed Pods and the head Service.

Fields and condition types are KubeRay's (desiredWorkerReplicas, HeadPodReady, RayClusterProvisioned,
...). Pure: the current time is passed in; no I/O.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from typing import Any

from kray_operator import models, quantity
from kray_operator.builders import command, names, observed, scaling, service

HEAD_POD_READY = "HeadPodReady"
PROVISIONED = "RayClusterProvisioned"
SUSPENDING = "RayClusterSuspending"
SUSPENDED = "RayClusterSuspended"
REPLICA_FAILURE = "ReplicaFailure"

# What the API server accepts (bytes of UTF-8): metav1.Condition's message and reason (the CRDs declare
# the same maxLength), and a core/v1 Event's message (validation.NoteLengthLimit). Longer text is cut
# here, before a status is compared with the stored one, so a long message never differs from its own
# stored (cut) copy and causes a write on every pass.
CONDITION_MESSAGE_MAX = 32768
REASON_MAX = 1024
EVENT_MESSAGE_MAX = 1024
_CUT = " ..."


def pod_resources(template: models.PodTemplateSpec) -> dict[str, decimal.Decimal]:
    """What one Pod of `template` asks for: per container, requests, else limits; summed."""
    total: dict[str, decimal.Decimal] = {}
    for container in template.spec.containers:
        table = dict(container.resources.limits)
        table.update(container.resources.requests)
        for name, value in table.items():
            total[name] = total.get(name, decimal.Decimal(0)) + quantity.parse(value)
    return total


def desired_resources(spec: models.RayClusterSpec) -> dict[str, str]:
    """desiredCPU/Memory/GPU/TPU: the head plus every desired worker Pod."""
    cpu = memory = gpu = tpu = decimal.Decimal(0)
    counted = [] if spec.suspend else [(spec.head_group_spec.template, 1)]
    counted += [(g.template, scaling.desired_pods(spec, g)) for g in spec.worker_group_specs]
    for template, count in counted:
        for name, value in pod_resources(template).items():
            if name == "cpu":
                cpu += value * count
            elif name == "memory":
                memory += value * count
            elif command.is_gpu_resource(name):
                gpu += value * count
            elif name == "google.com/tpu":
                tpu += value * count
    return {
        "desiredCPU": quantity.format_cpu(cpu),
        "desiredMemory": quantity.format_bytes(memory),
        "desiredGPU": quantity.format_count(gpu),
        "desiredTPU": quantity.format_count(tpu),
    }


def _condition(previous: list[models.Condition], kind: str, status: bool, reason: str, message: str,
               now: str, generation: int | None) -> dict[str, Any]:
    """A condition that keeps its lastTransitionTime while its status does not change."""
    value = "True" if status else "False"
    old = next((c for c in previous if c.type == kind), None)
    since = old.last_transition_time if old is not None and old.status == value and old.last_transition_time else now
    out: dict[str, Any] = {"type": kind, "status": value, "reason": reason, "message": message,
                           "lastTransitionTime": since}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def cluster_status(cluster: models.RayCluster, pods: Sequence[observed.PodView],
                   head_service: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The whole .status to write (merge-patch it; a None value removes a field).

    `now` is an RFC 3339 time such as "2025-01-01T00:00:00Z". Conditions other than the four
    computed here (e.g. ReplicaFailure, set by a handler on an API error) are kept as they were.
    """
    spec = cluster.spec
    previous = cluster.status or models.RayClusterStatus()
    generation = cluster.metadata.generation
    live = [p for p in pods if p.alive]
    live_heads = observed.heads(live)
    live_workers = observed.workers(live)
    head = live_heads[0] if live_heads else None
    groups = spec.worker_group_specs
    desired_workers = sum(scaling.desired_pods(spec, g) for g in groups)
    ready_workers = sum(1 for p in live_workers if p.ready)
    head_ready = head is not None and head.ready
    all_ready = head_ready and ready_workers >= desired_workers
    suspended = bool(spec.suspend) and not live

    state: str | None = previous.state
    if suspended:
        state = models.ClusterState.SUSPENDED.value
    elif all_ready or (previous.state == models.ClusterState.READY.value and head_ready):
        state = models.ClusterState.READY.value
    elif previous.state == models.ClusterState.SUSPENDED.value:
        state = None
    transitions = dict(previous.state_transition_times)
    if state is not None and state != previous.state:
        transitions[state] = now

    if head is None:
        head_reason, head_message = "HeadPodNotFound", "the head Pod does not exist yet"
    elif head.ready:
        head_reason, head_message = "HeadPodRunningAndReady", f"head Pod {head.name} is running and ready"
    else:
        head_reason, head_message = "HeadPodNotReady", f"head Pod {head.name} is {head.phase} and not ready"
    was_provisioned = any(c.type == PROVISIONED and c.status == "True" for c in previous.conditions)
    provisioned = was_provisioned or all_ready
    conditions = [
        c.to_manifest() for c in previous.conditions
        if c.type not in (HEAD_POD_READY, PROVISIONED, SUSPENDING, SUSPENDED)
    ]
    conditions += [
        _condition(previous.conditions, HEAD_POD_READY, head_ready, head_reason, head_message, now, generation),
        _condition(previous.conditions, PROVISIONED, provisioned,
                   "AllPodRunningAndReadyFirstTime" if provisioned else "RayClusterPodsProvisioning",
                   "all Pods were running and ready" if provisioned else "waiting for all Pods to be ready",
                   now, generation),
        _condition(previous.conditions, SUSPENDING, bool(spec.suspend) and not suspended,
                   "RayClusterSuspending" if spec.suspend else "RayClusterNotSuspending",
                   "deleting the cluster's Pods" if spec.suspend and not suspended else "", now, generation),
        _condition(previous.conditions, SUSPENDED, suspended,
                   "RayClusterSuspended" if suspended else "RayClusterNotSuspended",
                   "all Pods are deleted" if suspended else "", now, generation),
    ]

    service_ip = None
    if head_service is not None:
        cluster_ip = (head_service.get("spec") or {}).get("clusterIP")
        service_ip = cluster_ip if cluster_ip and cluster_ip != "None" else (head.pod_ip if head else None)
    status: dict[str, Any] = {
        "state": state,
        "stateTransitionTimes": transitions,
        "desiredWorkerReplicas": desired_workers,
        "availableWorkerReplicas": sum(1 for p in live_workers if p.running),
        "readyWorkerReplicas": ready_workers,
        "minWorkerReplicas": sum(g.min_replicas * g.num_of_hosts for g in groups),
        "maxWorkerReplicas": min(models.MAX_INT32, sum(g.max_replicas * g.num_of_hosts for g in groups)),
        "head": {
            "podName": head.name if head else None,
            "podIP": head.pod_ip if head else None,
            "serviceName": names.cluster_head_service_name(cluster),
            "serviceIP": service_ip,
        },
        "endpoints": service.endpoints(head_service) if head_service else {},
        "conditions": conditions,
        "lastUpdateTime": now,
        "observedGeneration": generation,
    }
    status.update(desired_resources(spec))
    return status


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8 (ending in " ..." when cut), never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:max(0, limit - len(_CUT))].decode("utf-8", errors="ignore") + _CUT


def bounded(status: dict[str, Any]) -> dict[str, Any]:
    """`status` with its reason/message and every condition's reason/message cut to what the API allows.

    Use it on every status before comparing it with the stored one and writing it.
    """
    out = dict(status)
    for key in ("reason", "message"):
        if isinstance(out.get(key), str):
            out[key] = truncate(out[key], CONDITION_MESSAGE_MAX if key == "message" else REASON_MAX)
    if isinstance(out.get("conditions"), list):
        conditions = []
        for condition in out["conditions"]:
            if isinstance(condition, dict):
                condition = dict(condition)
                if isinstance(condition.get("message"), str):
                    condition["message"] = truncate(condition["message"], CONDITION_MESSAGE_MAX)
                if isinstance(condition.get("reason"), str):
                    condition["reason"] = truncate(condition["reason"], REASON_MAX)
            conditions.append(condition)
        out["conditions"] = conditions
    return out


# Timestamps that change on every write without saying anything new: lastUpdateTime, and a condition's
# lastTransitionTime (a condition whose status flips differs in its status anyway).
_NOISE = ("lastUpdateTime", "lastTransitionTime")


def _without_noise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_noise(v) for k, v in value.items() if v is not None and k not in _NOISE}
    if isinstance(value, list):
        return [_without_noise(v) for v in value]
    return value


def unchanged(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether writing status `new` over `old` would change nothing but timestamps (lastUpdateTime, a
    condition's lastTransitionTime) or null fields."""
    return bool(_without_noise(new) == _without_noise(old))
