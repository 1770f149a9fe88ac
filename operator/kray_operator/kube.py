"""The operator's one gateway to the Kubernetes API: Pods, Services, Secrets, Events, Leases, batch Jobs,
RayCluster and RayJob objects (read, create, delete, status patch, spec patch), as plain camelCase dicts.

Does network I/O through the `kubernetes` client (blocking; call it from kopf's sync handlers, which
run in threads). Every call has a timeout; ApiExceptions become this module's errors (`raise ... from e`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
from typing import Any

import pydantic
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from kray_operator import models

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
COMPONENT = "kray-operator"
RAYCLUSTER_PLURAL = "rayclusters"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

_lock = threading.Lock()
_api: client.ApiClient | None = None


class KubeError(RuntimeError):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(KubeError):
    """The object does not exist (404)."""


class AlreadyExistsError(KubeError):
    """An object of that name exists already (409 on create)."""


class ConflictError(KubeError):
    """The object changed since it was read (409 on update, or a failed `test` of a JSON patch)."""


class InvalidError(KubeError):
    """The API server rejected the object as invalid (422): the manifest (or the spec it came from) is wrong."""


class ForbiddenError(KubeError):
    """The operator's ServiceAccount may not do this (403): check the operator's RBAC rules."""


class NamespaceTerminatingError(ForbiddenError):
    """Nothing can be created in the namespace: it is being deleted (403, cause NamespaceTerminating)."""


def _wrap(e: ApiException, what: str) -> KubeError:
    """The operator's error for an ApiException, with the server's message."""
    status = int(e.status or 0)
    message = e.reason or ""
    reason = ""
    causes: list[Any] = []
    try:
        body = json.loads(e.body) if e.body else {}
        message = body.get("message") or message
        reason = body.get("reason") or ""
        causes = list((body.get("details") or {}).get("causes") or [])
    except (ValueError, TypeError, AttributeError):
        pass
    text = f"{what}: {status} {message}".strip()
    cls: type[KubeError] = KubeError
    if status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = AlreadyExistsError if reason == "AlreadyExists" else ConflictError
    elif status == 422:
        cls = InvalidError
    elif status == 403:
        terminating = any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)
        cls = NamespaceTerminatingError if terminating else ForbiddenError
    return cls(text, status, reason)


def api() -> client.ApiClient:
    """The shared ApiClient: in-cluster credentials when running in a Pod, else $KUBECONFIG / ~/.kube/config."""
    global _api
    with _lock:
        if _api is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException:
                # $KUBECONFIG read now, not when `kubernetes` was imported (it may be set later).
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
            _api = client.ApiClient(configuration)
        return _api


def _core() -> Any:
    return client.CoreV1Api(api())


def _custom() -> Any:
    return client.CustomObjectsApi(api())


def _coordination() -> Any:
    return client.CoordinationV1Api(api())


def _batch() -> Any:
    return client.BatchV1Api(api())


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one API call with a timeout and raw JSON output; returns the decoded body (or None)."""
    try:
        response = fn(*args, _request_timeout=REQUEST_TIMEOUT_S, _preload_content=False, **kwargs)
    except ApiException as e:
        raise _wrap(e, what) from e
    except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, timed out, reset
        raise KubeError(f"{what}: API server unreachable ({e})") from e
    except pydantic.ValidationError as e:  # the client checks typed request bodies before sending
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc'][1:])}: {item['msg']}" for item in e.errors())
        raise InvalidError(f"{what}: invalid request body ({problems})", 422, "Invalid") from e
    data = response.data
    return json.loads(data) if data else None


def _read(what: str, fn: Any, *args: Any) -> dict[str, Any] | None:
    """One read; None when the object does not exist."""
    try:
        result: dict[str, Any] = _call(what, fn, *args)
    except NotFoundError:
        return None
    return result


# ---- Namespaces


def namespace_terminating(name: str) -> bool:
    """Whether the namespace is gone or being deleted (nothing new can be created in it).

    False when the operator may not read namespaces: the NamespaceTerminatingError of a create then tells.
    """
    try:
        body = _read(f"reading Namespace {name}", _core().read_namespace, name)
    except ForbiddenError:
        return False
    if body is None:
        return True
    return bool((body.get("metadata") or {}).get("deletionTimestamp")) or \
        (body.get("status") or {}).get("phase") == "Terminating"


