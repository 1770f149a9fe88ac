"""autoscaler.capacity and autoscaler.policy: group capacity, bin-packing, limits, idle scale-down."""

from __future__ import annotations

import dataclasses
from typing import Any

from kray_operator import models
from kray_operator.autoscaler import capacity, policy
from kray_operator.autoscaler.capacity import Demand, Node, PlacementGroupDemand


def group(name: str = "cpu", cpus: float = 1, gpus: float = 0, lo: int = 0, hi: int = 3, replicas: int = 0,
          pods: tuple[str, ...] = (), **kw: Any) -> policy.Group:
    cap = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}
    return policy.Group(name, cap, lo, hi, replicas, pods, **kw)


def node(pod: str, grp: str = "cpu", cpus: float = 1, free: float | None = None, idle: float | None = None) -> Node:
    return Node(node_id=pod, is_head=False, total={"CPU": cpus}, available={"CPU": cpus if free is None else free},
                group=grp, pod=pod, idle_s=idle)


HEAD = Node("head", True, {"CPU": 0.0}, {"CPU": 0.0}, "", "h", None)


def test_capacity_from_start_params_then_limits() -> None:
    spec = models.WorkerGroupSpec.model_validate({
        "groupName": "g", "rayStartParams": {"num-cpus": "2", "resources": '"{\\"A\\": 3}"'},
        "template": {"spec": {"containers": [{"name": "k", "image": "i", "resources": {
            "limits": {"cpu": "4", "memory": "1Gi", "nvidia.com/gpu": 1}}}]}}})
    assert capacity.group_capacity(spec) == {"CPU": 2.0, "GPU": 1.0, "memory": 2.0**30, "A": 3.0}
    bare = models.WorkerGroupSpec.model_validate({
        "groupName": "g", "template": {"spec": {"containers": [{"name": "k", "image": "i"}]}}})
    assert capacity.group_capacity(bare) is None


def test_three_tasks_start_three_one_cpu_workers() -> None:
    decision = policy.decide([group()], Demand((HEAD,), tasks=({"CPU": 1},) * 3))
    assert decision.changes == (policy.GroupChange("cpu", 3),)
    assert decision.infeasible == ()


def test_free_capacity_first_and_starting_nodes_count() -> None:
    # one joined node with a free CPU, and one Pod that has not joined yet: two tasks need nothing new
    decision = policy.decide([group(replicas=2, pods=("a", "b"))],
                             Demand((HEAD, node("a")), tasks=({"CPU": 1},) * 2))
    assert decision.changes == ()


def test_max_replicas_bounds_and_unmet_counted() -> None:
    decision = policy.decide([group(hi=3)], Demand((HEAD,), tasks=({"CPU": 1},) * 10))
    assert decision.changes == (policy.GroupChange("cpu", 3),)
    assert decision.unmet == 7 and decision.infeasible == ()


def test_cheapest_group_that_fits_and_packing() -> None:
    small, big = group("small", cpus=1), group("big", cpus=4)
    decision = policy.decide([big, small], Demand((HEAD,), tasks=({"CPU": 2}, {"CPU": 1}, {"CPU": 1})))
    # the 2-CPU shape needs a big node; the two 1-CPU shapes pack onto its remaining 2 CPUs
    assert decision.changes == (policy.GroupChange("big", 1),)


def test_gpu_groups_only_for_gpu_demand_and_infeasible_reported() -> None:
    gpu = group("gpu", cpus=4, gpus=1)
    decision = policy.decide([gpu], Demand((HEAD,), tasks=({"CPU": 1},)))
    assert decision.changes == ()
    assert decision.infeasible == ("infeasible: {CPU: 1} fits no worker group",)
    decision = policy.decide([group(), gpu], Demand((HEAD,), tasks=({"CPU": 1, "GPU": 1}, {"CPU": 1})))
    assert set(decision.changes) == {policy.GroupChange("gpu", 1)}  # the CPU task fits the GPU node's rest
    decision = policy.decide([group()], Demand((HEAD,), tasks=({"GPU": 1},) * 2))
    assert decision.changes == () and decision.infeasible == ("infeasible: {GPU: 1} fits no worker group",)


def test_placement_group_strategies() -> None:
    two = (PlacementGroupDemand("STRICT_SPREAD", ({"CPU": 1}, {"CPU": 1})),)
    assert policy.decide([group(cpus=2)], Demand((HEAD,), placement_groups=two)).changes == (
        policy.GroupChange("cpu", 2),)
    pack = (PlacementGroupDemand("STRICT_PACK", ({"CPU": 1}, {"CPU": 1})),)
    assert policy.decide([group(cpus=2)], Demand((HEAD,), placement_groups=pack)).changes == (
        policy.GroupChange("cpu", 1),)
    assert policy.decide([group(cpus=1)], Demand((HEAD,), placement_groups=pack)).infeasible == (
        "infeasible: {CPU: 2} fits no worker group",)


