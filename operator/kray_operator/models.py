"""Pydantic models of the RayCluster and RayJob custom resources (kray.io/v1): specs, statuses, metadata.

Field names (camelCase aliases) mirror crds/*.yaml, which mirror KubeRay's ray.io/v1. Pure data and
validation; no I/O. Validation messages say what to change in the manifest.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import alias_generators

from kray_operator import quantity

GROUP = "kray.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
MAX_INT32 = 2**31 - 1
HEAD_GROUP_NAME = "headgroup"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_FLAG_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_]*$")


class _Spec(pydantic.BaseModel):
    """Base of spec models: camelCase aliases, Python names accepted too, unknown fields rejected."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel, populate_by_name=True, extra="forbid"
    )

    def to_manifest(self) -> dict[str, Any]:
        """The camelCase dict as it appears in a manifest, leaving out fields that were never set."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class _Open(_Spec):
    """Base of models that keep fields they do not declare (Pod templates, statuses)."""

    model_config = pydantic.ConfigDict(extra="allow")


class ObjectMeta(_Open):
    """The parts of metadata the operator reads; the rest is kept."""

    name: str = ""
    namespace: str = "default"
    uid: str = ""
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None


# ---- Pod templates: only what the builders read is typed; everything else round-trips.


class ResourceRequirements(_Open):
    """A container's resources; quantities as written ("500m", 2, "1Gi")."""

    limits: dict[str, quantity.Quantity] = {}
    requests: dict[str, quantity.Quantity] = {}

    @pydantic.field_validator("limits", "requests")
    @classmethod
    def _quantities(cls, values: dict[str, quantity.Quantity]) -> dict[str, quantity.Quantity]:
        for name, value in values.items():
            if not quantity.is_valid(value):
                raise ValueError(
                    f"resource {name!r} has invalid quantity {value!r}; write it like 500m, 2 or 1Gi"
                )
        return values


class Container(_Open):
    """A container of a Pod template; the first one runs kray."""

    name: str
    image: str = pydantic.Field(min_length=1)
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[dict[str, Any]] | None = None
    ports: list[dict[str, Any]] | None = None
    resources: ResourceRequirements = ResourceRequirements()


class PodSpec(_Open):
    """A core/v1 PodSpec; only `containers` is checked here, the API server checks the rest."""

    containers: list[Container] = pydantic.Field(min_length=1)


class TemplateMeta(_Open):
    """Labels and annotations of a Pod template."""

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class PodTemplateSpec(_Open):
    """A core/v1 PodTemplateSpec."""

    metadata: TemplateMeta = TemplateMeta()
    spec: PodSpec


# ---- RayCluster spec


