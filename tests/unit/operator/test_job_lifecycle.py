"""builders.job_lifecycle: KubeRay's RayJob state machine as a pure function of observed facts."""

from __future__ import annotations

from typing import Any

import pytest
from kray_operator import job_models
from kray_operator.builders import job_facts, job_lifecycle

A = job_facts.Action
T0 = job_facts.parse_time("2026-01-01T00:00:00Z")
READY = job_facts.ClusterFacts(exists=True, state="ready", status={"state": "ready"},
                               dashboard_url="c-head-svc.ns1.svc.cluster.local:8265")
RUNNING_SUBMITTER = job_facts.SubmitterFacts(exists=True)


def make(job_doc: dict[str, Any], **spec: Any) -> job_models.RayJob:
    job_doc["spec"].update(spec)
    return job_models.RayJob.model_validate(job_doc)


def running(**extra: Any) -> dict[str, Any]:
    return {"jobDeploymentStatus": "Running", "jobId": "rayjob-sample-j1", "rayClusterName": "rayjob-sample-c1",
            "dashboardURL": READY.dashboard_url, "startTime": job_facts.format_time(T0), **extra}


def step(job: job_models.RayJob, status: dict[str, Any], now: float = T0 + 5, **facts: Any) -> job_facts.Step:
    return job_lifecycle.step(job, job_facts.Facts(status=status, job_suffix="j1", cluster_suffix="c1", **facts), now)


def found(status: str, message: str = "") -> job_facts.ApiFacts:
    return job_facts.ApiFacts(outcome=job_facts.API_FOUND, status=status, message=message,
                              start_ms=int(T0 * 1000), end_ms=int((T0 + 4) * 1000) if status != "RUNNING" else 0)


def test_a_new_job_is_named_before_anything_is_created(job: job_models.RayJob) -> None:
    out = step(job, {})
    assert out.actions == [] and out.write
    assert out.status["jobDeploymentStatus"] == "Initializing"
    assert out.status["jobId"] == "rayjob-sample-j1" and out.status["rayClusterName"] == "rayjob-sample-c1"
    assert out.status["startTime"] == "2026-01-01T00:00:05Z" and out.status["observedGeneration"] == 1


def test_spec_job_id_and_selected_cluster_are_used(job_doc: dict[str, Any]) -> None:
    job_doc["spec"].pop("rayClusterSpec")
    job = make(job_doc, jobId="mine", clusterSelector={"ray.io/cluster": "shared"}, shutdownAfterJobFinishes=False,
               ttlSecondsAfterFinished=0)
    out = step(job, {})
    assert (out.status["jobId"], out.status["rayClusterName"]) == ("mine", "shared")


def test_interactive_jobs_get_no_generated_id(job_doc: dict[str, Any]) -> None:
    assert "jobId" not in step(make(job_doc, submissionMode="InteractiveMode"), {}).status


def test_initializing_creates_the_cluster_then_waits_for_it(job: job_models.RayJob) -> None:
    status = {"jobDeploymentStatus": "Initializing", "jobId": "rayjob-sample-j1",
              "rayClusterName": "rayjob-sample-c1", "startTime": job_facts.format_time(T0)}
    out = step(job, status, cluster=job_facts.ClusterFacts())
    assert out.actions == [A.CREATE_CLUSTER] and not out.write
    pending = job_facts.ClusterFacts(exists=True, state="", status={"desiredWorkerReplicas": 1})
    out = step(job, status, cluster=pending)
    assert out.actions == [] and out.status["rayClusterStatus"] == {"desiredWorkerReplicas": 1}
    assert out.status["jobDeploymentStatus"] == "Initializing"
    out = step(job, status, cluster=READY, submitter=job_facts.SubmitterFacts())
    assert out.actions == [A.CREATE_SUBMITTER]
    assert out.status["jobDeploymentStatus"] == "Running" and out.status["dashboardURL"] == READY.dashboard_url
    out = step(job, status, cluster=READY, submitter=RUNNING_SUBMITTER)
    assert out.actions == [], "a submitter made by a pass that then crashed is not made twice"


def test_a_missing_selected_cluster_is_reported_not_created(job_doc: dict[str, Any]) -> None:
    job_doc["spec"].pop("rayClusterSpec")
    job = make(job_doc, clusterSelector={"ray.io/cluster": "shared"}, shutdownAfterJobFinishes=False,
               ttlSecondsAfterFinished=0)
    out = step(job, {"jobDeploymentStatus": "Initializing", "rayClusterName": "shared", "jobId": "j"},
               cluster=job_facts.ClusterFacts())
    assert out.actions == [] and not out.write
    assert [e.reason for e in out.events] == ["RayClusterNotFound"] and out.events[0].warning


