"""Views of Pods as the API server returns them: what scaling and status decisions need to know.

Pure parsing of Pod dicts; no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from kray_operator.builders import names

TERMINATED_PHASES = ("Succeeded", "Failed")


@dataclasses.dataclass(frozen=True)
class PodView:
    """One kray Pod: its role, group and health."""

    name: str
    node_type: str = names.WORKER
    group: str = ""
    phase: str = "Pending"
    ready: bool = False
    deleting: bool = False
    pod_ip: str | None = None
    created: str = ""  # RFC 3339 creationTimestamp; sorts chronologically as a string
    replica_index: int | None = None  # KubeRay's ray.io/worker-group-replica-index label
    replica_name: str | None = None  # ray.io/worker-group-replica-name: its multi-host replica

    @property
    def terminated(self) -> bool:
        """Its containers have stopped for good (phase Succeeded or Failed): it must be replaced."""
        return self.phase in TERMINATED_PHASES

    @property
    def alive(self) -> bool:
        """Neither being deleted nor terminated: it counts towards the desired replicas."""
        return not self.deleting and not self.terminated

    @property
    def running(self) -> bool:
        """Alive and in phase Running."""
        return self.alive and self.phase == "Running"

    @classmethod
    def from_manifest(cls, pod: dict[str, Any]) -> PodView:
        """Parse a Pod dict (as a list or watch call returns it)."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        return cls(
            name=meta.get("name", ""),
            node_type=labels.get(names.NODE_TYPE_LABEL, ""),
            group=labels.get(names.GROUP_LABEL, ""),
            phase=status.get("phase") or "Pending",
            ready=ready,
            deleting=meta.get("deletionTimestamp") is not None,
            pod_ip=status.get("podIP"),
            created=meta.get("creationTimestamp") or "",
            replica_index=_index(labels.get(names.RAY_REPLICA_INDEX_LABEL)),
            replica_name=labels.get(names.RAY_REPLICA_NAME_LABEL),
        )


def _index(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def from_manifests(pods: Iterable[dict[str, Any]]) -> list[PodView]:
    """PodViews of many Pod dicts."""
    return [PodView.from_manifest(p) for p in pods]


def heads(pods: Iterable[PodView]) -> list[PodView]:
    """The head Pods among `pods`."""
    return [p for p in pods if p.node_type == names.HEAD]


def workers(pods: Iterable[PodView], group: str | None = None) -> list[PodView]:
    """The worker Pods among `pods` (of one group when given)."""
    return [p for p in pods if p.node_type == names.WORKER and (group is None or p.group == group)]
