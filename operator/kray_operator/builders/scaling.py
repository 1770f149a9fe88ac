"""Replica clamping and the diff between a RayCluster's spec and its observed Pods.

`plan` answers: which head/worker Pods to create and which to delete; `creations` names the Pods to
create (replica index; in multi-host groups, as KubeRay's, the replica name and host index, numOfHosts
Pods per replica, created and deleted together). Pure; no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from kray_operator import models
from kray_operator.builders import names, observed


def clamp_replicas(group: models.WorkerGroupSpec) -> int:
    """replicas clamped into [minReplicas, maxReplicas]; unset replicas means minReplicas."""
    if group.min_replicas > group.max_replicas:
        raise ValueError(
            f"worker group {group.group_name!r}: minReplicas ({group.min_replicas}) > maxReplicas "
            f"({group.max_replicas}); lower minReplicas or raise maxReplicas"
        )
    wanted = group.min_replicas if group.replicas is None else group.replicas
    return max(group.min_replicas, min(wanted, group.max_replicas))


def desired_pods(spec: models.RayClusterSpec, group: models.WorkerGroupSpec) -> int:
    """Worker Pods wanted for `group`: clamped replicas times numOfHosts, 0 when suspended."""
    if spec.suspend or group.suspend:
        return 0
    return clamp_replicas(group) * group.num_of_hosts


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    """What to do with one worker group."""

    group: str
    desired: int
    alive: int  # alive Pods before the plan
    create: int
    delete: tuple[str, ...]
    # The group listed workersToDelete: clear the list once `delete` has succeeded.
    clear_workers_to_delete: bool = False
    hosts: int = 1  # numOfHosts: Pods per replica (`create` is then a multiple of it)


@dataclasses.dataclass(frozen=True)
class PodCreation:
    """One worker Pod to create: its group, replica index and, in a multi-host group, replica and host."""

    group: str
    replica_index: int
    replica_name: str | None = None
    host_index: int | None = None


@dataclasses.dataclass(frozen=True)
class ClusterPlan:
    """What to do with a whole cluster's Pods."""

    create_head: bool
    delete_heads: tuple[str, ...]
    groups: tuple[GroupPlan, ...]
    # Worker Pods of groups that are no longer in the spec.
    orphans: tuple[str, ...]

    @property
    def to_delete(self) -> list[str]:
        """Every Pod name to delete, heads first."""
        out = list(self.delete_heads)
        for group in self.groups:
            out.extend(group.delete)
        out.extend(self.orphans)
        return out

    @property
    def to_create(self) -> dict[str, int]:
        """Worker Pods to create, by group (groups with nothing to create are left out)."""
        return {g.group: g.create for g in self.groups if g.create}

    @property
    def idle(self) -> bool:
        """Nothing to create or delete."""
        return not self.create_head and not self.to_delete and not self.to_create


def scale_down_order(pods: Sequence[observed.PodView]) -> list[observed.PodView]:
    """Pods in the order they should go: not yet ready first, then the newest (then by name, reversed)."""
    newest_first = sorted(pods, key=lambda p: (p.created, p.name), reverse=True)
    return sorted(newest_first, key=lambda p: p.ready)


def plan_group(spec: models.RayClusterSpec, group: models.WorkerGroupSpec,
               pods: Sequence[observed.PodView]) -> GroupPlan:
    """The diff for one group.

    1. Pods being deleted are ignored; terminated Pods (Succeeded/Failed) are deleted and replaced.
    2. Pods named in scaleStrategy.workersToDelete are deleted first and do not count.
    3. Then Pods are created up to, or deleted down to, the desired count; when deleting, Pods not
       yet ready go first, then the newest.
    """
    mine = [p for p in observed.workers(pods, group.group_name) if not p.deleting]
    if group.num_of_hosts > 1:
        return _plan_multi_host(spec, group, mine)
    delete = [p.name for p in mine if p.terminated]
    listed = set(group.scale_strategy.workers_to_delete)
    remaining = []
    for pod in mine:
        if pod.terminated:
            continue
        if pod.name in listed:
            delete.append(pod.name)
        else:
            remaining.append(pod)
    desired = desired_pods(spec, group)
    create = max(0, desired - len(remaining))
    excess = max(0, len(remaining) - desired)
    if excess:
        delete.extend(p.name for p in scale_down_order(remaining)[:excess])
    return GroupPlan(
        group=group.group_name,
        desired=desired,
        alive=sum(1 for p in mine if p.alive),
        create=create,
        delete=tuple(delete),
        clear_workers_to_delete=bool(listed),
    )


