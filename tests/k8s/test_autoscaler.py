"""The operator's autoscaler against a real control plane and real pods: pending tasks start worker
Pods (never more than maxReplicas), idle workers go through scaleStrategy.workersToDelete, and a task
that fits no worker group starts nothing and is reported (Event and condition).

Drivers run inside the head Pod (`pod_runner.exec`), as `kubectl exec` would; the head has num-cpus 0.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from autoscaler_support import (
    IDLE_TIMEOUT_S,
    NAME,
    TIMEOUT_S,
    MostWorkers,
    driver_run,
    head_ready,
    manifest,
    replicas,
)
from operator_support import Clusters, OperatorProcess, condition, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s


def test_pending_tasks_start_workers_up_to_max_and_idle_workers_go(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    clusters.create(manifest(k8s_namespace))
    head = head_ready(clusters, kray_operator)
    assert clusters.counts(NAME) == (1, 0)

    # 10 tasks; each holds its CPU until tasks run on 3 nodes at once, so 3 Pods must start, and no more.
    marks = tmp_path / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    with MostWorkers(clusters) as seen:
        report = driver_run(pod_runner, k8s_namespace, head, "tasks", "10", "3", str(marks))
    assert len(report["nodes"]) == 10 and len(set(report["nodes"])) == 3
    assert seen.most == 3
    scaled = " | ".join(e.message for e in clusters.events("AutoscalerScaled"))
    assert "worker group 'cpu': replicas 3" in scaled

    # Idle for idleTimeoutSeconds: every worker goes through workersToDelete, down to minReplicas 0.
    wait_for(lambda: clusters.counts(NAME) == (1, 0) and replicas(clusters) == 0, TIMEOUT_S,
             "the idle workers to be removed", kray_operator)
    removed = [e.message for e in clusters.events("AutoscalerScaled") if "removing idle" in e.message]
    assert removed, scaled
    assert sum(m.count("-worker-") for m in removed) == 3
    assert clusters.get(NAME)["spec"]["workerGroupSpecs"][0]["scaleStrategy"].get("workersToDelete") in ([], None)


def test_a_task_that_fits_no_group_starts_nothing_and_is_reported(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    clusters.create(manifest(k8s_namespace))
    head = head_ready(clusters, kray_operator)
    gate = tmp_path / "gate"
    result: dict[str, Any] = {}
    driver = threading.Thread(target=lambda: result.update(driver_run(pod_runner, k8s_namespace, head, "gpu", str(gate))),
                              daemon=True)
    driver.start()
    try:
        wanted = "infeasible: {CPU: 1, GPU: 1} fits no worker group"
        def reported() -> dict[str, Any]:
            status = clusters.status(NAME)
            return status if condition(status, "InfeasibleDemand").get("status") == "True" else {}
        status = wait_for(reported, TIMEOUT_S, "the InfeasibleDemand condition", kray_operator)
        assert condition(status, "InfeasibleDemand")["message"] == wanted
        events = clusters.events("InfeasibleDemand")
        assert [e.message for e in events] == [wanted] and events[0].type == "Warning"
        # the round that reported it decided to start nothing
        assert replicas(clusters) == 0 and clusters.counts(NAME) == (1, 0)
    finally:
        gate.touch()
        driver.join(TIMEOUT_S)
    assert result == {"ran": False}
    # once the task is gone, the condition says everything fits again; the Event was posted once
    wait_for(lambda: condition(clusters.status(NAME), "InfeasibleDemand").get("status") == "False", TIMEOUT_S,
             "the InfeasibleDemand condition to clear", kray_operator)
    assert len(clusters.events("InfeasibleDemand")) == 1


def test_strict_spread_group_starts_two_nodes_and_request_resources_holds_them(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    clusters.create(manifest(k8s_namespace))
    head = head_ready(clusters, kray_operator)
    tmp_path.chmod(0o777)
    result: dict[str, Any] = {}
    driver = threading.Thread(target=lambda: result.update(
        driver_run(pod_runner, k8s_namespace, head, "hold", str(IDLE_TIMEOUT_S * 3), str(tmp_path))), daemon=True)
    driver.start()
    try:
        held = tmp_path / "held"
        wait_for(held.exists, TIMEOUT_S * 2, "the driver to see both workers idle past the timeout", kray_operator)
        bundle_nodes = json.loads(held.read_text())["bundle_nodes"]
        assert len(set(bundle_nodes)) == 2  # STRICT_SPREAD: two nodes, so two Pods were started
        # idle for three times idleTimeoutSeconds, but requested: both stay
        assert clusters.counts(NAME) == (1, 2) and replicas(clusters) == 2
        assert not [e for e in clusters.events("AutoscalerScaled") if "removing idle" in e.message]
    finally:
        (tmp_path / "gate").touch()
        driver.join(TIMEOUT_S)
    assert result.get("bundle_nodes") == bundle_nodes
    # the request cleared: the idle workers go
    wait_for(lambda: clusters.counts(NAME) == (1, 0) and replicas(clusters) == 0, TIMEOUT_S,
             "the workers to be removed once the request is cleared", kray_operator)
