"""The autoscaler's decision for one round: bin-pack the head's demand onto free capacity, then onto new
nodes of the cheapest worker group that fits, within each group's and the cluster's limits; remove nodes
idle for the timeout (never below minReplicas). A multi-host group (numOfHosts > 1) grows and shrinks by
whole replicas of numOfHosts nodes.

Pure: a Demand and the groups' specs in, a Decision out; no I/O, no clock (the head reports idle time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from kray_operator.autoscaler import capacity

DEFAULT_IDLE_TIMEOUT_S = 60.0
DEFAULT, AGGRESSIVE, CONSERVATIVE = "Default", "Aggressive", "Conservative"


@dataclasses.dataclass(frozen=True)
class Group:
    """A worker group as the spec has it now."""

    name: str
    capacity: capacity.Shape | None  # one node's resources; None when unknown (never started for demand)
    min_replicas: int
    max_replicas: int
    replicas: int  # the current (clamped) replicas
    pods: tuple[str, ...] = ()  # its worker Pods that are not being deleted
    deleting: bool = False  # scaleStrategy.workersToDelete is not yet empty: leave the group alone
    idle_timeout_s: float | None = None  # the group's own idleTimeoutSeconds, else the cluster's
    hosts: int = 1  # numOfHosts: nodes (Pods) per replica; `capacity` is one of them
    replica_pods: tuple[tuple[str, ...], ...] = ()  # multi-host: each complete replica's Pods


def max_workers(groups: Sequence[Group]) -> int:
    """The cluster's worker limit as KubeRay's autoscaler config has it: the sum of the groups'
    maxReplicas × numOfHosts (worker Pods, the head not counted)."""
    return sum(g.max_replicas * g.hosts for g in groups)


@dataclasses.dataclass(frozen=True)
class GroupChange:
    group: str
    replicas: int
    workers_to_delete: tuple[str, ...] = ()  # every Pod of each replica removed, replica by replica
    hosts: int = 1

    def replicas_to_delete(self) -> list[tuple[str, ...]]:
        """workers_to_delete cut into replicas (numOfHosts Pods each)."""
        pods = self.workers_to_delete
        return [pods[i:i + self.hosts] for i in range(0, len(pods), self.hosts)]


@dataclasses.dataclass(frozen=True)
class Decision:
    changes: tuple[GroupChange, ...]
    infeasible: tuple[str, ...]  # one line per shape that fits no worker group
    unmet: int = 0  # shapes that fit a group but wait for maxReplicas or upscalingMode

    def change(self, group: str) -> GroupChange | None:
        return next((c for c in self.changes if c.group == group), None)


@dataclasses.dataclass
class _Slot:
    free: capacity.Shape
    group: str
    node: capacity.Node | None = None  # None: a node that is starting or that this round starts
    used: bool = False


class _Packer:
    def __init__(self, groups: Sequence[Group], nodes: Sequence[capacity.Node], mode: str, limit: int) -> None:
        self.groups = {g.name: g for g in groups}
        self.new: dict[str, int] = {g.name: 0 for g in groups}  # replicas started this round
        self.slots: list[_Slot] = []
        joined = {g.name: 0 for g in groups}
        for node in nodes:
            if node.group in joined:
                joined[node.group] += 1
        starting = 0
        for group in groups:
            pending = max(0, group.replicas * group.hosts - joined[group.name])
            starting += pending
            self.slots += [_Slot(dict(group.capacity), group.name) for _ in range(pending) if group.capacity]
        self.budget: float = float("inf")  # Pods that may start this round
        if mode == CONSERVATIVE:  # as KubeRay: no more starting Pods than Pods already in the cluster
            self.budget = max(1, sum(joined.values())) - starting
        self.room = limit - sum(g.replicas * g.hosts for g in groups)  # worker Pods left under the cluster's limit
        self.infeasible: list[str] = []
        self.unmet = 0

    def _cheapest(self, shape: capacity.Shape) -> Group | None:
        """The smallest group (fewest GPUs, then CPUs, then memory) a new node of which fits `shape`."""
        fitting = [g for g in self.groups.values() if g.capacity is not None and capacity.fits(shape, g.capacity)
                   and (capacity.needs_gpu(shape) or not g.capacity.get("GPU"))]
        fitting.sort(key=lambda g: (g.capacity.get("GPU", 0.0), g.capacity.get("CPU", 0.0),  # type: ignore[union-attr]
                                    g.capacity.get("memory", 0.0), g.name))  # type: ignore[union-attr]
        for group in fitting:
            if (group.replicas + self.new[group.name] < group.max_replicas and not group.deleting
                    and group.hosts <= self.room):
                return group
        if fitting:
            self.unmet += 1
            return None
        self.infeasible.append(f"infeasible: {capacity.describe(shape)} fits no worker group")
        return None

    def _start(self, shape: capacity.Shape) -> int | None:
        """Start a replica of the cheapest group that fits `shape` (numOfHosts new slots); the first's index."""
        if self.budget < 1:
            self.unmet += 1
            return None
        group = self._cheapest(shape)
        if group is None or group.capacity is None:
            return None
        self.new[group.name] += 1
        self.budget -= group.hosts
        self.room -= group.hosts
        first = len(self.slots)
        self.slots += [_Slot(dict(group.capacity), group.name) for _ in range(group.hosts)]
        return first

    def place(self, shape: capacity.Shape, avoid: Iterable[int] = ()) -> int | None:
        """Put `shape` on the first slot it fits (skipping `avoid`), else a new node; its slot index."""
        skip = set(avoid)
        for index, slot in enumerate(self.slots):
            if index not in skip and capacity.fits(shape, slot.free):
                capacity.take(shape, slot.free)
                slot.used = True
                return index
        started = self._start(shape)
        if started is None:
            return None
        capacity.take(shape, self.slots[started].free)
        self.slots[started].used = True
        return started


