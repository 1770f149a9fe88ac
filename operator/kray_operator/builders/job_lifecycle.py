"""The RayJob state machine, KubeRay's, as a pure function: (RayJob, observed facts, now) -> Step
(actions to run, the status to write, events to post).

jobDeploymentStatus: "" -> Initializing -> [Waiting ->] Running -> Complete | Failed, with Suspending ->
Suspended and Retrying -> "" on the side; once finished, what deletionStrategy, shutdownAfterJobFinishes and
ttlSecondsAfterFinished delete, and when. Times are Unix seconds passed in; no I/O, no clock.
"""

from __future__ import annotations

import copy
from typing import Any

from kray_operator import job_models
from kray_operator.builders import job_facts, jobs

Dep = job_models.JobDeploymentStatus
Reason = job_models.JobFailedReason
Mode = job_models.JobSubmissionMode
# After the submitter ended, how long the job API may fail to report a terminal status.
SUBMITTER_FINISHED_GRACE_S = 30
# After the job ended, how long the deployment status may lag before it is forced (KubeRay's default).
TRANSITION_GRACE_S = 300
# How long job status checks may keep failing before the RayJob fails (KubeRay's default).
STATUS_CHECK_TIMEOUT_S = 300
# Status fields a transition compares to decide whether endTime is stamped (KubeRay's rule).
_KEY_FIELDS = ("jobStatus", "jobDeploymentStatus", "rayClusterStatus", "jobStatusCheckFailureStartTime")


def step(job: job_models.RayJob, facts: job_facts.Facts, now: float) -> job_facts.Step:
    """One pass over `job` given what was observed; `facts.status` is the RayJob's .status as read."""
    old = facts.status
    out = job_facts.Step(status=copy.deepcopy(old))
    s = out.status
    if _invalid_before(job, s):
        _reset(s, keep_counts=True)
    dep = s.get("jobDeploymentStatus") or ""
    if dep == Dep.NEW.value:
        _initialize(job, s, facts)
        s["startTime"] = job_facts.format_time(now)
    elif dep == Dep.INITIALIZING.value:
        _initializing(job, facts, now, out)
    elif dep == Dep.WAITING.value:
        _waiting(job, s, now)
    elif dep == Dep.RUNNING.value:
        _running(job, facts, now, out)
    elif dep in (Dep.SUSPENDING.value, Dep.RETRYING.value):
        _tear_down(job, facts, out)
    elif dep == Dep.SUSPENDED.value:
        if job.spec.suspend:
            out.write = False
            return out
        s["jobStatus"] = None
        s["jobDeploymentStatus"] = None
    elif dep in (Dep.COMPLETE.value, Dep.FAILED.value):
        finished(job, facts, now, out)
        out.write = False
        return out
    else:
        out.events.append(job_facts.Event("UnknownJobDeploymentStatus", f"jobDeploymentStatus {dep!r} is not "
                                          "one kray knows; delete and re-create the RayJob", warning=True))
        out.write = False
        return out
    if not out.write:
        out.status = copy.deepcopy(old)
        return out
    _count_and_retry(job, s)
    if any(old.get(k) != s.get(k) for k in _KEY_FIELDS) and _terminal(s):
        s["endTime"] = job_facts.format_time(now)
    s["observedGeneration"] = job.metadata.generation
    return out


def invalid_status(status: dict[str, Any], message: str, generation: int | None,
                   now: float) -> dict[str, Any] | None:
    """The status recording an invalid spec (Failed, reason ValidationFailed), or None when exactly
    that is recorded for this generation already (a bad spec is reported once)."""
    if (status.get("jobDeploymentStatus") == Dep.FAILED.value
            and status.get("reason") == Reason.VALIDATION_FAILED.value
            and status.get("message") == message and status.get("observedGeneration") == generation):
        return None
    new = dict(status)
    new.update(jobDeploymentStatus=Dep.FAILED.value, reason=Reason.VALIDATION_FAILED.value,
               message=message[:4096], observedGeneration=generation)
    if status.get("jobDeploymentStatus") != Dep.FAILED.value:
        new["endTime"] = job_facts.format_time(now)
    new.setdefault("startTime", job_facts.format_time(now))
    return new