def replicas_of(pods: Sequence[observed.PodView]) -> dict[str, list[observed.PodView]]:
    """A multi-host group's Pods by ray.io/worker-group-replica-name ("" for Pods without one)."""
    out: dict[str, list[observed.PodView]] = {}
    for pod in pods:
        out.setdefault(pod.replica_name or "", []).append(pod)
    return out


def _plan_multi_host(spec: models.RayClusterSpec, group: models.WorkerGroupSpec,
                     mine: Sequence[observed.PodView]) -> GroupPlan:
    """The diff for a group of numOfHosts > 1, replica by replica (KubeRay's rules):

    1. A replica that is incomplete (fewer or more Pods than numOfHosts, or Pods without a replica name)
       or has a terminated Pod is deleted whole, and replaced.
    2. A replica with any Pod in scaleStrategy.workersToDelete is deleted whole.
    3. Then whole replicas are created up to, or deleted down to, the desired replicas; not-ready
       replicas go first, then the newest.
    """
    hosts = group.num_of_hosts
    listed = set(group.scale_strategy.workers_to_delete)
    delete: list[str] = []
    whole: list[list[observed.PodView]] = []
    for name, members in replicas_of(mine).items():
        broken = not name or len(members) != hosts or any(p.terminated for p in members)
        if broken or any(p.name in listed for p in members):
            delete.extend(p.name for p in members)
        else:
            whole.append(members)
    desired = desired_pods(spec, group) // hosts
    excess = max(0, len(whole) - desired)
    if excess:
        # not ready first, then the newest: the same order as single Pods, a replica as its newest Pod
        order = sorted(whole, key=lambda r: max((p.created, p.name) for p in r), reverse=True)
        order.sort(key=lambda r: all(p.ready for p in r))
        for members in order[:excess]:
            delete.extend(p.name for p in members)
    return GroupPlan(
        group=group.group_name, desired=desired * hosts, alive=sum(1 for p in mine if p.alive),
        create=max(0, desired - len(whole)) * hosts, delete=tuple(delete),
        clear_workers_to_delete=bool(listed), hosts=hosts,
    )


def creations(cluster_plan: ClusterPlan, remaining: Sequence[observed.PodView],
              suffix: Callable[[], str]) -> list[PodCreation]:
    """The worker Pods `cluster_plan` creates, given the Pods that stay (`remaining`): the lowest free
    replica indices; in a multi-host group, numOfHosts Pods per new replica, named `<group>-<suffix()>`."""
    out: list[PodCreation] = []
    for group in cluster_plan.groups:
        if not group.create:
            continue
        if group.hosts == 1:
            out += [PodCreation(group.group, i) for i in free_replica_indices(remaining, group.group, group.create)]
            continue
        for index in free_replica_indices(remaining, group.group, group.create // group.hosts):
            replica = names.worker_replica_name(group.group, suffix())
            out += [PodCreation(group.group, index, replica, host) for host in range(group.hosts)]
    return out


def free_replica_indices(pods: Sequence[observed.PodView], group: str, count: int) -> list[int]:
    """The `count` lowest ray.io/worker-group-replica-index values no alive Pod of `group` holds."""
    taken = {p.replica_index for p in observed.workers(pods, group) if p.alive and p.replica_index is not None}
    free: list[int] = []
    index = 0
    while len(free) < count:
        if index not in taken:
            free.append(index)
        index += 1
    return free


def plan(spec: models.RayClusterSpec, pods: Sequence[observed.PodView]) -> ClusterPlan:
    """The diff for a whole cluster: one alive head (none when suspended) and every worker group."""
    head_pods = [p for p in observed.heads(pods) if not p.deleting]
    alive_heads = sorted((p for p in head_pods if p.alive), key=lambda p: (p.created, p.name))
    delete_heads = [p.name for p in head_pods if p.terminated]
    if spec.suspend:
        delete_heads.extend(p.name for p in alive_heads)
        create_head = False
    else:
        # Keep the oldest head; extra ones (e.g. from a retried create) go.
        delete_heads.extend(p.name for p in alive_heads[1:])
        create_head = not alive_heads
    known = {g.group_name for g in spec.worker_group_specs}
    orphans = tuple(p.name for p in observed.workers(pods) if p.group not in known and not p.deleting)
    groups = tuple(plan_group(spec, g, pods) for g in spec.worker_group_specs)
    return ClusterPlan(create_head=create_head, delete_heads=tuple(delete_heads), groups=groups, orphans=orphans)
