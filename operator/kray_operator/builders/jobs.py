"""What a RayJob creates: its RayCluster (with the submitter sidecar in SidecarMode), the submitter
Kubernetes Job (K8sJobMode) and the job API request (HTTPMode).

Pure: random suffixes and generated job ids are passed in; no I/O.
"""

from __future__ import annotations

import copy
import json
import shlex
from typing import Any

from kray_operator import job_models, models
from kray_operator.builders import names, pods, service

SUBMITTER_CONTAINER = "kray-job-submitter"
DEFAULT_SUBMITTER_BACKOFF_LIMIT = 2
SUBMITTER_RESOURCES = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "200Mi"}}
ENV_DASHBOARD_ADDRESS = "KRAY_DASHBOARD_ADDRESS"
ENV_SUBMISSION_ID = "KRAY_JOB_SUBMISSION_ID"
# KubeRay's names of the same two variables, for submitterPodTemplates written for KubeRay.
ENV_RAY_DASHBOARD_ADDRESS = "RAY_DASHBOARD_ADDRESS"
ENV_RAY_SUBMISSION_ID = "RAY_JOB_SUBMISSION_ID"
SUBMISSION_MODE_LABEL = "kray.io/job-submission-mode"
RAY_ORIGINATED_FROM_CRD_LABEL = "ray.io/originated-from-crd"
RAY_ORIGINATED_FROM_CR_NAME_LABEL = "ray.io/originated-from-cr-name"
RAY_SUBMISSION_MODE_LABEL = "ray.io/job-submission-mode"
# Room for "-<suffix>" and "-head-svc" within a 63-character Service name.
_MAX_JOB_PREFIX = names.MAX_CLUSTER_NAME - 6
# Waits until the job API answers at all (any HTTP status, even 401, means the server is up).
_WAIT_FOR_API = (
    "import sys, urllib.error, urllib.request\n"
    "try:\n    urllib.request.urlopen(sys.argv[1], timeout=3)\n"
    "except urllib.error.HTTPError:\n    pass\n"
)


def job_labels(job: job_models.RayJob) -> dict[str, str]:
    """Labels of everything a RayJob creates (kray.io/* and KubeRay's ray.io/* keys)."""
    name = job.metadata.name[:63].rstrip("-_.")
    return {
        **names.app_labels(),
        names.ORIGINATED_FROM_CRD_LABEL: "RayJob",
        names.ORIGINATED_FROM_CR_NAME_LABEL: name,
        RAY_ORIGINATED_FROM_CRD_LABEL: "RayJob",
        RAY_ORIGINATED_FROM_CR_NAME_LABEL: name,
    }


def cluster_name(job: job_models.RayJob, suffix: str) -> str:
    """Name of the RayCluster created for a RayJob: `<rayjob>-<suffix>`, trimmed to fit a Service name."""
    names.check_suffix(suffix)
    prefix = job.metadata.name[:_MAX_JOB_PREFIX].rstrip("-.")
    if not prefix or not prefix[0].isalpha():
        prefix = "job-" + prefix
        prefix = prefix[:_MAX_JOB_PREFIX].rstrip("-.")
    return f"{prefix}-{suffix}"


def submission_id(job: job_models.RayJob, suffix: str) -> str:
    """spec.jobId when set, else `<rayjob>-<suffix>` (store it in .status.jobId before submitting)."""
    if job.spec.job_id:
        return job.spec.job_id
    names.check_suffix(suffix)
    return f"{job.metadata.name}-{suffix}"


