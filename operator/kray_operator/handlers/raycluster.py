"""kopf handlers of RayCluster: create/resume/update reconcile and report; every event of a RayCluster,
its Pods and its head Service (a worker deleted or failed, a Pod became ready) triggers a pass too.

No kopf timer or daemon on purpose: kopf puts a finalizer on objects with those, and a RayCluster must
stay deletable while the operator is down (its children go by owner references). Resume covers restarts;
handlers.requeue retries failed passes with back-off and resyncs every cluster periodically.

Every handler only schedules `cluster_sync.sync`; passes of one cluster never overlap (coalescing).
Runs in kopf's handler threads; touches the API only through cluster_sync and kube.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from kray_operator import kube, metrics, models
from kray_operator.autoscaler import loop as autoscaler
from kray_operator.builders import names
from kray_operator.handlers import cluster_sync, coalescing, requeue

log = logging.getLogger(__name__)

PLURAL = kube.RAYCLUSTER_PLURAL
KIND = {"kind": "RayCluster"}
KRAY_CHILD_LABELS: dict[str, Any] = {names.CREATED_BY_LABEL: names.CREATED_BY, names.CLUSTER_LABEL: kopf.PRESENT}
# Pods also carry the node label, so Pods of other operators that happen to reuse kray.io/cluster are left alone.
KRAY_POD_LABELS: dict[str, Any] = {**KRAY_CHILD_LABELS, names.IS_NODE_LABEL: "yes"}

_passes = coalescing.Coalescer()


def _requested(key: Any) -> None:
    ns, name = key
    _passes.request(key, lambda: _sync_quietly(ns, name))


# Retries of failed passes and the periodic resync; timings from the command line (configure()).
retries = requeue.Requeuer(_requested)


def configure(backoff: requeue.Backoff, resync_s: float) -> None:
    """Set the back-off of failed passes and the resync period (before the first RayCluster is seen)."""
    retries.backoff = backoff
    retries.resync_s = resync_s


def _outcome(key: tuple[str, str], fn: Any) -> None:
    """Run one pass; a failed one comes back after the back-off, a held-back Pod when it may be created."""
    started = time.monotonic()
    result = "error"
    try:
        wait = fn()
        result = "success"
    except cluster_sync.InvalidSpecError:
        result = "invalid"
        retries.succeeded(key)  # recorded in the status; it waits for a spec change, not a retry
        raise
    except (kube.KubeError, coalescing.BusyError) as e:
        metrics.inc("kray_operator_requeue_total", KIND)
        delay = retries.failed(key)
        log.warning("RayCluster %s/%s: pass failed (%d in a row), retrying in %.0f s: %s", *key,
                    retries.failures(key), delay, e)
        return
    finally:
        metrics.inc("kray_operator_reconcile_total", {**KIND, "result": result})
        metrics.inc("kray_operator_reconcile_seconds_total", KIND, time.monotonic() - started)
    retries.succeeded(key)
    if wait is not None:
        retries.after(key, wait)


def _sync_quietly(namespace: str, name: str) -> None:
    """A background pass: a bad spec was already recorded in the status, so it is not an error here."""
    try:
        _outcome((namespace, name), lambda: cluster_sync.sync(namespace, name))
    except cluster_sync.InvalidSpecError as e:
        log.debug("RayCluster %s/%s stays failed until its spec is fixed: %s", namespace, name, e)


@kopf.on.resume(models.GROUP, models.VERSION, PLURAL)
@kopf.on.create(models.GROUP, models.VERSION, PLURAL)
@kopf.on.update(models.GROUP, models.VERSION, PLURAL, field="spec")
def reconcile(namespace: str | None, name: str | None, reason: str | None = None,
              old: Mapping[str, Any] | None = None, **_: Any) -> None:
    """Bring the cluster in line with its spec now; a bad spec fails for good (until the spec changes).

    On create and spec updates (not on resume after an operator restart) it also posts the Warning
    Events of fields without effect on kray that the spec newly has.
    """
    ns, cluster = namespace or "", name or ""  # always set for a namespaced kind
    announce = reason in ("create", "update")
    old_spec = None
    if reason == "update" and old:  # kopf gives the old value of the handler's field: the spec
        old_spec = dict(old if "headGroupSpec" in old else old.get("spec") or {})
    pending = [announce]  # the coalescer may run this again for requests made meanwhile: announce once
    key = (ns, cluster)

    def one_pass() -> None:
        first = pending.pop() if pending else False
        _outcome(key, lambda: cluster_sync.sync(ns, cluster, first, old_spec))

    retries.track(key)
    try:
        _passes.run(key, one_pass)
    except cluster_sync.InvalidSpecError as e:
        raise kopf.PermanentError(f"invalid RayCluster spec: {e}") from e
    except coalescing.BusyError:
        retries.failed(key)  # a long pass holds the cluster: the requeue comes back for it


@kopf.on.event("", "v1", "pods", labels=KRAY_POD_LABELS)
@kopf.on.event("", "v1", "services", labels=KRAY_CHILD_LABELS)
def child_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    """A kray Pod or head Service was added, changed or deleted (also: listed after a watch restarts):
    reconcile its cluster (replacements, status)."""
    ns, cluster = namespace or "", labels.get(names.CLUSTER_LABEL) or ""
    if ns and cluster:
        _passes.request((ns, cluster), lambda: _sync_quietly(ns, cluster))


@kopf.on.event(models.GROUP, models.VERSION, PLURAL)
def cluster_event(namespace: str | None, name: str | None, type: str | None,
                  body: Mapping[str, Any] | None = None, **_: Any) -> None:
    """Any change of the RayCluster: a pass on its latest state (level-triggered).

    The create/update handlers alone are not enough: kopf compares the spec with the last one it
    handled, so a change that is undone while a pass runs (replicas 1 -> 3 -> 1) never reaches them,
    though the pass may have acted on the middle state.

    It also starts or stops the cluster's autoscaler loop as enableInTreeAutoscaling says (kopf lists
    every RayCluster when the operator starts, so the loops of a restarted operator resume here).
    """
    key = (namespace or "", name or "")
    metrics.cluster_state(*key, None if type == "DELETED" else str(((body or {}).get("status") or {}).get("state") or ""))
    if type == "DELETED":
        _passes.forget(key)  # its children go by garbage collection
        retries.forget(key)
        cluster_sync.failed_pods.forget(key)
        autoscaler.ensure(*key, wanted=False)
    elif all(key):
        retries.track(key)
        _passes.request(key, lambda: _sync_quietly(*key))
        autoscaler.ensure(*key, wanted=bool(((body or {}).get("spec") or {}).get("enableInTreeAutoscaling")))
