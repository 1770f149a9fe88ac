"""The raylet's sums of what workers report (raylet/metrics_aggregate.py) and their rendering as
Prometheus families (raylet/metrics_export.py), checked through prometheus_client's own text format:
each process's series carry Ray's default labels and its WorkerId, counters and histograms add up, a
gauge keeps the last value, RUNNING tasks belong to live workers, and a malformed update is dropped
without losing the others."""

from __future__ import annotations

from typing import Any

from kray.protocol import metrics_messages
from kray.raylet import metrics_aggregate, metrics_export
from prometheus_client import exposition
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families


def _report(worker: bytes, updates: list, task_states: dict | None = None) -> metrics_messages.ReportMetrics:
    return metrics_messages.ReportMetrics(worker, updates, task_states or {})


BASE = {"Component": "core_worker", "NodeAddress": "10.0.0.1", "SessionName": "session_x", "Version": "0.1.0"}
W1, W2 = b"w1".hex(), b"w2".hex()


def _samples(aggregate: metrics_aggregate.Aggregate) -> list[Any]:
    """The user metrics' samples as the endpoint serves them (with BASE as the default labels), parsed."""

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            return metrics_export._user_metrics(aggregate.copy()["metrics"], BASE)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    text = exposition.generate_latest(registry).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _render(aggregate: metrics_aggregate.Aggregate) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples by (name, their labels other than Ray's BASE ones, which every sample must carry)."""
    samples = _samples(aggregate)
    for sample in samples:
        assert {k: sample.labels.get(k) for k in BASE} == BASE, sample
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in BASE))): s.value
            for s in samples}


def test_counters_and_histograms_add_up_and_gauges_keep_the_last_value() -> None:
    agg = metrics_aggregate.Aggregate()
    counter = ("counter", "reqs", "Requests.", ("route",), (), ("/a",), 2.0)
    hist = ("histogram", "lat", "Latency.", (), (1.0, 10.0), (), ([1, 0, 1], 20.5, 2))
    agg.apply(_report(b"w1", [counter, hist, ("gauge", "depth", "", (), (), (), 3.0)]))
    agg.apply(_report(b"w2", [counter, hist, ("gauge", "depth", "", (), (), (), 7.0)]))
    agg.apply(_report(b"w1", [counter, ("gauge", "depth", "", (), (), (), 4.0)]))
    samples = _render(agg)
    for worker, reqs, depth in ((W1, 4.0, 4.0), (W2, 2.0, 7.0)):  # one series per process, as Ray's WorkerId
        assert samples[("ray_reqs_total", (("WorkerId", worker), ("route", "/a")))] == reqs
        assert samples[("ray_depth", (("WorkerId", worker),))] == depth
        assert samples[("ray_lat_bucket", (("WorkerId", worker), ("le", "1.0")))] == 1.0
        assert samples[("ray_lat_bucket", (("WorkerId", worker), ("le", "10.0")))] == 1.0
        assert samples[("ray_lat_bucket", (("WorkerId", worker), ("le", "+Inf")))] == 2.0
        assert samples[("ray_lat_sum", (("WorkerId", worker),))] == 20.5
        assert samples[("ray_lat_count", (("WorkerId", worker),))] == 2.0


def test_a_tag_key_named_like_a_default_label_replaces_it() -> None:
    agg = metrics_aggregate.Aggregate()
    counter = ("counter", "hits", "", ("WorkerId", "Version"), (), ("mine", "v9"), 1.5)
    agg.apply(_report(b"w1", [counter]))
    agg.apply(_report(b"w2", [counter]))
    [sample] = _samples(agg)
    assert sample.labels == {**BASE, "Version": "v9", "WorkerId": "mine"}
    assert sample.value == 3.0  # both processes' series share every label: summed


def test_malformed_or_conflicting_updates_are_dropped_and_the_rest_count() -> None:
    agg = metrics_aggregate.Aggregate()
    agg.apply(_report(b"w1", [
        ("counter", "ok", "", (), (), (), 1.0),
        ("counter", "neg", "", (), (), (), -5.0),  # a counter never goes down
        ("summary", "odd", "", (), (), (), 1.0),  # no such kind
        ("counter", "tags", "", ("a", "b"), (), ("x",), 1.0),  # 1 value for 2 keys
        "not a tuple",
        ("histogram", "h", "", (), (1.0,), (), ([1], 1.0, 1)),  # 1 bucket for 1 boundary (needs 2)
    ]))
    agg.apply(_report(b"w2", [("gauge", "ok", "", (), (), (), 9.0)]))  # "ok" is a counter here
    samples = _render(agg)
    assert samples == {("ray_ok_total", (("WorkerId", W1),)): 1.0}


def test_running_tasks_belong_to_live_workers() -> None:
    agg = metrics_aggregate.Aggregate()
    agg.apply(_report(b"w1", [], {("f", "RUNNING"): 1}))
    agg.apply(_report(b"w2", [], {("f", "RUNNING"): 1}))
    agg.apply(_report(b"w2", [], {("f", "RUNNING"): -1, ("f", "FINISHED"): 1}))
    agg.apply(_report(b"w3", [], {("f", "RUNNING"): 1, ("f", "FAILED"): 2}))
    agg.forget_worker(b"w3")  # it died mid-task
    copy = agg.copy()
    assert copy["running"] == {"f": 1}
    assert copy["running_by_worker"] == {b"w1": {"f": 1}}  # the endpoint labels them with w1's JobId
    assert copy["finished"] == {("f", "FINISHED"): 1, ("f", "FAILED"): 2}
