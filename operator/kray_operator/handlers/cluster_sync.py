"""One reconcile pass of a RayCluster: token Secret, head Service, head and worker Pods (the diff from
builders.scaling), workersToDelete cleared once done, then .status through the status subresource.
Replacements of failed Pods back off (handlers.pod_backoff); a pass says when it wants to run again.

Touches the Kubernetes API only through kray_operator.kube; blocking (runs in kopf's handler threads).
Idempotent: it reads the cluster and its Pods fresh each time, so a restarted operator creates no duplicates.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import Any

import pydantic

from kray_operator import kube, metrics, models
from kray_operator.builders import compat, names, observed, pods, scaling, secret, service, status
from kray_operator.handlers import pod_backoff, settings

log = logging.getLogger(__name__)

SUFFIX_LENGTH = 5
VALIDATION_FAILED = "ValidationFailed"
CREATE_ATTEMPTS = 3
POD_BACKOFF = "PodBackOff"  # the condition type that reports held-back replacements of failed Pods

# Failed Pods per cluster and group, for the back-off of their replacements (operator memory).
failed_pods = pod_backoff.FailedPodBackoff()


class InvalidSpecError(ValueError):
    """The RayCluster cannot be reconciled as written; the message says what to change in the manifest."""


def random_suffix() -> str:
    """A Pod name suffix like KubeRay's: 5 lowercase letters and digits."""
    return "".join(secrets.choice(names.SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def parse(body: dict[str, Any]) -> models.RayCluster:
    """The RayCluster model of `body`, checked further by building every child once (names, ports, flags)."""
    try:
        cluster = models.RayCluster.model_validate(body)
    except pydantic.ValidationError as e:
        raise InvalidSpecError(models.describe_error(e)) from e
    try:
        names.check_cluster_name(cluster.metadata.name)
        service.head_service(cluster)
        pods.head_pod(cluster, "check", settings.cluster_domain())
        for group in cluster.spec.worker_group_specs:
            pods.worker_pod(cluster, group.group_name, "check", settings.cluster_domain())
    except ValueError as e:
        raise InvalidSpecError(str(e)) from e
    return cluster


def sync(namespace: str, name: str, announce: bool = False, old_spec: dict[str, Any] | None = None) -> float | None:
    """Reconcile the RayCluster `namespace/name` once; returns in how many seconds it wants another pass
    (new Pods held back after failures), or None.

    Raises InvalidSpecError (after recording state failed and a ValidationFailed condition) when the
    spec cannot be reconciled, and kube.KubeError when the API server refuses something else. Does
    nothing while the RayCluster or its namespace is being deleted. With `announce`, posts one Warning
    Event per KubeRay field that has no effect on kray (those already true of `old_spec` are not repeated).
    """
    body = kube.read_raycluster(namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        failed_pods.forget((namespace, name))
        return None  # gone or going: the garbage collector removes the children (owner references)
    if kube.namespace_terminating(namespace):
        log.debug("namespace %s is being deleted; RayCluster %s is left to the garbage collector", namespace, name)
        return None
    try:
        cluster = parse(body)
        if cluster.spec.managed_elsewhere:
            log.debug("RayCluster %s/%s is managed by %s; nothing to do", namespace, name, cluster.spec.managed_by)
            return None
        if announce:
            _announce(cluster, body, old_spec)
        return _reconcile(cluster, body)
    except InvalidSpecError as e:
        record_invalid(body, str(e))
        raise
    except kube.NamespaceTerminatingError:
        log.debug("namespace %s started terminating during a pass of %s; stopping", namespace, name)
    return None


def _announce(cluster: models.RayCluster, body: dict[str, Any], old_spec: dict[str, Any] | None) -> None:
    """One Warning Event per notice of compat.notices that the previous spec did not have already."""
    seen: set[str] = set()
    if old_spec:
        try:
            seen = set(compat.notices(models.RayClusterSpec.model_validate(old_spec)))
        except pydantic.ValidationError:
            seen = set()
    for line in compat.notices(cluster.spec):
        if line not in seen:
            kube.post_event(body, compat.REASON, line, warning=True)


def _reconcile(cluster: models.RayCluster, body: dict[str, Any]) -> float | None:
    namespace, name = cluster.metadata.namespace, cluster.metadata.name
    failures: list[str] = []
    head_service: dict[str, Any] | None = None
    try:
        _ensure_secrets(cluster, body)
        head_service = _ensure_service(cluster, body)
    except (InvalidSpecError, kube.NamespaceTerminatingError):
        raise
    except kube.KubeError as e:
        failures.append(str(e))
    selector = {names.CLUSTER_LABEL: name, names.IS_NODE_LABEL: "yes"}
    views = observed.from_manifests(kube.list_pods(namespace, selector))
    plan = scaling.plan(cluster.spec, views)
    key, now = (namespace, name), time.monotonic()
    for notice in failed_pods.observe(key, views, now, time.time()):
        metrics.inc("kray_operator_failed_pods_total")
        kube.post_event(body, pod_backoff.REASON, notice.message, warning=True)
    plan, wait = _held_back(plan, key, now)
    if not plan.idle:
        log.info("RayCluster %s/%s: Pods %s; creating head=%s workers=%s; deleting %s", namespace, name,
                 sorted(v.name for v in views if v.alive), plan.create_head, plan.to_create, plan.to_delete)
    failures += _apply(cluster, body, plan, views)
    failures = list(dict.fromkeys(failures))  # Pods of one group fail alike: say it once
    for failure in failures:
        kube.post_event(body, "FailedReconcile", failure, warning=True)
    if not failures:
        _clear_workers_to_delete(cluster, body, plan)
    if not plan.idle:
        views = observed.from_manifests(kube.list_pods(namespace, selector))
    _write_status(cluster, body, views, head_service, failures, failed_pods.summary(key, now))
    if failures:
        raise kube.KubeError("; ".join(failures))  # the caller retries the pass with back-off
    return wait


def _held_back(plan: scaling.ClusterPlan, key: tuple[str, str], now: float) -> tuple[scaling.ClusterPlan, float | None]:
    """The plan without the creations that back off after failed Pods, and the seconds until the first may go."""
    waits: list[float] = []
    create_head = plan.create_head
    if create_head and (hold := failed_pods.hold(key, None, now)) > 0:
        create_head = False
        waits.append(hold)
    groups = []
    for group in plan.groups:
        if group.create and (hold := failed_pods.hold(key, group.group, now)) > 0:
            group = dataclasses.replace(group, create=0)
            waits.append(hold)
        groups.append(group)
    if not waits:
        return plan, None
    return dataclasses.replace(plan, create_head=create_head, groups=tuple(groups)), min(waits)


def _ensure_secrets(cluster: models.RayCluster, body: dict[str, Any]) -> None:
    """The token Secret `<cluster>-token`, and with authOptions.mode token KubeRay's `<cluster>` holding
    the same token; whichever exists already gives the token to the other (never regenerated: running
    nodes hold it)."""
    namespace, name = cluster.metadata.namespace, cluster.metadata.name
    token_name, auth_name = names.token_secret_name(name), names.auth_secret_name(name)
    existing = kube.read_secret(namespace, token_name)
    auth = kube.read_secret(namespace, auth_name) if cluster.spec.ray_token_auth else None
    token = secret.read_token(existing) if existing is not None else None
    if auth is not None and token is None:
        try:
            token = secret.read_token(auth, names.AUTH_TOKEN_KEY)
        except ValueError as e:
            raise InvalidSpecError(f"authOptions.mode token: {e}; delete that Secret or add the key") from e
    token = token or secrets.token_urlsafe(32)
    if existing is None:
        _create_secret(body, secret.token_secret(cluster, token), "token")
    if cluster.spec.ray_token_auth and auth is None:
        _create_secret(body, secret.auth_secret(cluster, token), "auth token")


def _create_secret(body: dict[str, Any], manifest: dict[str, Any], what: str) -> None:
    meta = manifest["metadata"]
    try:
        kube.create_secret(meta["namespace"], manifest)
    except kube.AlreadyExistsError:
        return
    kube.post_event(body, "CreatedSecret", f"Created {what} Secret {meta['name']}")


def _ensure_service(cluster: models.RayCluster, body: dict[str, Any]) -> dict[str, Any]:
    namespace, service_name = cluster.metadata.namespace, names.cluster_head_service_name(cluster)
    existing = kube.read_service(namespace, service_name)
    if existing is not None:
        return existing
    try:
        created = kube.create_service(namespace, service.head_service(cluster))
    except kube.AlreadyExistsError:
        return kube.read_service(namespace, service_name) or {}
    except kube.InvalidError as e:
        raise InvalidSpecError(f"the head Service was rejected: {e}") from e
    kube.post_event(body, "CreatedService", f"Created head Service {service_name}")
    return created


def _create_pod(cluster: models.RayCluster, body: dict[str, Any], group: str | None,
                creation: scaling.PodCreation | None = None) -> None:
    """Create the head (group None) or a worker of `group` (as `creation` says), retrying on a name clash."""
    for attempt in range(CREATE_ATTEMPTS):
        suffix = random_suffix()
        domain = settings.cluster_domain()
        manifest = (pods.head_pod(cluster, suffix, domain) if group is None or creation is None
                    else pods.worker_pod(cluster, group, suffix, domain, replica_index=creation.replica_index,
                                         replica_name=creation.replica_name, host_index=creation.host_index))
        # Without the random name an error's message is the same every pass, so the status (which
        # carries it) is written once, not on every retry.
        pod_name = manifest["metadata"]["name"]
        try:
            created = kube.create_pod(cluster.metadata.namespace, manifest)
        except kube.AlreadyExistsError:
            if attempt + 1 == CREATE_ATTEMPTS:
                raise
            continue
        except kube.InvalidError as e:
            which = "head" if group is None else f"worker group {group!r}"
            text = str(e).replace(pod_name, pod_name.removesuffix(suffix) + "*")
            raise InvalidSpecError(f"the {which} Pod template was rejected: {text}") from e
        except kube.NamespaceTerminatingError:
            raise
        except kube.KubeError as e:
            text = str(e).replace(pod_name, pod_name.removesuffix(suffix) + "*")
            raise type(e)(text, e.status, e.reason) from e
        pod_name = created["metadata"]["name"]
        reason, what = ("CreatedHeadPod", "head") if group is None else ("CreatedWorkerPod", "worker")
        kube.post_event(body, reason, f"Created {what} Pod {pod_name}")
        return


def _apply(cluster: models.RayCluster, body: dict[str, Any], plan: scaling.ClusterPlan,
           views: list[observed.PodView]) -> list[str]:
    """Delete, then create, what the plan says; returns what failed (the caller posts them as events)."""
    failures: list[str] = []
    for pod_name in plan.to_delete:
        try:
            if kube.delete_pod(cluster.metadata.namespace, pod_name):
                kube.post_event(body, "DeletedPod", f"Deleted Pod {pod_name}")
        except kube.KubeError as e:
            failures.append(f"deleting Pod {pod_name}: {e}")
    deleted = set(plan.to_delete)
    remaining = [v for v in views if v.name not in deleted]
    creations: list[tuple[str | None, scaling.PodCreation | None]] = [(None, None)] if plan.create_head else []
    creations.extend((c.group, c) for c in scaling.creations(plan, remaining, random_suffix))
    for group, creation in creations:
        try:
            _create_pod(cluster, body, group, creation)
        except (InvalidSpecError, kube.NamespaceTerminatingError):
            raise
        except kube.KubeError as e:
            failures.append(str(e))
    return failures


def _clear_workers_to_delete(cluster: models.RayCluster, body: dict[str, Any], plan: scaling.ClusterPlan) -> None:
    """Empty scaleStrategy.workersToDelete of groups whose listed Pods were deleted.

    A JSON patch with `test` ops, so a list the user changed meanwhile is left for the next pass.
    """
    done = {g.group for g in plan.groups if g.clear_workers_to_delete}
    operations: list[dict[str, Any]] = []
    for index, group in enumerate((body.get("spec") or {}).get("workerGroupSpecs") or []):
        listed = (group.get("scaleStrategy") or {}).get("workersToDelete")
        if group.get("groupName") in done and listed:
            path = f"/spec/workerGroupSpecs/{index}"
            operations += [
                {"op": "test", "path": f"{path}/groupName", "value": group["groupName"]},
                {"op": "test", "path": f"{path}/scaleStrategy/workersToDelete", "value": listed},
                {"op": "replace", "path": f"{path}/scaleStrategy/workersToDelete", "value": []},
            ]
    if not operations:
        return
    try:
        kube.json_patch_raycluster(cluster.metadata.namespace, cluster.metadata.name, operations)
    except kube.ConflictError as e:
        log.info("workersToDelete of %s changed meanwhile; the next pass clears it (%s)", cluster.metadata.name, e)


def _kept_since(body: dict[str, Any], kind: str, value: str, now: str) -> str:
    """The stored lastTransitionTime of condition `kind` while its status stays `value`, else `now`."""
    stored: list[dict[str, Any]] = (body.get("status") or {}).get("conditions") or []
    old: dict[str, Any] = next((c for c in stored if c.get("type") == kind), {})
    return str(old.get("lastTransitionTime") or now) if old.get("status") == value else now


def _write_status(cluster: models.RayCluster, body: dict[str, Any], views: list[observed.PodView],
                  head_service: dict[str, Any] | None, failures: list[str], backoff: str = "") -> None:
    """Write .status when something other than timestamps changed (never on every failed retry)."""
    previous = cluster.status
    if previous is not None and previous.state == models.ClusterState.FAILED.value:
        previous.state = None  # the spec is fine again: recompute from the Pods
        previous.reason = None
    stamp = kube.now()
    new = status.cluster_status(cluster, views, head_service, stamp)
    new["reason"] = None
    conditions = [c for c in new["conditions"] if c["type"] not in (status.REPLICA_FAILURE, POD_BACKOFF)]
    if failures:
        conditions.append({
            "type": status.REPLICA_FAILURE, "status": "True", "reason": "FailedReconcile",
            "message": "; ".join(failures),
            "lastTransitionTime": _kept_since(body, status.REPLICA_FAILURE, "True", stamp),
            "observedGeneration": cluster.metadata.generation,
        })
    if backoff:
        conditions.append({
            "type": POD_BACKOFF, "status": "True", "reason": pod_backoff.REASON, "message": backoff,
            "lastTransitionTime": _kept_since(body, POD_BACKOFF, "True", stamp),
            "observedGeneration": cluster.metadata.generation,
        })
    new["conditions"] = conditions
    new = status.bounded(new)
    if status.unchanged(new, body.get("status") or {}):
        return
    kube.patch_raycluster_status(cluster.metadata.namespace, cluster.metadata.name, new)


def record_invalid(body: dict[str, Any], message: str) -> None:
    """Set state failed, reason and a ReplicaFailure/ValidationFailed condition, and post a Warning
    event, unless exactly that is recorded for this generation already (so a bad spec is reported once)."""
    meta = body.get("metadata") or {}
    previous = body.get("status") or {}
    generation = meta.get("generation")
    message = status.truncate(message, status.REASON_MAX)  # as stored, so the comparison below holds
    if (previous.get("state") == models.ClusterState.FAILED.value and previous.get("reason") == message
            and previous.get("observedGeneration") == generation):
        return
    conditions = [c for c in previous.get("conditions") or [] if c.get("type") != status.REPLICA_FAILURE]
    conditions.append({
        "type": status.REPLICA_FAILURE, "status": "True", "reason": VALIDATION_FAILED,
        "message": message, "lastTransitionTime": kube.now(), "observedGeneration": generation,
    })
    stamp = kube.now()
    transitions = dict(previous.get("stateTransitionTimes") or {})
    if previous.get("state") != models.ClusterState.FAILED.value:
        transitions[models.ClusterState.FAILED.value] = stamp
    kube.patch_raycluster_status(meta.get("namespace") or "default", meta.get("name", ""), {
        "state": models.ClusterState.FAILED.value, "reason": message, "conditions": conditions,
        "stateTransitionTimes": transitions, "observedGeneration": generation, "lastUpdateTime": stamp,
    })
    kube.post_event(body, "InvalidSpec", f"RayCluster spec is invalid: {message}", warning=True)
