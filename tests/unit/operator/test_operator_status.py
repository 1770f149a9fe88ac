"""builders.status: RayCluster .status from spec, Pods and the head Service."""

from __future__ import annotations

from typing import Any

from kray_operator import models
from kray_operator.builders import observed, pods, service, status

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:01:00Z"


def running(pod: dict[str, Any], ip: str, ready: bool = True) -> dict[str, Any]:
    pod["status"] = {"phase": "Running", "podIP": ip,
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return pod


def views(cluster: models.RayCluster, worker_ready: bool = True) -> list[observed.PodView]:
    return observed.from_manifests([
        running(pods.head_pod(cluster, "h"), "100.64.0.2"),
        running(pods.worker_pod(cluster, "small", "w"), "100.64.0.3", ready=worker_ready),
    ])


def conditions(out: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in out["conditions"]}


def test_ready_cluster(cluster: models.RayCluster) -> None:
    out = status.cluster_status(cluster, views(cluster), service.head_service(cluster), T0)
    assert out["state"] == "ready" and out["stateTransitionTimes"] == {"ready": T0}
    assert (out["desiredWorkerReplicas"], out["availableWorkerReplicas"], out["readyWorkerReplicas"]) == (1, 1, 1)
    assert (out["minWorkerReplicas"], out["maxWorkerReplicas"]) == (0, 3)
    assert out["head"] == {"podName": "raycluster-sample-head-h", "podIP": "100.64.0.2",
                           "serviceName": "raycluster-sample-head-svc", "serviceIP": "100.64.0.2"}
    assert out["endpoints"]["dashboard"] == "8265"
    assert conditions(out) == {"HeadPodReady": "True", "RayClusterProvisioned": "True",
                               "RayClusterSuspending": "False", "RayClusterSuspended": "False"}
    assert (out["desiredCPU"], out["desiredMemory"], out["desiredGPU"]) == ("1", "1Gi", "0")
    assert out["observedGeneration"] == 3 and out["lastUpdateTime"] == T0


def test_provisioning_cluster(cluster: models.RayCluster) -> None:
    out = status.cluster_status(cluster, views(cluster, worker_ready=False), None, T0)
    assert out["state"] is None and out["readyWorkerReplicas"] == 0 and out["availableWorkerReplicas"] == 1
    assert conditions(out)["RayClusterProvisioned"] == "False"
    assert out["head"]["serviceIP"] is None and out["endpoints"] == {}


def test_no_head(cluster: models.RayCluster) -> None:
    out = status.cluster_status(cluster, [], None, T0)
    head_ready = next(c for c in out["conditions"] if c["type"] == "HeadPodReady")
    assert head_ready["status"] == "False" and head_ready["reason"] == "HeadPodNotFound"


def test_times_and_provisioned_stick(cluster_doc: dict[str, Any]) -> None:
    cluster = models.RayCluster.model_validate(cluster_doc)
    first = status.cluster_status(cluster, views(cluster), None, T0)
    cluster_doc["status"] = {**{k: v for k, v in first.items() if v is not None},
                             "conditions": first["conditions"] + [
                                 {"type": "ReplicaFailure", "status": "True", "reason": "X", "message": "m"}]}
    again = models.RayCluster.model_validate(cluster_doc)
    second = status.cluster_status(again, views(again, worker_ready=False), None, T1)
    by_type = {c["type"]: c for c in second["conditions"]}
    assert by_type["HeadPodReady"]["lastTransitionTime"] == T0
    assert by_type["RayClusterProvisioned"]["status"] == "True"
    assert by_type["ReplicaFailure"]["reason"] == "X"
    assert second["state"] == "ready" and second["stateTransitionTimes"] == {"ready": T0}


def test_suspending_then_suspended(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["suspend"] = True
    cluster = models.RayCluster.model_validate(cluster_doc)
    suspending = status.cluster_status(cluster, views(cluster), None, T0)
    assert conditions(suspending)["RayClusterSuspending"] == "True" and suspending["state"] != "suspended"
    suspended = status.cluster_status(cluster, [], None, T1)
    assert suspended["state"] == "suspended" and conditions(suspended)["RayClusterSuspended"] == "True"
    assert suspended["desiredWorkerReplicas"] == 0 and suspended["desiredCPU"] == "0"


def test_desired_resources_count_every_container(cluster_doc: dict[str, Any]) -> None:
    group = cluster_doc["spec"]["workerGroupSpecs"][0]
    group["replicas"] = 3
    group["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": 1}}
    group["template"]["spec"]["containers"].append({"name": "side", "image": "x", "resources": {"requests": {"cpu": "250m"}}})
    out = status.desired_resources(models.RayClusterSpec.model_validate(cluster_doc["spec"]))
    assert out == {"desiredCPU": "7250m", "desiredMemory": "6656Mi", "desiredGPU": "3", "desiredTPU": "0"}