def _largest_first(shapes: Iterable[capacity.Shape]) -> list[capacity.Shape]:
    return sorted(shapes, key=lambda s: (s.get("GPU", 0.0), s.get("CPU", 0.0), s.get("memory", 0.0)), reverse=True)


def _pack(packer: _Packer, demand: capacity.Demand) -> None:
    for pg in demand.placement_groups:
        if pg.strategy == "STRICT_PACK":
            packer.place(capacity.add(pg.bundles))
        elif pg.strategy == "STRICT_SPREAD":
            used: list[int] = []
            for bundle in _largest_first(pg.bundles):
                index = packer.place(bundle, avoid=used)
                if index is not None:
                    used.append(index)
        else:  # PACK and SPREAD place bundles where they fit
            for bundle in _largest_first(pg.bundles):
                packer.place(bundle)
    for shape in _largest_first(demand.tasks):
        packer.place(shape)


def _removable(group: Group, nodes: Sequence[capacity.Node], busy: set[str],
               timeout: float) -> list[tuple[float, tuple[str, ...]]]:
    """The group's replicas whose every node has been idle for `timeout` and takes no demand, each with
    its idle time (its least idle node's), longest idle first."""
    by_pod = {n.pod: n for n in nodes if n.group == group.name}
    replicas = group.replica_pods if group.hosts > 1 else tuple((p,) for p in group.pods)
    out = []
    for pods in replicas:
        members = [by_pod.get(p) for p in pods]
        if all(n is not None and n.idle_s is not None and n.idle_s >= timeout and n.node_id not in busy
               for n in members):
            out.append((min(n.idle_s or 0.0 for n in members if n is not None), pods))
    out.sort(key=lambda r: (-r[0], r[1]))
    return out