@pytest.mark.parametrize("mode, state", [("HTTPMode", "Running"), ("SidecarMode", "Running"),
                                         ("InteractiveMode", "Waiting")])
def test_other_modes_create_no_submitter_job(job_doc: dict[str, Any], mode: str, state: str) -> None:
    job = make(job_doc, submissionMode=mode, backoffLimit=0)
    out = step(job, {"jobDeploymentStatus": "Initializing", "rayClusterName": "c", "startTime": job_facts.format_time(T0)},
               cluster=READY)
    assert out.actions == [] and out.status["jobDeploymentStatus"] == state


def test_interactive_waits_for_the_user_to_set_the_job_id(job_doc: dict[str, Any]) -> None:
    waiting = {"jobDeploymentStatus": "Waiting", "rayClusterName": "c", "startTime": job_facts.format_time(T0)}
    out = step(make(job_doc, submissionMode="InteractiveMode"), waiting, cluster=READY)
    assert out.status["jobDeploymentStatus"] == "Waiting"
    out = step(make(job_doc, submissionMode="InteractiveMode", jobId="raysubmit_1"), waiting, cluster=READY)
    assert (out.status["jobDeploymentStatus"], out.status["jobId"]) == ("Running", "raysubmit_1")
    late = step(make(job_doc, submissionMode="InteractiveMode", preRunningDeadlineSeconds=5), waiting, T0 + 6)
    assert (late.status["jobDeploymentStatus"], late.status["reason"]) == ("Failed", "PreRunningDeadlineExceeded")


def test_running_follows_the_job_api(job: job_models.RayJob) -> None:
    out = step(job, running(), cluster=READY, submitter=RUNNING_SUBMITTER, api=found("RUNNING"))
    assert out.status["jobStatus"] == "RUNNING" and out.status["jobDeploymentStatus"] == "Running"
    assert out.status["rayJobInfo"] == {"startTime": "2026-01-01T00:00:00Z"}
    assert out.status["rayClusterStatus"] == {"state": "ready"}


def test_success_is_complete_only_once_the_submitter_finished(job: job_models.RayJob) -> None:
    out = step(job, running(), cluster=READY, submitter=RUNNING_SUBMITTER, api=found("SUCCEEDED"))
    assert out.status["jobDeploymentStatus"] == "Running" and out.status["jobStatus"] == "SUCCEEDED"
    done = job_facts.SubmitterFacts(exists=True, finished_at=T0 + 4)
    out = step(job, running(jobStatus="SUCCEEDED"), cluster=READY, submitter=done, api=found("SUCCEEDED", "ok"))
    assert out.status["jobDeploymentStatus"] == "Complete" and out.status["reason"] is None
    assert out.status["succeeded"] == 1 and out.status["failed"] == 0 and out.status["message"] == "ok"
    assert out.status["endTime"] == "2026-01-01T00:00:05Z"
    assert out.status["rayJobInfo"]["endTime"] == "2026-01-01T00:00:04Z"


def test_http_mode_is_complete_without_a_submitter(job_doc: dict[str, Any]) -> None:
    out = step(make(job_doc, submissionMode="HTTPMode"), running(), cluster=READY, api=found("SUCCEEDED"))
    assert out.status["jobDeploymentStatus"] == "Complete"


def test_a_failed_job_is_retried_on_a_fresh_cluster_until_backoff_limit(job_doc: dict[str, Any]) -> None:
    job = make(job_doc, backoffLimit=2)
    done = job_facts.SubmitterFacts(exists=True, finished_at=T0 + 4)
    out = step(job, running(), cluster=READY, submitter=done, api=found("FAILED", "exit 1"))
    assert out.status["jobDeploymentStatus"] == "Retrying" and out.status["failed"] == 1
    assert "endTime" not in out.status
    retrying = out.status
    out = step(job, retrying, cluster=READY, submitter=done)
    assert out.actions == [A.DELETE_CLUSTER, A.DELETE_SUBMITTER] and not out.write
    going = step(job, retrying, cluster=job_facts.ClusterFacts(exists=True, deleting=True),
                 submitter=job_facts.SubmitterFacts(exists=True, deleting=True))
    assert going.actions == [] and not going.write
    out = step(job, retrying, cluster=job_facts.ClusterFacts(), submitter=job_facts.SubmitterFacts())
    assert out.status["jobDeploymentStatus"] is None and out.status["failed"] == 1
    assert out.status["jobId"] is None and out.status["rayClusterName"] is None
    fresh = step(job, {k: v for k, v in out.status.items() if v is not None}).status
    assert fresh["jobDeploymentStatus"] == "Initializing" and fresh["rayClusterName"] == "rayjob-sample-c1"
    last = step(job, running(failed=2), cluster=READY, submitter=done, api=found("FAILED"))
    assert (last.status["jobDeploymentStatus"], last.status["reason"], last.status["failed"]) == ("Failed", "AppFailed", 3)
    assert last.status["endTime"]


