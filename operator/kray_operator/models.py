"""Pydantic models of the RayCluster custom resource (kray.io/v1) and shared pieces: specs, statuses, metadata.
(RayJob's models are in job_models.)

Field names (camelCase aliases) mirror crds/*.yaml, which mirror KubeRay's ray.io/v1. Pure data and
validation; no I/O. Validation messages say what to change in the manifest.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import alias_generators

from kray_operator import quantity

GROUP = "kray.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
MAX_INT32 = 2**31 - 1
HEAD_GROUP_NAME = "headgroup"
# spec.managedBy value meaning "this operator" (KubeRay's name; kray's operator stands in for it).
MANAGED_BY_OPERATOR = "ray.io/kuberay-operator"
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
    """Autoscaler settings; the container fields and `version` are accepted for KubeRay manifests and unused."""

    version: Literal["v1", "v2"] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    idle_timeout_seconds: int | None = pydantic.Field(default=None, ge=0)
    upscaling_mode: Literal["Default", "Aggressive", "Conservative"] | None = None
    resources: dict[str, Any] | None = None
    image: str | None = None
    image_pull_policy: str | None = None
    security_context: dict[str, Any] | None = None
    env: list[dict[str, Any]] | None = None
    env_from: list[dict[str, Any]] | None = None
    volume_mounts: list[dict[str, Any]] | None = None


class AuthMode(str, enum.Enum):
    """authOptions.mode (KubeRay's): token turns on Ray's token auth, disabled leaves it off."""

    TOKEN = "token"
    DISABLED = "disabled"


class AuthOptions(_Spec):
    """Ray token authentication as KubeRay configures it; kray's own cluster token is always on."""

    mode: AuthMode | None = None


class RayClusterSpec(_Spec):
    """Desired state of a cluster: a head group and worker groups."""

    head_group_spec: HeadGroupSpec
    auth_options: AuthOptions | None = None
    managed_by: Literal["ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"] | None = None
    gcs_fault_tolerance_options: dict[str, Any] | None = None
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

    @property
    def managed_elsewhere(self) -> bool:
        """Whether managedBy hands the cluster to another controller (Kueue's MultiKueue), as in KubeRay."""
        return self.managed_by is not None and self.managed_by != MANAGED_BY_OPERATOR

    @property
    def ray_token_auth(self) -> bool:
        """Whether authOptions.mode is token: the Pods get RAY_AUTH_MODE and RAY_AUTH_TOKEN."""
        return self.auth_options is not None and self.auth_options.mode == AuthMode.TOKEN

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


# ---- RayJob: see kray_operator.job_models


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