def _terminal(s: dict[str, Any]) -> bool:
    return s.get("jobDeploymentStatus") in (Dep.COMPLETE.value, Dep.FAILED.value)


def _invalid_before(job: job_models.RayJob, s: dict[str, Any]) -> bool:
    """The spec was invalid and has been edited since: start over."""
    return (s.get("reason") == Reason.VALIDATION_FAILED.value
            and s.get("jobDeploymentStatus") == Dep.FAILED.value
            and s.get("observedGeneration") != job.metadata.generation)


def _reset(s: dict[str, Any], keep_counts: bool) -> None:
    """Forget the cluster and the job (for a retry, a resume, or a corrected spec)."""
    for key in ("rayClusterStatus", "rayClusterName", "dashboardURL", "jobId", "message", "reason",
                "rayJobInfo", "jobStatusCheckFailureStartTime", "jobStatus", "jobDeploymentStatus",
                "startTime", "endTime"):
        s[key] = None
    if not keep_counts:
        s["failed"] = s["succeeded"] = None


def _fail(s: dict[str, Any], reason: job_models.JobFailedReason, message: str) -> None:
    s.update(jobDeploymentStatus=Dep.FAILED.value, reason=reason.value, message=message[:4096])


def _initialize(job: job_models.RayJob, s: dict[str, Any], facts: job_facts.Facts) -> None:
    """Name the job and the cluster before anything is created, so no pass submits or creates twice."""
    if job.spec.submission_mode != Mode.INTERACTIVE and not s.get("jobId"):
        s["jobId"] = jobs.submission_id(job, facts.job_suffix)
    if not s.get("rayClusterName"):
        s["rayClusterName"] = job.spec.selected_cluster or jobs.cluster_name(job, facts.cluster_suffix)
    s["jobDeploymentStatus"] = Dep.INITIALIZING.value


def _past(start: str | None, seconds: int | None, now: float) -> bool:
    began = job_facts.parse_time_or_none(start)
    return seconds is not None and began is not None and now >= began + seconds


def _deadlines(job: job_models.RayJob, s: dict[str, Any], now: float, pre_running: bool) -> bool:
    """Fail the job when activeDeadlineSeconds (or, before Running, preRunningDeadlineSeconds) passed."""
    spec = job.spec
    if _past(s.get("startTime"), spec.active_deadline_seconds, now):
        _fail(s, Reason.DEADLINE_EXCEEDED, f"The RayJob has passed the activeDeadlineSeconds. StartTime: "
              f"{s.get('startTime')}. ActiveDeadlineSeconds: {spec.active_deadline_seconds}")
        return True
    return pre_running and _pre_running_deadline(job, s, now)


def _pre_running_deadline(job: job_models.RayJob, s: dict[str, Any], now: float) -> bool:
    seconds = job.spec.pre_running_deadline_seconds
    if not _past(s.get("startTime"), seconds, now):
        return False
    _fail(s, Reason.PRE_RUNNING_DEADLINE_EXCEEDED, f"The RayJob did not reach Running within "
          f"preRunningDeadlineSeconds ({seconds}) of {s.get('startTime')}")
    return True


def _suspend_if_asked(job: job_models.RayJob, s: dict[str, Any]) -> bool:
    if job.spec.suspend:
        s["jobDeploymentStatus"] = Dep.SUSPENDING.value
        return True
    return False


def _cluster_missing(job: job_models.RayJob, facts: job_facts.Facts, out: job_facts.Step) -> bool:
    """Create the job's cluster when it is missing; a selected cluster that is missing is only reported."""
    if facts.cluster is not None and facts.cluster.exists:
        return False
    name = out.status.get("rayClusterName")
    if job.spec.selected_cluster:
        out.events.append(job_facts.Event("RayClusterNotFound", f"RayCluster {job.metadata.namespace}/{name} set "
                                          "in the clusterSelector is not found. It must be created manually",
                                          warning=True))
    else:
        out.actions.append(job_facts.Action.CREATE_CLUSTER)
    out.write = False
    return True


