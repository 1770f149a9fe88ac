"""The reconcile pass (handlers.cluster_sync) against an in-memory stand-in of kube.py, the coalescing of
passes, kube.py's error mapping and the command line. No processes, no API server.
"""

from __future__ import annotations

import copy
import decimal
import threading
from typing import Any

import pytest
import urllib3
from kray_operator import __main__ as cli
from kray_operator import kube, models
from kray_operator.builders import names, secret
from kray_operator.handlers import cluster_sync, coalescing


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
        self.messages: list[str] = []
        self.terminating = False

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
        monkeypatch.setattr(kube, "post_event", self._event)
        monkeypatch.setattr(kube, "namespace_terminating", lambda ns: self.terminating)
        return self

    def _event(self, obj: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
        self.events.append(reason)
        self.messages.append(message)

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
        name = body["metadata"]["name"]
        raise kube.InvalidError(f'creating Pod {name}: 422 Pod "{name}" is invalid: spec.containers[0].name', 422)

    monkeypatch.setattr(kube, "create_pod", reject)
    for _ in range(3):  # the random Pod name is not in the message: recorded once, not once per pass
        with pytest.raises(cluster_sync.InvalidSpecError,
                           match=r'head Pod template was rejected: creating Pod raycluster-sample-head-\*'):
            cluster_sync.sync("ns1", "raycluster-sample")
    assert fake.status_patches[-1]["state"] == "failed"
    assert fake.events.count("InvalidSpec") == 1 and len(fake.status_patches) == 1


def test_workers_get_the_lowest_free_replica_index(fake: FakeKube) -> None:
    fake.cluster["spec"]["workerGroupSpecs"][0]["replicas"] = 3
    cluster_sync.sync("ns1", "raycluster-sample")
    indices = {p["metadata"]["labels"].get(names.RAY_REPLICA_INDEX_LABEL) for p in fake.pods.values()}
    assert indices == {None, "0", "1", "2"}  # the head has none
    lost = next(n for n, p in fake.pods.items() if p["metadata"]["labels"].get(names.RAY_REPLICA_INDEX_LABEL) == "1")
    del fake.pods[lost]
    cluster_sync.sync("ns1", "raycluster-sample")
    assert sorted(p["metadata"]["labels"].get(names.RAY_REPLICA_INDEX_LABEL) or "" for p in fake.pods.values()) == \
        ["", "0", "1", "2"]


def test_nothing_is_created_in_a_terminating_namespace(fake: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.terminating = True
    cluster_sync.sync("ns1", "raycluster-sample")
    assert fake.pods == {} and fake.secrets == {} and fake.events == [] and fake.status_patches == []
    fake.terminating = False  # the namespace starts terminating during the pass: the first refusal stops it

    def refuse(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        raise kube.NamespaceTerminatingError("creating Pod: 403 ns1 is being terminated", 403, "Forbidden")

    monkeypatch.setattr(kube, "create_pod", refuse)
    cluster_sync.sync("ns1", "raycluster-sample")
    assert "FailedReconcile" not in fake.events and fake.status_patches == []


def test_a_service_error_is_a_condition_and_an_event(fake: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        raise kube.KubeError("creating Service ns1/x: 500 etcd timeout", 500)

    monkeypatch.setattr(kube, "create_service", fail)
    with pytest.raises(kube.KubeError, match="etcd timeout"):  # the caller retries the pass with back-off
        cluster_sync.sync("ns1", "raycluster-sample")
    assert "FailedReconcile" in fake.events
    failure = next(c for c in fake.status_patches[-1]["conditions"] if c["type"] == "ReplicaFailure")
    assert "etcd timeout" in failure["message"] and fake.kinds() == ["head", "worker"]


def test_auth_mode_token_makes_kuberays_secret_with_the_same_token(fake: FakeKube) -> None:
    fake.cluster["spec"]["authOptions"] = {"mode": "token"}
    cluster_sync.sync("ns1", "raycluster-sample")
    kray_token = secret.read_token(fake.secrets["raycluster-sample-token"])
    assert secret.read_token(fake.secrets["raycluster-sample"], "auth_token") == kray_token
    # KubeRay's Secret made first (e.g. by the user) gives its token to kray's.
    fake.secrets.clear()
    fake.secrets["raycluster-sample"] = secret.auth_secret(models.RayCluster.model_validate(fake.cluster), "u" * 20)
    cluster_sync.sync("ns1", "raycluster-sample")
    assert secret.read_token(fake.secrets["raycluster-sample-token"]) == "u" * 20


def test_fields_without_effect_are_announced_once(fake: FakeKube) -> None:
    fake.cluster["spec"]["headGroupSpec"]["rayStartParams"] = {"object-manager-port": "8076"}
    fake.cluster["spec"]["authOptions"] = {"mode": "disabled"}
    old = copy.deepcopy(fake.cluster["spec"])
    cluster_sync.sync("ns1", "raycluster-sample", announce=True)
    notices = [m for r, m in zip(fake.events, fake.messages) if r == "NoEffectOnKray"]
    assert len(notices) == 2 and "['object-manager-port'] of group 'headgroup'" in notices[0]
    assert "authOptions.mode disabled" in notices[1]
    fake.cluster["spec"]["autoscalerOptions"] = {"version": "v2"}
    cluster_sync.sync("ns1", "raycluster-sample", announce=True, old_spec=old)
    notices = [m for r, m in zip(fake.events, fake.messages) if r == "NoEffectOnKray"]
    assert len(notices) == 3 and "autoscalerOptions ['version']" in notices[2]


def test_a_cluster_managed_by_multikueue_is_left_alone(fake: FakeKube) -> None:
    fake.cluster["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    cluster_sync.sync("ns1", "raycluster-sample", announce=True)
    assert fake.pods == {} and fake.secrets == {} and fake.events == [] and fake.status_patches == []


def test_unknown_start_params_are_a_bad_spec(fake: FakeKube) -> None:
    fake.cluster["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"num-cpu": "1"}
    with pytest.raises(cluster_sync.InvalidSpecError, match=r"\['num-cpu'\] are not `ray start` flags"):
        cluster_sync.sync("ns1", "raycluster-sample")
    assert fake.status_patches[-1]["state"] == "failed" and fake.events == ["InvalidSpec"]


def test_a_body_that_is_not_json_is_invalid() -> None:
    body = {"spec": {"cpu": decimal.Decimal("0.5")}}
    with pytest.raises(kube.InvalidError, match="creating Pod x: invalid request body .*Decimal"):
        kube._call("creating Pod x", kube._request, "POST", "/api/v1/namespaces/x/pods", body)


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
    (403, ('{"reason": "Forbidden", "message": "being terminated", "details": {"causes": '
          '[{"reason": "NamespaceTerminating"}]}}'), kube.NamespaceTerminatingError),
    (500, "not json", kube.KubeError),
])
def test_api_exceptions_become_the_operators_errors(status: int, body: str, error: type[kube.KubeError]) -> None:
    def call(**_: Any) -> None:
        raise kube.ApiStatusError(status, "Reason", body)

    with pytest.raises(error) as caught:
        kube._call("doing it", call)
    assert type(caught.value) is error and caught.value.status == status
    assert isinstance(caught.value.__cause__, kube.ApiStatusError)
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