def ray_cluster(job: job_models.RayJob, name: str, job_id: str = "") -> dict[str, Any]:
    """The RayCluster manifest for `job`'s rayClusterSpec, owned by the RayJob.

    It carries the RayJob's own labels and annotations, as KubeRay's does. In SidecarMode the head
    Pod gets the submitter container (submitting `job_id`) and restartPolicy Never.
    """
    if job.spec.ray_cluster_spec is None:
        raise ValueError(f"RayJob {job.metadata.name!r} selects a cluster (clusterSelector); it creates none")
    names.check_cluster_name(name)
    mode = job.spec.submission_mode
    spec = job.spec.ray_cluster_spec.to_manifest()
    if mode == job_models.JobSubmissionMode.SIDECAR:
        head = spec["headGroupSpec"]
        params = job.spec.ray_cluster_spec.head_group_spec.ray_start_params
        image = job.spec.ray_cluster_spec.head_group_spec.template.spec.containers[0].image
        head["template"]["spec"]["containers"].append(sidecar_container(job, name, job_id, image, params))
        head["template"]["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": models.API_VERSION,
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "namespace": job.metadata.namespace,
            "labels": {**job.metadata.labels, **job_labels(job),
                       SUBMISSION_MODE_LABEL: mode.value, RAY_SUBMISSION_MODE_LABEL: mode.value},
            "annotations": dict(job.metadata.annotations),
            "ownerReferences": [names.owner_reference("RayJob", job.metadata)],
        },
        "spec": spec,
    }


def job_service_name(job: job_models.RayJob) -> str:
    """`<rayjob>-head-svc`: KubeRay's Service of a RayJob, which follows the job's current cluster."""
    return names.head_service_name(job.metadata.name)


def job_head_service(job: job_models.RayJob, cluster: models.RayCluster) -> dict[str, Any]:
    """The RayJob's own head Service: the cluster's head Service under the job's name, owned by the
    RayJob, so its address stays the same across retries (KubeRay's BuildHeadServiceForRayJob)."""
    name = job_service_name(job)
    names.check_service_name(name)
    made = service.head_service(cluster)
    made["metadata"] = {
        "name": name,
        "namespace": job.metadata.namespace,
        "labels": {**job_labels(job), names.NODE_TYPE_LABEL: names.HEAD, names.RAY_NODE_TYPE_LABEL: names.HEAD,
                   names.RAY_IDENTIFIER_LABEL: names.identifier(job.metadata.name, names.HEAD)},
        "ownerReferences": [names.owner_reference("RayJob", job.metadata)],
    }
    return made


def service_cluster(svc: dict[str, Any] | None) -> str:
    """The cluster whose head a Service selects ("" for none or no Service)."""
    return str((((svc or {}).get("spec") or {}).get("selector") or {}).get(names.CLUSTER_LABEL) or "")


def dashboard_url(cluster: str, namespace: str, head_params: dict[str, str] | None = None,
                  domain: str = names.DEFAULT_CLUSTER_DOMAIN, service: str | None = None) -> str:
    """`http://<cluster>-head-svc.<ns>.svc.<domain>:8265`, the job API of a cluster."""
    return "http://" + names.dashboard_address(cluster, namespace, head_params or {}, domain, service)


