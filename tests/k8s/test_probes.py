"""Pods' probes cost no process (issue 20, item 5): the operator gives the kray container httpGet
readiness and liveness probes on the raylet's health endpoint (Ray's dashboard agent port 52365 and
/api/healthz, as KubeRay's), the pod runner's kubelet-like probes pass while the node is healthy, and a
raylet that stops answering (SIGSTOP: its container keeps running) turns its pod unready.

Starts the operator, runs pods as processes in network namespaces, and signals a pod's raylet.
"""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from operator_support import Clusters, OperatorProcess, sample, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s

NAME = "probed"
READY_TIMEOUT_S = 120.0
UNREADY_TIMEOUT_S = 150.0  # failureThreshold 10 probes, each up to its 2 s timeout plus the runner's 2 s period


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _cluster_ready(clusters: Clusters, op: OperatorProcess) -> None:
    def ready() -> bool:
        status = clusters.status(NAME)
        pods = clusters.pods(NAME)
        return (status.get("state") == "ready" and status.get("readyWorkerReplicas") == 1
                and clusters.counts(NAME) == (1, 1) and all(_ready(p) for p in pods))

    wait_for(ready, READY_TIMEOUT_S, "the cluster ready with its head and one worker Ready", op)


def _raylet_of(pod_name: str) -> psutil.Process:
    """The raylet process of that pod (pods are processes on this machine; the operator sets KRAY_POD_NAME)."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "kray.raylet" in " ".join(proc.info["cmdline"] or []) and \
                    proc.environ().get("KRAY_POD_NAME") == pod_name:
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    raise AssertionError(f"no raylet process runs for pod {pod_name}")


def test_probes_are_httpget_and_a_stopped_raylet_turns_its_pod_unready(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    body = sample(k8s_namespace, NAME)
    clusters.create(body)
    _cluster_ready(clusters, kray_operator)

    for pod in clusters.pods(NAME):
        kray = pod.spec.containers[0]
        for probe in (kray.readiness_probe, kray.liveness_probe):
            assert probe.http_get is not None and probe.http_get.path == "/api/healthz", probe
            assert probe.http_get.port == 52365
            assert getattr(probe, "var_exec", None) is None and getattr(probe, "_exec", None) is None, probe

    (worker,) = clusters.pods(NAME, "worker")
    name = worker.metadata.name
    raylet = _raylet_of(name)
    raylet.suspend()
    try:
        pod_runner.wait_for_pod(k8s_namespace, name, lambda p: not _ready(p), UNREADY_TIMEOUT_S,
                                "the pod whose raylet is stopped to turn unready")
        (head,) = clusters.pods(NAME, "head")
        assert _ready(head), "the head pod turned unready with the worker's raylet"
    finally:
        raylet.resume()
    # Resumed, the node learns it was declared dead and leaves; a node joins again and the cluster is
    # ready with one worker (the container restarts, or the operator replaces the pod).
    _cluster_ready(clusters, kray_operator)
