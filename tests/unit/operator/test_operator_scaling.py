"""builders.scaling: replica clamping and the diff between spec and observed Pods."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from kray_operator import models
from kray_operator.builders import names, observed, scaling

TEMPLATE = {"spec": {"containers": [{"name": "k", "image": "kray:latest"}]}}


def spec_of(*groups: dict[str, Any], suspend: bool = False) -> models.RayClusterSpec:
    return models.RayClusterSpec.model_validate({
        "headGroupSpec": {"template": TEMPLATE},
        "workerGroupSpecs": [{"template": TEMPLATE, **g} for g in groups],
        "suspend": suspend,
    })


def worker(name: str, group: str = "g", phase: str = "Running", ready: bool = True, deleting: bool = False,
           created: str = "2025-01-01T00:00:00Z") -> observed.PodView:
    return observed.PodView(name=name, node_type=names.WORKER, group=group, phase=phase, ready=ready,
                            deleting=deleting, created=created)


def head(name: str = "h", **kw: Any) -> observed.PodView:
    return observed.PodView(name=name, node_type=names.HEAD, group=names.HEAD_GROUP,
                            phase=kw.get("phase", "Running"), ready=True, created=kw.get("created", ""))


@pytest.mark.parametrize(
    "replicas, lo, hi, expect",
    [(None, 0, 5, 0), (None, 2, 5, 2), (3, 0, 5, 3), (9, 0, 5, 5), (0, 2, 5, 2), (4, 4, 4, 4)],
)
def test_clamp(replicas, lo, hi, expect) -> None:
    group = models.WorkerGroupSpec.model_validate(
        {"groupName": "g", "replicas": replicas, "minReplicas": lo, "maxReplicas": hi, "template": TEMPLATE})
    assert scaling.clamp_replicas(group) == expect


def test_clamp_refuses_min_above_max() -> None:
    group = models.WorkerGroupSpec.model_construct(group_name="g", replicas=1, min_replicas=3, max_replicas=1)
    with pytest.raises(ValueError, match="lower minReplicas or raise maxReplicas"):
        scaling.clamp_replicas(group)


def test_desired_pods_counts_hosts_and_suspend() -> None:
    spec = spec_of({"groupName": "g", "replicas": 2, "numOfHosts": 2}, {"groupName": "s", "replicas": 3, "suspend": True})
    assert [scaling.desired_pods(spec, g) for g in spec.worker_group_specs] == [4, 0]
    suspended = spec_of({"groupName": "g", "replicas": 2}, suspend=True)
    assert scaling.desired_pods(suspended, suspended.worker_group_specs[0]) == 0


def test_new_cluster_creates_head_and_workers() -> None:
    plan = scaling.plan(spec_of({"groupName": "g", "replicas": 2}, {"groupName": "h2", "replicas": 1}), [])
    assert plan.create_head and plan.to_create == {"g": 2, "h2": 1} and plan.to_delete == []
    assert not plan.idle


def test_steady_state_is_idle() -> None:
    plan = scaling.plan(spec_of({"groupName": "g", "replicas": 2}), [head(), worker("a"), worker("b")])
    assert plan.idle and plan.groups[0].alive == 2 and plan.groups[0].desired == 2


def test_scale_down_removes_unready_then_newest() -> None:
    pods: list[observed.PodView] = [
        head(),
        worker("old", created="2025-01-01T00:00:00Z"),
        worker("new", created="2025-01-03T00:00:00Z"),
        worker("mid", created="2025-01-02T00:00:00Z"),
        worker("pending", phase="Pending", ready=False, created="2025-01-01T00:00:00Z"),
    ]
    plan = scaling.plan(spec_of({"groupName": "g", "replicas": 2}), pods)
    assert plan.groups[0].delete == ("pending", "new")
    assert scaling.plan(spec_of({"groupName": "g", "replicas": 3}), pods).groups[0].delete == ("pending",)


def test_workers_to_delete_go_first_and_are_replaced_when_still_wanted() -> None:
    spec = spec_of({"groupName": "g", "replicas": 2, "scaleStrategy": {"workersToDelete": ["a", "gone"]}})
    plan = scaling.plan(spec, [head(), worker("a"), worker("b")]).groups[0]
    assert plan.delete == ("a",) and plan.create == 1 and plan.clear_workers_to_delete


def test_workers_to_delete_with_lower_replicas_deletes_only_those() -> None:
    spec = spec_of({"groupName": "g", "replicas": 1, "scaleStrategy": {"workersToDelete": ["b"]}})
    plan = scaling.plan(spec, [head(), worker("a", created="2025-01-01T00:00:00Z"),
                               worker("b", created="2024-01-01T00:00:00Z")]).groups[0]
    assert plan.delete == ("b",) and plan.create == 0


def test_terminated_pods_are_replaced_and_deleting_ones_ignored() -> None:
    spec = spec_of({"groupName": "g", "replicas": 2})
    pods = [head(), worker("dead", phase="Failed", ready=False), worker("leaving", deleting=True), worker("ok")]
    plan = scaling.plan(spec, pods).groups[0]
    assert plan.delete == ("dead",) and plan.create == 1 and plan.alive == 1


def test_min_replicas_floor_and_max_ceiling() -> None:
    pods = [head()] + [worker(f"w{i}") for i in range(5)]
    assert scaling.plan(spec_of({"groupName": "g", "replicas": 9, "maxReplicas": 3}), pods).groups[0].delete == ("w4", "w3")
    assert scaling.plan(spec_of({"groupName": "g", "replicas": 0, "minReplicas": 6}), pods).groups[0].create == 1


def test_orphans_of_removed_groups_are_deleted() -> None:
    plan = scaling.plan(spec_of({"groupName": "g", "replicas": 1}),
                        [head(), worker("a"), worker("x", group="old"), worker("y", group="old", deleting=True)])
    assert plan.orphans == ("x",) and plan.to_delete == ["x"]


def test_suspend_deletes_everything() -> None:
    plan = scaling.plan(spec_of({"groupName": "g", "replicas": 2}, suspend=True), [head(), worker("a"), worker("b")])
    assert not plan.create_head and plan.delete_heads == ("h",)
    assert set(plan.to_delete) == {"h", "a", "b"} and plan.to_create == {}


def test_one_head_kept_and_dead_head_replaced() -> None:
    spec = spec_of()
    plan = scaling.plan(spec, [head("h2", created="2025-01-02T00:00:00Z"), head("h1", created="2025-01-01T00:00:00Z")])
    assert plan.delete_heads == ("h2",) and not plan.create_head
    plan = scaling.plan(spec, [head("h1", phase="Failed")])
    assert plan.delete_heads == ("h1",) and plan.create_head


def test_pod_view_from_manifest() -> None:
    view = observed.PodView.from_manifest({
        "metadata": {"name": "p", "labels": {names.NODE_TYPE_LABEL: "worker", names.GROUP_LABEL: "g"},
                     "creationTimestamp": "2025-01-01T00:00:00Z", "deletionTimestamp": "2025-01-01T00:01:00Z"},
        "status": {"phase": "Running", "podIP": "100.64.0.9", "conditions": [{"type": "Ready", "status": "True"}]},
    })
    assert (view.name, view.group, view.ready, view.deleting, view.pod_ip) == ("p", "g", True, True, "100.64.0.9")
    assert not view.alive and not view.running
    bare = observed.PodView.from_manifest({"metadata": {"name": "q"}})
    assert bare.phase == "Pending" and not bare.ready and bare.alive


def test_free_replica_indices_fill_gaps_first() -> None:
    pods = [dataclasses.replace(worker("a"), replica_index=0), dataclasses.replace(worker("b"), replica_index=2),
            dataclasses.replace(worker("c", deleting=True), replica_index=1),
            dataclasses.replace(worker("d", group="other"), replica_index=3), worker("e")]
    assert scaling.free_replica_indices(pods, "g", 3) == [1, 3, 4]
    assert scaling.free_replica_indices([], "g", 0) == []


def test_replica_index_is_read_from_the_label() -> None:
    pod = {"metadata": {"name": "w", "labels": {names.NODE_TYPE_LABEL: "worker", names.GROUP_LABEL: "g",
                                                 names.RAY_REPLICA_INDEX_LABEL: "4"}}}
    assert observed.PodView.from_manifest(pod).replica_index == 4
    pod["metadata"]["labels"][names.RAY_REPLICA_INDEX_LABEL] = "x"
    assert observed.PodView.from_manifest(pod).replica_index is None
