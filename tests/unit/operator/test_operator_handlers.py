"""The reconcile pass (handlers.cluster_sync) against an in-memory stand-in of kube.py, the coalescing of
passes, kube.py's error mapping and the command line. No processes, no API server.
"""

from __future__ import annotations

import copy
import threading
import types
from typing import Any

import pytest
import urllib3
from kray_operator import __main__ as cli
from kray_operator import kube
from kray_operator.builders import names
from kray_operator.handlers import cluster_sync, coalescing
from kubernetes.client.exceptions import ApiException


class FakeKube:
    """kube.py's functions over dicts: one RayCluster, its Pods, Secrets, Services; records writes."""

    def __init__(self, cluster: dict[str, Any]) -> None:
        self.cluster = cluster
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.status_patches: list[dict[str, Any]] = []
        self.json_patches: list[list[dict[str, Any]]] = []
        self.events: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeKube:
        monkeypatch.setattr(kube, "read_raycluster", lambda ns, name: copy.deepcopy(self.cluster))
        monkeypatch.setattr(kube, "read_secret", lambda ns, name: self.secrets.get(name))
        monkeypatch.setattr(kube, "create_secret", lambda ns, body: self._put(self.secrets, body))
        monkeypatch.setattr(kube, "read_service", lambda ns, name: self.services.get(name))
        monkeypatch.setattr(kube, "create_service", lambda ns, body: self._put(self.services, body))
        monkeypatch.setattr(kube, "list_pods", lambda ns, selector: copy.deepcopy(list(self.pods.values())))
        monkeypatch.setattr(kube, "create_pod", lambda ns, body: self._put(self.pods, body))
        monkeypatch.setattr(kube, "delete_pod", lambda ns, name: self.pods.pop(name, None) is not None)
        monkeypatch.setattr(kube, "patch_raycluster_status", self._patch_status)
        monkeypatch.setattr(kube, "json_patch_raycluster", lambda ns, name, ops: self.json_patches.append(ops))
        monkeypatch.setattr(kube, "post_event", lambda obj, reason, message, warning=False: self.events.append(reason))
        return self

    @staticmethod
    def _put(table: dict[str, dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in table:
            raise kube.AlreadyExistsError(f"{name} exists", 409, "AlreadyExists")
        table[name] = copy.deepcopy(body)
        return body

    def _patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.status_patches.append(status)
        merged = dict(self.cluster.get("status") or {})
        merged.update({k: v for k, v in status.items() if v is not None})
        self.cluster["status"] = merged
        return self.cluster

    def kinds(self) -> list[str]:
        return sorted(p["metadata"]["labels"][names.NODE_TYPE_LABEL] for p in self.pods.values())


@pytest.fixture
def fake(cluster_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    return FakeKube(cluster_doc).install(monkeypatch)


def test_a_first_pass_creates_secret_service_head_and_workers(fake: FakeKube) -> None:
    cluster_sync.sync("ns1", "raycluster-sample")
    assert list(fake.secrets) == ["raycluster-sample-token"]
    assert list(fake.services) == ["raycluster-sample-head-svc"]
    assert fake.kinds() == ["head", "worker"]
    assert fake.events[:2] == ["CreatedSecret", "CreatedService"]
    (status,) = fake.status_patches
    assert status["desiredWorkerReplicas"] == 1 and status["observedGeneration"] == 3


def test_a_second_pass_changes_nothing(fake: FakeKube) -> None:
    cluster_sync.sync("ns1", "raycluster-sample")
    pods, events = set(fake.pods), len(fake.events)
    cluster_sync.sync("ns1", "raycluster-sample")
    assert set(fake.pods) == pods and len(fake.events) == events
    assert len(fake.status_patches) == 1  # only lastUpdateTime would change: not written


def test_workers_to_delete_are_deleted_and_cleared_with_a_guarded_json_patch(fake: FakeKube) -> None:
    group = fake.cluster["spec"]["workerGroupSpecs"][0]
    group["replicas"] = 2
    cluster_sync.sync("ns1", "raycluster-sample")
    victim = min(p for p in fake.pods if "worker" in p)
    group["replicas"] = 1
    group["scaleStrategy"] = {"workersToDelete": [victim]}
    cluster_sync.sync("ns1", "raycluster-sample")
    assert victim not in fake.pods and fake.kinds() == ["head", "worker"]
    (ops,) = fake.json_patches
    path = "/spec/workerGroupSpecs/0/scaleStrategy/workersToDelete"
    assert {"op": "test", "path": path, "value": [victim]} in ops
    assert ops[-1] == {"op": "replace", "path": path, "value": []}


def test_suspend_deletes_every_pod(fake: FakeKube) -> None:
    cluster_sync.sync("ns1", "raycluster-sample")
    fake.cluster["spec"]["suspend"] = True
    cluster_sync.sync("ns1", "raycluster-sample")
    assert fake.pods == {}
    assert fake.status_patches[-1]["state"] == "suspended"


def test_a_bad_spec_is_recorded_once_and_raises(fake: FakeKube) -> None:
    fake.cluster["spec"]["headGroupSpec"]["rayStartParams"] = {"--block": "true"}
    for _ in range(2):
        with pytest.raises(cluster_sync.InvalidSpecError, match="without dashes"):
            cluster_sync.sync("ns1", "raycluster-sample")
    (status,) = fake.status_patches
    assert status["state"] == "failed" and status["observedGeneration"] == 3
    (failure,) = status["conditions"]
    assert (failure["type"], failure["reason"]) == ("ReplicaFailure", "ValidationFailed")
    assert fake.events == ["InvalidSpec"] and fake.pods == {}


def test_a_pod_template_the_api_server_rejects_is_a_bad_spec(fake: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    def reject(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        raise kube.InvalidError("creating Pod: 422 spec.containers[0].name: Invalid value", 422)

    monkeypatch.setattr(kube, "create_pod", reject)
    with pytest.raises(cluster_sync.InvalidSpecError, match="head Pod template was rejected"):
        cluster_sync.sync("ns1", "raycluster-sample")
    assert fake.status_patches[-1]["state"] == "failed"


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["metadata"].update(name="c" * 60), "at most 54"),
    (lambda d: d["spec"]["workerGroupSpecs"][0]["rayStartParams"].update({"num cpus": "1"}), "not a flag name"),
    (lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update(port="http"), "not a port number"),
])
def test_parse_rejects_what_the_schema_lets_through(cluster_doc: dict[str, Any], change: Any, message: str) -> None:
    change(cluster_doc)
    with pytest.raises(cluster_sync.InvalidSpecError, match=message):
        cluster_sync.parse(cluster_doc)


def test_the_coalescer_runs_one_more_pass_for_requests_during_a_pass() -> None:
    passes = coalescing.Coalescer()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        if len(calls) == 1:
            started.set()
            assert release.wait(5)

    runner = threading.Thread(target=passes.run, args=("k", slow))
    runner.start()
    assert started.wait(5)
    for _ in range(5):
        passes.request("k", slow)  # returns at once: a pass is running
    release.set()
    runner.join(5)
    assert len(calls) == 2


def test_the_coalescer_raises_from_run_and_logs_from_request() -> None:
    passes = coalescing.Coalescer()

    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        passes.run("k", boom)
    passes.request("k", boom)  # logged, not raised


def test_the_coalescer_gives_up_waiting_for_a_stuck_pass() -> None:
    passes = coalescing.Coalescer(lock_timeout=0.1)
    release = threading.Event()
    runner = threading.Thread(target=passes.run, args=("k", lambda: release.wait(5) and None))
    runner.start()
    try:
        with pytest.raises(coalescing.BusyError):
            passes.run("k", lambda: None)
    finally:
        release.set()
        runner.join(5)


@pytest.mark.parametrize(("status", "body", "error"), [
    (404, '{"reason": "NotFound", "message": "pods \\"x\\" not found"}', kube.NotFoundError),
    (409, '{"reason": "AlreadyExists", "message": "exists"}', kube.AlreadyExistsError),
    (409, '{"reason": "Conflict", "message": "the object has been modified"}', kube.ConflictError),
    (422, '{"reason": "Invalid", "message": "spec.containers: Required value"}', kube.InvalidError),
    (403, '{"reason": "Forbidden", "message": "cannot create pods"}', kube.ForbiddenError),
    (500, "not json", kube.KubeError),
])
def test_api_exceptions_become_the_operators_errors(status: int, body: str, error: type[kube.KubeError]) -> None:
    def call(**_: Any) -> None:
        exc = ApiException(status=status, reason="Reason")
        exc.body = body
        raise exc

    with pytest.raises(error) as caught:
        kube._call("doing it", call)
    assert type(caught.value) is error and caught.value.status == status
    assert isinstance(caught.value.__cause__, ApiException)
    assert str(caught.value).startswith(f"doing it: {status}")


def test_an_unreachable_api_server_is_a_kube_error() -> None:
    def call(**_: Any) -> None:
        raise urllib3.exceptions.MaxRetryError(None, "/api", "connection refused")  # type: ignore[arg-type]

    with pytest.raises(kube.KubeError, match="unreachable") as caught:
        kube._call("listing Pods", call)
    assert isinstance(caught.value.__cause__, urllib3.exceptions.MaxRetryError)


def test_a_failed_json_patch_test_is_a_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    def bare_invalid(what: str, *args: Any, **kwargs: Any) -> None:
        raise kube.InvalidError(f"{what}: 422 the server rejected our request", 422, "Invalid")

    monkeypatch.setattr(kube, "_call", bare_invalid)
    monkeypatch.setattr(kube, "_custom", lambda: types.SimpleNamespace(patch_namespaced_custom_object=None))
    with pytest.raises(kube.ConflictError):
        kube.json_patch_raycluster("ns", "c", [{"op": "test", "path": "/spec/x", "value": 1}])
    with pytest.raises(kube.InvalidError):
        kube.json_patch_raycluster("ns", "c", [{"op": "replace", "path": "/spec/x", "value": 1}])


def test_the_command_line() -> None:
    args = cli.parse_args([])
    assert not args.leader_elect and args.namespace == [] and args.liveness is None
    args = cli.parse_args(["--standalone", "-n", "a", "--namespace=b", "--liveness=http://0.0.0.0:8080/healthz"])
    assert args.namespace == ["a", "b"] and args.liveness.endswith("/healthz")
    args = cli.parse_args(["--leader-elect", "--leader-election-namespace=ops", "--lease-duration=9",
                           "--renew-deadline=6", "--retry-period=1"])
    assert (args.election.namespace, args.election.name) == ("ops", "kray-operator")
    assert args.election.lease_duration_s == 9 and args.election.identity
    for bad in (["--all-namespaces", "-n", "a"], ["--leader-elect", "--renew-deadline=20"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)
