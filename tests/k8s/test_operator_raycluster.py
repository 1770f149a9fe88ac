"""The operator's RayCluster reconcile loop, run for real (`python -m kray_operator` as a subprocess) against
the test API server: children with owner references, labels and `kray start` commands; scaling;
workersToDelete; suspend; replacement of lost Pods; bad specs; restarts; and, with the pod runner, Running Pods.

Starts the operator per test (fixture) and talks to the API server; Pods stay Pending unless the
pod runner runs them.
"""

from __future__ import annotations

import base64
import signal
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from operator_support import Clusters, OperatorProcess, condition, sample, stays, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s

NAME = "raycluster-sample"
WAIT_S = 30.0
HEAD_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}


def _wait_counts(clusters: Clusters, op: OperatorProcess, heads: int, workers: int,
                 name: str = NAME) -> None:
    wait_for(lambda: clusters.counts(name) == (heads, workers), WAIT_S,
             f"{heads} head and {workers} worker Pods", op)


def _owned_by(obj: Any, cluster: dict[str, Any]) -> bool:
    refs = obj.metadata.owner_references or []
    return any(r.uid == cluster["metadata"]["uid"] and r.kind == "RayCluster" and r.controller for r in refs)


def test_sample_cluster_gets_its_secret_service_and_pods(kray_operator: OperatorProcess, clusters: Clusters,
                                                         k8s_namespace: str) -> None:
    created = clusters.create(sample(k8s_namespace))
    _wait_counts(clusters, kray_operator, 1, 1)

    secret = clusters.core.read_namespaced_secret(f"{NAME}-token", k8s_namespace)
    assert _owned_by(secret, created) and len(base64.b64decode(secret.data["token"])) >= 16

    svc = clusters.core.read_namespaced_service(f"{NAME}-head-svc", k8s_namespace)
    assert _owned_by(svc, created)
    assert {p.name: p.port for p in svc.spec.ports} == HEAD_PORTS
    assert svc.spec.cluster_ip == "None"
    assert svc.spec.selector == {"kray.io/cluster": NAME, "kray.io/node-type": "head"}

    (head,) = clusters.pods(NAME, "head")
    (worker,) = clusters.pods(NAME, "worker")
    for pod, node_type, group in ((head, "head", "headgroup"), (worker, "worker", "small")):
        assert _owned_by(pod, created)
        labels = pod.metadata.labels
        assert labels["kray.io/cluster"] == NAME and labels["kray.io/node-type"] == node_type
        assert labels["kray.io/group"] == group and labels["app.kubernetes.io/created-by"] == "kray-operator"
    assert head.metadata.name.startswith(f"{NAME}-head-")
    assert worker.metadata.name.startswith(f"{NAME}-small-worker-")
    assert head.spec.containers[0].command == ["/bin/bash", "-c", "--"]
    head_cmd = head.spec.containers[0].args[0].split("; exec ")[1].split()
    assert head_cmd[:3] == ["kray", "start", "--head"]
    assert {"--block", "--port=6379", "--num-cpus=1", "--memory=1073741824", "--dashboard-host=0.0.0.0",
            "--metrics-export-port=8080"} <= set(head_cmd)
    worker_cmd = worker.spec.containers[0].args[0].split("; exec ")[1].split()
    assert worker_cmd[:2] == ["kray", "start"] and "--head" not in worker_cmd and "--block" in worker_cmd
    assert f"--address={NAME}-head-svc.{k8s_namespace}.svc.cluster.local:6379" in worker_cmd

    def status_written() -> dict[str, Any]:
        status = clusters.status(NAME)
        return status if status.get("desiredWorkerReplicas") == 1 and status.get("endpoints") else {}

    status = wait_for(status_written, WAIT_S, "the status", kray_operator)
    assert status["endpoints"] == {name: str(port) for name, port in HEAD_PORTS.items()}
    assert status["observedGeneration"] == created["metadata"]["generation"]
    assert (status["minWorkerReplicas"], status["maxWorkerReplicas"]) == (0, 3)
    assert status["head"]["serviceName"] == f"{NAME}-head-svc"
    assert status["head"]["podName"] == head.metadata.name
    # Readiness depends on whether a pod runner runs the Pods (see the last test); only presence here.
    assert condition(status, "HeadPodReady") and condition(status, "RayClusterProvisioned")
    assert status["desiredCPU"] == "1" and status["desiredMemory"]
    # kopf keeps its bookkeeping in annotations (the schema would prune it from the status).
    wait_for(lambda: clusters.handled(NAME), WAIT_S, "kopf's annotations", kray_operator)
    assert not clusters.get(NAME)["metadata"].get("finalizers")  # deletable while the operator is down
    assert "kopf" not in status
    assert clusters.events("CreatedHeadPod") and clusters.events("CreatedWorkerPod")


