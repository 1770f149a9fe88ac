"""The autoscaler's loop: one thread per RayCluster with enableInTreeAutoscaling, polling the head's
demand (`GET /api/cluster/demand` with the cluster token), running the policy and patching the RayCluster.

Keeps no state that matters across rounds: replicas, Pods and idle times are read fresh each round, so a
restarted operator continues where the last one stopped (kopf lists every RayCluster at start, and its
event handler calls `ensure`). Touches the Kubernetes API only through kube, the head only through jobapi.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pydantic

from kray_operator import jobapi, kube, models
from kray_operator.autoscaler import capacity, policy, spec
from kray_operator.builders import names, observed, secret

log = logging.getLogger(__name__)

# Seconds between rounds (the operator's environment may change it, e.g. for benchmarks).
PERIOD_S = float(os.environ.get("KRAY_AUTOSCALER_PERIOD_S", "1.0"))
HEAD_TIMEOUT_S = 5.0
# A growth is decided again this much later, on a fresh report: a pending shape counted at two raylets
# while it moves (an owner tells a raylet its backlog, and a raylet the GCS its demand, each within 0.2 s)
# is not a node started.
GROWTH_CONFIRM_S = 1.0

_lock = threading.Lock()
_loops: dict[tuple[str, str], threading.Event] = {}


def ensure(namespace: str, name: str, wanted: bool) -> None:
    """Start the loop of `namespace/name` when `wanted` and none runs; stop it when not wanted."""
    key = (namespace, name)
    with _lock:
        running = _loops.get(key)
        if wanted and running is None:
            stop = threading.Event()
            _loops[key] = stop
            threading.Thread(target=_run, args=(namespace, name, stop), name=f"autoscaler {namespace}/{name}",
                             daemon=True).start()
            log.info("autoscaling RayCluster %s/%s every %.1fs", namespace, name, PERIOD_S)
        elif not wanted and running is not None:
            running.set()
            del _loops[key]


def stop_all() -> None:
    with _lock:
        for stop in _loops.values():
            stop.set()
        _loops.clear()


def _run(namespace: str, name: str, stop: threading.Event) -> None:
    reported: list[str] = []  # the infeasible message last posted as an Event by this loop
    while not stop.is_set():
        try:
            if not Round(namespace, name, reported).run():
                ensure(namespace, name, False)
                return
        except (kube.KubeError, jobapi.JobApiError) as e:
            log.info("autoscaler of %s/%s: %s; trying again", namespace, name, e)
        except Exception:
            log.exception("autoscaler of %s/%s failed a round", namespace, name)
        stop.wait(PERIOD_S)


class Round:
    """One round of the loop for one cluster."""

    def __init__(self, namespace: str, name: str, reported: list[str]) -> None:
        self.namespace, self.name, self.reported = namespace, name, reported

    def run(self) -> bool:
        """Read, decide, patch; False when the cluster is gone or no longer autoscaled (the loop ends)."""
        body = kube.read_raycluster(self.namespace, self.name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return False
        try:
            cluster = models.RayCluster.model_validate(body)
        except pydantic.ValidationError:
            return True  # the reconcile handler reports the bad spec; the spec may be fixed
        if not cluster.spec.enable_in_tree_autoscaling:
            return False
        if not spec.enabled(cluster.spec):
            return True  # suspended: nothing to scale until it resumes
        client = self._client(body, cluster)
        if client is None:
            return True  # no head yet
        decision = self._decide(cluster, client)
        self._report_infeasible(body, cluster, decision)
        if not decision.changes:
            return True
        decision = self._confirm(cluster, client, decision)
        operations = spec.patch(body, decision)
        if not operations:
            return True
        try:
            kube.json_patch_raycluster(self.namespace, self.name, operations)
        except kube.ConflictError as e:
            log.info("autoscaler of %s/%s: the spec changed meanwhile (%s); next round", self.namespace, self.name, e)
            return True
        for change in decision.changes:
            removed = f", removing idle {list(change.workers_to_delete)}" if change.workers_to_delete else ""
            message = f"worker group {change.group!r}: replicas {change.replicas}{removed}"
            log.info("autoscaler of %s/%s: %s", self.namespace, self.name, message)
            kube.post_event(body, spec.SCALED, message)
        return True

    def _client(self, body: dict[str, Any], cluster: models.RayCluster) -> jobapi.Client | None:
        """The head's HTTP API at its Pod IP (routable from the operator, unlike the Service's DNS name)."""
        pod_ip = ((body.get("status") or {}).get("head") or {}).get("podIP")
        if not pod_ip:
            return None
        port = names.head_port(cluster.spec.head_group_spec.ray_start_params, "dashboard")
        stored = kube.read_secret(self.namespace, names.token_secret_name(self.name))
        try:
            token = secret.read_token(stored) if stored is not None else None
        except ValueError:
            token = None
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        return jobapi.Client(f"http://{host}:{port}", token, timeout=HEAD_TIMEOUT_S)

    def _decide(self, cluster: models.RayCluster, client: jobapi.Client) -> policy.Decision:
        demand = capacity.read_demand(client.cluster_demand())
        selector = {names.CLUSTER_LABEL: self.name, names.IS_NODE_LABEL: "yes"}
        pods = observed.from_manifests(kube.list_pods(self.namespace, selector))
        mode, idle_timeout = spec.options(cluster.spec)
        return policy.decide(spec.groups(cluster.spec, pods), demand, mode, idle_timeout)

    def _confirm(self, cluster: models.RayCluster, client: jobapi.Client,
                 decision: policy.Decision) -> policy.Decision:
        """The decision as far as one on a fresh report agrees (`policy.confirm`); a growth is confirmed
        GROWTH_CONFIRM_S later, when every raylet has reported again."""
        replicas = {c.group: self._replicas(cluster, c.group) for c in decision.changes}
        if any(c.replicas > (replicas[c.group] or 0) for c in decision.changes if not c.workers_to_delete):
            time.sleep(GROWTH_CONFIRM_S)
        return policy.confirm(decision, self._decide(cluster, client), replicas)

    @staticmethod
    def _replicas(cluster: models.RayCluster, group: str) -> int | None:
        found = cluster.spec.group(group)
        return None if found is None else found.replicas

    def _report_infeasible(self, body: dict[str, Any], cluster: models.RayCluster, decision: policy.Decision) -> None:
        """The InfeasibleDemand condition, and one Warning Event whenever its message changes."""
        message = spec.infeasible_message(decision)
        status = body.get("status") or {}
        if message and message not in self.reported:
            shown = any(c.get("type") == spec.INFEASIBLE and c.get("status") == "True" and c.get("message") == message
                        for c in status.get("conditions") or [])
            if not shown:  # after an operator restart, what the condition says was posted already
                kube.post_event(body, spec.INFEASIBLE, message, warning=True)
            self.reported[:] = [message]
        elif not message:
            self.reported.clear()
        updated = spec.conditions(status, message, kube.now(), cluster.metadata.generation)
        if updated is not None:
            kube.patch_raycluster_status(self.namespace, self.name, {"conditions": updated})
