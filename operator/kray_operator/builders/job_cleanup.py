"""What a finished RayJob (Complete or Failed) deletes, and when: deletionStrategy rules, the legacy
onSuccess/onFailure pair, or shutdownAfterJobFinishes after ttlSecondsAfterFinished (KubeRay's order).

Pure: decides actions from the status, the observed cluster and the time passed in; no I/O.
"""

from __future__ import annotations

from kray_operator import job_models
from kray_operator.builders import job_facts, rfc3339

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
    ended = rfc3339.parse_or_none(status.get("endTime"))
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
