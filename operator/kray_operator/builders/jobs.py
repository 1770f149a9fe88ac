"""What a RayJob creates: its RayCluster, the submitter Kubernetes Job (K8sJobMode) and the job API
request (HTTPMode).

Pure: random suffixes and generated job ids are passed in; no I/O.
"""

from __future__ import annotations

import copy
import json
import shlex
from typing import Any

from kray_operator import models
from kray_operator.builders import names, pods

SUBMITTER_CONTAINER = "kray-job-submitter"
DEFAULT_SUBMITTER_BACKOFF_LIMIT = 2
SUBMITTER_RESOURCES = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}
ENV_DASHBOARD_ADDRESS = "KRAY_DASHBOARD_ADDRESS"
ENV_SUBMISSION_ID = "KRAY_JOB_SUBMISSION_ID"
# Room for "-<suffix>" and "-head-svc" within a 63-character Service name.
_MAX_JOB_PREFIX = names.MAX_CLUSTER_NAME - 6


def job_labels(job: models.RayJob) -> dict[str, str]:
    """Labels of everything a RayJob creates."""
    return {
        **names.app_labels(),
        names.ORIGINATED_FROM_CRD_LABEL: "RayJob",
        names.ORIGINATED_FROM_CR_NAME_LABEL: job.metadata.name[:63].rstrip("-"),
    }


def cluster_name(job: models.RayJob, suffix: str) -> str:
    """Name of the RayCluster created for a RayJob: `<rayjob>-<suffix>`, trimmed to fit a Service name."""
    names.check_suffix(suffix)
    prefix = job.metadata.name[:_MAX_JOB_PREFIX].rstrip("-.")
    if not prefix or not prefix[0].isalpha():
        prefix = "job-" + prefix
        prefix = prefix[:_MAX_JOB_PREFIX].rstrip("-.")
    return f"{prefix}-{suffix}"


def submission_id(job: models.RayJob, suffix: str) -> str:
    """spec.jobId when set, else `<rayjob>-<suffix>` (store it in .status.jobId before submitting)."""
    if job.spec.job_id:
        return job.spec.job_id
    names.check_suffix(suffix)
    return f"{job.metadata.name}-{suffix}"


def ray_cluster(job: models.RayJob, name: str) -> dict[str, Any]:
    """The RayCluster manifest for `job`'s rayClusterSpec, owned by the RayJob."""
    if job.spec.ray_cluster_spec is None:
        raise ValueError(f"RayJob {job.metadata.name!r} selects a cluster (clusterSelector); it creates none")
    names.check_cluster_name(name)
    return {
        "apiVersion": models.API_VERSION,
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "namespace": job.metadata.namespace,
            "labels": job_labels(job),
            "ownerReferences": [names.owner_reference("RayJob", job.metadata)],
        },
        "spec": job.spec.ray_cluster_spec.to_manifest(),
    }