def _ray_start_params(values: dict[str, Any]) -> dict[str, str]:
    """Check rayStartParams keys and turn YAML scalars into the strings the CRD stores."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("-"):
            raise ValueError(
                f"rayStartParams key {key!r} starts with '-'; write it without dashes, e.g. {key.lstrip('-')!r}"
            )
        if not _FLAG_NAME.match(key):
            raise ValueError(f"rayStartParams key {key!r} is not a flag name like 'num-cpus'")
        if value is None:
            raise ValueError(f"rayStartParams[{key!r}] is empty; give it a value or remove it")
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            out[key] = str(value)
        else:
            raise ValueError(  # noqa: TRY004 (pydantic turns ValueError into a validation error)
                f"rayStartParams[{key!r}] must be a string (quote it in YAML), not {type(value).__name__}"
            )
    return out


def _ray_start_params_or_empty(values: Any) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError("rayStartParams must be a mapping of flag name to value, e.g. {num-cpus: '1'}")  # noqa: TRY004
    return _ray_start_params(values)


RayStartParams = Annotated[dict[str, str], pydantic.BeforeValidator(_ray_start_params_or_empty)]


class ScaleStrategy(_Spec):
    """Which worker Pods to remove first when scaling down."""

    workers_to_delete: list[str] = []


class HeadGroupSpec(_Spec):
    """The head Pod: its template, `kray start --head` flags and Service type."""

    template: PodTemplateSpec
    ray_start_params: RayStartParams = {}
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = None
    head_service: dict[str, Any] | None = None
    enable_ingress: bool | None = None


class WorkerGroupSpec(_Spec):
    """A group of identical worker Pods, scaled between minReplicas and maxReplicas."""

    group_name: str = pydantic.Field(min_length=1, max_length=63)
    replicas: int | None = pydantic.Field(default=None, ge=0, le=MAX_INT32)
    min_replicas: int = pydantic.Field(default=0, ge=0, le=MAX_INT32)
    max_replicas: int = pydantic.Field(default=MAX_INT32, ge=0, le=MAX_INT32)
    num_of_hosts: int = pydantic.Field(default=1, ge=1)
    idle_timeout_seconds: int | None = pydantic.Field(default=None, ge=0)
    ray_start_params: RayStartParams = {}
    template: PodTemplateSpec
    scale_strategy: ScaleStrategy = ScaleStrategy()
    suspend: bool | None = None

    @pydantic.field_validator("group_name")
    @classmethod
    def _group_name(cls, name: str) -> str:
        if not _DNS_LABEL.match(name):
            raise ValueError(
                f"groupName {name!r} must be a DNS label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit (e.g. 'cpu-small')"
            )
        if name == HEAD_GROUP_NAME:
            raise ValueError(f"groupName {name!r} is reserved for the head; pick another name")
        return name

    @pydantic.model_validator(mode="after")
    def _min_le_max(self) -> WorkerGroupSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"worker group {self.group_name!r}: minReplicas ({self.min_replicas}) is greater than "
                f"maxReplicas ({self.max_replicas}); lower minReplicas or raise maxReplicas"
            )
        return self


class AutoscalerOptions(_Spec):
    """Autoscaler settings; the container fields are accepted for KubeRay manifests and unused."""

    idle_timeout_seconds: int | None = pydantic.Field(default=None, ge=0)
    upscaling_mode: Literal["Default", "Aggressive", "Conservative"] | None = None
    resources: dict[str, Any] | None = None
    image: str | None = None
    image_pull_policy: str | None = None
    security_context: dict[str, Any] | None = None
    env: list[dict[str, Any]] | None = None
    env_from: list[dict[str, Any]] | None = None
    volume_mounts: list[dict[str, Any]] | None = None


class RayClusterSpec(_Spec):
    """Desired state of a cluster: a head group and worker groups."""

    head_group_spec: HeadGroupSpec
    worker_group_specs: list[WorkerGroupSpec] = []
    ray_version: str | None = None
    enable_in_tree_autoscaling: bool | None = None
    autoscaler_options: AutoscalerOptions | None = None
    head_service_annotations: dict[str, str] = {}
    suspend: bool | None = None

    @pydantic.model_validator(mode="after")
    def _unique_groups(self) -> RayClusterSpec:
        names = [g.group_name for g in self.worker_group_specs]
        dups = sorted({name for name in names if names.count(name) > 1})
        if dups:
            raise ValueError(f"workerGroupSpecs has duplicate groupName {dups}; give each group its own name")
        return self

    def group(self, name: str) -> WorkerGroupSpec | None:
        """The worker group called `name`, or None."""
        return next((g for g in self.worker_group_specs if g.group_name == name), None)


# ---- statuses


class ClusterState(str, enum.Enum):
    """RayCluster .status.state values (KubeRay's)."""

    READY = "ready"
    SUSPENDED = "suspended"
    FAILED = "failed"


class Condition(_Open):
    """A metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    observed_generation: int | None = None


class HeadInfo(_Open):
    """Where the head Pod and Service are."""

    pod_ip: str | None = pydantic.Field(default=None, alias="podIP")
    pod_name: str | None = None
    service_ip: str | None = pydantic.Field(default=None, alias="serviceIP")
    service_name: str | None = None


class RayClusterStatus(_Open):
    """Observed state of a RayCluster (all fields declared in the CRD)."""

    state: str | None = None
    reason: str | None = None
    desired_cpu: quantity.Quantity | None = pydantic.Field(default=None, alias="desiredCPU")
    desired_memory: quantity.Quantity | None = None
    desired_gpu: quantity.Quantity | None = pydantic.Field(default=None, alias="desiredGPU")
    desired_tpu: quantity.Quantity | None = pydantic.Field(default=None, alias="desiredTPU")
    last_update_time: str | None = None
    state_transition_times: dict[str, str] = {}
    endpoints: dict[str, str] = {}
    head: HeadInfo = HeadInfo()
    conditions: list[Condition] = []
    ready_worker_replicas: int = 0
    available_worker_replicas: int = 0
    desired_worker_replicas: int = 0
    min_worker_replicas: int = 0
    max_worker_replicas: int = 0
    observed_generation: int | None = None


class RayCluster(_Open):
    """A whole RayCluster object as the API server returns it."""

    api_version: str = API_VERSION
    kind: Literal["RayCluster"] = "RayCluster"
    metadata: ObjectMeta = ObjectMeta()
    spec: RayClusterSpec
    status: RayClusterStatus | None = None


# ---- RayJob


class JobSubmissionMode(str, enum.Enum):
    """How the operator submits the job (KubeRay's names)."""

    K8S_JOB = "K8sJobMode"
    HTTP = "HTTPMode"
    INTERACTIVE = "InteractiveMode"


class JobStatus(str, enum.Enum):
    """Status of a job as the head's job API reports it."""

    NEW = ""
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        """Whether the job can no longer change status."""
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobDeploymentStatus(str, enum.Enum):
    """Lifecycle of a RayJob: cluster, submission, completion."""

    NEW = ""
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    RETRYING = "Retrying"
    WAITING = "Waiting"


class JobFailedReason(str, enum.Enum):
    """Why a RayJob's deployment status became Failed."""

    SUBMISSION_FAILED = "SubmissionFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    APP_FAILED = "AppFailed"
    VALIDATION_FAILED = "ValidationFailed"


class DeletionPolicy(str, enum.Enum):
    """What to delete when a job finishes."""

    DELETE_CLUSTER = "DeleteCluster"
    DELETE_WORKERS = "DeleteWorkers"
    DELETE_SELF = "DeleteSelf"
    DELETE_NONE = "DeleteNone"


class SubmitterConfig(_Spec):
    """Settings of the submitter Kubernetes Job."""

    backoff_limit: int | None = pydantic.Field(default=None, ge=0)


class RayJobSpec(_Spec):
    """Desired state of a job: its entrypoint, its cluster (new or selected) and its clean-up."""

    entrypoint: str | None = None
    runtime_env_yaml: str | None = pydantic.Field(default=None, alias="runtimeEnvYAML")
    job_id: str | None = None
    metadata: dict[str, str] = {}
    ray_cluster_spec: RayClusterSpec | None = None
    cluster_selector: dict[str, str] = {}
    shutdown_after_job_finishes: bool = False
    ttl_seconds_after_finished: int = pydantic.Field(default=0, ge=0)
    active_deadline_seconds: int | None = pydantic.Field(default=None, ge=1)
    backoff_limit: int = pydantic.Field(default=0, ge=0)
    submission_mode: JobSubmissionMode = JobSubmissionMode.K8S_JOB
    submitter_pod_template: PodTemplateSpec | None = None
    submitter_config: SubmitterConfig | None = None
    deletion_policy: DeletionPolicy | None = None
    suspend: bool = False
    entrypoint_num_cpus: float | None = pydantic.Field(default=None, ge=0)
    entrypoint_num_gpus: float | None = pydantic.Field(default=None, ge=0)
    entrypoint_resources: str | None = None

    @pydantic.field_validator("runtime_env_yaml", "entrypoint_resources")
    @classmethod
    def _parses(cls, text: str | None, info: pydantic.ValidationInfo) -> str | None:
        if text is not None:
            (_parse_runtime_env if info.field_name == "runtime_env_yaml" else _parse_entrypoint_resources)(text)
        return text

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> RayJobSpec:
        mode = self.submission_mode
        if mode != JobSubmissionMode.INTERACTIVE and not (self.entrypoint or "").strip():
            raise ValueError(
                f"entrypoint is required in submissionMode {mode.value}; set it to the command that runs "
                "your driver (e.g. 'python script.py'), or use submissionMode InteractiveMode"
            )
        if self.ray_cluster_spec is None and not self.cluster_selector:
            raise ValueError(
                "set rayClusterSpec (a cluster to create for the job) or clusterSelector "
                "(labels of an existing RayCluster)"
            )
        if self.cluster_selector and self.ray_cluster_spec is not None:
            raise ValueError("set either rayClusterSpec or clusterSelector, not both")
        if self.cluster_selector and self.shutdown_after_job_finishes:
            raise ValueError(
                "shutdownAfterJobFinishes cannot be used with clusterSelector: the job does not own "
                "the selected cluster; remove one of them"
            )
        if self.cluster_selector and self.suspend:
            raise ValueError("suspend cannot be used with clusterSelector; remove one of them")
        if self.submitter_pod_template is not None and mode != JobSubmissionMode.K8S_JOB:
            raise ValueError(f"submitterPodTemplate is only used in K8sJobMode, not {mode.value}; remove it")
        return self

    @property
    def runtime_env(self) -> dict[str, Any]:
        """runtimeEnvYAML parsed into a runtime_env dict ({} when unset)."""
        return _parse_runtime_env(self.runtime_env_yaml) if self.runtime_env_yaml else {}

    @property
    def entrypoint_resources_dict(self) -> dict[str, float]:
        """entrypointResources parsed into {resource: amount} ({} when unset)."""
        return _parse_entrypoint_resources(self.entrypoint_resources) if self.entrypoint_resources else {}


def _parse_runtime_env(text: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"runtimeEnvYAML is not valid YAML ({exc}); write a mapping such as 'pip: [requests]'")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004
            f"runtimeEnvYAML must be a YAML mapping such as 'env_vars: {{A: b}}', not a {type(value).__name__}"
        )
    return value


def _parse_entrypoint_resources(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"entrypointResources is not valid JSON ({exc}); write e.g. '{{\"accel\": 1}}'")
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise ValueError("entrypointResources must be a JSON object of resource name to number, e.g. '{\"accel\": 1}'")
    return {k: float(v) for k, v in value.items()}


class RayJobStatus(_Open):
    """Observed state of a RayJob (all fields declared in the CRD)."""

    job_id: str | None = None
    ray_cluster_name: str | None = None
    dashboard_url: str | None = pydantic.Field(default=None, alias="dashboardURL")
    job_status: str | None = None
    job_deployment_status: str | None = None
    reason: str | None = None
    message: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    succeeded: int = 0
    failed: int = 0
    ray_cluster_status: RayClusterStatus | None = None
    observed_generation: int | None = None


class RayJob(_Open):
    """A whole RayJob object as the API server returns it."""

    api_version: str = API_VERSION
    kind: Literal["RayJob"] = "RayJob"
    metadata: ObjectMeta = ObjectMeta()
    spec: RayJobSpec
    status: RayJobStatus | None = None


def describe_error(error: pydantic.ValidationError) -> str:
    """One line per problem, as 'spec.workerGroupSpecs[0].minReplicas: <what to fix>', for status and events."""
    lines = []
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against the CRD (crds/*.yaml)"
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)
