"""Helpers of the autoscaler tests: the RayCluster they scale (a head with num-cpus 0, one 1-CPU worker
group min 0 max 3, numOfHosts 1 unless asked, a short idleTimeoutSeconds), waiting for its head, and
drivers run in the head Pod.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, Self

from operator_support import Clusters, OperatorProcess, wait_for
from podrunner import PodRunner

NAME = "autoscaled"
DRIVER = Path(__file__).resolve().parent / "drivers" / "autoscale_tasks.py"
TIMEOUT_S = 180.0
IDLE_TIMEOUT_S = 3


def container(name: str) -> dict[str, Any]:
    return {"name": name, "image": "kray:latest",
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}


def manifest(namespace: str, hosts: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "kray.io/v1", "kind": "RayCluster", "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {"idleTimeoutSeconds": IDLE_TIMEOUT_S, "upscalingMode": "Default"},
            "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
                              "template": {"spec": {"containers": [container("kray-head")]}}},
            "workerGroupSpecs": [{
                "groupName": "cpu", "replicas": 0, "minReplicas": 0, "maxReplicas": 3, "rayStartParams": {},
                "numOfHosts": hosts,
                "template": {"spec": {"containers": [container("kray-worker")]}},
            }],
        },
    }


def head_ready(clusters: Clusters, op: OperatorProcess) -> str:
    def ready() -> str | None:
        heads = clusters.pods(NAME, "head")
        ok = len(heads) == 1 and any(c.type == "Ready" and c.status == "True"
                                     for c in heads[0].status.conditions or [])
        return heads[0].metadata.name if ok and clusters.status(NAME).get("head", {}).get("podIP") else None
    return wait_for(ready, TIMEOUT_S, "a ready head Pod", op)


def driver_run(runner: PodRunner, namespace: str, head: str, *args: str) -> dict[str, Any]:
    done = runner.exec(namespace, head, [sys.executable, str(DRIVER), *args], timeout=TIMEOUT_S * 2)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, (
        f"the driver failed (rc={done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(lines[-1].removeprefix("REPORT "))
    return report


def replicas(clusters: Clusters) -> int:
    return int(clusters.get(NAME)["spec"]["workerGroupSpecs"][0].get("replicas", 0))


class MostWorkers:
    """While entered, polls the most worker Pods (not being deleted) and replicas ever seen, and the names of
    all worker Pods seen (an extra Pod lives at least the idle timeout, far longer than a poll)."""

    def __init__(self, clusters: Clusters) -> None:
        self.clusters = clusters
        self.most = 0
        self.names: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.is_set():
            self.most = max(self.most, self.clusters.counts(NAME)[1], replicas(self.clusters))
            self.names |= self.clusters.pod_names(NAME, "worker")
            self._done.wait(0.2)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
