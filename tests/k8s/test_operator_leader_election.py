"""Two operator replicas with --leader-elect against the real API server: one holds the Lease and
reconciles, the other stands by (answering its liveness probe) and takes over when the leader dies.

Starts and kills `python -m kray_operator` processes; Pods stay Pending (no pod runner needed).
"""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from controlplane import launcher
from kubernetes import client
from operator_support import Clusters, OperatorProcess, sample, stays, wait_for

pytestmark = pytest.mark.k8s

NAME = "raycluster-sample"
LEASE = "kray-operator-test"
# Short timings, so that a take-over fits a test: lease 4 s, renew deadline 3 s, retry 0.5 s.
ELECTION = ("--leader-elect", f"--leader-election-id={LEASE}", "--lease-duration=4", "--renew-deadline=3",
            "--retry-period=0.5")
WAIT_S = 30.0


@pytest.fixture
def replicas(control_plane: launcher.ControlPlane, k8s_namespace: str) -> Iterator[list[OperatorProcess]]:
    """Two operator replicas electing a leader through a Lease in the test namespace."""
    started: list[OperatorProcess] = []
    try:
        for index in range(2):
            op = OperatorProcess(control_plane.kubeconfig, k8s_namespace,
                                 control_plane.log_dir / f"operator-{k8s_namespace}-{index}.log",
                                 (*ELECTION, f"--leader-election-namespace={k8s_namespace}"))
            started.append(op.start())
        yield started
    finally:
        for op in started:
            op.stop()


def _holder(kube_api: client.ApiClient, namespace: str) -> str:
    try:
        lease: Any = client.CoordinationV1Api(kube_api).read_namespaced_lease(LEASE, namespace)
    except client.exceptions.ApiException:
        return ""
    return str(lease.spec.holder_identity or "")


def _leader(replicas: list[OperatorProcess], holder: str) -> OperatorProcess | None:
    return next((op for op in replicas if holder.endswith(f"_{op.pid}")), None)


def test_one_replica_leads_and_the_standby_takes_over_when_it_dies(
        replicas: list[OperatorProcess], kube_api: client.ApiClient, clusters: Clusters, k8s_namespace: str) -> None:
    leader = wait_for(lambda: _leader(replicas, _holder(kube_api, k8s_namespace)), WAIT_S, "a Lease holder")
    (standby,) = [op for op in replicas if op is not leader]

    clusters.create(sample(k8s_namespace))
    wait_for(lambda: clusters.counts(NAME) == (1, 1), WAIT_S, "1 head and 1 worker Pod", leader)
    stays(lambda: clusters.counts(NAME) == (1, 1), 3.0, "exactly 1 head and 1 worker (no second reconciler)")
    assert "leader election: waiting for Lease" in standby.log_tail(200)
    assert "RayCluster" not in standby.log_tail(200), "the standby must not reconcile"
    url = next(a for a in standby.popen.args if str(a).startswith("--liveness=")).split("=", 1)[1]  # type: ignore[union-attr]
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200, "a standby answers its liveness probe"

    leader.stop(signal.SIGKILL)
    taken = wait_for(lambda: _leader([standby], _holder(kube_api, k8s_namespace)), WAIT_S,
                     "the standby to take the Lease", standby)
    assert taken is standby
    clusters.set_replicas(NAME, 2)
    wait_for(lambda: clusters.counts(NAME) == (1, 2), WAIT_S, "the new leader to add a worker", standby)
    stays(lambda: clusters.counts(NAME) == (1, 2), 2.0, "1 head and 2 workers")
    # A RayCluster made after the failover is reconciled by the new leader from scratch.
    clusters.create(sample(k8s_namespace, "after-failover"))
    wait_for(lambda: clusters.counts("after-failover") == (1, 1), WAIT_S, "the new leader to build a new cluster",
             standby)
    wait_for(lambda: clusters.status("after-failover").get("desiredWorkerReplicas") == 1, WAIT_S,
             "the new cluster's status", standby)


def test_a_leader_that_stops_hands_the_lease_over_at_once(
        replicas: list[OperatorProcess], kube_api: client.ApiClient, k8s_namespace: str) -> None:
    leader = wait_for(lambda: _leader(replicas, _holder(kube_api, k8s_namespace)), WAIT_S, "a Lease holder")
    (standby,) = [op for op in replicas if op is not leader]
    leader.stop()  # SIGTERM: kopf stops, then the Lease is released
    lease: Any = client.CoordinationV1Api(kube_api).read_namespaced_lease(LEASE, k8s_namespace)
    assert lease.spec.holder_identity in ("", None) or lease.spec.holder_identity.endswith(f"_{standby.pid}")
    wait_for(lambda: _leader([standby], _holder(kube_api, k8s_namespace)), WAIT_S, "the standby to lead", standby)