# ---- Pods


def list_pods(namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
    """Pods of `namespace` matching every label of `selector` (a fresh read, not a cache)."""
    selector_text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    body = _call(f"listing Pods {selector_text} in {namespace}", _core().list_namespaced_pod,
                 namespace, label_selector=selector_text)
    return list(body.get("items") or [])


def create_pod(namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    """Create a Pod; AlreadyExistsError when the name is taken."""
    name = pod.get("metadata", {}).get("name")
    result: dict[str, Any] = _call(f"creating Pod {namespace}/{name}", _core().create_namespaced_pod,
                                   namespace, pod)
    return result


def delete_pod(namespace: str, name: str) -> bool:
    """Delete a Pod (background propagation); False when it was already gone."""
    try:
        _call(f"deleting Pod {namespace}/{name}", _core().delete_namespaced_pod, name, namespace,
              body={"propagationPolicy": "Background"})
    except NotFoundError:
        return False
    return True


# ---- Services and Secrets


def read_service(namespace: str, name: str) -> dict[str, Any] | None:
    """The Service, or None when it does not exist."""
    return _read(f"reading Service {namespace}/{name}", _core().read_namespaced_service, name, namespace)


def create_service(namespace: str, service: dict[str, Any]) -> dict[str, Any]:
    """Create a Service; AlreadyExistsError when the name is taken."""
    name = service.get("metadata", {}).get("name")
    result: dict[str, Any] = _call(f"creating Service {namespace}/{name}",
                                   _core().create_namespaced_service, namespace, service)
    return result


def patch_service(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch a Service (e.g. its selector); NotFoundError when it does not exist."""
    result: dict[str, Any] = _call(f"patching Service {namespace}/{name}", _core().patch_namespaced_service,
                                   name, namespace, patch)
    return result


def read_secret(namespace: str, name: str) -> dict[str, Any] | None:
    """The Secret, or None when it does not exist."""
    return _read(f"reading Secret {namespace}/{name}", _core().read_namespaced_secret, name, namespace)


def create_secret(namespace: str, secret: dict[str, Any]) -> dict[str, Any]:
    """Create a Secret; AlreadyExistsError when the name is taken."""
    name = secret.get("metadata", {}).get("name")
    result: dict[str, Any] = _call(f"creating Secret {namespace}/{name}",
                                   _core().create_namespaced_secret, namespace, secret)
    return result


# ---- RayCluster objects


def read_raycluster(namespace: str, name: str) -> dict[str, Any] | None:
    """The RayCluster as stored now, or None when it was deleted."""
    return _read(f"reading RayCluster {namespace}/{name}", _custom().get_namespaced_custom_object,
                 models.GROUP, models.VERSION, namespace, RAYCLUSTER_PLURAL, name)


def patch_raycluster_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch .status through the status subresource (a None value removes a field)."""
    result: dict[str, Any] = _call(
        f"patching the status of RayCluster {namespace}/{name}",
        _custom().patch_namespaced_custom_object_status,
        models.GROUP, models.VERSION, namespace, RAYCLUSTER_PLURAL, name, {"status": status},
        _content_type=MERGE_PATCH)
    return result


def json_patch_raycluster(namespace: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply a JSON patch (RFC 6902) to the RayCluster; ConflictError when one of its `test`s fails."""
    what = f"patching RayCluster {namespace}/{name}"
    try:
        result: dict[str, Any] = _call(what, _custom().patch_namespaced_custom_object, models.GROUP,
                                       models.VERSION, namespace, RAYCLUSTER_PLURAL, name, operations,
                                       _content_type=JSON_PATCH)
    except InvalidError as e:
        # The API server answers a failed `test` with a bare 422 Invalid and no details.
        if any(op.get("op") == "test" for op in operations):
            raise ConflictError(f"{what}: the object changed since it was read ({e})", e.status, e.reason) from e
        raise
    return result


# ---- RayJob objects, the RayClusters they create, and submitter batch Jobs

RAYJOB_PLURAL = "rayjobs"


def read_rayjob(namespace: str, name: str) -> dict[str, Any] | None:
    """The RayJob as stored now, or None when it was deleted."""
    return _read(f"reading RayJob {namespace}/{name}", _custom().get_namespaced_custom_object,
                 models.GROUP, models.VERSION, namespace, RAYJOB_PLURAL, name)


def patch_rayjob_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch the RayJob's .status through the status subresource (a None value removes a field)."""
    result: dict[str, Any] = _call(
        f"patching the status of RayJob {namespace}/{name}", _custom().patch_namespaced_custom_object_status,
        models.GROUP, models.VERSION, namespace, RAYJOB_PLURAL, name, {"status": status},
        _content_type=MERGE_PATCH)
    return result


def delete_rayjob(namespace: str, name: str) -> bool:
    """Delete the RayJob (its children go by owner references); False when it was already gone."""
    return _delete(f"deleting RayJob {namespace}/{name}", _custom().delete_namespaced_custom_object,
                   models.GROUP, models.VERSION, namespace, RAYJOB_PLURAL, name)


def create_raycluster(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create a RayCluster; AlreadyExistsError when the name is taken."""
    result: dict[str, Any] = _call(f"creating RayCluster {namespace}/{body['metadata']['name']}",
                                   _custom().create_namespaced_custom_object, models.GROUP, models.VERSION,
                                   namespace, RAYCLUSTER_PLURAL, body)
    return result


def delete_raycluster(namespace: str, name: str) -> bool:
    """Delete a RayCluster (its Pods go by owner references); False when it was already gone."""
    return _delete(f"deleting RayCluster {namespace}/{name}", _custom().delete_namespaced_custom_object,
                   models.GROUP, models.VERSION, namespace, RAYCLUSTER_PLURAL, name)


def read_batch_job(namespace: str, name: str) -> dict[str, Any] | None:
    """The batch/v1 Job, or None when it does not exist."""
    return _read(f"reading Job {namespace}/{name}", _batch().read_namespaced_job, name, namespace)


def create_batch_job(namespace: str, job: dict[str, Any]) -> dict[str, Any]:
    """Create a batch/v1 Job; AlreadyExistsError when the name is taken."""
    result: dict[str, Any] = _call(f"creating Job {namespace}/{job['metadata']['name']}",
                                   _batch().create_namespaced_job, namespace, job)
    return result


def delete_batch_job(namespace: str, name: str) -> bool:
    """Delete a batch/v1 Job and, in the background, its Pods; False when it was already gone."""
    return _delete(f"deleting Job {namespace}/{name}", _batch().delete_namespaced_job, name, namespace)


def _delete(what: str, fn: Any, *args: Any) -> bool:
    try:
        _call(what, fn, *args, body={"propagationPolicy": "Background"})
    except NotFoundError:
        return False
    return True


# ---- Leases (leader election)


def read_lease(namespace: str, name: str) -> dict[str, Any] | None:
    """The coordination.k8s.io Lease, or None when it does not exist."""
    return _read(f"reading Lease {namespace}/{name}", _coordination().read_namespaced_lease, name, namespace)


def create_lease(namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
    """Create a Lease; AlreadyExistsError when another replica created it first."""
    result: dict[str, Any] = _call(f"creating Lease {namespace}/{lease['metadata']['name']}",
                                   _coordination().create_namespaced_lease, namespace, lease)
    return result


def replace_lease(namespace: str, name: str, lease: dict[str, Any]) -> dict[str, Any]:
    """Replace a Lease; ConflictError when it changed since it was read (its resourceVersion)."""
    result: dict[str, Any] = _call(f"updating Lease {namespace}/{name}",
                                   _coordination().replace_namespaced_lease, name, namespace, lease)
    return result


# ---- Events


def now() -> str:
    """The current UTC time as RFC 3339 ("2025-01-01T00:00:00Z"), as Kubernetes writes times."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def post_event(obj: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """Record a core/v1 Event about `obj` (shown by `kubectl describe`); a failure is logged, not raised."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    stamp = now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta.get("name"),
            "namespace": namespace, "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        _call(f"posting Event {reason} in {namespace}", _core().create_namespaced_event, namespace, event)
    except KubeError as e:
        log.warning("could not record event %s (%s): %s", reason, message, e)