def test_scaling_follows_replicas_clamped_to_min_and_max(kray_operator: OperatorProcess, clusters: Clusters,
                                                         k8s_namespace: str) -> None:
    clusters.create(sample(k8s_namespace))
    _wait_counts(clusters, kray_operator, 1, 1)
    clusters.set_replicas(NAME, 3)
    _wait_counts(clusters, kray_operator, 1, 3)
    clusters.set_replicas(NAME, 1)
    _wait_counts(clusters, kray_operator, 1, 1)
    clusters.set_replicas(NAME, 10)  # maxReplicas is 3
    _wait_counts(clusters, kray_operator, 1, 3)
    generation = clusters.get(NAME)["metadata"]["generation"]
    wait_for(lambda: clusters.status(NAME).get("desiredWorkerReplicas") == 3
             and clusters.status(NAME).get("observedGeneration") == generation, WAIT_S,
             "desiredWorkerReplicas 3 for the latest generation", kray_operator)
    stays(lambda: clusters.counts(NAME) == (1, 3), 2.0, "1 head and 3 workers (clamped)")
    for replicas in (1, 3, 0, 2):  # changes undone before a pass ends: only the last one counts
        clusters.set_replicas(NAME, replicas)
    generation = clusters.get(NAME)["metadata"]["generation"]
    # Passes on the middle states may still run: wait for one that saw the last generation to finish.
    wait_for(lambda: clusters.status(NAME).get("observedGeneration") == generation
             and clusters.counts(NAME) == (1, 2), WAIT_S, "the last generation reconciled", kray_operator)
    stays(lambda: clusters.counts(NAME) == (1, 2), 2.0, "1 head and 2 workers")


def test_workers_to_delete_removes_exactly_those_pods_and_is_cleared(
        kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    body = sample(k8s_namespace)
    body["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    clusters.create(body)
    _wait_counts(clusters, kray_operator, 1, 3)
    workers = sorted(clusters.pod_names(NAME, "worker"))
    victim, kept = workers[1], {workers[0], workers[2]}
    clusters.patch(NAME, [
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2},
        {"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": [victim]}},
    ])
    wait_for(lambda: clusters.pod_names(NAME, "worker") == kept, WAIT_S, f"only {victim} deleted", kray_operator)

    def cleared() -> bool:
        strategy = clusters.get(NAME)["spec"]["workerGroupSpecs"][0].get("scaleStrategy") or {}
        return not strategy.get("workersToDelete")

    wait_for(cleared, WAIT_S, "workersToDelete cleared", kray_operator)
    stays(lambda: clusters.pod_names(NAME, "worker") == kept, 2.0, "the two kept workers, and no others")


def test_suspend_deletes_every_pod_and_resume_recreates_them(kray_operator: OperatorProcess,
                                                             clusters: Clusters, k8s_namespace: str) -> None:
    clusters.create(sample(k8s_namespace))
    _wait_counts(clusters, kray_operator, 1, 1)
    before = clusters.pod_names(NAME)
    clusters.patch(NAME, [{"op": "add", "path": "/spec/suspend", "value": True}])
    _wait_counts(clusters, kray_operator, 0, 0)

    def suspended() -> dict[str, Any]:
        status = clusters.status(NAME)
        return status if status.get("state") == "suspended" else {}

    status = wait_for(suspended, WAIT_S, "state suspended", kray_operator)
    assert condition(status, "RayClusterSuspended")["status"] == "True"
    assert status["desiredWorkerReplicas"] == 0 and not status["head"].get("podName")

    clusters.patch(NAME, [{"op": "replace", "path": "/spec/suspend", "value": False}])
    _wait_counts(clusters, kray_operator, 1, 1)
    assert not clusters.pod_names(NAME) & before
    wait_for(lambda: clusters.status(NAME).get("state") != "suspended", WAIT_S, "state no longer suspended",
             kray_operator)
    assert condition(clusters.status(NAME), "RayClusterSuspended")["status"] == "False"


def test_deleted_and_failed_children_are_replaced(kray_operator: OperatorProcess, clusters: Clusters,
                                   k8s_namespace: str) -> None:
    clusters.create(sample(k8s_namespace))
    _wait_counts(clusters, kray_operator, 1, 1)
    old = clusters.pod_names(NAME)
    for pod_name in old:
        clusters.core.delete_namespaced_pod(pod_name, k8s_namespace)
    wait_for(lambda: clusters.counts(NAME) == (1, 1) and not clusters.pod_names(NAME) & old, WAIT_S,
             "a new head and a new worker", kray_operator)
    stays(lambda: clusters.counts(NAME) == (1, 1), 2.0, "exactly one head and one worker")

    (failed,) = clusters.pod_names(NAME, "worker")
    mark_failed = {"status": {"phase": "Failed"}}
    clusters.core.patch_namespaced_pod_status(failed, k8s_namespace, mark_failed)

    def replaced() -> bool:
        if failed in clusters.pod_names(NAME):
            # The session's pod runner may be starting this Pod and write its status over ours (a kubelet
            # never moves a Failed Pod back): say it failed again until the operator has replaced it.
            try:
                if clusters.core.read_namespaced_pod_status(failed, k8s_namespace).status.phase != "Failed":
                    clusters.core.patch_namespaced_pod_status(failed, k8s_namespace, mark_failed)
            except ApiException as e:
                if e.status != 404:  # deleted meanwhile: the next poll sees it gone
                    raise
            return False
        return clusters.counts(NAME) == (1, 1)
    wait_for(replaced, WAIT_S, "the failed worker deleted and replaced", kray_operator)

    service = f"{NAME}-head-svc"
    old_uid = clusters.core.read_namespaced_service(service, k8s_namespace).metadata.uid
    clusters.core.delete_namespaced_service(service, k8s_namespace)

    def recreated() -> bool:
        found = [s for s in clusters.core.list_namespaced_service(k8s_namespace).items if s.metadata.name == service]
        return bool(found) and found[0].metadata.uid != old_uid

    wait_for(recreated, WAIT_S, "the head Service recreated", kray_operator)