def cluster_dashboard_url(cluster: models.RayCluster, domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> str:
    """The job API URL of `cluster` through its head Service (a custom headService name included)."""
    return dashboard_url(cluster.metadata.name, cluster.metadata.namespace,
                         cluster.spec.head_group_spec.ray_start_params, domain,
                         names.cluster_head_service_name(cluster))


def submission_request(job: job_models.RayJob, job_id: str) -> dict[str, Any]:
    """Body of `POST /api/jobs/` (HTTPMode), in the Ray job API's field names."""
    spec = job.spec
    body: dict[str, Any] = {"entrypoint": (spec.entrypoint or "").strip(), "submission_id": job_id}
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


def submit_argv(job: job_models.RayJob, job_id: str, address: str, wait: bool = False) -> list[str]:
    """`kray job submit --address <url> --submission-id <id> [--no-wait] [options] -- <entrypoint>`.

    The entrypoint stays one argument, so the CLI gets it exactly as written in the spec.
    """
    spec = job.spec
    argv = ["kray", "job", "submit", "--address", address, "--submission-id", job_id]
    if not wait:
        argv.append("--no-wait")
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
    return argv + ["--", (spec.entrypoint or "").strip()]


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def wait_for_api_script(address: str) -> str:
    """Shell loop that returns once the job API at `address` answers (it may start after the Pod is ready)."""
    probe = shlex.join(["python3", "-c", _WAIT_FOR_API, address.rstrip("/") + "/api/version"])
    return (f"until {probe} >/dev/null 2>&1; do echo {shlex.quote('waiting for the job API at ' + address)}; "
            "sleep 2; done")


def submitter_script(job: job_models.RayJob, job_id: str, address: str) -> str:
    """Shell script of the submitter Job's container: wait for the job API, submit unless a retried Pod
    already did, then follow the logs until the job ends.

    Its exit status is the log follower's; the operator reads the job's outcome from the job API.
    """
    status = shlex.join(["kray", "job", "status", "--address", address, job_id])
    logs = shlex.join(["kray", "job", "logs", "--address", address, "--follow", job_id])
    submit = shlex.join(submit_argv(job, job_id, address))
    return f"{wait_for_api_script(address)}; if ! {status} >/dev/null 2>&1; then {submit}; fi && {logs}"


def sidecar_container(job: job_models.RayJob, cluster: str, job_id: str, image: str,
                      head_params: dict[str, str]) -> dict[str, Any]:
    """The SidecarMode submitter in the head Pod: `kray job submit` (waiting, logs streamed) against
    127.0.0.1; it exits 0 only when the job succeeded."""
    address = f"http://127.0.0.1:{names.head_port(head_params, 'dashboard')}"
    script = f"{wait_for_api_script(address)}; {shlex.join(submit_argv(job, job_id, address, wait=True))}"
    return {
        "name": SUBMITTER_CONTAINER,
        "image": image,
        "command": ["/bin/sh", "-c", script],
        "resources": copy.deepcopy(SUBMITTER_RESOURCES),
        "env": _submitter_env(cluster, address, job_id),
    }


def _submitter_env(cluster: str, address: str, job_id: str) -> list[dict[str, Any]]:
    return [
        {"name": pods.ENV_TOKEN, "valueFrom": {"secretKeyRef": {
            "name": names.token_secret_name(cluster), "key": names.TOKEN_KEY}}},
        {"name": ENV_DASHBOARD_ADDRESS, "value": address},
        {"name": ENV_SUBMISSION_ID, "value": job_id},
        {"name": ENV_RAY_DASHBOARD_ADDRESS, "value": address.removeprefix("http://")},
        {"name": ENV_RAY_SUBMISSION_ID, "value": job_id},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def submitter_job(job: job_models.RayJob, cluster: models.RayCluster, job_id: str,
                  domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> dict[str, Any]:
    """The batch/v1 Job (named like the RayJob) that submits the entrypoint to `cluster` (K8sJobMode).

    The Pod comes from submitterPodTemplate when given (its first container gets the command unless
    it has one), else one container of the head's image. It reads the cluster token from the Secret.
    """
    head = cluster.spec.head_group_spec
    address = cluster_dashboard_url(cluster, domain)
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
    if not container.get("command"):
        container["command"] = ["/bin/sh", "-c", submitter_script(job, job_id, address)]
        container.pop("args", None)
    env = container.setdefault("env", [])
    present = {e.get("name") for e in env}
    env.extend(item for item in _submitter_env(cluster.metadata.name, address, job_id) if item["name"] not in present)
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **job_labels(job)}
    backoff = job.spec.submitter_backoff_limit
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job.metadata.name,
            "namespace": job.metadata.namespace,
            "labels": job_labels(job),
            "ownerReferences": [names.owner_reference("RayJob", job.metadata)],
        },
        "spec": {"backoffLimit": DEFAULT_SUBMITTER_BACKOFF_LIMIT if backoff is None else backoff,
                 "template": template},
    }
