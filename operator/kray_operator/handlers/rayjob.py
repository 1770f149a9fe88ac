"""kopf handlers of RayJob: every event of a RayJob, of the RayClusters it created and of its submitter
Job triggers a pass; a timer re-checks running jobs (the job API sends no events); deletion stops the job.

The delete handler gives RayJobs kopf's finalizer, as KubeRay's operator puts its own on them, so a
deleted RayJob's job is stopped first. Every handler only schedules `rayjob_sync.sync`; passes of one
RayJob never overlap (coalescing). Runs in kopf's handler threads; touches the API only through
rayjob_sync and kube.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from kray_operator import kube, metrics, models
from kray_operator.handlers import coalescing

# rayjob_sync (RayJob models, job builders, the job API client) is imported by the first RayJob's pass,
# so that an operator that never sees a RayJob does not hold it (issue 20: a lean operator).

log = logging.getLogger(__name__)

PLURAL = kube.RAYJOB_PLURAL
# KubeRay requeues a RayJob every 3 s; the timer does the same for job status, deadlines and TTLs.
RESYNC_S = 3.0
KIND = {"kind": "RayJob"}

_passes = coalescing.Coalescer()


def _sync_quietly(namespace: str, name: str) -> None:
    """One pass; a failed one is retried by the resync timer (every RESYNC_S)."""
    started, result = time.monotonic(), "error"
    from kray_operator.handlers import rayjob_sync

    try:
        rayjob_sync.sync(namespace, name)
        result = "success"
    except kube.KubeError as e:
        log.info("RayJob %s/%s: pass failed, the next one retries: %s", namespace, name, e)
    finally:
        metrics.inc("kray_operator_reconcile_total", {**KIND, "result": result})
        metrics.inc("kray_operator_reconcile_seconds_total", KIND, time.monotonic() - started)


def _request(namespace: str | None, name: str | None) -> None:
    ns, job = namespace or "", name or ""
    if ns and job:
        _passes.request((ns, job), lambda: _sync_quietly(ns, job))


def _owner_job(owners: Any) -> str | None:
    """The RayJob that owns an object, from its ownerReferences."""
    for ref in owners or []:
        if ref.get("kind") == "RayJob" and str(ref.get("apiVersion", "")).startswith(models.GROUP + "/"):
            return str(ref.get("name") or "") or None
    return None


@kopf.on.event(models.GROUP, models.VERSION, PLURAL)
def rayjob_event(namespace: str | None, name: str | None, type: str | None, **_: Any) -> None:
    """Any change of a RayJob (also: listed when the operator starts): a pass on its latest state."""
    if type == "DELETED":
        _passes.forget((namespace or "", name or ""))
    else:
        _request(namespace, name)


@kopf.timer(models.GROUP, models.VERSION, PLURAL, interval=RESYNC_S, sharp=False)
def rayjob_resync(namespace: str | None, name: str | None, **_: Any) -> None:
    """Periodic pass: the job's status lives in the job API, deadlines and TTLs in the clock."""
    _request(namespace, name)


@kopf.on.event(models.GROUP, models.VERSION, kube.RAYCLUSTER_PLURAL)
@kopf.on.event("batch", "v1", "jobs")
def child_event(namespace: str | None, meta: Mapping[str, Any], **_: Any) -> None:
    """A RayCluster or submitter Job owned by a RayJob changed: a pass of that RayJob."""
    owner = _owner_job(meta.get("ownerReferences"))
    if owner:
        _request(namespace, owner)


@kopf.on.delete(models.GROUP, models.VERSION, PLURAL)
def rayjob_deleted(body: kopf.Body, **_: Any) -> None:
    """Stop the job if it may still run (as KubeRay does); the cluster and submitter go by garbage collection."""
    from kray_operator.handlers import rayjob_sync

    rayjob_sync.stop_job(dict(body))