def _initializing(job: job_models.RayJob, facts: job_facts.Facts, now: float, out: job_facts.Step) -> None:
    s = out.status
    if _suspend_if_asked(job, s) or _deadlines(job, s, now, pre_running=True):
        return
    if _cluster_missing(job, facts, out):
        return
    cluster = facts.cluster
    assert cluster is not None
    if not s.get("dashboardURL"):
        if not cluster.ready:
            s["rayClusterStatus"] = cluster.status
            return
        s["dashboardURL"] = cluster.dashboard_url
    mode = job.spec.submission_mode
    if mode == Mode.INTERACTIVE:
        s["jobDeploymentStatus"] = Dep.WAITING.value
        return
    if mode == Mode.K8S_JOB and not (facts.submitter and facts.submitter.exists):
        out.actions.append(job_facts.Action.CREATE_SUBMITTER)
    s["rayClusterStatus"] = cluster.status
    s["jobDeploymentStatus"] = Dep.RUNNING.value


def _waiting(job: job_models.RayJob, s: dict[str, Any], now: float) -> None:
    """InteractiveMode: the user submits the job and then sets spec.jobId."""
    if _pre_running_deadline(job, s, now):
        return
    if job.spec.job_id:
        s["jobId"] = job.spec.job_id
        s["jobDeploymentStatus"] = Dep.RUNNING.value


def _grace_checks(s: dict[str, Any], now: float) -> bool:
    """Force a terminal status when the job ended long ago, or job status checks kept failing."""
    info = s.get("rayJobInfo") or {}
    status = s.get("jobStatus") or ""
    if _is_terminal_job(status) and _past(info.get("endTime"), TRANSITION_GRACE_S, now):
        s["jobDeploymentStatus"] = Dep.FAILED.value if status == "FAILED" else Dep.COMPLETE.value
        s["reason"] = Reason.TRANSITION_GRACE_PERIOD_EXCEEDED.value
        s["message"] = ("JobDeploymentStatus does not transition to Complete or Failed within the grace "
                        "period after JobStatus reaches a terminal state.")
        return True
    if _past(s.get("jobStatusCheckFailureStartTime"), STATUS_CHECK_TIMEOUT_S, now):
        _fail(s, Reason.STATUS_CHECK_TIMEOUT_EXCEEDED, f"Job status checks have been failing since "
              f"{s.get('jobStatusCheckFailureStartTime')}; exceeded timeout of {STATUS_CHECK_TIMEOUT_S}s")
        return True
    return False


def _is_terminal_job(status: str) -> bool:
    try:
        return job_models.JobStatus(status).terminal
    except ValueError:
        return False


def _running(job: job_models.RayJob, facts: job_facts.Facts, now: float, out: job_facts.Step) -> None:
    s = out.status
    mode = job.spec.submission_mode
    if _suspend_if_asked(job, s) or _deadlines(job, s, now, pre_running=False) or _grace_checks(s, now):
        return
    if _cluster_missing(job, facts, out):
        return
    if (not job.spec.selected_cluster and facts.service_cluster is not None
            and facts.service_cluster != s.get("rayClusterName")):
        out.actions.append(job_facts.Action.ENSURE_SERVICE)  # <rayjob>-head-svc follows the current cluster
    finished_at = None
    if mode in (Mode.K8S_JOB, Mode.SIDECAR):
        sub = facts.submitter or job_facts.SubmitterFacts()
        if not sub.exists:
            if mode == Mode.K8S_JOB:
                out.actions.append(job_facts.Action.CREATE_SUBMITTER)  # deleted by someone: make it again
                out.write = False
            else:
                _fail(s, Reason.APP_FAILED, "Ray head pod not found: the sidecar submitter went with it.")
            return
        if sub.failed:
            s["jobDeploymentStatus"] = Dep.FAILED.value
            if s.get("jobStatus") == "FAILED":
                s["reason"] = Reason.APP_FAILED.value
            else:
                s["reason"] = Reason.SUBMISSION_FAILED.value
                s["message"] = f"Job submission has failed. Reason: {sub.reason}. Message: {sub.message}"[:4096]
        finished_at = sub.finished_at
        if finished_at is not None and now >= finished_at + SUBMITTER_FINISHED_GRACE_S:
            s["jobStatus"] = "FAILED"
            _fail(s, Reason.TRANSITION_GRACE_PERIOD_EXCEEDED, f"The RayJob submitter finished at "
                  f"{job_facts.format_time(finished_at)} but the job did not reach a terminal state within "
                  f"{SUBMITTER_FINISHED_GRACE_S}s")
            return
        if sub.failed:
            return
    _from_job_api(job, facts, finished_at, out, now)