def test_active_deadline_fails_the_job_without_retry(job_doc: dict[str, Any]) -> None:
    job = make(job_doc, activeDeadlineSeconds=10, backoffLimit=3)
    out = step(job, running(), T0 + 11, cluster=READY, submitter=RUNNING_SUBMITTER, api=found("RUNNING"))
    assert (out.status["jobDeploymentStatus"], out.status["reason"]) == ("Failed", "DeadlineExceeded")
    assert "ActiveDeadlineSeconds: 10" in out.status["message"] and out.status["failed"] == 1
    initializing = {"jobDeploymentStatus": "Initializing", "startTime": job_facts.format_time(T0), "rayClusterName": "c"}
    assert step(job, initializing, T0 + 10, cluster=READY).status["reason"] == "DeadlineExceeded"


def test_submitter_ended_but_status_unreadable_for_30_s(job: job_models.RayJob) -> None:
    done = job_facts.SubmitterFacts(exists=True, finished_at=T0)
    unreadable = job_facts.ApiFacts(error="connection refused")
    out = step(job, running(), T0 + 10, cluster=READY, submitter=done, api=unreadable)
    assert out.status["jobDeploymentStatus"] == "Running"
    assert out.status["jobStatusCheckFailureStartTime"] == "2026-01-01T00:00:10Z"
    out = step(job, out.status, T0 + 31, cluster=READY, submitter=done, api=unreadable)
    assert out.status["jobDeploymentStatus"] == "Failed" and out.status["jobStatus"] == "FAILED"
    assert out.status["reason"] == "JobDeploymentStatusTransitionGracePeriodExceeded"


def test_submitter_ended_and_job_unknown(job: job_models.RayJob) -> None:
    done = job_facts.SubmitterFacts(exists=True, finished_at=T0)
    out = step(job, running(), T0 + 3, cluster=READY, submitter=done,
               api=job_facts.ApiFacts(outcome=job_facts.API_NOT_FOUND))
    assert (out.status["jobDeploymentStatus"], out.status["reason"]) == ("Failed", "AppFailed")
    out = step(job, running(), T0 + 3, cluster=READY, submitter=RUNNING_SUBMITTER,
               api=job_facts.ApiFacts(outcome=job_facts.API_NOT_FOUND))
    assert not out.write, "not submitted yet: wait for the submitter"


def test_a_failed_submitter_job_fails_the_submission(job: job_models.RayJob) -> None:
    failed = job_facts.SubmitterFacts(exists=True, failed=True, reason="BackoffLimitExceeded",
                                      message="Job has reached the specified backoff limit", finished_at=T0 + 4)
    out = step(job, running(), cluster=READY, submitter=failed, api=found("RUNNING"))
    assert (out.status["jobDeploymentStatus"], out.status["reason"]) == ("Failed", "SubmissionFailed")
    assert "BackoffLimitExceeded" in out.status["message"]
    out = step(job, running(jobStatus="FAILED"), cluster=READY, submitter=failed)
    assert out.status["reason"] == "AppFailed"


def test_a_deleted_submitter_job_is_made_again(job: job_models.RayJob) -> None:
    out = step(job, running(), cluster=READY, submitter=job_facts.SubmitterFacts(), api=found("RUNNING"))
    assert out.actions == [A.CREATE_SUBMITTER] and not out.write