def test_request_resources_count_total_capacity_and_hold_nodes() -> None:
    busy = node("a", free=0)
    decision = policy.decide([group(replicas=1, pods=("a",))], Demand((HEAD, busy), requests=({"CPU": 1},) * 2))
    assert decision.changes == (policy.GroupChange("cpu", 2),)  # one requested CPU is on "a" already
    idle = node("a", idle=999)
    held = policy.decide([group(replicas=1, pods=("a",))], Demand((HEAD, idle), requests=({"CPU": 1},)))
    assert held.changes == ()


def test_conservative_mode_starts_no_more_than_joined() -> None:
    assert policy.decide([group(hi=9)], Demand((HEAD,), tasks=({"CPU": 1},) * 5),
                         mode=policy.CONSERVATIVE).changes == (policy.GroupChange("cpu", 1),)
    joined = (HEAD, node("a", free=0), node("b", free=0))
    decision = policy.decide([group(hi=9, replicas=2, pods=("a", "b"))], Demand(joined, tasks=({"CPU": 1},) * 5),
                             mode=policy.CONSERVATIVE)
    assert decision.changes == (policy.GroupChange("cpu", 4),)
    assert policy.decide([group(hi=9)], Demand((HEAD,), tasks=({"CPU": 1},) * 5),
                         mode=policy.AGGRESSIVE).changes == (policy.GroupChange("cpu", 5),)


def test_idle_scale_down_respects_timeout_min_and_busy_nodes() -> None:
    nodes = (HEAD, node("a", idle=70), node("b", idle=200), node("c", idle=5), node("d", free=0))
    g = group(lo=1, hi=5, replicas=4, pods=("a", "b", "c", "d"))
    decision = policy.decide([g], Demand(nodes))
    assert decision.changes == (policy.GroupChange("cpu", 2, ("b", "a")),)
    assert policy.decide([g], Demand(nodes), idle_timeout_s=100).changes == (policy.GroupChange("cpu", 3, ("b",)),)
    floor = group(lo=3, hi=5, replicas=4, pods=("a", "b", "c", "d"))
    assert policy.decide([floor], Demand(nodes)).changes == (policy.GroupChange("cpu", 3, ("b",)),)
    # pending demand lands on the least idle node with a free CPU: that node stays
    assert policy.decide([g], Demand(nodes, tasks=({"CPU": 1},))).changes == (policy.GroupChange("cpu", 2, ("b", "a")),)
    two = (HEAD, node("a", idle=70), node("b", idle=200))
    assert policy.decide([group(replicas=2, pods=("a", "b"))], Demand(two, tasks=({"CPU": 1},))).changes == (
        policy.GroupChange("cpu", 1, ("b",)),)
    # a group whose previous workersToDelete is not done yet is left alone; so is the head
    assert policy.decide([group(hi=5, replicas=4, pods=("a", "b", "c", "d"), deleting=True)], Demand(nodes)).changes == ()
    # the group's own idleTimeoutSeconds wins over the cluster's
    own = group(lo=0, hi=5, replicas=4, pods=("a", "b", "c", "d"), idle_timeout_s=3)
    assert policy.decide([own], Demand(nodes)).change("cpu") == policy.GroupChange("cpu", 1, ("b", "a", "c"))


def test_read_demand_maps_labels_and_skips_dead_nodes() -> None:
    report = {
        "demand": [{"CPU": 1}, {"CPU": 2}], "task_demand": [{"CPU": 1}],
        "placement_groups": [{"strategy": "STRICT_SPREAD", "bundles": [{"CPU": 2}]}],
        "resource_requests": [{"CPU": 4}],
        "nodes": [
            {"node_id": "x", "alive": True, "is_head": False, "resources_total": {"CPU": 1},
             "resources_available": {"CPU": 1}, "labels": {capacity.GROUP_LABEL: "cpu", capacity.POD_LABEL: "p"},
             "idle_s": 3.5},
            {"node_id": "y", "alive": False},
        ],
    }
    demand = capacity.read_demand(report)
    assert demand.tasks == ({"CPU": 1.0},)
    assert demand.placement_groups == (PlacementGroupDemand("STRICT_SPREAD", ({"CPU": 2.0},)),)
    assert demand.requests == ({"CPU": 4.0},)
    assert demand.nodes == (Node("x", False, {"CPU": 1.0}, {"CPU": 1.0}, "cpu", "p", 3.5),)


def test_the_cluster_worker_limit_is_the_sum_of_max_replicas_times_hosts_and_bounds_new_nodes() -> None:
    small, big = group("small", hi=3), group("big", cpus=2, hi=2, hosts=2)
    assert policy.max_workers([small, big]) == 3 + 2 * 2
    demand = Demand((HEAD,), tasks=({"CPU": 1},) * 10)
    # a lower cluster-wide limit (worker Pods, across groups) stops the cheapest group short of its max
    limited = policy.decide([small, group("other", cpus=2, hi=5)], demand, limit=4)
    assert limited.changes == (policy.GroupChange("small", 3), policy.GroupChange("other", 1))
    assert limited.unmet > 0
    # Pods already running count against it: with 3 of 4 used, one more 1-CPU node starts
    running = (HEAD, node("a", free=0), node("b", free=0), node("c", free=0))
    busy = policy.decide([group("small", hi=9, replicas=3, pods=("a", "b", "c"))], Demand(running, tasks=({"CPU": 1},) * 5),
                         limit=4)
    assert busy.changes == (policy.GroupChange("small", 4),)
    # a multi-host replica starts only when all its hosts fit under the limit
    assert policy.decide([group("mh", hosts=2, hi=5)], Demand((HEAD,), tasks=({"CPU": 1},)), limit=1).changes == ()


