"""Pydantic models of the RayJob custom resource (kray.io/v1): spec, status, deletion strategy, enums.

Field names (camelCase aliases) mirror crds/rayjob.yaml, which mirrors KubeRay's ray.io/v1 RayJob.
Pure data and validation; no I/O. Validation messages say what to change in the manifest.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

import pydantic
import yaml

from kray_operator import models

# clusterSelector keys naming the RayCluster to run on: KubeRay's, and kray's own label.
CLUSTER_SELECTOR_KEYS = ("ray.io/cluster", "kray.io/cluster")
# spec.managedBy values, as KubeRay's: this operator (KubeRay's name; kray's stands in for it), or Kueue.
MANAGED_BY_US = (models.MANAGED_BY_OPERATOR,)
MANAGED_BY_VALUES = (*MANAGED_BY_US, "kueue.x-k8s.io/multikueue")


class JobSubmissionMode(str, enum.Enum):
    """How the operator submits the job (KubeRay's names)."""

    K8S_JOB = "K8sJobMode"
    HTTP = "HTTPMode"
    INTERACTIVE = "InteractiveMode"
    SIDECAR = "SidecarMode"


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

    @property
    def terminal(self) -> bool:
        """Complete or Failed: nothing but clean-up happens any more."""
        return self in (JobDeploymentStatus.COMPLETE, JobDeploymentStatus.FAILED)


class JobFailedReason(str, enum.Enum):
    """Why a RayJob's deployment status became Failed (KubeRay's reasons)."""

    SUBMISSION_FAILED = "SubmissionFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    PRE_RUNNING_DEADLINE_EXCEEDED = "PreRunningDeadlineExceeded"
    APP_FAILED = "AppFailed"
    TRANSITION_GRACE_PERIOD_EXCEEDED = "JobDeploymentStatusTransitionGracePeriodExceeded"
    STATUS_CHECK_TIMEOUT_EXCEEDED = "JobStatusCheckTimeoutExceeded"
    VALIDATION_FAILED = "ValidationFailed"


class DeletionPolicyType(str, enum.Enum):
    """What to delete once the job finished, from least to most destructive."""

    DELETE_NONE = "DeleteNone"
    DELETE_WORKERS = "DeleteWorkers"
    DELETE_CLUSTER = "DeleteCluster"
    DELETE_SELF = "DeleteSelf"


class DeletionCondition(models._Spec):
    """When a deletion rule fires: a job status or a deployment status, plus a delay."""

    job_status: Literal["SUCCEEDED", "FAILED"] | None = None
    job_deployment_status: Literal["Failed"] | None = None
    ttl_seconds: int = pydantic.Field(default=0, ge=0, alias="ttlSeconds")

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> DeletionCondition:
        if (self.job_status is None) == (self.job_deployment_status is None):
            raise ValueError("a deletion rule's condition needs exactly one of jobStatus and jobDeploymentStatus")
        return self


class DeletionRule(models._Spec):
    """One deletion action and its trigger."""

    policy: DeletionPolicyType
    condition: DeletionCondition


class LegacyDeletionPolicy(models._Spec):
    """onSuccess/onFailure of the deprecated deletionStrategy form."""

    policy: DeletionPolicyType | None = None


class DeletionStrategy(models._Spec):
    """Clean-up after the job finished: deletionRules, or the legacy onSuccess and onFailure pair."""

    on_success: LegacyDeletionPolicy | None = None
    on_failure: LegacyDeletionPolicy | None = None
    deletion_rules: list[DeletionRule] | None = None


class SubmitterConfig(models._Spec):
    """Settings of the submitter (the Kubernetes Job's backoffLimit in K8sJobMode)."""

    backoff_limit: int | None = pydantic.Field(default=None, ge=0)


class RayJobSpec(models._Spec):
    """Desired state of a job: its entrypoint, its cluster (new or selected) and its clean-up."""

    entrypoint: str | None = None
    runtime_env_yaml: str | None = pydantic.Field(default=None, alias="runtimeEnvYAML")
    job_id: str | None = None
    metadata: dict[str, str] = pydantic.Field(default_factory=dict)
    ray_cluster_spec: models.RayClusterSpec | None = None
    cluster_selector: dict[str, str] = pydantic.Field(default_factory=dict)
    shutdown_after_job_finishes: bool = False
    ttl_seconds_after_finished: int = pydantic.Field(default=0, ge=0)
    active_deadline_seconds: int | None = pydantic.Field(default=None, ge=1)
    pre_running_deadline_seconds: int | None = pydantic.Field(default=None, ge=1)
    backoff_limit: int = pydantic.Field(default=0, ge=0)
    submission_mode: JobSubmissionMode = JobSubmissionMode.K8S_JOB
    submitter_pod_template: models.PodTemplateSpec | None = None
    submitter_config: SubmitterConfig | None = None
    deletion_strategy: DeletionStrategy | None = None
    managed_by: str | None = None
    suspend: bool = False
    entrypoint_num_cpus: float | None = pydantic.Field(default=None, ge=0)
    entrypoint_num_gpus: float | None = pydantic.Field(default=None, ge=0)
    entrypoint_resources: str | None = None

    @pydantic.field_validator("runtime_env_yaml", "entrypoint_resources")
    @classmethod
    def _parses(cls, text: str | None, info: pydantic.ValidationInfo) -> str | None:
        if text is not None:
            (parse_runtime_env if info.field_name == "runtime_env_yaml" else parse_entrypoint_resources)(text)
        return text

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> RayJobSpec:
        problems = spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def selected_cluster(self) -> str | None:
        """Name of the existing RayCluster that clusterSelector picks (None when it creates one)."""
        return cluster_selector_name(self.cluster_selector) if self.cluster_selector else None

    @property
    def runtime_env(self) -> dict[str, Any]:
        """runtimeEnvYAML parsed into a runtime_env dict ({} when unset)."""
        return parse_runtime_env(self.runtime_env_yaml) if self.runtime_env_yaml else {}

    @property
    def entrypoint_resources_dict(self) -> dict[str, float]:
        """entrypointResources parsed into {resource: amount} ({} when unset)."""
        return parse_entrypoint_resources(self.entrypoint_resources) if self.entrypoint_resources else {}

    @property
    def submitter_backoff_limit(self) -> int | None:
        """submitterConfig.backoffLimit, None when unset."""
        return self.submitter_config.backoff_limit if self.submitter_config is not None else None


def cluster_selector_name(selector: dict[str, str]) -> str:
    """The RayCluster named by a clusterSelector (`ray.io/cluster: NAME` or `kray.io/cluster: NAME`)."""
    for key in CLUSTER_SELECTOR_KEYS:
        if selector.get(key):
            return selector[key]
    raise ValueError(
        f"clusterSelector {selector} names no cluster; write `ray.io/cluster: <RayCluster name>` "
        "(or kray.io/cluster)"
    )


def spec_problems(spec: RayJobSpec) -> list[str]:
    """KubeRay's cross-field checks of a RayJob spec, each as advice on what to change."""
    mode = spec.submission_mode
    selector = bool(spec.cluster_selector)
    out: list[str] = []
    if mode != JobSubmissionMode.INTERACTIVE and not (spec.entrypoint or "").strip():
        out.append(f"entrypoint is required in submissionMode {mode.value}; set it to the command that runs "
                   "your driver (e.g. 'python script.py'), or use submissionMode InteractiveMode")
    if spec.ray_cluster_spec is None and not selector:
        out.append("set rayClusterSpec (a cluster to create for the job) or clusterSelector "
                   "(`ray.io/cluster: <name>` of an existing RayCluster)")
    if selector:
        try:
            cluster_selector_name(spec.cluster_selector)
        except ValueError as e:
            out.append(str(e))
        if spec.suspend:
            out.append("suspend cannot be used with clusterSelector (the job does not own that cluster); remove one")
        if spec.backoff_limit > 0:
            out.append("backoffLimit retries on a new cluster, so it cannot be used with clusterSelector; set it to 0")
        if mode == JobSubmissionMode.SIDECAR:
            out.append("SidecarMode runs the submitter in the head Pod of a new cluster; it cannot use clusterSelector")
    if spec.suspend and not spec.shutdown_after_job_finishes:
        out.append("a RayJob can only be suspended with shutdownAfterJobFinishes: true; set it or remove suspend")
    if spec.ttl_seconds_after_finished > 0 and not spec.shutdown_after_job_finishes:
        out.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true; set it or remove the TTL")
    if mode == JobSubmissionMode.INTERACTIVE and spec.backoff_limit > 0:
        out.append("backoffLimit cannot be used with InteractiveMode; set it to 0")
    if spec.submitter_pod_template is not None and mode != JobSubmissionMode.K8S_JOB:
        out.append(f"submitterPodTemplate is only used in K8sJobMode, not {mode.value}; remove it")
    if mode == JobSubmissionMode.SIDECAR:
        if spec.submitter_config is not None:
            out.append("submitterConfig is not supported in SidecarMode; remove it")
        head = spec.ray_cluster_spec.head_group_spec.template.spec if spec.ray_cluster_spec else None
        restart = (head.model_extra or {}).get("restartPolicy") if head is not None else None
        if restart not in (None, "", "Never"):
            out.append(f"the head Pod's restartPolicy must be Never or unset in SidecarMode, not {restart!r}")
    if spec.managed_by is not None and spec.managed_by not in MANAGED_BY_VALUES:
        out.append(f"managedBy must be one of {list(MANAGED_BY_VALUES)}, not {spec.managed_by!r}")
    if spec.deletion_strategy is not None:
        out += deletion_problems(spec, spec.deletion_strategy)
    return out


def deletion_problems(spec: RayJobSpec, strategy: DeletionStrategy) -> list[str]:
    """The checks KubeRay makes of deletionStrategy (rules, or the legacy pair)."""
    legacy = strategy.on_success is not None or strategy.on_failure is not None
    rules = strategy.deletion_rules or []
    selector = bool(spec.cluster_selector)
    autoscaling = bool(spec.ray_cluster_spec and spec.ray_cluster_spec.enable_in_tree_autoscaling)
    cluster_policies = (DeletionPolicyType.DELETE_CLUSTER, DeletionPolicyType.DELETE_WORKERS)
    if rules and legacy:
        return ["deletionStrategy: use deletionRules or onSuccess/onFailure, not both"]
    if rules and spec.shutdown_after_job_finishes:
        return ["deletionStrategy.deletionRules and shutdownAfterJobFinishes exclude each other; remove one"]
    if not rules and not legacy:
        return ["deletionStrategy needs deletionRules (a non-empty list) or both onSuccess and onFailure"]
    out: list[str] = []
    if legacy:
        if strategy.on_success is None or strategy.on_failure is None:
            return ["deletionStrategy needs both onSuccess and onFailure (or deletionRules instead)"]
        chosen = [strategy.on_success.policy, strategy.on_failure.policy]
        if None in chosen:
            return ["deletionStrategy.onSuccess.policy and onFailure.policy must both be set"]
        if selector and any(p in cluster_policies for p in chosen):
            out.append("DeleteCluster and DeleteWorkers cannot be used with clusterSelector")
        if autoscaling and DeletionPolicyType.DELETE_WORKERS in chosen:
            out.append("DeleteWorkers cannot be used with enableInTreeAutoscaling")
        if spec.shutdown_after_job_finishes and DeletionPolicyType.DELETE_NONE in chosen:
            out.append("shutdownAfterJobFinishes: true contradicts the DeleteNone policy; remove one")
        return out
    seen: dict[str, dict[DeletionPolicyType, int]] = {}
    for index, rule in enumerate(rules):
        if selector and rule.policy in cluster_policies:
            out.append(f"deletionRules[{index}]: {rule.policy.value} cannot be used with clusterSelector")
            continue
        if autoscaling and rule.policy == DeletionPolicyType.DELETE_WORKERS:
            out.append(f"deletionRules[{index}]: DeleteWorkers cannot be used with enableInTreeAutoscaling")
            continue
        cond = rule.condition
        key = f"jobStatus {cond.job_status}" if cond.job_status else f"jobDeploymentStatus {cond.job_deployment_status}"
        ttls = seen.setdefault(key, {})
        if rule.policy in ttls:
            out.append(f"deletionRules[{index}]: a second {rule.policy.value} rule for {key}")
            continue
        ttls[rule.policy] = cond.ttl_seconds
    order = [DeletionPolicyType.DELETE_WORKERS, DeletionPolicyType.DELETE_CLUSTER, DeletionPolicyType.DELETE_SELF]
    for key, ttls in seen.items():
        ordered = [(p, ttls[p]) for p in order if p in ttls]
        for index in range(1, len(ordered)):
            (before, t0), (after, t1) = ordered[index - 1], ordered[index]
            if t1 < t0:
                out.append(f"for {key}: the {after.value} ttlSeconds ({t1}) must be >= the {before.value} one ({t0})")
    return out


def parse_runtime_env(text: str) -> dict[str, Any]:
    """runtimeEnvYAML as a dict; ValueError with advice when it is not a YAML mapping."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"runtimeEnvYAML is not valid YAML ({exc}); write a mapping such as 'pip: [requests]'")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004 (pydantic turns ValueError into a validation error)
            f"runtimeEnvYAML must be a YAML mapping such as 'env_vars: {{A: b}}', not a {type(value).__name__}"
        )
    return value


def parse_entrypoint_resources(text: str) -> dict[str, float]:
    """entrypointResources as {name: amount}; ValueError with advice when it is not such a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"entrypointResources is not valid JSON ({exc}); write e.g. '{{\"accel\": 1}}'")
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise ValueError("entrypointResources must be a JSON object of resource name to number, e.g. '{\"accel\": 1}'")
    return {k: float(v) for k, v in value.items()}


class RayJobStatusInfo(models._Open):
    """When the job ran, as the job API reports it."""

    start_time: str | None = None
    end_time: str | None = None


class RayJobStatus(models._Open):
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
    ray_cluster_status: models.RayClusterStatus | None = None
    ray_job_info: RayJobStatusInfo | None = pydantic.Field(default=None, alias="rayJobInfo")
    job_status_check_failure_start_time: str | None = None
    observed_generation: int | None = None


class RayJob(models._Open):
    """A whole RayJob object as the API server returns it."""

    api_version: str = models.API_VERSION
    kind: Literal["RayJob"] = "RayJob"
    metadata: models.ObjectMeta = models.ObjectMeta()
    spec: RayJobSpec
    status: RayJobStatus | None = None