def _from_job_api(job: job_models.RayJob, facts: job_facts.Facts, finished_at: float | None,
                  out: job_facts.Step, now: float) -> None:
    s, api, mode = out.status, facts.api, job.spec.submission_mode
    if api.outcome == job_facts.API_NOT_FOUND:
        if mode == Mode.HTTP:
            _submit(facts, out, now)
        elif finished_at is not None:
            _fail(s, Reason.APP_FAILED, "Submitter completed but Ray job not found in RayCluster.")
        else:
            out.write = False
        return
    if api.outcome != job_facts.API_FOUND:
        if s.get("jobStatusCheckFailureStartTime"):
            out.write = False
        else:
            s["jobStatusCheckFailureStartTime"] = job_facts.format_time(now)
        return
    s["jobStatusCheckFailureStartTime"] = None
    terminal = _is_terminal_job(api.status)
    if mode in (Mode.K8S_JOB, Mode.SIDECAR):
        terminal = terminal and finished_at is not None
    dep, reason = Dep.RUNNING.value, None
    if terminal:
        dep = Dep.COMPLETE.value
        if api.status == "FAILED":
            dep, reason = Dep.FAILED.value, Reason.APP_FAILED.value
    cluster = facts.cluster or job_facts.ClusterFacts()
    s.update(rayClusterStatus=cluster.status, jobStatus=api.status, jobDeploymentStatus=dep, reason=reason,
             message=api.message or None)
    info = dict(s.get("rayJobInfo") or {})
    if api.start_ms:
        info["startTime"] = job_facts.format_time(api.start_ms / 1000)
    if api.end_ms:
        info["endTime"] = job_facts.format_time(api.end_ms / 1000)
    s["rayJobInfo"] = info or None


def _submit(facts: job_facts.Facts, out: job_facts.Step, now: float) -> None:
    """HTTPMode: the operator submits. After a failed try (the handler re-runs the pass with its error),
    a refusal fails the job; anything else counts towards the status check timeout."""
    s = out.status
    if facts.submit_refused:
        _fail(s, Reason.SUBMISSION_FAILED, f"the job API refused the submission: {facts.submit_error}")
    elif facts.submit_error:
        s["jobStatusCheckFailureStartTime"] = s.get("jobStatusCheckFailureStartTime") or job_facts.format_time(now)
        s["message"] = f"submitting the job failed: {facts.submit_error}"[:4096]
    else:
        out.actions.append(job_facts.Action.SUBMIT)
        s["jobStatusCheckFailureStartTime"] = None


def _tear_down(job: job_models.RayJob, facts: job_facts.Facts, out: job_facts.Step) -> None:
    """Suspending and Retrying: delete the cluster and the submitter, wait until both are gone, reset."""
    s = out.status
    gone = True
    if not job.spec.selected_cluster and facts.cluster is not None and facts.cluster.exists:
        gone = False
        if not facts.cluster.deleting:
            out.actions.append(job_facts.Action.DELETE_CLUSTER)
    if job.spec.submission_mode == Mode.K8S_JOB and facts.submitter is not None and facts.submitter.exists:
        gone = False
        if not facts.submitter.deleting:
            out.actions.append(job_facts.Action.DELETE_SUBMITTER)
    if not gone:
        out.write = False
        return
    retrying = s.get("jobDeploymentStatus") == Dep.RETRYING.value
    _reset(s, keep_counts=True)
    s["jobDeploymentStatus"] = None if retrying else Dep.SUSPENDED.value


