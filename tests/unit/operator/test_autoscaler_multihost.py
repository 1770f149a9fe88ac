"""Multi-host worker groups (numOfHosts > 1), as KubeRay runs them: the plan creates and deletes whole
replicas of numOfHosts Pods labelled with their replica name, index and host index (builders.scaling,
builders.pods), and the autoscaler sees them replica by replica (autoscaler.spec)."""

from __future__ import annotations

import itertools
from typing import Any

from kray_operator import models
from kray_operator.autoscaler import policy, spec
from kray_operator.builders import names, observed, pods, scaling

CONTAINER = {"name": "k", "image": "kray:latest", "resources": {"limits": {"cpu": "1"}}}
TEMPLATE = {"spec": {"containers": [CONTAINER]}}


def cluster_of(**group: Any) -> models.RayCluster:
    return models.RayCluster.model_validate({
        "apiVersion": "kray.io/v1", "kind": "RayCluster", "metadata": {"name": "c", "namespace": "n", "uid": "u1"},
        "spec": {"enableInTreeAutoscaling": True, "headGroupSpec": {"template": TEMPLATE},
                 "workerGroupSpecs": [{"groupName": "mh", "numOfHosts": 2, "maxReplicas": 4, "template": TEMPLATE,
                                       **group}]},
    })


def pod(name: str, replica: str | None, index: int | None = 0, phase: str = "Running", ready: bool = True,
        created: str = "2025-01-01T00:00:00Z", deleting: bool = False) -> observed.PodView:
    return observed.PodView(name=name, node_type=names.WORKER, group="mh", phase=phase, ready=ready, created=created,
                            replica_index=index, replica_name=replica, deleting=deleting)


def suffixes() -> Any:
    counter = itertools.count()
    return lambda: f"s{next(counter)}"


def test_new_replicas_are_num_of_hosts_pods_with_kuberay_labels() -> None:
    cluster = cluster_of(replicas=2)
    plan = scaling.plan(cluster.spec, [])
    assert plan.to_create == {"mh": 4}
    made = scaling.creations(plan, [], suffixes())
    assert made == [scaling.PodCreation("mh", 0, "mh-s0", 0), scaling.PodCreation("mh", 0, "mh-s0", 1),
                    scaling.PodCreation("mh", 1, "mh-s1", 0), scaling.PodCreation("mh", 1, "mh-s1", 1)]
    labels = pods.worker_pod(cluster, "mh", "abcde", replica_index=1, replica_name="mh-s1",
                             host_index=1)["metadata"]["labels"]
    assert labels[names.RAY_REPLICA_NAME_LABEL] == "mh-s1"
    assert labels[names.RAY_REPLICA_INDEX_LABEL] == "1" and labels[names.RAY_HOST_INDEX_LABEL] == "1"
    seen = observed.PodView.from_manifest(pods.worker_pod(cluster, "mh", "abcde", replica_index=1, replica_name="mh-s1",
                                                          host_index=1))
    assert seen.replica_name == "mh-s1" and seen.replica_index == 1
    # a replica index taken by a live replica is skipped
    live = [pod("a", "mh-x", 0), pod("b", "mh-x", 0)]
    assert [c.replica_index for c in scaling.creations(scaling.plan(cluster.spec, live), live, suffixes())] == [1, 1]
    assert len(names.worker_replica_name("g" * 70, "abcde")) <= 63


def test_incomplete_or_failed_replicas_are_deleted_whole_and_replaced() -> None:
    cluster = cluster_of(replicas=2)
    views = [pod("a1", "mh-a"), pod("a2", "mh-a"),  # complete
             pod("b1", "mh-b"),  # its other host is gone
             pod("c1", "mh-c", 2), pod("c2", "mh-c", 2, phase="Failed"),
             pod("legacy", None)]  # no replica name (made before numOfHosts was honoured)
    group = scaling.plan(cluster.spec, views).groups[0]
    assert set(group.delete) == {"b1", "c1", "c2", "legacy"} and group.create == 2 and group.hosts == 2


def test_workers_to_delete_and_scale_down_remove_whole_replicas() -> None:
    views = [pod("a1", "mh-a", created="2025-01-01T00:00:01Z"), pod("a2", "mh-a"),
             pod("b1", "mh-b", 1, created="2025-01-01T00:00:05Z"), pod("b2", "mh-b", 1)]
    listed = cluster_of(replicas=1, scaleStrategy={"workersToDelete": ["a2"]})
    group = scaling.plan(listed.spec, views).groups[0]
    assert set(group.delete) == {"a1", "a2"} and group.create == 0 and group.clear_workers_to_delete
    fewer = scaling.plan(cluster_of(replicas=1).spec, views).groups[0]
    assert set(fewer.delete) == {"b1", "b2"}  # the newest replica goes whole
    not_ready = [pod("a1", "mh-a", ready=False), *views[1:]]
    assert set(scaling.plan(cluster_of(replicas=1).spec, not_ready).groups[0].delete) == {"a1", "a2"}


def test_the_autoscaler_sees_complete_replicas_and_node_capacity() -> None:
    cluster = cluster_of(replicas=2, minReplicas=1)
    views = [pod("a1", "mh-a"), pod("a2", "mh-a"), pod("b1", "mh-b", 1), pod("b2", "mh-b", 1, deleting=True)]
    (group,) = spec.groups(cluster.spec, views)
    assert group == policy.Group("mh", {"CPU": 1.0}, 1, 4, 2, ("a1", "a2", "b1"), False, None, hosts=2,
                                 replica_pods=(("a1", "a2"),))
    assert policy.max_workers([group]) == 8
