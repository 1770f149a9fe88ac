"""Benchmark of the operator's memory on the k8s tier (not a test): `python tests/k8s/bench_operator_memory.py`.

Starts the control plane (no pod runner: the operator only needs the API server, so Pods stay Pending) and,
for each malloc setting, the operator; prints its RSS and PSS (psutil's memory_full_info) once it idles
with no RayCluster, after three sample RayClusters were reconciled (head Pod, worker Pod and Services
created, status written), and with three clusters again after ROUNDS rounds of creating and deleting three
(what history leaves behind), as the README reports them next to KubeRay's.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

import psutil
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import launcher
from operator_support import GROUP, PLURAL, VERSION, Clusters, OperatorProcess, sample, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CLUSTERS = 3
SETTLE_S = 10.0  # a few passes after the last cluster, so that lazily built state is counted
TIMEOUT_S = 60.0
ROUNDS = 5
MALLOC_SETTINGS = {"glibc default arenas": None, "MALLOC_ARENA_MAX=2": "2"}


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB."""
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, info.pss / 2**20


def reconciled(clusters: Clusters, name: str) -> bool:
    """The cluster's Pods exist and its status was written (the whole reconcile path ran)."""
    heads, workers = clusters.counts(name)
    return heads == 1 and workers >= 1 and bool(clusters.status(name).get("endpoints"))


def measure(cp: launcher.ControlPlane, api: client.ApiClient, arena_max: str | None) -> tuple[float, ...]:
    """Idle, three-cluster and after-churn (RSS, PSS) of one operator run in a fresh namespace."""
    namespace = f"bench-mem-{secrets.token_hex(2)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    if arena_max is None:
        os.environ.pop("MALLOC_ARENA_MAX", None)
    else:
        os.environ["MALLOC_ARENA_MAX"] = arena_max
    op = OperatorProcess(cp.kubeconfig, namespace, cp.log_dir / f"operator-mem-{namespace}.log").start()
    try:
        time.sleep(SETTLE_S)
        idle = memory_mib(op.pid)
        clusters = Clusters(api, namespace)
        loaded = churned = three_clusters(clusters, op, "first")
        for round_ in range(ROUNDS):
            delete_all(clusters, op)
            churned = three_clusters(clusters, op, f"round{round_}")
    finally:
        op.stop()
        os.environ.pop("MALLOC_ARENA_MAX", None)
        client.CoreV1Api(api).delete_namespace(namespace)
    return (*idle, *loaded, *churned)


def three_clusters(clusters: Clusters, op: OperatorProcess, prefix: str) -> tuple[float, float]:
    """Create three sample RayClusters, wait until they are reconciled and settled; the operator's memory."""
    names = [f"{prefix}-{index}" for index in range(CLUSTERS)]
    for name in names:
        clusters.create(sample(clusters.namespace, name))
    for name in names:
        wait_for(lambda name=name: reconciled(clusters, name), TIMEOUT_S, f"RayCluster {name} reconciled", op)
    time.sleep(SETTLE_S)
    return memory_mib(op.pid)


def delete_all(clusters: Clusters, op: OperatorProcess) -> None:
    """Delete every RayCluster of the namespace and wait until they are gone (kopf's finalizer released)."""
    for item in clusters.custom.list_namespaced_custom_object(GROUP, VERSION, clusters.namespace, PLURAL)["items"]:
        clusters.custom.delete_namespaced_custom_object(GROUP, VERSION, clusters.namespace, PLURAL,
                                                        item["metadata"]["name"])
    wait_for(lambda: not clusters.custom.list_namespaced_custom_object(
        GROUP, VERSION, clusters.namespace, PLURAL)["items"], TIMEOUT_S, "the RayClusters deleted", op)


def main() -> None:
    cp = launcher.ControlPlane(crd_dir=REPO_ROOT / "crds")
    cp.start()
    os.environ["KUBECONFIG"] = str(cp.kubeconfig)
    api = config.new_client_from_config(config_file=str(cp.kubeconfig))
    rows = []
    try:
        for label, arena_max in MALLOC_SETTINGS.items():
            rows.append((label, *measure(cp, api, arena_max)))
    finally:
        api.close()
        cp.stop(keep_logs=False)
    print(f"operator process, MiB: RSS/PSS idle, with 3 RayClusters, with 3 after {ROUNDS} rounds of "
          f"creating and deleting 3")
    print(f"{'':<22} {'idle':>11} {'3 clusters':>11} {'after churn':>11}")
    for label, *figures in rows:
        pairs = [f"{figures[i]:.1f}/{figures[i + 1]:.1f}" for i in range(0, len(figures), 2)]
        print(f"{label:<22} " + " ".join(f"{pair:>11}" for pair in pairs))


if __name__ == "__main__":
    main()
