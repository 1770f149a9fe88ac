"""KubeRay manifests on kray's operator, for real: a RayCluster written as KubeRay's samples write it
(unquoted `cpu: 1` limits, authOptions, a custom head Service with a port of the user's, a quoted JSON
`resources` start param, a `ray start` flag without meaning on kray) applied with kubectl becomes a
ready cluster whose workers joined through the custom Service, found by KubeRay's ray.io/* labels; and
a namespace deleted under a RayCluster is left to terminate in peace.

Starts the operator, runs pods as processes in network namespaces, runs kubectl and `kray status` in a pod.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from operator_support import Clusters, OperatorProcess, condition, sample, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s

NAME = "kuberay-style"
SERVICE = "my-head"
READY_TIMEOUT_S = 150.0
# As KubeRay's ray-cluster.custom-head-service.yaml, ray-cluster.auth.yaml and ray-job.resources.yaml
# write them, with only apiVersion and image changed.
MANIFEST = """
apiVersion: kray.io/v1
kind: RayCluster
metadata:
  name: kuberay-style
spec:
  rayVersion: '2.46.0'
  authOptions:
    mode: token
  autoscalerOptions:
    version: v2
  headGroupSpec:
    rayStartParams:
      dashboard-host: '0.0.0.0'
      object-manager-port: '8076'
    headService:
      metadata:
        name: my-head
      spec:
        ports:
        - name: my-app
          port: 7777
          targetPort: 7777
    template:
      spec:
        containers:
        - name: ray-head
          image: kray:latest
          ports:
          - containerPort: 6379
            name: gcs-server
          - containerPort: 8265
            name: dashboard
          - containerPort: 10001
            name: client
          resources:
            limits:
              cpu: 1
              memory: 1G
            requests:
              cpu: 500m
              memory: 1G
  workerGroupSpecs:
  - replicas: 2
    minReplicas: 1
    maxReplicas: 5
    groupName: small-group
    rayStartParams:
      resources: '"{\\"resource1\\": 2}"'
    template:
      spec:
        containers:
        - name: ray-worker
          image: kray:latest
          resources:
            limits:
              cpu: 1
              memory: 1G