def test_a_spec_the_models_reject_fails_once_and_recovers_when_fixed(
        kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    body = sample(k8s_namespace)
    body["spec"]["headGroupSpec"]["rayStartParams"] = {"--num-cpus": "1"}  # the schema allows any key
    clusters.create(body)

    def failed() -> dict[str, Any]:
        status = clusters.status(NAME)
        return status if status.get("state") == "failed" else {}

    status = wait_for(failed, WAIT_S, "state failed", kray_operator)
    failure = condition(status, "ReplicaFailure")
    assert failure["status"] == "True" and failure["reason"] == "ValidationFailed"
    assert "--num-cpus" in failure["message"] and "without dashes" in failure["message"]
    assert "--num-cpus" in status["reason"]
    # No hot loop: once kopf has recorded the handler's outcome, nothing is created or rewritten.
    wait_for(lambda: clusters.handled(NAME), WAIT_S, "kopf's outcome", kray_operator)
    version = clusters.get(NAME)["metadata"]["resourceVersion"]
    stays(lambda: clusters.get(NAME)["metadata"]["resourceVersion"] == version, 3.0,
          "an unchanged RayCluster (no retry loop)")
    assert clusters.counts(NAME) == (0, 0)
    assert len(clusters.events("InvalidSpec")) == 1

    clusters.patch(NAME, [{"op": "replace", "path": "/spec/headGroupSpec/rayStartParams",
                           "value": {"num-cpus": "1"}}])
    _wait_counts(clusters, kray_operator, 1, 1)
    wait_for(lambda: clusters.status(NAME).get("state") != "failed"
             and not condition(clusters.status(NAME), "ReplicaFailure"), WAIT_S, "the failure cleared",
             kray_operator)


def test_a_name_too_long_for_the_head_service_fails(kray_operator: OperatorProcess, clusters: Clusters,
                                                    k8s_namespace: str) -> None:
    name = "c" * 60  # a valid object name, but "<name>-head-svc" would exceed 63 characters
    clusters.create(sample(k8s_namespace, name))
    status = wait_for(lambda: clusters.status(name) if clusters.status(name).get("state") == "failed" else {},
                      WAIT_S, "state failed", kray_operator)
    assert "at most 54" in condition(status, "ReplicaFailure")["message"]
    assert clusters.counts(name) == (0, 0)


def test_restarting_the_operator_creates_no_duplicates(kray_operator: OperatorProcess, clusters: Clusters,
                                                       k8s_namespace: str) -> None:
    clusters.create(sample(k8s_namespace))
    wait_for(lambda: clusters.pod_names(NAME), WAIT_S, "a first Pod", kray_operator)
    kray_operator.stop(signal.SIGKILL)  # a crash in the middle of the first pass
    kray_operator.start()
    _wait_counts(clusters, kray_operator, 1, 1)
    stays(lambda: clusters.counts(NAME) == (1, 1), 3.0, "one head and one worker after a crash")

    kray_operator.stop()
    clusters.set_replicas(NAME, 3)  # changed and a Pod lost while the operator is down
    (worker,) = clusters.pod_names(NAME, "worker")
    clusters.core.delete_namespaced_pod(worker, k8s_namespace)
    kray_operator.start()
    _wait_counts(clusters, kray_operator, 1, 3)
    stays(lambda: clusters.counts(NAME) == (1, 3), 3.0, "one head and three workers after a restart")
    assert worker not in clusters.pod_names(NAME)


def test_with_the_pod_runner_pods_run_and_the_status_turns_ready(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    clusters.create(sample(k8s_namespace))
    _wait_counts(clusters, kray_operator, 1, 1)

    def ready() -> dict[str, Any]:
        status = clusters.status(NAME)
        return status if status.get("state") == "ready" and status.get("readyWorkerReplicas") == 1 else {}

    status = wait_for(ready, 90.0, "state ready with 1 ready worker", kray_operator)
    (head,) = clusters.pods(NAME, "head")
    assert head.status.phase == "Running" and head.status.pod_ip
    assert all(p.status.phase == "Running" for p in clusters.pods(NAME, "worker"))
    assert status["availableWorkerReplicas"] == 1
    assert status["head"]["podIP"] == head.status.pod_ip
    assert status["head"]["serviceIP"] == head.status.pod_ip  # a headless Service resolves to the Pod
    assert condition(status, "HeadPodReady")["status"] == "True"
    assert condition(status, "RayClusterProvisioned")["status"] == "True"