def test_multi_host_groups_grow_by_whole_replicas_of_num_of_hosts_nodes() -> None:
    mh = group("mh", cpus=1, hi=3, hosts=2)
    # three 1-CPU tasks need three nodes: two replicas of two hosts each (four nodes)
    assert policy.decide([mh], Demand((HEAD,), tasks=({"CPU": 1},) * 3)).changes == (
        policy.GroupChange("mh", 2, (), 2),)
    # a STRICT_SPREAD pair fits the two hosts of one replica
    pair = (PlacementGroupDemand("STRICT_SPREAD", ({"CPU": 1}, {"CPU": 1})),)
    assert policy.decide([mh], Demand((HEAD,), placement_groups=pair)).changes == (policy.GroupChange("mh", 1, (), 2),)
    # a replica whose Pods have not all joined still counts as capacity on the way
    starting = group("mh", cpus=1, hi=3, hosts=2, replicas=1, pods=("r1a", "r1b"), replica_pods=(("r1a", "r1b"),))
    assert policy.decide([starting], Demand((HEAD, node("r1a", "mh")), tasks=({"CPU": 1},) * 2)).changes == ()


def test_multi_host_replicas_are_removed_whole_and_only_when_every_host_is_idle() -> None:
    replicas = (("r1a", "r1b"), ("r2a", "r2b"))
    mh = group("mh", hi=3, hosts=2, replicas=2, pods=("r1a", "r1b", "r2a", "r2b"), replica_pods=replicas)
    nodes = (HEAD, node("r1a", "mh", idle=100), node("r1b", "mh", idle=90),
             node("r2a", "mh", idle=500), node("r2b", "mh", free=0))
    decision = policy.decide([mh], Demand(nodes))
    assert decision.changes == (policy.GroupChange("mh", 1, ("r1a", "r1b"), 2),)  # r2 has a busy host
    assert decision.changes[0].replicas_to_delete() == [("r1a", "r1b")]
    all_idle = nodes[:-1] + (node("r2b", "mh", idle=80),)
    both = policy.decide([mh], Demand(all_idle)).change("mh")
    assert both == policy.GroupChange("mh", 0, ("r1a", "r1b", "r2a", "r2b"), 2)  # r1 idle longer (90 > 80)
    floor = dataclasses.replace(mh, min_replicas=1)
    assert policy.decide([floor], Demand(all_idle)).change("mh") == policy.GroupChange("mh", 1, ("r1a", "r1b"), 2)
    # a host that has not joined (no node yet) keeps its replica
    assert policy.decide([mh], Demand(nodes[:2] + nodes[3:4])).changes == ()


def test_a_shape_reported_by_two_raylets_at_once_starts_no_node_once_confirmed() -> None:
    # Pod a joined and runs a spilled task; the head's report still lists that task beside the other one
    cpu = group(replicas=2, pods=("a", "b"))
    moving = Demand((HEAD, node("a", free=0)), tasks=({"CPU": 1},) * 2)
    first = policy.decide([cpu], moving)
    assert first.changes == (policy.GroupChange("cpu", 3),)  # one report alone would start a third Pod
    settled = policy.decide([cpu], Demand((HEAD, node("a", free=0)), tasks=({"CPU": 1},)))
    assert policy.confirm(first, settled, {"cpu": 2}).changes == ()
    # demand that stays grows the group, by no more than the smaller of the two rounds
    more = policy.decide([cpu], Demand((HEAD, node("a", free=0)), tasks=({"CPU": 1},) * 4))
    assert policy.confirm(more, first, {"cpu": 2}).changes == (policy.GroupChange("cpu", 3),)
    assert policy.confirm(first, more, {"cpu": 2}).changes == (policy.GroupChange("cpu", 3),)


def test_removal_confirmed_only_for_nodes_idle_in_both_rounds() -> None:
    cpu = group(replicas=2, pods=("a", "b"))
    both_idle = policy.decide([cpu], Demand((HEAD, node("a", idle=90), node("b", idle=80))))
    assert both_idle.changes == (policy.GroupChange("cpu", 0, ("a", "b")),)
    b_busy = policy.decide([cpu], Demand((HEAD, node("a", idle=91), node("b", free=0))))
    assert policy.confirm(both_idle, b_busy, {"cpu": 2}).changes == (policy.GroupChange("cpu", 1, ("a",)),)
    neither = policy.decide([cpu], Demand((HEAD, node("a", free=0), node("b", free=0))))
    assert policy.confirm(both_idle, neither, {"cpu": 2}).changes == ()
