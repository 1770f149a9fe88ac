"""Operator hardening, unit tier: back-off of failed passes and of failed Pods' replacements, status
messages cut to the API's limits (and no write loop because of them), metrics text, command-line checks.
No processes, no API server (kube.py's functions are replaced by FakeKube's dicts).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kray_operator import __main__ as cli
from kray_operator import kube, metrics
from kray_operator.builders import observed, status
from kray_operator.handlers import cluster_sync, pod_backoff, requeue
from test_operator_handlers import FakeKube


@pytest.fixture
def fake(cluster_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    return FakeKube(cluster_doc).install(monkeypatch)


@pytest.fixture(autouse=True)
def fresh_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_sync, "failed_pods", pod_backoff.FailedPodBackoff())


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = requeue.Backoff(1.0, 10.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff.delay(10_000) == 10
    with pytest.raises(ValueError, match="base"):
        requeue.Backoff(5.0, 1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requeuer_retries_failures_after_the_backoff_and_resyncs_tracked_keys() -> None:
    clock = Clock()
    queue = requeue.Requeuer(lambda key: None, requeue.Backoff(1.0, 4.0), resync_s=50.0, clock=clock)
    queue._ensure_thread = lambda: None  # type: ignore[method-assign] # drive `due` by hand
    queue.track("a")
    assert queue.failed("a") == 1.0 and queue.failed("a") == 2.0 and queue.failures("a") == 2
    clock.now += 1.5
    assert queue.due(clock.now) == ["a"]  # the first retry
    assert queue.due(clock.now) == []
    clock.now += 1.0
    assert queue.due(clock.now) == ["a"]  # the second
    queue.succeeded("a")
    assert queue.failures("a") == 0 and queue.failed("a") == 1.0  # back-off starts over
    clock.now += 50.0
    assert queue.due(clock.now) == ["a"]  # retry and resync fall together: one pass
    clock.now += 50.0
    assert queue.due(clock.now) == ["a"]  # the resync comes back every period
    queue.forget("a")
    queue.after("a", 0)
    clock.now += 100.0
    assert queue.due(clock.now) == []  # a forgotten cluster is not passed again


def test_a_running_requeuer_calls_back() -> None:
    import threading

    called = threading.Event()
    queue = requeue.Requeuer(lambda key: called.set(), requeue.Backoff(0.01, 0.01))
    try:
        queue.failed("k")
        assert called.wait(10), "the retry ran"
    finally:
        queue.stop()


def _pod(name: str, phase: str, node_type: str = "worker", group: str = "small") -> observed.PodView:
    return observed.PodView(name=name, node_type=node_type, group=group, phase=phase)


def test_failed_pods_back_off_like_crash_loop_backoff() -> None:
    tracker = pod_backoff.FailedPodBackoff(requeue.Backoff(1.0, 8.0), reset_after_s=100.0)
    key = ("ns", "c")
    (notice,) = tracker.observe(key, [_pod("w-1", "Failed"), _pod("w-2", "Running")], 0.0, 1_700_000_000.0)
    assert (notice.group, notice.count, notice.delay_s) == ("small", 1, 1.0)
    assert "back-off of 1 s" in notice.message
    assert tracker.observe(key, [_pod("w-1", "Failed")], 0.5, 1_700_000_000.5) == []  # counted once
    assert tracker.hold(key, "small", 0.5) == 0.5 and tracker.hold(key, "other", 0.5) == 0
    assert [n.delay_s for n in tracker.observe(key, [_pod("w-3", "Failed")], 2.0, 1_700_000_002.0)] == [2.0]
    assert [n.delay_s for n in tracker.observe(key, [_pod("w-4", "Failed")], 5.0, 1_700_000_005.0)] == [4.0]
    line = tracker.summary(key, 6.0)
    assert "group small: 3 failed Pods in a row (last w-4)" in line and "2023-11-14T22:13:29Z" in line
    assert tracker.summary(key, 6.0) == line, "stable between passes"
    assert tracker.summary(key, 9.5) == ""  # the back-off is over
    (head,) = tracker.observe(key, [_pod("h-1", "Failed", node_type="head", group="headgroup")], 10.0, 0.0)
    assert head.group == "headgroup" and tracker.hold(key, None, 10.0) == 1.0
    # After a quiet spell the count starts over.
    assert [n.count for n in tracker.observe(key, [_pod("w-9", "Failed")], 500.0, 0.0)] == [1]
    tracker.forget(key)
    assert tracker.hold(key, "small", 500.0) == 0


def test_truncate_cuts_bytes_on_a_character_boundary() -> None:
    assert status.truncate("short", 10) == "short"
    cut = status.truncate("é" * 600, status.EVENT_MESSAGE_MAX)
    assert len(cut.encode()) <= 1024 and cut.endswith(" ...") and set(cut[:-4]) == {"é"}
    long_status = {"reason": "r" * 5000, "conditions": [{"type": "X", "status": "True", "message": "m" * 40000}]}
    bounded = status.bounded(long_status)
    assert len(bounded["reason"]) <= status.REASON_MAX
    assert len(bounded["conditions"][0]["message"].encode()) <= status.CONDITION_MESSAGE_MAX
    assert long_status["reason"] == "r" * 5000, "the input is left alone"


def test_unchanged_ignores_timestamps_only() -> None:
    old = {"state": "ready", "lastUpdateTime": "t1",
           "conditions": [{"type": "A", "status": "True", "lastTransitionTime": "t1"}]}
    new = copy.deepcopy(old)
    new["lastUpdateTime"] = "t2"
    new["conditions"][0]["lastTransitionTime"] = "t2"
    assert status.unchanged(new, old)
    new["conditions"][0]["status"] = "False"
    assert not status.unchanged(new, old)


def test_a_repeating_long_api_error_is_written_once_and_cut(fake: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        raise kube.ForbiddenError(f'creating Pod {namespace}/{name}: 403 pods "{name}" is forbidden: ' + "x" * 40000,
                                  403, "Forbidden")

    monkeypatch.setattr(kube, "create_pod", refuse)
    for _ in range(3):
        with pytest.raises(kube.KubeError, match="forbidden"):
            cluster_sync.sync("ns1", "raycluster-sample")
    (written,) = fake.status_patches  # the random Pod names are masked, the text is cut: no write loop
    failure = next(c for c in written["conditions"] if c["type"] == "ReplicaFailure")
    assert len(failure["message"].encode()) <= status.CONDITION_MESSAGE_MAX and "-head-*" in failure["message"]


def test_event_messages_are_cut_to_the_apis_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(kube, "_create", lambda what, path, event: sent.append(event))
    kube.post_event({"kind": "RayCluster", "metadata": {"name": "c", "namespace": "ns"}}, "X", "ü" * 2000)
    (event,) = sent
    assert len(event["message"].encode()) <= status.EVENT_MESSAGE_MAX and event["message"].endswith(" ...")


def test_a_long_invalid_spec_message_is_recorded_once(fake: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    def reject(body: dict[str, Any]) -> Any:
        raise cluster_sync.InvalidSpecError("bad field: " + "y" * 5000)

    monkeypatch.setattr(cluster_sync, "parse", reject)
    for _ in range(3):
        with pytest.raises(cluster_sync.InvalidSpecError):
            cluster_sync.sync("ns1", "raycluster-sample")
    (written,) = fake.status_patches
    assert len(written["reason"]) <= status.REASON_MAX and fake.events == ["InvalidSpec"]


def test_a_failed_worker_is_replaced_after_its_backoff(fake: FakeKube) -> None:
    cluster_sync.sync("ns1", "raycluster-sample")
    (worker,) = [n for n, p in fake.pods.items() if "worker" in n]
    fake.pods[worker]["status"] = {"phase": "Failed"}
    wait = cluster_sync.sync("ns1", "raycluster-sample")
    assert wait is not None and 0 < wait <= pod_backoff.BASE_DELAY_S
    assert worker not in fake.pods and fake.kinds() == ["head"], "deleted now, replaced after the back-off"
    assert "FailedPodBackOff" in fake.events
    held = next(c for c in fake.status_patches[-1]["conditions"] if c["type"] == cluster_sync.POD_BACKOFF)
    assert held["reason"] == "FailedPodBackOff" and "1 failed Pods in a row" in held["message"]
    cluster_sync.failed_pods = pod_backoff.FailedPodBackoff()  # as if the back-off had run out
    assert cluster_sync.sync("ns1", "raycluster-sample") is None
    assert fake.kinds() == ["head", "worker"]
    assert not any(c["type"] == cluster_sync.POD_BACKOFF for c in fake.status_patches[-1]["conditions"])


def test_metrics_text() -> None:
    metrics.inc("kray_operator_reconcile_total", {"kind": "RayCluster", "result": "success"})
    metrics.inc("kray_operator_failed_pods_total")
    text = metrics.render()
    assert "# TYPE kray_operator_reconcile_total counter" in text
    assert 'kray_operator_reconcile_total{kind="RayCluster",result="success"} ' in text
    assert metrics.value("kray_operator_failed_pods_total") >= 1
    with pytest.raises(KeyError, match="declare it"):
        metrics.inc("made_up_total")


def test_command_line_of_hardening(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.parse_args(["--retry-max-delay=30", "--resync-period=120", "--cluster-domain=corp.example",
                           "--metrics=http://0.0.0.0:8081/metrics"])
    assert args.backoff == requeue.Backoff(requeue.BASE_DELAY_S, 30.0) and args.resync_period == 120
    assert args.cluster_domain == "corp.example"
    defaults = cli.parse_args(["--leader-elect"])
    assert defaults.election.renew_deadline_s < defaults.election.lease_duration_s  # 10 s < 15 s
    for bad in (["--cluster-domain=Not_A_Domain"], ["--retry-max-delay=0"], ["--resync-period=0"],
                ["--leader-elect", "--renew-deadline=30"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)
