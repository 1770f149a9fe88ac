"""job_models: the RayJob spec as KubeRay validates it, the deletion strategy, the enums and the CRD."""

from __future__ import annotations

from typing import Any

import crd_helpers
import pydantic
import pytest
from kray_operator import job_models, models


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        job_models.RayJob.model_validate(doc)
    return models.describe_error(info.value)


def test_sample_job_parses(job: job_models.RayJob) -> None:
    spec = job.spec
    assert spec.submission_mode is job_models.JobSubmissionMode.K8S_JOB
    assert spec.runtime_env == {"env_vars": {"KRAY_SAMPLE": "1"}}
    assert spec.shutdown_after_job_finishes and spec.ttl_seconds_after_finished == 10
    assert spec.ray_cluster_spec is not None and spec.ray_cluster_spec.worker_group_specs[0].min_replicas == 1
    assert spec.selected_cluster is None and spec.submitter_backoff_limit is None


SELECTED = {"rayClusterSpec": None, "clusterSelector": {"ray.io/cluster": "shared"},
            "shutdownAfterJobFinishes": False, "ttlSecondsAfterFinished": 0}


@pytest.mark.parametrize(
    "change, expect",
    [
        ({"entrypoint": None}, "entrypoint is required in submissionMode K8sJobMode"),
        ({"entrypoint": "   "}, "entrypoint is required"),
        ({"rayClusterSpec": None}, "set rayClusterSpec (a cluster to create for the job) or clusterSelector"),
        ({**SELECTED, "clusterSelector": {"a": "b"}}, "names no cluster; write `ray.io/cluster: <RayCluster name>`"),
        ({**SELECTED, "suspend": True, "shutdownAfterJobFinishes": True}, "suspend cannot be used with clusterSelector"),
        ({**SELECTED, "backoffLimit": 2}, "backoffLimit retries on a new cluster"),
        ({**SELECTED, "submissionMode": "SidecarMode"}, "SidecarMode runs the submitter in the head Pod"),
        ({"suspend": True, "shutdownAfterJobFinishes": False, "ttlSecondsAfterFinished": 0},
         "can only be suspended with shutdownAfterJobFinishes: true"),
        ({"shutdownAfterJobFinishes": False}, "ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true"),
        ({"submissionMode": "InteractiveMode", "backoffLimit": 1}, "backoffLimit cannot be used with InteractiveMode"),
        ({"runtimeEnvYAML": "pip: [a"}, "runtimeEnvYAML is not valid YAML"),
        ({"runtimeEnvYAML": "- a\n- b\n"}, "runtimeEnvYAML must be a YAML mapping"),
        ({"entrypointResources": "{a: 1}"}, "entrypointResources is not valid JSON"),
        ({"entrypointResources": '{"a": "x"}'}, "JSON object of resource name to number"),
        ({"submissionMode": "SSHMode"},
         "spec.submissionMode: Input should be 'K8sJobMode', 'HTTPMode', 'InteractiveMode' or 'SidecarMode'"),
        ({"submissionMode": "HTTPMode", "submitterPodTemplate": {"spec": {"containers": [{"name": "s", "image": "i"}]}}},
         "submitterPodTemplate is only used in K8sJobMode"),
        ({"submissionMode": "SidecarMode", "submitterConfig": {"backoffLimit": 1}}, "submitterConfig is not supported"),
        ({"managedBy": "someone/else"}, "managedBy must be one of"),
        ({"backoffLimit": -1}, "spec.backoffLimit"),
        ({"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds"),
        ({"preRunningDeadlineSeconds": 0}, "spec.preRunningDeadlineSeconds"),
    ],
)
def test_bad_jobs_say_what_to_fix(job_doc: dict[str, Any], change: dict[str, Any], expect: str) -> None:
    for key, value in change.items():
        if value is None:
            job_doc["spec"].pop(key, None)
        else:
            job_doc["spec"][key] = value
    assert expect in error_of(job_doc)


def test_sidecar_head_must_not_restart(job_doc: dict[str, Any]) -> None:
    job_doc["spec"]["submissionMode"] = "SidecarMode"
    job_doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert "restartPolicy must be Never or unset in SidecarMode" in error_of(job_doc)
    job_doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert job_models.RayJob.model_validate(job_doc).spec.submission_mode is job_models.JobSubmissionMode.SIDECAR


def test_interactive_job_needs_no_entrypoint(job_doc: dict[str, Any]) -> None:
    del job_doc["spec"]["entrypoint"]
    job_doc["spec"]["submissionMode"] = "InteractiveMode"
    assert job_models.RayJob.model_validate(job_doc).spec.submission_mode is job_models.JobSubmissionMode.INTERACTIVE


@pytest.mark.parametrize("key", ["ray.io/cluster", "kray.io/cluster"])
def test_job_on_a_selected_cluster(job_doc: dict[str, Any], key: str) -> None:
    spec = job_doc["spec"]
    spec.update({**SELECTED, "clusterSelector": {key: "shared"}, "entrypointResources": '{"accel": 2}'})
    del spec["rayClusterSpec"]
    parsed = job_models.RayJob.model_validate(job_doc).spec
    assert parsed.selected_cluster == "shared"
    assert parsed.entrypoint_resources_dict == {"accel": 2.0}


def rules(*items: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"deletionRules": [{"policy": p, "condition": c} for p, c in items]}


@pytest.mark.parametrize(
    "spec_change, expect",
    [
        ({"deletionStrategy": rules(("DeleteCluster", {"jobStatus": "FAILED"}))},
         "deletionRules and shutdownAfterJobFinishes exclude each other"),
        ({"shutdownAfterJobFinishes": False, "ttlSecondsAfterFinished": 0,
          "deletionStrategy": rules(("DeleteCluster", {"jobStatus": "FAILED", "ttlSeconds": 10}),
                                    ("DeleteSelf", {"jobStatus": "FAILED", "ttlSeconds": 5}))},
         "the DeleteSelf ttlSeconds (5) must be >= the DeleteCluster one (10)"),
        ({"shutdownAfterJobFinishes": False, "ttlSecondsAfterFinished": 0,
          "deletionStrategy": rules(("DeleteCluster", {"jobStatus": "FAILED"}), ("DeleteCluster", {"jobStatus": "FAILED"}))},
         "a second DeleteCluster rule for jobStatus FAILED"),
        ({"shutdownAfterJobFinishes": False, "ttlSecondsAfterFinished": 0,
          "deletionStrategy": rules(("DeleteSelf", {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}))},
         "exactly one of jobStatus and jobDeploymentStatus"),
        ({"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}}}, "needs both onSuccess and onFailure"),
        ({"deletionStrategy": {"onSuccess": {"policy": "DeleteNone"}, "onFailure": {"policy": "DeleteCluster"}}},
         "contradicts the DeleteNone policy"),
        ({"deletionStrategy": {}}, "deletionStrategy needs deletionRules"),
    ],
)
def test_deletion_strategy_is_checked(job_doc: dict[str, Any], spec_change: dict[str, Any], expect: str) -> None:
    job_doc["spec"].update(spec_change)
    assert expect in error_of(job_doc)


def test_good_deletion_rules_parse(job_doc: dict[str, Any]) -> None:
    job_doc["spec"].update(shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0, deletionStrategy=rules(
        ("DeleteWorkers", {"jobStatus": "SUCCEEDED"}), ("DeleteCluster", {"jobStatus": "SUCCEEDED", "ttlSeconds": 30}),
        ("DeleteSelf", {"jobDeploymentStatus": "Failed", "ttlSeconds": 60})))
    strategy = job_models.RayJob.model_validate(job_doc).spec.deletion_strategy
    assert strategy is not None and strategy.deletion_rules is not None
    assert [r.policy.value for r in strategy.deletion_rules] == ["DeleteWorkers", "DeleteCluster", "DeleteSelf"]
    assert strategy.deletion_rules[2].condition.job_deployment_status == "Failed"
    assert strategy.deletion_rules[1].condition.ttl_seconds == 30


def test_job_status_enums() -> None:
    assert job_models.JobStatus("SUCCEEDED").terminal and not job_models.JobStatus("RUNNING").terminal
    assert job_models.JobDeploymentStatus("Complete").terminal
    assert not job_models.JobDeploymentStatus("Retrying").terminal
    assert {m.value for m in job_models.DeletionPolicyType} == {"DeleteCluster", "DeleteWorkers", "DeleteSelf",
                                                                "DeleteNone"}
    assert job_models.JobFailedReason("JobDeploymentStatusTransitionGracePeriodExceeded")


def test_job_enum_values_match_the_crd() -> None:
    spec = crd_helpers.crd_schema("RayJob")["properties"]["spec"]["properties"]
    assert "enum" not in spec["submissionMode"], "an unknown mode fails the RayJob with advice, as KubeRay's"
    rule = spec["deletionStrategy"]["properties"]["deletionRules"]["items"]["properties"]
    assert rule["policy"]["enum"] == ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"]
    assert set(rule["policy"]["enum"]) == {m.value for m in job_models.DeletionPolicyType}
    managed = [r["rule"] for r in spec["managedBy"]["x-kubernetes-validations"]]
    assert all(v in managed[1] for v in job_models.MANAGED_BY_VALUES)
