"""The operator's one gateway to the Kubernetes API: Pods, Services, Secrets, Events, Leases, batch Jobs,
RayCluster and RayJob objects (read, create, delete, status patch, spec patch), as plain camelCase dicts.

Does network I/O (blocking, over urllib3; call it from kopf's sync handlers, which run in threads): JSON in,
JSON out, no typed client, so that reconciling imports no generated models (the kubernetes client's typed
APIs cost the operator 25 MiB). Every call has a timeout; HTTP errors become this module's errors.
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import threading
import urllib.parse
from typing import Any

import urllib3

from kray_operator import credentials as credentials_source
from kray_operator import models
from kray_operator.builders import status as status_builder

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
COMPONENT = "kray-operator"
RAYCLUSTER_PLURAL = "rayclusters"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
DELETE_BACKGROUND = {"propagationPolicy": "Background"}

_lock = threading.Lock()
_credentials: credentials_source.Credentials | None = None
_pool: urllib3.PoolManager | None = None


class ApiStatusError(Exception):
    """The API server answered with an error status (the raw answer; `_call` turns it into a KubeError)."""

    def __init__(self, status: int, reason: str, body: bytes | str | None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class BodyError(ValueError):
    """A request body that cannot be sent as JSON (`_call` makes it an InvalidError naming the call)."""


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
    """The API server rejected the object as invalid (422) or undecodable (400): the manifest (or the spec it
    came from) is wrong."""


class ForbiddenError(KubeError):
    """The operator's ServiceAccount may not do this (403): check the operator's RBAC rules."""


class NamespaceTerminatingError(ForbiddenError):
    """Nothing can be created in the namespace: it is being deleted (403, cause NamespaceTerminating)."""


def _wrap(e: ApiStatusError, what: str) -> KubeError:
    """The operator's error for an error answer, with the server's message."""
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
    elif status in (400, 422):  # 400: the server could not even decode the object (a wrong field type)
        cls = InvalidError
    elif status == 403:
        terminating = any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)
        cls = NamespaceTerminatingError if terminating else ForbiddenError
    return cls(text, status, reason)


def credentials() -> credentials_source.Credentials:
    """The shared credentials: in-cluster ServiceAccount when running in a Pod, else $KUBECONFIG / ~/.kube/config
    ($KUBECONFIG is read at the first call, not at import: it may be set later)."""
    global _credentials
    with _lock:
        if _credentials is None:
            _credentials = credentials_source.load()
        return _credentials


def _connections() -> urllib3.PoolManager:
    global _pool
    creds = credentials()
    with _lock:
        if _pool is None:
            settings: dict[str, Any] = {"num_pools": 2, "maxsize": 8, "ssl_context": creds.ssl_context(),
                                        "server_hostname": creds.tls_server_name}
            # The kubeconfig's proxy-url, as kubectl and the kubernetes client use it; no proxy otherwise.
            _pool = urllib3.ProxyManager(creds.proxy_url, **settings) if creds.proxy_url else \
                urllib3.PoolManager(**settings)
        return _pool


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _request(method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
             content_type: str = JSON, timeout: float = REQUEST_TIMEOUT_S) -> bytes:
    """One HTTP request to the API server; the raw answer, or ApiStatusError for an error status."""
    try:
        data = None if body is None else json.dumps(body, default=_json_default).encode()
    except (TypeError, ValueError) as e:
        raise BodyError(str(e)) from e
    creds = credentials()
    url = creds.server.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    headers = {"Accept": JSON, "User-Agent": COMPONENT, **creds.headers()}
    if data is not None:
        headers["Content-Type"] = content_type
    response = _connections().request(method, url, body=data, headers=headers, retries=False,
                                      timeout=urllib3.Timeout(total=timeout))
    if not 200 <= response.status < 300:
        raise ApiStatusError(response.status, response.reason or "", response.data)
    return bytes(response.data)


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one API call (`_request` or a stand-in) with a timeout; returns the decoded JSON body (or None)."""
    try:
        data = fn(*args, timeout=REQUEST_TIMEOUT_S, **kwargs)
    except ApiStatusError as e:
        raise _wrap(e, what) from e
    except BodyError as e:
        raise InvalidError(f"{what}: invalid request body ({e})", 422, "Invalid") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, timed out, reset
        raise KubeError(f"{what}: API server unreachable ({e})") from e
    return json.loads(data) if data else None