def decide(groups: Sequence[Group], demand: capacity.Demand, mode: str = DEFAULT,
           idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S, limit: int | None = None) -> Decision:
    """This round's replicas and workersToDelete per group, and the demand that fits no group.

    1. `request_resources` bundles are packed onto the cluster's total capacity (running work does not
       count against them), new nodes started for what does not fit.
    2. Placement groups (STRICT_SPREAD one node per bundle, STRICT_PACK one node for all) and task/actor
       shapes are packed onto free capacity: alive nodes, starting nodes, the nodes of step 1, then new ones.
    3. A worker node idle for its timeout that no demand landed on is removed, oldest idle first, unless
       its group starts nodes this round or is at minReplicas; in a multi-host group only a replica all
       of whose nodes are so idle, as a whole.
    New nodes start within each group's maxReplicas and the cluster's worker limit (`limit` worker Pods;
    default `max_workers(groups)`, as KubeRay's).
    """
    by_name = {g.name: g for g in groups}
    # Nodes of Pods being deleted are going: they hold no capacity (the head and foreign nodes stay).
    nodes = [n for n in demand.nodes if n.group not in by_name or n.pod in by_name[n.group].pods]
    packer = _Packer(groups, nodes, mode, max_workers(groups) if limit is None else limit)
    # Busy nodes first, then the least idle: demand lands where it keeps the longest idle nodes removable.
    existing = [_Slot(dict(n.total), n.group, n) for n in sorted(nodes, key=lambda n: n.idle_s or 0.0)]
    packer.slots = existing + packer.slots
    for bundle in _largest_first(demand.requests):
        packer.place(bundle)
    held = {slot.node.node_id for slot in existing if slot.used and slot.node is not None}
    for slot in packer.slots:  # the requested capacity is kept, not used: tasks may run there
        if slot.node is not None:
            slot.free = dict(slot.node.available)
        else:
            slot.free = dict(packer.groups[slot.group].capacity or {})
        slot.used = False
    _pack(packer, demand)
    busy = held | {slot.node.node_id for slot in packer.slots if slot.used and slot.node is not None}
    changes = []
    for group in groups:
        added = packer.new[group.name]
        remove: list[tuple[str, ...]] = []
        if not added and not group.deleting:
            timeout = group.idle_timeout_s if group.idle_timeout_s is not None else idle_timeout_s
            idle = _removable(group, nodes, busy, timeout)
            remove = [pods for _, pods in idle[:max(0, group.replicas - group.min_replicas)]]
        replicas = min(group.max_replicas, group.replicas + added) - len(remove)
        if replicas != group.replicas or remove:
            changes.append(GroupChange(group.name, replicas, tuple(p for pods in remove for p in pods), group.hosts))
    return Decision(tuple(changes), tuple(dict.fromkeys(packer.infeasible)), packer.unmet)


def confirm(first: Decision, second: Decision, replicas: Mapping[str, int | None]) -> Decision:
    """`first` as far as `second`, decided on a later report, agrees with it (`replicas`: each group's
    replicas in the spec now). A group grows by no more than both rounds add: raylets report apart, so
    a shape moving from one raylet to another may show at both in one report, never in two reports far
    enough apart. Only replicas idle in both rounds are removed: one that became busy stays (in a
    multi-host group its whole replica stays)."""
    changes = []
    for change in first.changes:
        again = second.change(change.group)
        current = replicas.get(change.group)
        if not change.workers_to_delete:
            if current is not None and change.replicas > current:
                grown = min(change.replicas, max(current, again.replicas if again is not None else current))
                if grown != current:
                    changes.append(GroupChange(change.group, grown, (), change.hosts))
            else:
                changes.append(change)
            continue
        listed = set(again.workers_to_delete) if again is not None else set()
        still_idle = [r for r in change.replicas_to_delete() if listed.issuperset(r)]
        dropped = len(change.replicas_to_delete()) - len(still_idle)
        remove = tuple(p for replica in still_idle for p in replica)
        if remove or change.replicas + dropped != current:
            changes.append(GroupChange(change.group, change.replicas + dropped, remove, change.hosts))
    return Decision(tuple(changes), first.infeasible, first.unmet)
