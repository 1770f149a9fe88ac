"""One reconcile pass of a RayJob: read it, check its spec, observe its cluster, submitter and job,
let builders.job_lifecycle decide, run the actions, write .status through the status subresource.

Touches the Kubernetes API only through kray_operator.kube and the job API through jobapi; blocking
(runs in kopf's handler threads). Idempotent: the job id and cluster name are stored before anything
is created or submitted, so a restarted operator neither submits twice nor makes a second cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import Any

import pydantic

from kray_operator import job_models, jobapi, kube, models
from kray_operator.builders import job_facts, job_lifecycle, jobs, names, secret
from kray_operator.builders import status as status_builder
from kray_operator.handlers import settings

log = logging.getLogger(__name__)

Action = job_facts.Action
Mode = job_models.JobSubmissionMode
SUFFIX_LENGTH = 5
INVALID_MESSAGE_MAX = 4096
# Deployment statuses whose passes read the submitter (and, for Running, the job API).
_WATCH_SUBMITTER = ("Initializing", "Running", "Suspending", "Retrying")


def random_suffix() -> str:
    """5 lowercase letters and digits, as KubeRay's generated names end."""
    return "".join(secrets.choice(names.SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def sync(namespace: str, name: str) -> None:
    """Reconcile the RayJob `namespace/name` once; raises kube.KubeError when the API server fails."""
    body = kube.read_rayjob(namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # gone or going: the delete handler stops the job, owner references do the rest
    status = dict(body.get("status") or {})
    try:
        job = job_models.RayJob.model_validate(body)
    except pydantic.ValidationError as e:
        record_invalid(body, models.describe_error(e))
        return
    if job.spec.managed_by and job.spec.managed_by not in job_models.MANAGED_BY_US:
        log.debug("RayJob %s/%s is managed by %s; skipped", namespace, name, job.spec.managed_by)
        return
    facts = observe(job, status)
    now = time.time()
    step = job_lifecycle.step(job, facts, now)
    try:
        _run(job, body, facts, step)
    except _SubmitFailed as e:
        step = job_lifecycle.step(job, dataclasses.replace(facts, submit_error=str(e), submit_refused=e.refused), now)
        log.warning("RayJob %s/%s: %s", namespace, name, e)
    for event in step.events:
        kube.post_event(body, event.reason, event.message, warning=event.warning)
    new_status = status_builder.bounded(step.status)  # cut as stored, so it compares equal to its copy
    if step.write and not status_builder.unchanged(new_status, status):
        log.info("RayJob %s/%s: %s/%s -> %s/%s", namespace, name, status.get("jobDeploymentStatus"),
                 status.get("jobStatus"), new_status.get("jobDeploymentStatus"), new_status.get("jobStatus"))
        kube.patch_rayjob_status(namespace, name, new_status)


def observe(job: job_models.RayJob, status: dict[str, Any]) -> job_facts.Facts:
    """Read what this pass needs: the cluster, the submitter, and (while Running) the job API."""
    dep = status.get("jobDeploymentStatus") or ""
    facts = job_facts.Facts(status=status, job_suffix=random_suffix(), cluster_suffix=random_suffix())
    cluster_name = status.get("rayClusterName")
    if not dep or dep == "Suspended" or not cluster_name:
        return facts
    ns = job.metadata.namespace
    cluster_body = kube.read_raycluster(ns, cluster_name)
    cluster_model = _cluster_model(cluster_body)
    url = (jobs.cluster_dashboard_url(cluster_model, settings.cluster_domain()).removeprefix("http://")
           if cluster_model else "")
    facts = dataclasses.replace(facts, cluster=job_facts.cluster_facts(cluster_body, url))
    mode = job.spec.submission_mode
    if dep in _WATCH_SUBMITTER and mode == Mode.K8S_JOB:
        facts = dataclasses.replace(facts, submitter=job_facts.batch_job_facts(kube.read_batch_job(ns, job.metadata.name)))
    elif dep in _WATCH_SUBMITTER and mode == Mode.SIDECAR:
        facts = dataclasses.replace(facts, submitter=job_facts.sidecar_facts(_head_pod(ns, cluster_name),
                                                                             jobs.SUBMITTER_CONTAINER))
    if dep == "Running" and not job.spec.selected_cluster:
        svc = kube.read_service(ns, jobs.job_service_name(job))
        facts = dataclasses.replace(facts, service_cluster=jobs.service_cluster(svc))
    if dep == "Running" and status.get("jobId"):
        facts = dataclasses.replace(facts, api=_job_info(cluster_body, cluster_model, status["jobId"]))
    return facts


def _cluster_model(body: dict[str, Any] | None) -> models.RayCluster | None:
    if body is None:
        return None
    try:
        return models.RayCluster.model_validate(body)
    except pydantic.ValidationError:
        return None


def _head_pod(namespace: str, cluster: str) -> dict[str, Any] | None:
    alive = [p for p in kube.list_pods(namespace, names.head_selector(cluster))
             if not (p.get("metadata") or {}).get("deletionTimestamp")]
    alive.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    return alive[-1] if alive else None


def client_for(cluster_body: dict[str, Any] | None, cluster: models.RayCluster | None) -> jobapi.Client | None:
    """A job API client for the cluster's head, or None before the head has a Pod IP.

    The operator talks to the head Pod's IP (routable from any Pod and from the nodes) rather than the
    Service's DNS name, which an operator outside the cluster cannot resolve.
    """
    if cluster_body is None or cluster is None:
        return None
    pod_ip = ((cluster_body.get("status") or {}).get("head") or {}).get("podIP")
    if not pod_ip:
        return None
    port = names.head_port(cluster.spec.head_group_spec.ray_start_params, "dashboard")
    stored = kube.read_secret(cluster.metadata.namespace, names.token_secret_name(cluster.metadata.name))
    token = None
    if stored is not None:
        try:
            token = secret.read_token(stored)
        except ValueError:
            token = None
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return jobapi.Client(f"http://{host}:{port}", token)


def _job_info(cluster_body: dict[str, Any] | None, cluster: models.RayCluster | None,
              job_id: str) -> job_facts.ApiFacts:
    client = client_for(cluster_body, cluster)
    if client is None:
        return job_facts.ApiFacts(error="the head Pod has no IP yet")
    try:
        return job_facts.api_facts(client.get_job(job_id))
    except jobapi.JobNotFoundError:
        return job_facts.ApiFacts(outcome=job_facts.API_NOT_FOUND)
    except jobapi.JobApiError as e:
        log.info("job status of %s unknown: %s", job_id, e)
        return job_facts.ApiFacts(error=str(e))


class _SubmitFailed(RuntimeError):
    def __init__(self, message: str, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


def _run(job: job_models.RayJob, body: dict[str, Any], facts: job_facts.Facts, step: job_facts.Step) -> None:
    """Carry out the step's actions in order; an API error stops the pass before the status is written."""
    ns, name = job.metadata.namespace, job.metadata.name
    cluster_name = str(step.status.get("rayClusterName") or "")
    for action in step.actions:
        if action == Action.CREATE_CLUSTER:
            _create_cluster(job, body, cluster_name, str(step.status.get("jobId") or ""))
        elif action == Action.CREATE_SUBMITTER:
            _create_submitter(job, body, cluster_name, str(step.status.get("jobId") or ""))
        elif action == Action.ENSURE_SERVICE:
            _ensure_service(job, body, cluster_name)
        elif action == Action.SUBMIT:
            _submit(job, cluster_name, str(step.status.get("jobId") or ""))
        elif action == Action.DELETE_CLUSTER and kube.delete_raycluster(ns, cluster_name):
            kube.post_event(body, "DeletedRayCluster", f"Deleted cluster {ns}/{cluster_name}")
        elif action == Action.DELETE_SUBMITTER and kube.delete_batch_job(ns, name):
            kube.post_event(body, "DeletedRayJobSubmitter", f"Deleted submitter K8s Job {ns}/{name}")
        elif action == Action.SUSPEND_WORKERS:
            _suspend_workers(body, ns, cluster_name)
        elif action == Action.DELETE_SELF:
            kube.delete_rayjob(ns, name)


def _create_cluster(job: job_models.RayJob, body: dict[str, Any], cluster_name: str, job_id: str) -> None:
    ns = job.metadata.namespace
    try:
        kube.create_raycluster(ns, jobs.ray_cluster(job, cluster_name, job_id))
    except kube.AlreadyExistsError:
        return
    except (kube.InvalidError, ValueError) as e:
        kube.post_event(body, "FailedToCreateRayCluster", f"Failed to create RayCluster {ns}/{cluster_name}: {e}",
                        warning=True)
        raise
    kube.post_event(body, "CreatedRayCluster", f"Created RayCluster {ns}/{cluster_name}")


def _create_submitter(job: job_models.RayJob, body: dict[str, Any], cluster_name: str, job_id: str) -> None:
    ns = job.metadata.namespace
    cluster = _cluster_model(kube.read_raycluster(ns, cluster_name))
    if cluster is None:
        raise kube.KubeError(f"RayCluster {ns}/{cluster_name} is gone or unreadable; the submitter waits for it")
    try:
        kube.create_batch_job(ns, jobs.submitter_job(job, cluster, job_id, settings.cluster_domain()))
    except kube.AlreadyExistsError:
        return
    except kube.KubeError as e:
        kube.post_event(body, "FailedToCreateRayJobSubmitter", f"Failed to create new Kubernetes Job "
                        f"{ns}/{job.metadata.name}: {e}", warning=True)
        raise
    kube.post_event(body, "CreatedRayJobSubmitter", f"Created Kubernetes Job {ns}/{job.metadata.name}")


def _ensure_service(job: job_models.RayJob, body: dict[str, Any], cluster_name: str) -> None:
    """Create `<rayjob>-head-svc`, or point it at the job's current cluster (after a retry)."""
    ns = job.metadata.namespace
    cluster = _cluster_model(kube.read_raycluster(ns, cluster_name))
    if cluster is None:
        return
    try:
        wanted = jobs.job_head_service(job, cluster)
    except ValueError as e:  # a RayJob name too long for a Service name: the job runs without it
        log.info("RayJob %s/%s gets no head Service: %s", ns, job.metadata.name, e)
        return
    name = wanted["metadata"]["name"]
    if kube.read_service(ns, name) is None:
        try:
            kube.create_service(ns, wanted)
        except kube.AlreadyExistsError:
            return
        kube.post_event(body, "CreatedService", f"Created the service {ns}/{name}")
        return
    kube.patch_service(ns, name, {"spec": {"selector": wanted["spec"]["selector"]}})
    kube.post_event(body, "UpdatedService", f"Updated the service {ns}/{name}")


def _submit(job: job_models.RayJob, cluster_name: str, job_id: str) -> None:
    """HTTPMode: POST the job; a duplicate submission id (an earlier pass got through) is success."""
    ns = job.metadata.namespace
    cluster_body = kube.read_raycluster(ns, cluster_name)
    client = client_for(cluster_body, _cluster_model(cluster_body))
    if client is None:
        raise _SubmitFailed(f"RayCluster {ns}/{cluster_name} has no head Pod IP", refused=False)
    try:
        client.submit_job(jobs.submission_request(job, job_id))
        log.info("RayJob %s/%s: submitted %s to %s", ns, job.metadata.name, job_id, client.base_url)
    except jobapi.SubmissionRefusedError as e:
        try:
            client.get_job(job_id)
        except jobapi.JobApiError:
            raise _SubmitFailed(str(e), refused=True) from e
    except jobapi.JobApiError as e:
        raise _SubmitFailed(str(e), refused=False) from e


def _suspend_workers(body: dict[str, Any], namespace: str, cluster_name: str) -> None:
    """DeleteWorkers: set suspend on every worker group of the cluster (the RayCluster handler removes the Pods)."""
    cluster = kube.read_raycluster(namespace, cluster_name)
    groups = ((cluster or {}).get("spec") or {}).get("workerGroupSpecs") or []
    if cluster is None or not groups:
        return
    ops = [{"op": "add", "path": f"/spec/workerGroupSpecs/{i}/suspend", "value": True} for i in range(len(groups))]
    kube.json_patch_raycluster(namespace, cluster_name, ops)
    kube.post_event(body, "UpdatedRayCluster", f"Set the `suspend` field to true for all worker groups in "
                    f"cluster {namespace}/{cluster_name}")


def record_invalid(body: dict[str, Any], message: str) -> None:
    """Fail the RayJob with reason ValidationFailed and say what to fix, once per generation."""
    meta = body.get("metadata") or {}
    # Cut as it is stored (invalid_status keeps 4096 characters), so the next pass sees it recorded.
    message = status_builder.truncate(message, INVALID_MESSAGE_MAX)
    status = job_lifecycle.invalid_status(dict(body.get("status") or {}), message, meta.get("generation"),
                                          time.time())
    if status is None:
        return
    kube.patch_rayjob_status(meta.get("namespace") or "default", meta.get("name", ""), status_builder.bounded(status))
    kube.post_event(body, "InvalidRayJobSpec", f"RayJob spec is invalid: {message}", warning=True)


def stop_job(body: dict[str, Any]) -> None:
    """On deletion: ask the job API to stop a job that may still run (best effort, as KubeRay)."""
    status = body.get("status") or {}
    meta = body.get("metadata") or {}
    job_id, cluster_name = status.get("jobId"), status.get("rayClusterName")
    if not job_id or not cluster_name or status.get("jobStatus") in ("SUCCEEDED", "FAILED", "STOPPED"):
        return
    cluster_body = kube.read_raycluster(meta.get("namespace") or "default", cluster_name)
    client = client_for(cluster_body, _cluster_model(cluster_body))
    if client is None:
        return
    try:
        client.stop_job(job_id)
    except jobapi.JobApiError as e:
        log.info("could not stop job %s of deleted RayJob %s: %s", job_id, meta.get("name"), e)