def test_http_mode_submits_when_the_job_is_unknown(job_doc: dict[str, Any]) -> None:
    job = make(job_doc, submissionMode="HTTPMode")
    unknown = job_facts.ApiFacts(outcome=job_facts.API_NOT_FOUND)
    out = step(job, running(jobStatusCheckFailureStartTime="2026-01-01T00:00:01Z"), cluster=READY, api=unknown)
    assert out.actions == [A.SUBMIT] and out.status["jobStatusCheckFailureStartTime"] is None
    facts = job_facts.Facts(status=running(), cluster=READY, api=unknown, submit_error="timed out")
    out = job_lifecycle.step(job, facts, T0 + 7)
    assert out.actions == [] and out.status["jobStatusCheckFailureStartTime"] == "2026-01-01T00:00:07Z"
    assert out.status["jobDeploymentStatus"] == "Running"
    refused = job_facts.Facts(status=running(), cluster=READY, api=unknown, submit_error="400 bad runtime_env",
                              submit_refused=True)
    out = job_lifecycle.step(job, refused, T0 + 7)
    assert (out.status["jobDeploymentStatus"], out.status["reason"]) == ("Failed", "SubmissionFailed")
    assert "400 bad runtime_env" in out.status["message"]


def test_status_checks_failing_for_300_s_fail_the_job(job: job_models.RayJob) -> None:
    since = running(jobStatusCheckFailureStartTime=job_facts.format_time(T0))
    out = step(job, since, T0 + 299, cluster=READY, submitter=RUNNING_SUBMITTER, api=job_facts.ApiFacts(error="x"))
    assert not out.write, "the first failure time is kept; nothing else changed"
    out = step(job, since, T0 + 300, cluster=READY, submitter=RUNNING_SUBMITTER)
    assert out.status["reason"] == "JobStatusCheckTimeoutExceeded" and out.status["jobDeploymentStatus"] == "Failed"


def test_suspend_deletes_everything_and_resume_starts_over(job_doc: dict[str, Any]) -> None:
    job = make(job_doc, suspend=True)
    out = step(job, running(), cluster=READY, submitter=RUNNING_SUBMITTER, api=found("RUNNING"))
    assert out.status["jobDeploymentStatus"] == "Suspending"
    suspending = out.status
    out = step(job, suspending, cluster=READY, submitter=RUNNING_SUBMITTER)
    assert out.actions == [A.DELETE_CLUSTER, A.DELETE_SUBMITTER] and not out.write
    out = step(job, suspending, cluster=job_facts.ClusterFacts(), submitter=job_facts.SubmitterFacts())
    assert out.status["jobDeploymentStatus"] == "Suspended" and out.status["jobId"] is None
    assert out.status["rayClusterName"] is None and out.status["failed"] == 0
    assert not step(job, out.status).write, "stays suspended"
    resumed = step(make(job_doc, suspend=False), out.status).status
    assert resumed["jobDeploymentStatus"] is None and resumed["jobStatus"] is None
    initializing = step(job, {"jobDeploymentStatus": "Initializing", "startTime": job_facts.format_time(T0)}).status
    assert initializing["jobDeploymentStatus"] == "Suspending", "suspended before the cluster exists"


def test_a_finished_job_deletes_its_cluster_after_the_ttl(job: job_models.RayJob) -> None:
    complete = running(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime=job_facts.format_time(T0))
    out = step(job, complete, T0 + 9, cluster=READY)
    assert out.actions == [] and not out.write
    out = step(job, complete, T0 + 10, cluster=READY)
    assert out.actions == [A.DELETE_CLUSTER] and not out.write
    assert step(job, complete, T0 + 20, cluster=job_facts.ClusterFacts()).actions == []


def test_no_deletion_without_shutdown_or_on_a_selected_cluster(job_doc: dict[str, Any]) -> None:
    complete = running(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime=job_facts.format_time(T0))
    kept = make(job_doc, shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0)
    assert step(kept, complete, T0 + 100, cluster=READY).actions == []
    job_doc["spec"].pop("rayClusterSpec")
    selected = make(job_doc, clusterSelector={"ray.io/cluster": "shared"})
    assert step(selected, complete, T0 + 100, cluster=READY).actions == []


def rules(*items: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"deletionRules": [{"policy": p, "condition": c} for p, c in items]}


