"""The autoscaler with a multi-host worker group (numOfHosts 2, as KubeRay's): demand for two nodes
starts one replica of two Pods labelled as KubeRay labels them, and the idle replica goes whole through
scaleStrategy.workersToDelete.

The driver runs inside the head Pod (`pod_runner.exec`); the head has num-cpus 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from autoscaler_support import NAME, TIMEOUT_S, MostWorkers, driver_run, head_ready, manifest, replicas
from operator_support import Clusters, OperatorProcess, wait_for
from podrunner import PodRunner

pytestmark = pytest.mark.k8s

REPLICA_NAME = "ray.io/worker-group-replica-name"
HOST_INDEX = "ray.io/replica-host-index"


def test_a_multi_host_group_scales_by_whole_replicas(
        pod_runner: PodRunner, kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path) -> None:
    clusters.create(manifest(k8s_namespace, hosts=2))
    head = head_ready(clusters, kray_operator)
    marks = tmp_path / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    # two tasks that hold their CPUs until both run at once: two 1-CPU nodes, i.e. one replica of 2 hosts
    with MostWorkers(clusters) as seen:
        report = driver_run(pod_runner, k8s_namespace, head, "tasks", "2", "2", str(marks))
    assert len(set(report["nodes"])) == 2
    assert seen.most == 2  # two Pods (one replica), never a second replica
    labels = [p.metadata.labels for p in clusters.pods(NAME, "worker")]
    assert len({label[REPLICA_NAME] for label in labels}) == 1
    assert sorted(label[HOST_INDEX] for label in labels) == ["0", "1"]
    assert {label["ray.io/worker-group-replica-index"] for label in labels} == {"0"}
    scaled = [e.message for e in clusters.events("AutoscalerScaled")]
    assert any("worker group 'cpu': replicas 1" in m for m in scaled), scaled

    # both hosts idle past the timeout: the replica goes whole, in one workersToDelete patch
    wait_for(lambda: clusters.counts(NAME) == (1, 0) and replicas(clusters) == 0, TIMEOUT_S,
             "the idle replica to be removed", kray_operator)
    removed = [e.message for e in clusters.events("AutoscalerScaled") if "removing idle" in e.message]
    assert len(removed) == 1 and removed[0].count("-worker-") == 2, removed
