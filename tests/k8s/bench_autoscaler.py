"""Benchmark of the autoscaler on the k8s tier (not a test): `python tests/k8s/bench_autoscaler.py [ROUNDS]`.

Starts the control plane, the pod runner and the operator, applies the autoscaler tests' RayCluster
(worker group min 0 max 3, idleTimeoutSeconds 3, default 1 s poll) and, per round, runs one 1-CPU task
from the head Pod, printing: pending -> `replicas` patched, patched -> task running on the new Pod, and
at the end the operator's CPU use while the cluster idles (one autoscaled cluster polled every second).
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from pathlib import Path

import psutil
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoscaler_support import NAME, TIMEOUT_S, driver_run, head_ready, manifest, replicas
from controlplane import launcher
from operator_support import Clusters, OperatorProcess, wait_for
from podrunner import PodRunner

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
IDLE_MEASURE_S = 30.0


def _first_patch(clusters: Clusters, seen: dict[str, float], done: threading.Event) -> None:
    while not done.is_set():
        if replicas(clusters) > 0:
            seen["patched"] = time.time()
            return
        time.sleep(0.02)


def main(rounds: int) -> None:
    cp = launcher.ControlPlane(crd_dir=REPO_ROOT / "crds")
    cp.start()
    os.environ["KUBECONFIG"] = str(cp.kubeconfig)
    runner = PodRunner(cp.kubeconfig, cp.log_dir / "pod-runner").start()
    api = config.new_client_from_config(config_file=str(cp.kubeconfig))
    namespace = f"bench-{secrets.token_hex(2)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    wait_for(lambda: _has_default_sa(api, namespace), 30, "the namespace's ServiceAccount")
    op = OperatorProcess(cp.kubeconfig, namespace, cp.log_dir / "operator-bench.log").start()
    try:
        clusters = Clusters(api, namespace)
        clusters.create(manifest(namespace))
        head = head_ready(clusters, op)
        rows = []
        for _ in range(rounds):
            seen: dict[str, float] = {}
            done = threading.Event()
            watcher = threading.Thread(target=_first_patch, args=(clusters, seen, done), daemon=True)
            watcher.start()
            report = driver_run(runner, namespace, head, "timed")
            done.set()
            watcher.join()
            rows.append((seen["patched"] - report["submitted"], report["started"] - seen["patched"]))
            wait_for(lambda: clusters.counts(NAME) == (1, 0) and replicas(clusters) == 0, TIMEOUT_S,
                     "the idle worker to go", op)
        process = psutil.Process(op.pid)
        before = process.cpu_times()
        time.sleep(IDLE_MEASURE_S)
        after = process.cpu_times()
        cpu = (after.user - before.user + after.system - before.system) / IDLE_MEASURE_S
        print(f"{'round':>5}  {'pending -> replicas patched (s)':>32}  {'patched -> task running (s)':>28}")
        for index, (to_patch, to_run) in enumerate(rows, 1):
            print(f"{index:>5}  {to_patch:>32.2f}  {to_run:>28.2f}")
        print(f"operator CPU at idle, one autoscaled cluster: {cpu * 100:.2f}% of a core")
    finally:
        op.stop()
        runner.stop()
        api.close()
        cp.stop(keep_logs=False)


def _has_default_sa(api: client.ApiClient, namespace: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespaced_service_account("default", namespace)
    except client.exceptions.ApiException:
        return False
    return True


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