def test_deletion_rules_run_the_most_impactful_overdue_one(job_doc: dict[str, Any]) -> None:
    job = make(job_doc, shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0, deletionStrategy=rules(
        ("DeleteWorkers", {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}),
        ("DeleteCluster", {"jobStatus": "SUCCEEDED", "ttlSeconds": 10}),
        ("DeleteSelf", {"jobStatus": "SUCCEEDED", "ttlSeconds": 20}),
        ("DeleteSelf", {"jobDeploymentStatus": "Failed", "ttlSeconds": 0})))
    complete = running(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime=job_facts.format_time(T0))
    assert step(job, complete, T0 + 1, cluster=READY).actions == [A.SUSPEND_WORKERS]
    suspended = job_facts.ClusterFacts(exists=True, state="ready", workers_suspended=True)
    assert step(job, complete, T0 + 1, cluster=suspended).actions == []
    assert step(job, complete, T0 + 11, cluster=READY).actions == [A.DELETE_CLUSTER]
    assert step(job, complete, T0 + 25, cluster=READY).actions == [A.DELETE_SELF]
    failed = running(jobDeploymentStatus="Failed", jobStatus="FAILED", endTime=job_facts.format_time(T0))
    assert step(job, failed, T0, cluster=READY).actions == [A.DELETE_SELF]


def test_legacy_on_success_on_failure(job_doc: dict[str, Any]) -> None:
    job = make(job_doc, deletionStrategy={"onSuccess": {"policy": "DeleteCluster"},
                                          "onFailure": {"policy": "DeleteWorkers"}})
    ended = job_facts.format_time(T0)
    ok = running(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime=ended)
    bad = running(jobDeploymentStatus="Failed", jobStatus="FAILED", endTime=ended)
    assert step(job, ok, T0 + 5, cluster=READY).actions == [], "ttlSecondsAfterFinished (10) applies"
    assert step(job, ok, T0 + 10, cluster=READY).actions == [A.DELETE_CLUSTER]
    assert step(job, bad, T0 + 10, cluster=READY).actions == [A.SUSPEND_WORKERS]


def test_an_invalid_spec_is_recorded_once() -> None:
    first = job_lifecycle.invalid_status({}, "spec: set rayClusterSpec", 3, T0)
    assert first is not None
    assert (first["jobDeploymentStatus"], first["reason"]) == ("Failed", "ValidationFailed")
    assert first["message"] == "spec: set rayClusterSpec" and first["endTime"] == job_facts.format_time(T0)
    assert job_lifecycle.invalid_status(first, "spec: set rayClusterSpec", 3, T0 + 9) is None
    assert job_lifecycle.invalid_status(first, "spec: set rayClusterSpec", 4, T0 + 9) is not None


def test_a_corrected_spec_starts_over(job: job_models.RayJob) -> None:
    recorded = job_lifecycle.invalid_status({}, "bad", 0, T0)
    assert recorded is not None
    out = step(job, recorded)
    assert out.status["jobDeploymentStatus"] == "Initializing" and out.status["reason"] is None
    same_generation = dict(recorded, observedGeneration=1)
    assert not step(job, same_generation).write, "a Failed RayJob stays failed"


def test_rfc3339_round_trip() -> None:
    for text in ("1970-01-01T00:00:00Z", "2000-02-29T23:59:59Z", "2026-12-07T12:34:56Z", "2100-03-01T00:00:00Z"):
        assert job_facts.format_time(job_facts.parse_time(text)) == text
    assert job_facts.parse_time("2026-01-01T01:00:00+01:00") == T0
    assert job_facts.parse_time("2026-01-01T00:00:00.250Z") == T0 + 0.25
    assert job_facts.parse_time("2026-01-01T00:00:00Z") == 1767225600
    assert job_facts.parse_time_or_none("yesterday") is None and job_facts.parse_time_or_none(None) is None


def test_the_jobs_head_service_follows_its_current_cluster(job: job_models.RayJob, job_doc: dict[str, Any]) -> None:
    for seen, wanted in (("", [A.ENSURE_SERVICE]), ("rayjob-sample-old", [A.ENSURE_SERVICE]),
                         ("rayjob-sample-c1", []), (None, [])):
        out = step(job, running(), cluster=READY, submitter=RUNNING_SUBMITTER, api=found("RUNNING"),
                   service_cluster=seen)
        assert out.actions == wanted, seen
    job_doc["spec"].pop("rayClusterSpec")
    selected = make(job_doc, clusterSelector={"ray.io/cluster": "shared"}, shutdownAfterJobFinishes=False,
                    ttlSecondsAfterFinished=0)
    out = step(selected, running(rayClusterName="shared"), cluster=READY, submitter=RUNNING_SUBMITTER,
               api=found("RUNNING"), service_cluster="")
    assert out.actions == [], "a selected cluster gets no Service of the job's"
