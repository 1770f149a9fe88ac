"""Operator hardening against the real API server: a pass refused by the API (a ResourceQuota) is retried
with back-off until the cause goes, with no status-write loop meanwhile; failed restartPolicy Never Pods
are replaced with back-off and reported; the cluster domain flag reaches the workers' head address; the
metrics endpoint counts what happened.

Starts `python -m kray_operator` (by PID) and, for the failing Pods, uses the pod runner.
"""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from controlplane import launcher
from kubernetes import client
from operator_support import Clusters, OperatorProcess, condition, sample, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s

NAME = "raycluster-sample"
DOMAIN = "kray.test"
WAIT_S = 60.0
QUIET_S = 4.0


@pytest.fixture
def operator_with_metrics(control_plane: launcher.ControlPlane, k8s_namespace: str) -> Iterator[tuple[OperatorProcess, str]]:
    """The operator with a metrics URL, a short retry cap and a custom cluster domain."""
    url = f"http://127.0.0.1:{launcher.free_port()}/metrics"
    op = OperatorProcess(control_plane.kubeconfig, k8s_namespace,
                         control_plane.log_dir / f"operator-{k8s_namespace}.log",
                         (f"--metrics={url}", "--retry-max-delay=4", f"--cluster-domain={DOMAIN}")).start()
    try:
        yield op, url
    finally:
        op.stop(signal.SIGTERM)


def _metric(url: str, name: str, labels: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    selector = f"{{{labels}}}" if labels else ""
    match = re.search(rf"^{re.escape(name + selector)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _quota_ready(core: Any, namespace: str) -> bool:
    quota = core.read_namespaced_resource_quota("one-pod", namespace)
    return bool(quota.status and quota.status.hard)


def test_a_refused_pass_is_retried_with_backoff_and_converges_once_the_cause_goes(
        operator_with_metrics: tuple[OperatorProcess, str], kube_api: client.ApiClient, clusters: Clusters,
        k8s_namespace: str) -> None:
    op, metrics_url = operator_with_metrics
    core: Any = client.CoreV1Api(kube_api)
    # The injected API error: a quota admits the head Pod only; the worker's creation is refused (403).
    core.create_namespaced_resource_quota(k8s_namespace, {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}})
    wait_for(lambda: _quota_ready(core, k8s_namespace), WAIT_S, "the quota controller to compute the quota")

    clusters.create(sample(k8s_namespace))
    wait_for(lambda: "exceeded quota" in condition(clusters.status(NAME), "ReplicaFailure").get("message", ""),
             WAIT_S, "a ReplicaFailure condition naming the quota", op)
    assert clusters.counts(NAME) == (1, 0)
    wait_for(lambda: clusters.handled(NAME), WAIT_S, "kopf to record its handler", op)
    # Retries go on (with back-off) but write nothing new: the RayCluster settles (a status-write loop never
    # would). It may change a few times first: a pod runner of another test module may run the head Pod.
    _settles(lambda: clusters.get(NAME)["metadata"]["resourceVersion"], QUIET_S, WAIT_S,
             "the RayCluster to stop changing while the same error repeats (no status-write loop)")
    assert "exceeded quota" in condition(clusters.status(NAME), "ReplicaFailure").get("message", "")
    assert "retrying in" in op.log_tail(400)
    assert _metric(metrics_url, "kray_operator_requeue_total", 'kind="RayCluster"') >= 1

    core.delete_namespaced_resource_quota("one-pod", k8s_namespace)  # the cause goes; the RayCluster is untouched
    wait_for(lambda: clusters.counts(NAME) == (1, 1), WAIT_S, "the retry to create the worker", op)
    wait_for(lambda: not condition(clusters.status(NAME), "ReplicaFailure"), WAIT_S,
             "the ReplicaFailure condition to clear", op)
    assert clusters.get(NAME)["metadata"]["generation"] == 1, "the spec was never touched"
    (worker,) = clusters.pods(NAME, "worker")
    command = " ".join(worker.spec.containers[0].command + (worker.spec.containers[0].args or []))
    assert f"{NAME}-head-svc.{k8s_namespace}.svc.{DOMAIN}:6379" in command, "--cluster-domain reaches workers"
    assert _metric(metrics_url, "kray_operator_reconcile_total", 'kind="RayCluster",result="success"') >= 1
    assert _metric(metrics_url, "kray_operator_leader", "") == 1


def _settles(read: Any, quiet: float, timeout: float, what: str) -> None:
    """Wait until read() returned the same value for `quiet` seconds; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _failing_workers(namespace: str) -> dict[str, Any]:
    """The sample with workers whose container exits 3 at once (restartPolicy Never), head asleep."""
    body = sample(namespace)
    body["metadata"]["annotations"] = {"ray.io/overwrite-container-cmd": "true"}
    head = body["spec"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0].update(command=["/bin/bash", "-c", "--"], args=["sleep 600"])
    worker = body["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    worker["restartPolicy"] = "Never"
    worker["containers"][0].update(command=["/bin/bash", "-c", "--"], args=["echo failing on purpose; exit 3"])
    return body


def test_failed_pods_are_replaced_with_backoff_and_reported(
        pod_runner: PodRunner, operator_with_metrics: tuple[OperatorProcess, str], clusters: Clusters,
        k8s_namespace: str) -> None:
    op, metrics_url = operator_with_metrics
    clusters.create(_failing_workers(k8s_namespace))

    def backoffs() -> list[str]:
        return sorted(e.message for e in clusters.events("FailedPodBackOff"))

    wait_for(lambda: len(backoffs()) >= 3, WAIT_S, "three failed workers reported", op)
    messages = backoffs()
    for count, delay in ((1, 1), (2, 2), (3, 4)):
        assert any(f"({count} in a row)" in m and f"back-off of {delay} s" in m for m in messages), messages
    status = wait_for(lambda: condition(clusters.status(NAME), "PodBackOff"), WAIT_S, "a PodBackOff condition", op)
    assert status["reason"] == "FailedPodBackOff" and "failed Pods in a row" in status["message"]
    # Every replacement follows a recorded failure: never more new workers than failures (+ the first).
    created = len(clusters.events("CreatedWorkerPod"))
    assert created <= len(backoffs()) + 1
    assert _metric(metrics_url, "kray_operator_failed_pods_total", "") >= 3
