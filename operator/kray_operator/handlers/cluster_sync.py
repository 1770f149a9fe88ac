"""One reconcile pass of a RayCluster: token Secret, head Service, head and worker Pods (the diff from
builders.scaling), workersToDelete cleared once done, then .status through the status subresource.

Touches the Kubernetes API only through kray_operator.kube; blocking (runs in kopf's handler threads).
Idempotent: it reads the cluster and its Pods fresh each time, so a restarted operator creates no duplicates.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pydantic

from kray_operator import kube, models
from kray_operator.builders import names, observed, pods, scaling, secret, service, status

log = logging.getLogger(__name__)

SUFFIX_LENGTH = 5
VALIDATION_FAILED = "ValidationFailed"
CREATE_ATTEMPTS = 3


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
        pods.head_pod(cluster, "check")
        for group in cluster.spec.worker_group_specs:
            pods.worker_pod(cluster, group.group_name, "check")
    except ValueError as e:
        raise InvalidSpecError(str(e)) from e
    return cluster


def sync(namespace: str, name: str) -> None:
    """Reconcile the RayCluster `namespace/name` once.

    Raises InvalidSpecError (after recording state failed and a ValidationFailed condition) when the
    spec cannot be reconciled, and kube.KubeError when the API server refuses something else.
    """
    body = kube.read_raycluster(namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # gone or going: the garbage collector removes the children (owner references)
    try:
        cluster = parse(body)
        _reconcile(cluster, body)
    except InvalidSpecError as e:
        record_invalid(body, str(e))
        raise


def _reconcile(cluster: models.RayCluster, body: dict[str, Any]) -> None:
    namespace, name = cluster.metadata.namespace, cluster.metadata.name
    _ensure_secret(cluster, body)
    head_service = _ensure_service(cluster, body)
    selector = {names.CLUSTER_LABEL: name, names.IS_NODE_LABEL: "yes"}
    views = observed.from_manifests(kube.list_pods(namespace, selector))
    plan = scaling.plan(cluster.spec, views)
    if not plan.idle:
        log.info("RayCluster %s/%s: Pods %s; creating head=%s workers=%s; deleting %s", namespace, name,
                 sorted(v.name for v in views if v.alive), plan.create_head, plan.to_create, plan.to_delete)
    failures = _apply(cluster, body, plan)
    if not failures:
        _clear_workers_to_delete(cluster, body, plan)
    if not plan.idle:
        views = observed.from_manifests(kube.list_pods(namespace, selector))
    _write_status(cluster, body, views, head_service, failures)


def _ensure_secret(cluster: models.RayCluster, body: dict[str, Any]) -> None:
    namespace, secret_name = cluster.metadata.namespace, names.token_secret_name(cluster.metadata.name)
    if kube.read_secret(namespace, secret_name) is not None:
        return  # never regenerate: running nodes hold the token
    try:
        kube.create_secret(namespace, secret.token_secret(cluster, secrets.token_urlsafe(32)))
    except kube.AlreadyExistsError:
        return
    kube.post_event(body, "CreatedSecret", f"Created token Secret {secret_name}")


def _ensure_service(cluster: models.RayCluster, body: dict[str, Any]) -> dict[str, Any]:
    namespace, service_name = cluster.metadata.namespace, names.head_service_name(cluster.metadata.name)
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


def _create_pod(cluster: models.RayCluster, body: dict[str, Any], group: str | None) -> None:
    """Create the head (group None) or a worker of `group`, retrying on a name clash."""
    for attempt in range(CREATE_ATTEMPTS):
        suffix = random_suffix()
        manifest = (pods.head_pod(cluster, suffix) if group is None
                    else pods.worker_pod(cluster, group, suffix))
        try:
            created = kube.create_pod(cluster.metadata.namespace, manifest)
        except kube.AlreadyExistsError:
            if attempt + 1 == CREATE_ATTEMPTS:
                raise
            continue
        except kube.InvalidError as e:
            which = "head" if group is None else f"worker group {group!r}"
            raise InvalidSpecError(f"the {which} Pod template was rejected: {e}") from e
        pod_name = created["metadata"]["name"]
        reason, what = ("CreatedHeadPod", "head") if group is None else ("CreatedWorkerPod", "worker")
        kube.post_event(body, reason, f"Created {what} Pod {pod_name}")
        return


def _apply(cluster: models.RayCluster, body: dict[str, Any], plan: scaling.ClusterPlan) -> list[str]:
    """Delete, then create, what the plan says; returns what failed (already posted as events)."""
    failures: list[str] = []
    for pod_name in plan.to_delete:
        try:
            if kube.delete_pod(cluster.metadata.namespace, pod_name):
                kube.post_event(body, "DeletedPod", f"Deleted Pod {pod_name}")
        except kube.KubeError as e:
            failures.append(f"deleting Pod {pod_name}: {e}")
    creations: list[str | None] = [None] if plan.create_head else []
    for group_name, count in plan.to_create.items():
        creations.extend([group_name] * count)
    for group in creations:
        try:
            _create_pod(cluster, body, group)
        except InvalidSpecError:
            raise
        except kube.KubeError as e:
            failures.append(str(e))
    for failure in failures:
        kube.post_event(body, "FailedReconcile", failure, warning=True)
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


def _write_status(cluster: models.RayCluster, body: dict[str, Any], views: list[observed.PodView],
                  head_service: dict[str, Any], failures: list[str]) -> None:
    previous = cluster.status
    if previous is not None and previous.state == models.ClusterState.FAILED.value:
        previous.state = None  # the spec is fine again: recompute from the Pods
        previous.reason = None
    new = status.cluster_status(cluster, views, head_service, kube.now())
    new["reason"] = None
    conditions = [c for c in new["conditions"] if c["type"] != status.REPLICA_FAILURE]
    if failures:
        conditions.append({
            "type": status.REPLICA_FAILURE, "status": "True", "reason": "FailedReconcile",
            "message": "; ".join(failures)[:2048], "lastTransitionTime": kube.now(),
            "observedGeneration": cluster.metadata.generation,
        })
    new["conditions"] = conditions
    if _same(new, body.get("status") or {}):
        return
    kube.patch_raycluster_status(cluster.metadata.namespace, cluster.metadata.name, new)


def record_invalid(body: dict[str, Any], message: str) -> None:
    """Set state failed, reason and a ReplicaFailure/ValidationFailed condition, and post a Warning
    event, unless exactly that is recorded for this generation already (so a bad spec is reported once)."""
    meta = body.get("metadata") or {}
    previous = body.get("status") or {}
    generation = meta.get("generation")
    if (previous.get("state") == models.ClusterState.FAILED.value and previous.get("reason") == message
            and previous.get("observedGeneration") == generation):
        return
    conditions = [c for c in previous.get("conditions") or [] if c.get("type") != status.REPLICA_FAILURE]
    conditions.append({
        "type": status.REPLICA_FAILURE, "status": "True", "reason": VALIDATION_FAILED,
        "message": message[:2048], "lastTransitionTime": kube.now(), "observedGeneration": generation,
    })
    stamp = kube.now()
    transitions = dict(previous.get("stateTransitionTimes") or {})
    if previous.get("state") != models.ClusterState.FAILED.value:
        transitions[models.ClusterState.FAILED.value] = stamp
    kube.patch_raycluster_status(meta.get("namespace") or "default", meta.get("name", ""), {
        "state": models.ClusterState.FAILED.value, "reason": message[:1024], "conditions": conditions,
        "stateTransitionTimes": transitions, "observedGeneration": generation, "lastUpdateTime": stamp,
    })
    kube.post_event(body, "InvalidSpec", f"RayCluster spec is invalid: {message}", warning=True)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None and k != "lastUpdateTime"}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether writing `new` would change nothing but lastUpdateTime."""
    return bool(_drop_none(new) == _drop_none(old))
