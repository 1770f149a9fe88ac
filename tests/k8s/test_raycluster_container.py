"""The sample RayCluster in container mode: `kubectl apply` of crds/samples/raycluster.yaml with only the image
changed (to the runtime image built from this tree) gives head and worker pods running from the image with
podman; the workers join, and a driver exec'd in the head container runs tasks on every pod and gets numpy
arrays back. Reports the cluster's start time and the head container's idle memory.

Starts the operator, containers in network namespaces (fixtures), kubectl and podman.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from image_support import Images, with_image
from operator_support import SAMPLE, Clusters, OperatorProcess, wait_for
from podrunner import PodRunner, podman

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

NAME = "raycluster-sample"
DRIVER = Path(__file__).resolve().parent / "drivers" / "where_it_ran.py"
WORKERS = 2
READY_TIMEOUT_S = 180.0
DRIVER_TIMEOUT_S = 300.0
IDLE_SETTLE_S = 5.0


def _kubectl(*args: str) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ))
    assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return done.stdout


def _ready(clusters: Clusters, op: OperatorProcess) -> dict[str, Any]:
    def ready() -> dict[str, Any]:
        status = clusters.status(NAME)
        heads = clusters.pods(NAME, "head")
        head_ready = len(heads) == 1 and any(
            c.type == "Ready" and c.status == "True" for c in heads[0].status.conditions or [])
        if status.get("state") == "ready" and status.get("readyWorkerReplicas") == WORKERS \
                and clusters.counts(NAME) == (1, WORKERS) and head_ready:
            return status
        return {}

    return wait_for(ready, READY_TIMEOUT_S, f"state ready with {WORKERS} ready workers", op)


def test_the_sample_runs_from_the_image_and_a_driver_in_the_head_container_uses_every_pod(
        container_pod_runner: PodRunner, kray_images: Images, kray_operator: OperatorProcess, clusters: Clusters,
        k8s_namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner, ns = container_pod_runner, k8s_namespace
    manifest = with_image(yaml.safe_load(SAMPLE.read_text()), kray_images.runtime)
    manifest["spec"]["workerGroupSpecs"][0]["replicas"] = WORKERS
    path = tmp_path / "raycluster.yaml"
    path.write_text(yaml.safe_dump(manifest))

    applied = time.monotonic()
    _kubectl("apply", "-n", ns, "-f", str(path))
    _ready(clusters, kray_operator)
    to_ready = time.monotonic() - applied

    pods = clusters.pods(NAME)
    assert {p.spec.node_name for p in pods} == {runner.node_name}, "every pod runs on the container-mode node"
    for pod in pods:
        (container,) = podman.containers(ns, pod.metadata.name)
        assert container["Image"] == kray_images.runtime and container["State"] == "running", container
    (head,) = clusters.pods(NAME, "head")
    head_name = head.metadata.name
    (head_container,) = podman.containers(ns, head_name)
    which = runner.exec(ns, head_name, ["sh", "-c", "command -v kray; id -u; df -B1 --output=size /dev/shm"])
    kray_bin, uid, _, shm = which.stdout.split()
    assert (kray_bin, uid) == ("/opt/kray/venv/bin/kray", "1000"), "the head runs the image's kray as its user"
    assert int(shm) == 256 << 20, "/dev/shm is the sample's 256Mi memory emptyDir"
    login = runner.exec(ns, head_name, ["/bin/bash", "-lc", "command -v kray ray"])
    assert login.stdout.split() == ["/opt/kray/venv/bin/kray", "/opt/kray/venv/bin/ray"], (
        f"a login shell (KubeRay's `bash -lc` commands) finds kray and ray: {login.stdout!r} {login.stderr!r}")
    time.sleep(IDLE_SETTLE_S)
    idle = podman.memory_usage_bytes(head_container["Names"][0])

    driven = time.monotonic()
    done = runner.exec(ns, head_name, ["python", "-c", DRIVER.read_text(), str(1 + WORKERS)],
                       timeout=DRIVER_TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, (
        f"the driver in {head_name} failed (rc={done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n"
        f"head log:\n{runner.read_log(ns, head_name)[-3000:]}")
    report = json.loads(lines[-1].removeprefix("REPORT "))
    everyone = sorted(p.status.pod_ip for p in pods)
    assert report["driver_node"] == head.status.pod_ip
    assert report["nodes"] == everyone, "every pod is a node of the cluster, at its pod IP"
    assert report["spread"] == everyone, "SPREAD tasks ran on every pod"
    assert report["sums"] == {ip: report["expected_sum"] for ip in everyone}, "numpy arrays made on each pod arrive"
    with capsys.disabled():
        print(f"\ncontainer mode: sample RayCluster (head + {WORKERS} workers) apply -> ready {to_ready:.1f} s; "
              f"head container idle memory {idle / 2**20:.0f} MiB; driver {time.monotonic() - driven:.1f} s")

    _kubectl("delete", "-n", ns, "raycluster", NAME, "--wait=true", "--timeout=60s")
    wait_for(lambda: not clusters.pods(NAME), 60, "the cluster's pods gone", kray_operator)
    names = [p.metadata.name for p in pods]
    wait_for(lambda: not any(podman.containers(ns, name) for name in names), 30, "the pods' containers removed")