def dashboard_url(cluster: str, namespace: str, head_params: dict[str, str] | None = None,
                  domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> str:
    """`http://<cluster>-head-svc.<ns>.svc.<domain>:8265`, the job API of a cluster."""
    return "http://" + names.dashboard_address(cluster, namespace, head_params or {}, domain)


def submission_request(job: models.RayJob, job_id: str) -> dict[str, Any]:
    """Body of `POST /api/jobs/` (HTTPMode), in the Ray job API's field names."""
    spec = job.spec
    body: dict[str, Any] = {"entrypoint": spec.entrypoint or "", "submission_id": job_id}
    if spec.runtime_env:
        body["runtime_env"] = spec.runtime_env
    if spec.metadata:
        body["metadata"] = dict(spec.metadata)
    if spec.entrypoint_num_cpus:
        body["entrypoint_num_cpus"] = spec.entrypoint_num_cpus
    if spec.entrypoint_num_gpus:
        body["entrypoint_num_gpus"] = spec.entrypoint_num_gpus
    if spec.entrypoint_resources_dict:
        body["entrypoint_resources"] = spec.entrypoint_resources_dict
    return body


def submit_argv(job: models.RayJob, job_id: str, address: str) -> list[str]:
    """`kray job submit --address <url> --submission-id <id> --no-wait [options] -- <entrypoint>`.

    The entrypoint stays one argument, so the CLI gets it exactly as written in the spec.
    """
    spec = job.spec
    argv = ["kray", "job", "submit", "--address", address, "--submission-id", job_id, "--no-wait"]
    if spec.runtime_env:
        argv += ["--runtime-env-json", json.dumps(spec.runtime_env, sort_keys=True)]
    if spec.metadata:
        argv += ["--metadata-json", json.dumps(spec.metadata, sort_keys=True)]
    if spec.entrypoint_num_cpus:
        argv += ["--entrypoint-num-cpus", _number(spec.entrypoint_num_cpus)]
    if spec.entrypoint_num_gpus:
        argv += ["--entrypoint-num-gpus", _number(spec.entrypoint_num_gpus)]
    if spec.entrypoint_resources_dict:
        argv += ["--entrypoint-resources", json.dumps(spec.entrypoint_resources_dict, sort_keys=True)]
    return argv + ["--", spec.entrypoint or ""]


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def submitter_script(job: models.RayJob, job_id: str, address: str) -> str:
    """Shell script of the submitter container: submit unless a retried Pod already did, then follow logs.

    Its exit status is the log follower's; the operator reads the job's outcome from the job API.
    """
    status = shlex.join(["kray", "job", "status", "--address", address, job_id])
    logs = shlex.join(["kray", "job", "logs", "--address", address, "--follow", job_id])
    submit = shlex.join(submit_argv(job, job_id, address))
    return f"if ! {status} >/dev/null 2>&1; then {submit}; fi && {logs}"


def submitter_job(job: models.RayJob, cluster: models.RayCluster, job_id: str,
                  domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> dict[str, Any]:
    """The batch/v1 Job (named like the RayJob) that submits the entrypoint to `cluster` (K8sJobMode).

    The Pod comes from submitterPodTemplate when given (its first container gets the command unless
    it has one), else one container of the head's image. It reads the cluster token from the Secret.
    """
    head = cluster.spec.head_group_spec
    address = dashboard_url(cluster.metadata.name, cluster.metadata.namespace, head.ray_start_params, domain)
    if job.spec.submitter_pod_template is not None:
        template = copy.deepcopy(job.spec.submitter_pod_template.to_manifest())
    else:
        template = {"spec": {"containers": [{
            "name": SUBMITTER_CONTAINER,
            "image": head.template.spec.containers[0].image,
            "resources": copy.deepcopy(SUBMITTER_RESOURCES),
        }]}}
    spec = template["spec"]
    spec.setdefault("restartPolicy", "Never")
    container = spec["containers"][0]
    if not container.get("command") and not container.get("args"):
        container["command"] = ["/bin/sh", "-c", submitter_script(job, job_id, address)]
    env = container.setdefault("env", [])
    present = {e.get("name") for e in env}
    for item in (
        {"name": pods.ENV_TOKEN, "valueFrom": {"secretKeyRef": {
            "name": names.token_secret_name(cluster.metadata.name), "key": names.TOKEN_KEY}}},
        {"name": ENV_DASHBOARD_ADDRESS, "value": address},
        {"name": ENV_SUBMISSION_ID, "value": job_id},
    ):
        if item["name"] not in present:
            env.append(item)
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **job_labels(job)}
    backoff = DEFAULT_SUBMITTER_BACKOFF_LIMIT
    if job.spec.submitter_config is not None and job.spec.submitter_config.backoff_limit is not None:
        backoff = job.spec.submitter_config.backoff_limit
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job.metadata.name,
            "namespace": job.metadata.namespace,
            "labels": job_labels(job),
            "ownerReferences": [names.owner_reference("RayJob", job.metadata)],
        },
        "spec": {"backoffLimit": backoff, "template": template},
    }