"""


def _kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ), input=stdin)
    assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return done.stdout


def _names(kind: str, namespace: str, selector: str) -> set[str]:
    listed = json.loads(_kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "json"))
    return {item["metadata"]["name"] for item in listed["items"] if not item["metadata"].get("deletionTimestamp")}


def _secret(clusters: Clusters, name: str, key: str) -> str:
    data = clusters.core.read_namespaced_secret(name, clusters.namespace).data
    return base64.b64decode(data[key]).decode()


def test_a_kuberay_style_manifest_runs_with_auth_a_custom_head_service_and_ray_io_labels(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    manifest = tmp_path / "raycluster.yaml"
    manifest.write_text(MANIFEST)
    _kubectl("apply", "-n", k8s_namespace, "-f", str(manifest))  # strict: every field is in the schema

    def ready() -> dict[str, Any]:
        status = clusters.status(NAME)
        if status.get("state") == "ready" and status.get("readyWorkerReplicas") == 2 \
                and clusters.counts(NAME) == (1, 2):
            return status
        return {}

    status = wait_for(ready, READY_TIMEOUT_S, "state ready with 2 ready workers", kray_operator)
    pods = clusters.pods(NAME)
    assert all(p.status.phase == "Running" for p in pods)

    # KubeRay's labels find the Pods and the Service.
    assert _names("pods", k8s_namespace, f"ray.io/cluster={NAME}") == {p.metadata.name for p in pods}
    workers = _names("pods", k8s_namespace, f"ray.io/node-type=worker,ray.io/group=small-group,ray.io/cluster={NAME}")
    assert workers == clusters.pod_names(NAME, "worker") and len(workers) == 2
    assert _names("pods", k8s_namespace, f"ray.io/identifier={NAME}-head,ray.io/is-ray-node=yes") == \
        clusters.pod_names(NAME, "head")
    assert _names("services", k8s_namespace, f"ray.io/cluster={NAME}") == {SERVICE}

    # The custom head Service: its name, the user's port first, the default named ports appended.
    svc = clusters.core.read_namespaced_service(SERVICE, k8s_namespace)
    assert [(p.name, p.port) for p in svc.spec.ports] == [
        ("my-app", 7777), ("gcs-server", 6379), ("dashboard", 8265), ("client", 10001), ("metrics", 8080)]
    assert svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses
    assert status["head"]["serviceName"] == SERVICE and status["endpoints"]["my-app"] == "7777"
    assert condition(status, "HeadPodReady")["status"] == "True"
    assert condition(status, "RayClusterProvisioned")["status"] == "True"
    assert (status["desiredCPU"], status["desiredWorkerReplicas"]) == ("2500m", 2)  # requests, else limits

    # The workers joined the head through the custom Service, with the JSON resources of their params.
    (head,) = clusters.pods(NAME, "head")
    for worker in clusters.pods(NAME, "worker"):
        assert f"--address={SERVICE}.{k8s_namespace}.svc.cluster.local:6379" in worker.spec.containers[0].args[0]
    done = pod_runner.exec(k8s_namespace, head.metadata.name, [sys.executable, "-m", "kray.cli.main", "status"],
                           timeout=60)
    assert done.returncode == 0, f"kray status failed: {done.stdout}{done.stderr}"
    nodes = [line for line in done.stdout.splitlines() if line.startswith("node ") and line.endswith("alive")]
    assert len(nodes) == 3, done.stdout
    assert sum(1 for line in done.stdout.splitlines() if line.strip() == "0/2 resource1") == 2, done.stdout

    # authOptions.mode token: KubeRay's Secret with the cluster's token, in the Pods' RAY_AUTH_* variables.
    token = _secret(clusters, NAME, "auth_token")
    assert token == _secret(clusters, f"{NAME}-token", "token")
    env = pod_runner.exec(k8s_namespace, head.metadata.name, ["sh", "-c", 'echo "$RAY_AUTH_MODE $RAY_AUTH_TOKEN"'])
    assert env.stdout.split() == ["token", token]

    # What kray accepts without acting on it is said once, by name; what it did is in Events too.
    notices = " | ".join(e.message for e in clusters.events("NoEffectOnKray"))
    assert "object-manager-port" in notices and "autoscalerOptions ['version']" in notices
    assert len(clusters.events("NoEffectOnKray")) == 2
    assert clusters.events("CreatedService") and clusters.events("CreatedHeadPod")
    assert len(clusters.events("CreatedWorkerPod")) == 2


def test_a_deleted_namespace_is_left_to_terminate(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    clusters.create(sample(k8s_namespace))
    name = "raycluster-sample"
    wait_for(lambda: clusters.counts(name) == (1, 1) and all(p.status.phase == "Running" for p in clusters.pods(name)),
             READY_TIMEOUT_S, "a running head and worker", kray_operator)
    offset = len(kray_operator.log_path.read_text(errors="replace"))
    clusters.core.delete_namespace(k8s_namespace)

    def gone() -> bool:
        try:
            clusters.core.read_namespace(k8s_namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, 120.0, "the namespace to be deleted", kray_operator)
    time.sleep(2.0)  # late watch events of the deleted Pods reach the operator
    log = kray_operator.log_path.read_text(errors="replace")[offset:]
    # The namespace controller deletes the Pods before the RayCluster may go: no pass replaces them.
    assert "; creating head=" not in log, kray_operator.log_tail()
    assert "being terminated" not in log and "could not record event" not in log, kray_operator.log_tail()


def test_a_pod_the_api_refuses_fails_the_cluster_once_with_a_condition_and_an_event(
        kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    body = sample(k8s_namespace)
    # The schema keeps Pod templates as written; an env value must be a string in a Pod.
    body["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "WORKERS", "value": 2}]
    clusters.create(body)
    name = "raycluster-sample"

    def failed() -> dict[str, Any]:
        status = clusters.status(name)
        return status if status.get("state") == "failed" else {}

    status = wait_for(failed, 60.0, "state failed", kray_operator)
    failure = condition(status, "ReplicaFailure")
    assert failure["reason"] == "ValidationFailed" and "head Pod template was rejected" in failure["message"]
    assert "env" in failure["message"], failure["message"]
    wait_for(lambda: clusters.handled(name), 30.0, "kopf's outcome", kray_operator)
    time.sleep(3.0)
    assert len(clusters.events("InvalidSpec")) == 1 and clusters.counts(name) == (0, 0)
    assert "Handler 'reconcile' failed permanently" in kray_operator.log_path.read_text(errors="replace")


def test_kuberays_overwrite_command_and_head_command_shapes_reach_ready(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    # ray-cluster.overwrite-command.yaml: the annotation on the RayCluster, and containers that run the
    # generated line from the environment themselves.
    own = sample(k8s_namespace, "overwrite")
    own["metadata"]["annotations"] = {"ray.io/overwrite-container-cmd": "true"}
    head_spec = own["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head_spec.update(command=["/bin/bash", "-c", "--"], args=["ulimit -n 65536; echo head; $KUBERAY_GEN_RAY_START_CMD"])
    worker_spec = own["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    worker_spec.update(command=["/bin/bash", "-c", "--"], args=["echo worker; $KUBERAY_GEN_RAY_START_CMD"])
    # ray-cluster.head-command.yaml: a command of the user's runs first, then the generated line.
    first = sample(k8s_namespace, "head-command")
    first["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(command=["echo 123"], args=["456"])
    for body in (own, first):
        clusters.create(body)

    def ready(name: str) -> bool:
        status = clusters.status(name)
        return status.get("state") == "ready" and status.get("readyWorkerReplicas") == 1 \
            and clusters.counts(name) == (1, 1)

    wait_for(lambda: ready("overwrite") and ready("head-command"), READY_TIMEOUT_S, "both clusters ready",
             kray_operator)
    (head,) = clusters.pods("overwrite", "head")
    assert head.spec.containers[0].args == head_spec["args"], "the template's own command is kept"
    assert pod_runner.read_log(k8s_namespace, head.metadata.name).count("\nhead\n") == 1
    (head,) = clusters.pods("head-command", "head")
    assert head.spec.containers[0].args[0].startswith(" echo 123  456  && ulimit -n")
    assert "123 456" in pod_runner.read_log(k8s_namespace, head.metadata.name)