def _count_and_retry(job: job_models.RayJob, s: dict[str, Any]) -> None:
    """KubeRay's backoff: count the attempt that just ended; a failed one is retried on a fresh cluster
    while failures stay within backoffLimit (never after a deadline or a status check timeout)."""
    failed, succeeded = int(s.get("failed") or 0), int(s.get("succeeded") or 0)
    dep = s.get("jobDeploymentStatus")
    if dep == Dep.FAILED.value:
        failed += 1
    if s.get("jobStatus") == "SUCCEEDED" and dep == Dep.COMPLETE.value:
        succeeded += 1
    s["failed"], s["succeeded"] = failed, succeeded
    no_retry = (Reason.DEADLINE_EXCEEDED.value, Reason.STATUS_CHECK_TIMEOUT_EXCEEDED.value)
    if dep == Dep.FAILED.value and failed < job.spec.backoff_limit + 1 and s.get("reason") not in no_retry:
        s["jobDeploymentStatus"] = Dep.RETRYING.value


# ---- clean-up of a finished RayJob (Complete or Failed), KubeRay's order of mechanisms

Policy = job_models.DeletionPolicyType
# Most destructive first: when several rules are overdue, the most impactful one runs (KubeRay's rule).
_IMPACT = {Policy.DELETE_SELF: 4, Policy.DELETE_CLUSTER: 3, Policy.DELETE_WORKERS: 2, Policy.DELETE_NONE: 1}
_ACTIONS = {
    Policy.DELETE_CLUSTER: job_facts.Action.DELETE_CLUSTER,
    Policy.DELETE_WORKERS: job_facts.Action.SUSPEND_WORKERS,
    Policy.DELETE_SELF: job_facts.Action.DELETE_SELF,
}


def finished(job: job_models.RayJob, facts: job_facts.Facts, now: float, out: job_facts.Step) -> None:
    """Append to `out` the deletion due now, if any; a selected cluster is never touched."""
    if job.spec.selected_cluster:
        return
    status = out.status
    ended = job_facts.parse_time_or_none(status.get("endTime"))
    if ended is None:
        ended = now
    cluster = facts.cluster or job_facts.ClusterFacts()
    strategy = job.spec.deletion_strategy
    if strategy is not None and strategy.deletion_rules:
        policy = due_rule(strategy.deletion_rules, status, cluster, ended, now)
    elif strategy is not None:
        policy = _legacy(strategy, status, cluster, ended + job.spec.ttl_seconds_after_finished, now)
    elif job.spec.shutdown_after_job_finishes and now >= ended + job.spec.ttl_seconds_after_finished:
        policy = None if done(Policy.DELETE_CLUSTER, cluster) else Policy.DELETE_CLUSTER
    else:
        policy = None
    if policy is not None and policy in _ACTIONS:
        out.actions.append(_ACTIONS[policy])


def matches(rule: job_models.DeletionRule, status: dict[str, object]) -> bool:
    """Whether the rule's condition names the RayJob's current jobStatus or jobDeploymentStatus."""
    cond = rule.condition
    if cond.job_status is not None:
        return cond.job_status == status.get("jobStatus")
    return cond.job_deployment_status == status.get("jobDeploymentStatus")


def done(policy: job_models.DeletionPolicyType, cluster: job_facts.ClusterFacts) -> bool:
    """Whether what `policy` deletes is gone already (so running it again would do nothing)."""
    if policy == Policy.DELETE_NONE:
        return True
    if policy == Policy.DELETE_SELF:
        return False
    if not cluster.present:
        return True
    return policy == Policy.DELETE_WORKERS and cluster.workers_suspended


def due_rule(rules: list[job_models.DeletionRule], status: dict[str, object], cluster: job_facts.ClusterFacts,
             ended: float, now: float) -> job_models.DeletionPolicyType | None:
    """The most impactful matching rule whose ttlSeconds passed and whose deletion is not done yet."""
    overdue = [r.policy for r in rules
               if matches(r, status) and now >= ended + r.condition.ttl_seconds and not done(r.policy, cluster)]
    return max(overdue, key=lambda p: _IMPACT[p]) if overdue else None


def _legacy(strategy: job_models.DeletionStrategy, status: dict[str, object], cluster: job_facts.ClusterFacts,
            due: float, now: float) -> job_models.DeletionPolicyType | None:
    """onSuccess for SUCCEEDED, onFailure for FAILED, after ttlSecondsAfterFinished."""
    chosen = {"SUCCEEDED": strategy.on_success, "FAILED": strategy.on_failure}.get(str(status.get("jobStatus")))
    if chosen is None or chosen.policy is None or now < due or done(chosen.policy, cluster):
        return None
    return chosen.policy
