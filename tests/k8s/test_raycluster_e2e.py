"""End to end on the k8s tier: `kubectl apply -f crds/samples/raycluster.yaml` with the operator and the pod
runner becomes a running kray cluster of pods; a driver exec'd into the head pod runs tasks on every pod
and fetches objects across pods; the cluster scales, and it recovers when its head pod is deleted.

Starts the operator, runs pods as processes in network namespaces, and runs kubectl and drivers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from operator_support import SAMPLE, Clusters, OperatorProcess, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s

NAME = "raycluster-sample"
DRIVER = Path(__file__).resolve().parent / "drivers" / "where_it_ran.py"
READY_TIMEOUT_S = 120.0
DRIVER_TIMEOUT_S = 240.0


def _kubectl(*args: str) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ))
    assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return done.stdout


def _ready_with(clusters: Clusters, op: OperatorProcess, workers: int) -> dict[str, Any]:
    def ready() -> dict[str, Any]:
        status = clusters.status(NAME)
        # The head Pod itself must be ready: after a head restart the status still says ready until a
        # pass sees the new head.
        heads = clusters.pods(NAME, "head")
        head_ready = len(heads) == 1 and any(
            c.type == "Ready" and c.status == "True" for c in heads[0].status.conditions or [])
        if status.get("state") == "ready" and status.get("readyWorkerReplicas") == workers \
                and clusters.counts(NAME) == (1, workers) and head_ready:
            return status
        return {}

    return wait_for(ready, READY_TIMEOUT_S, f"state ready with {workers} ready workers", op)


def _run_driver(runner: PodRunner, clusters: Clusters, namespace: str, expected_nodes: int) -> dict[str, Any]:
    (head,) = clusters.pods(NAME, "head")
    done = runner.exec(namespace, head.metadata.name, [sys.executable, str(DRIVER), str(expected_nodes)],
                       timeout=DRIVER_TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, (
        f"the driver in {head.metadata.name} failed (rc={done.returncode}):\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}\nhead log:\n{runner.read_log(namespace, head.metadata.name)[-3000:]}")
    report: dict[str, Any] = json.loads(lines[-1].removeprefix("REPORT "))
    return report


def _pod_ips(clusters: Clusters) -> tuple[str, set[str]]:
    (head,) = clusters.pods(NAME, "head")
    return head.status.pod_ip, {p.status.pod_ip for p in clusters.pods(NAME, "worker")}


def test_the_applied_sample_runs_a_driver_across_pods_and_survives_a_head_restart(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str) -> None:
    _kubectl("apply", "-n", k8s_namespace, "-f", str(SAMPLE))
    _ready_with(clusters, kray_operator, 1)
    clusters.set_replicas(NAME, 2)
    _ready_with(clusters, kray_operator, 2)
    head_ip, worker_ips = _pod_ips(clusters)
    assert len(worker_ips) == 2 and head_ip not in worker_ips

    report = _run_driver(pod_runner, clusters, k8s_namespace, 3)
    everyone = sorted({head_ip, *worker_ips})
    assert report["driver_node"] == head_ip
    assert report["nodes"] == everyone, "every pod is a node of the cluster, at its pod IP"
    assert report["spread"] == everyone, "SPREAD tasks ran on every pod"
    assert report["sums"] == {ip: report["expected_sum"] for ip in everyone}, "arrays made on each pod arrive intact"

    # The head pod is lost: the operator makes a new one, and the worker pods' nodes leave the old cluster
    # (their containers restart) and join the new head.
    workers_before = clusters.pod_names(NAME, "worker")
    (old_head,) = clusters.pod_names(NAME, "head")
    clusters.core.delete_namespaced_pod(old_head, k8s_namespace)
    wait_for(lambda: clusters.pod_names(NAME, "head") - {old_head}, READY_TIMEOUT_S, "a new head pod", kray_operator)
    _ready_with(clusters, kray_operator, 2)
    assert clusters.pod_names(NAME, "worker") == workers_before, "the worker pods stay; their nodes rejoin"
    new_head_ip, worker_ips = _pod_ips(clusters)
    report = _run_driver(pod_runner, clusters, k8s_namespace, 3)
    assert report["nodes"] == sorted({new_head_ip, *worker_ips})
    assert report["spread"] == report["nodes"]
    restarts = [cs.restart_count for p in clusters.pods(NAME, "worker") for cs in p.status.container_statuses]
    assert all(count >= 1 for count in restarts), f"worker containers restarted to rejoin: {restarts}"
