"""The autoscaler while things change: a worker busy with a long task stays when its idle peer is removed
(so does one holding the only copy of an object its driver still references, until the reference goes),
an operator killed in the middle of a scale-up is replaced by one that converges without extra Pods, and
cancelled pending tasks leave the demand (they start nothing once their group may scale again).

Drivers run inside the head Pod; gates (files the test creates) decide when tasks end.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from autoscaler_support import NAME, TIMEOUT_S, MostWorkers, driver_run, head_ready, manifest, replicas
from operator_support import Clusters, OperatorProcess, condition, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s


def _background(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(target()), daemon=True)
    thread.start()
    return thread, result


def _shared_dir(tmp_path: Path) -> Path:
    (tmp_path / "marks").mkdir()
    for path in (tmp_path, tmp_path / "marks"):
        path.chmod(0o777)
    return tmp_path


def test_a_busy_worker_stays_while_its_idle_peer_goes(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    clusters.create(manifest(k8s_namespace))
    head = head_ready(clusters, kray_operator)
    shared = _shared_dir(tmp_path)
    driver, result = _background(lambda: driver_run(pod_runner, k8s_namespace, head, "busy", str(shared)))
    try:
        busy = shared / "busy"
        wait_for(busy.exists, TIMEOUT_S * 2, "the long task to start", kray_operator)
        busy_pod = busy.read_text()
        # the other worker idles past the timeout and goes; the busy one (busy as long) stays
        wait_for(lambda: clusters.pod_names(NAME, "worker") == {busy_pod} and replicas(clusters) == 1, TIMEOUT_S,
                 "only the busy worker to remain", kray_operator)
        removed = [e.message for e in clusters.events("AutoscalerScaled") if "removing idle" in e.message]
        assert len(removed) == 1 and busy_pod not in removed[0]
    finally:
        (shared / "gate").touch()
        driver.join(TIMEOUT_S)
    assert result.get("busy_pod") == busy_pod and len(set(result["nodes"])) == 2
    wait_for(lambda: clusters.counts(NAME) == (1, 0) and replicas(clusters) == 0, TIMEOUT_S,
             "the last worker to go once its task ended", kray_operator)


def test_an_operator_restarted_mid_scale_up_converges_without_extra_pods(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    clusters.create(manifest(k8s_namespace))
    head = head_ready(clusters, kray_operator)
    shared = _shared_dir(tmp_path)
    with MostWorkers(clusters) as seen:
        driver, result = _background(
            lambda: driver_run(pod_runner, k8s_namespace, head, "tasks", "3", "3", str(shared / "marks")))
        try:
            wait_for(lambda: replicas(clusters) == 3, TIMEOUT_S, "the scale-up to 3 replicas", kray_operator)
            kray_operator.stop(9)  # killed before the Pods are all up, let alone the tasks done
            second = OperatorProcess(kray_operator.kubeconfig, k8s_namespace,
                                     kray_operator.log_path.with_name(f"operator-{k8s_namespace}-2.log")).start()
            try:
                driver.join(TIMEOUT_S * 2)
                assert len(set(result["nodes"])) == 3
                wait_for(lambda: clusters.counts(NAME) == (1, 0) and replicas(clusters) == 0, TIMEOUT_S,
                         "the idle workers to be removed by the new operator", second)
            finally:
                second.stop()
        finally:
            driver.join(TIMEOUT_S)
    assert seen.most == 3 and len(seen.names) == 3
    # the killed operator may have created a Pod and died before its Event was posted
    assert 2 <= len(clusters.events("CreatedWorkerPod")) <= 3


def test_cancelled_pending_tasks_start_nothing(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    body = manifest(k8s_namespace)
    body["spec"]["workerGroupSpecs"][0]["suspend"] = True  # no group to scale while the tasks are pending
    clusters.create(body)
    head = head_ready(clusters, kray_operator)
    shared = _shared_dir(tmp_path)

    def infeasible() -> str:
        return str(condition(clusters.status(NAME), "InfeasibleDemand").get("status", ""))

    with MostWorkers(clusters) as seen:
        driver, result = _background(lambda: driver_run(pod_runner, k8s_namespace, head, "cancel", str(shared)))
        try:
            wait_for(lambda: infeasible() == "True", TIMEOUT_S, "the pending tasks in the demand", kray_operator)
            (shared / "cancel").touch()
            wait_for((shared / "cancelled").exists, TIMEOUT_S, "the tasks to be cancelled", kray_operator)
            wait_for(lambda: infeasible() == "False", TIMEOUT_S, "the cancelled tasks to leave the demand",
                     kray_operator)
            clusters.patch(NAME, [{"op": "replace", "path": "/spec/workerGroupSpecs/0/suspend", "value": False}])
            (shared / "go").touch()  # one more task: it alone may start a worker
            driver.join(TIMEOUT_S * 2)
        finally:
            (shared / "cancel").touch()
            (shared / "go").touch()
            driver.join(TIMEOUT_S)
    assert result == {"cancelled": 3}
    assert seen.most == 1 and len(clusters.events("CreatedWorkerPod")) == 1


def test_a_worker_holding_a_referenced_object_stays_until_the_reference_goes(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    clusters.create(manifest(k8s_namespace))
    head = head_ready(clusters, kray_operator)
    shared = _shared_dir(tmp_path)
    driver, result = _background(lambda: driver_run(pod_runner, k8s_namespace, head, "object", str(shared)))
    try:
        wait_for((shared / "held").exists, TIMEOUT_S * 2, "both tasks to finish, one result held", kray_operator)
        holder = (shared / "holder").read_text()
        # both workers are free; the one without the object idles past the timeout and goes, the holder stays
        wait_for(lambda: clusters.pod_names(NAME, "worker") == {holder} and replicas(clusters) == 1, TIMEOUT_S,
                 "only the worker holding the object to remain", kray_operator)
        removed = [e.message for e in clusters.events("AutoscalerScaled") if "removing idle" in e.message]
        assert len(removed) == 1 and holder not in removed[0], removed
        (shared / "gate").touch()  # the driver drops its reference (and stays connected)
        wait_for((shared / "dropped").exists, TIMEOUT_S, "the driver to drop the reference", kray_operator)
        wait_for(lambda: clusters.counts(NAME) == (1, 0) and replicas(clusters) == 0, TIMEOUT_S,
                 "the holder to go once the object was freed", kray_operator)
    finally:
        (shared / "gate").touch()
        (shared / "done").touch()
        driver.join(TIMEOUT_S)
    assert result.get("holder") == holder and result.get("other") not in ("", holder)