def _namespaced(namespace: str, plural: str, name: str = "", group: str = "", version: str = "v1") -> str:
    """The URL path of a namespaced collection (or of one object in it)."""
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    path = f"{prefix}/namespaces/{urllib.parse.quote(namespace)}/{plural}"
    return f"{path}/{urllib.parse.quote(name)}" if name else path


def _kray(namespace: str, plural: str, name: str = "") -> str:
    return _namespaced(namespace, plural, name, models.GROUP, models.VERSION)


def _read(what: str, path: str) -> dict[str, Any] | None:
    """One read; None when the object does not exist."""
    try:
        result: dict[str, Any] = _call(what, _request, "GET", path)
    except NotFoundError:
        return None
    return result


def _create(what: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _call(what, _request, "POST", path, body)
    return result


def _delete(what: str, path: str) -> bool:
    """Delete (background propagation: dependents go after); False when it was already gone."""
    try:
        _call(what, _request, "DELETE", path, DELETE_BACKGROUND)
    except NotFoundError:
        return False
    return True


# ---- Namespaces


def namespace_terminating(name: str) -> bool:
    """Whether the namespace is gone or being deleted (nothing new can be created in it).

    False when the operator may not read namespaces: the NamespaceTerminatingError of a create then tells.
    """
    try:
        body = _read(f"reading Namespace {name}", f"/api/v1/namespaces/{urllib.parse.quote(name)}")
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
    body = _call(f"listing Pods {selector_text} in {namespace}", _request, "GET", _namespaced(namespace, "pods"),
                 query={"labelSelector": selector_text})
    return list(body.get("items") or [])


def create_pod(namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    """Create a Pod; AlreadyExistsError when the name is taken."""
    name = pod.get("metadata", {}).get("name")
    return _create(f"creating Pod {namespace}/{name}", _namespaced(namespace, "pods"), pod)


def delete_pod(namespace: str, name: str) -> bool:
    """Delete a Pod (background propagation); False when it was already gone."""
    return _delete(f"deleting Pod {namespace}/{name}", _namespaced(namespace, "pods", name))


# ---- Services and Secrets


def read_service(namespace: str, name: str) -> dict[str, Any] | None:
    """The Service, or None when it does not exist."""
    return _read(f"reading Service {namespace}/{name}", _namespaced(namespace, "services", name))


def create_service(namespace: str, service: dict[str, Any]) -> dict[str, Any]:
    """Create a Service; AlreadyExistsError when the name is taken."""
    name = service.get("metadata", {}).get("name")
    return _create(f"creating Service {namespace}/{name}", _namespaced(namespace, "services"), service)


def patch_service(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch a Service (e.g. its selector); NotFoundError when it does not exist."""
    result: dict[str, Any] = _call(f"patching Service {namespace}/{name}", _request, "PATCH",
                                   _namespaced(namespace, "services", name), patch, content_type=MERGE_PATCH)
    return result


def read_secret(namespace: str, name: str) -> dict[str, Any] | None:
    """The Secret, or None when it does not exist."""
    return _read(f"reading Secret {namespace}/{name}", _namespaced(namespace, "secrets", name))


def create_secret(namespace: str, secret: dict[str, Any]) -> dict[str, Any]:
    """Create a Secret; AlreadyExistsError when the name is taken."""
    name = secret.get("metadata", {}).get("name")
    return _create(f"creating Secret {namespace}/{name}", _namespaced(namespace, "secrets"), secret)


# ---- RayCluster objects


def read_raycluster(namespace: str, name: str) -> dict[str, Any] | None:
    """The RayCluster as stored now, or None when it was deleted."""
    return _read(f"reading RayCluster {namespace}/{name}", _kray(namespace, RAYCLUSTER_PLURAL, name))


def patch_raycluster_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch .status through the status subresource (a None value removes a field)."""
    result: dict[str, Any] = _call(
        f"patching the status of RayCluster {namespace}/{name}", _request, "PATCH",
        _kray(namespace, RAYCLUSTER_PLURAL, name) + "/status", {"status": status}, content_type=MERGE_PATCH)
    return result


def json_patch_raycluster(namespace: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply a JSON patch (RFC 6902) to the RayCluster; ConflictError when one of its `test`s fails."""
    what = f"patching RayCluster {namespace}/{name}"
    try:
        result: dict[str, Any] = _call(what, _request, "PATCH", _kray(namespace, RAYCLUSTER_PLURAL, name),
                                       operations, content_type=JSON_PATCH)
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
    return _read(f"reading RayJob {namespace}/{name}", _kray(namespace, RAYJOB_PLURAL, name))


def patch_rayjob_status(namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch the RayJob's .status through the status subresource (a None value removes a field)."""
    result: dict[str, Any] = _call(
        f"patching the status of RayJob {namespace}/{name}", _request, "PATCH",
        _kray(namespace, RAYJOB_PLURAL, name) + "/status", {"status": status}, content_type=MERGE_PATCH)
    return result


def delete_rayjob(namespace: str, name: str) -> bool:
    """Delete the RayJob (its children go by owner references); False when it was already gone."""
    return _delete(f"deleting RayJob {namespace}/{name}", _kray(namespace, RAYJOB_PLURAL, name))


def create_raycluster(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create a RayCluster; AlreadyExistsError when the name is taken."""
    return _create(f"creating RayCluster {namespace}/{body['metadata']['name']}",
                   _kray(namespace, RAYCLUSTER_PLURAL), body)


def delete_raycluster(namespace: str, name: str) -> bool:
    """Delete a RayCluster (its Pods go by owner references); False when it was already gone."""
    return _delete(f"deleting RayCluster {namespace}/{name}", _kray(namespace, RAYCLUSTER_PLURAL, name))


def read_batch_job(namespace: str, name: str) -> dict[str, Any] | None:
    """The batch/v1 Job, or None when it does not exist."""
    return _read(f"reading Job {namespace}/{name}", _namespaced(namespace, "jobs", name, "batch"))


def create_batch_job(namespace: str, job: dict[str, Any]) -> dict[str, Any]:
    """Create a batch/v1 Job; AlreadyExistsError when the name is taken."""
    return _create(f"creating Job {namespace}/{job['metadata']['name']}", _namespaced(namespace, "jobs", "", "batch"),
                   job)


def delete_batch_job(namespace: str, name: str) -> bool:
    """Delete a batch/v1 Job and, in the background, its Pods; False when it was already gone."""
    return _delete(f"deleting Job {namespace}/{name}", _namespaced(namespace, "jobs", name, "batch"))


# ---- Leases (leader election)


def read_lease(namespace: str, name: str) -> dict[str, Any] | None:
    """The coordination.k8s.io Lease, or None when it does not exist."""
    return _read(f"reading Lease {namespace}/{name}", _lease_path(namespace, name))


def create_lease(namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
    """Create a Lease; AlreadyExistsError when another replica created it first."""
    return _create(f"creating Lease {namespace}/{lease['metadata']['name']}", _lease_path(namespace), lease)


def replace_lease(namespace: str, name: str, lease: dict[str, Any]) -> dict[str, Any]:
    """Replace a Lease; ConflictError when it changed since it was read (its resourceVersion)."""
    result: dict[str, Any] = _call(f"updating Lease {namespace}/{name}", _request, "PUT",
                                   _lease_path(namespace, name), lease)
    return result


def _lease_path(namespace: str, name: str = "") -> str:
    return _namespaced(namespace, "leases", name, "coordination.k8s.io")


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
        "message": status_builder.truncate(message, status_builder.EVENT_MESSAGE_MAX),
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        _create(f"posting Event {reason} in {namespace}", _namespaced(namespace, "events"), event)
    except KubeError as e:
        log.warning("could not record event %s (%s): %s", reason, message, e)
