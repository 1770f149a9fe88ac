"""The operator's Prometheus metrics: reconcile passes and their results (errors included), retries,
failed Pods, leadership and RayClusters by state, served on `--metrics URL` (the Helm chart's metrics
Service scrapes it; a ServiceMonitor on request).

Values live in small tables guarded by a lock (handlers call `inc`/`set_gauge`/`cluster_state` from
kopf's threads); prometheus_client renders them (a Collector over those tables) in the text format.
`serve` runs one HTTP server thread; that server is this module's only I/O.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping

from prometheus_client import exposition
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_cluster_states: dict[tuple[str, str], str] = {}  # (namespace, name) -> status.state ("" before the first)

CLUSTERS = "kray_operator_rayclusters"
HELP = {
    "kray_operator_reconcile_total": ("counter", "Reconcile passes, by kind and result (success, error, invalid)."),
    "kray_operator_reconcile_seconds_total": ("counter", "Seconds spent in reconcile passes, by kind."),
    "kray_operator_requeue_total": ("counter", "Passes scheduled again after a failure, by kind."),
    "kray_operator_failed_pods_total": ("counter", "Failed Pods whose replacement backs off."),
    "kray_operator_leader": ("gauge", "1 while this replica reconciles (holds the Lease, or runs without election)."),
    "kray_operator_start_time_seconds": ("gauge", "Unix time when this replica started reconciling."),
    CLUSTERS: ("gauge", "RayClusters this replica watches, by status.state (\"\" before the first status)."),
}


def _key(name: str, labels: Mapping[str, str] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    if name not in HELP:
        raise KeyError(f"unknown metric {name!r}; declare it in kray_operator.metrics.HELP")
    return name, tuple(sorted((labels or {}).items()))


def inc(name: str, labels: Mapping[str, str] | None = None, amount: float = 1.0) -> None:
    """Add `amount` to a counter."""
    key = _key(name, labels)
    with _lock:
        _counters[key] = _counters.get(key, 0.0) + amount


def set_gauge(name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
    """Set a gauge."""
    key = _key(name, labels)
    with _lock:
        _gauges[key] = value


def cluster_state(namespace: str, name: str, state: str | None) -> None:
    """A RayCluster was seen with this status.state; None: it was deleted."""
    with _lock:
        if state is None:
            _cluster_states.pop((namespace, name), None)
        else:
            _cluster_states[(namespace, name)] = state


def value(name: str, labels: Mapping[str, str] | None = None) -> float:
    """The current value of a counter or gauge (0 when never set)."""
    key = _key(name, labels)
    with _lock:
        if name == CLUSTERS:
            wanted = dict(key[1]).get("state", "")
            return float(sum(1 for s in _cluster_states.values() if s == wanted))
        return _counters.get(key, _gauges.get(key, 0.0))


class _Collector:
    """Families built from the tables at each scrape."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with _lock:
            samples = {**_counters, **_gauges}
            by_state: dict[str, int] = {}
            for state in _cluster_states.values():
                by_state[state] = by_state.get(state, 0) + 1
        for state, count in by_state.items():
            samples[(CLUSTERS, (("state", state),))] = float(count)
        for name, (kind, help_text) in HELP.items():
            mine = sorted((labels, v) for (metric, labels), v in samples.items() if metric == name)
            label_names = sorted({k for labels, _ in mine for k, _ in labels})
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, help_text, labels=label_names)
            for labels, sample in mine:
                got = dict(labels)
                family.add_metric([got.get(k, "") for k in label_names], sample)
            yield family


_registry = CollectorRegistry(auto_describe=False)
_registry.register(_Collector())


def render() -> str:
    """Every metric in the Prometheus text format."""
    return exposition.generate_latest(_registry).decode()


class _Handler(http.server.BaseHTTPRequestHandler):
    path_served = "/metrics"

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path != self.path_served:
            self.send_error(404, f"metrics are at {self.path_served}")
            return
        body = exposition.generate_latest(_registry)
        self.send_response(200)
        self.send_header("Content-Type", exposition.CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def serve(url: str) -> http.server.ThreadingHTTPServer:
    """Serve the metrics at `url` (e.g. http://0.0.0.0:8081/metrics) on a daemon thread; returns the server."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.port:
        raise ValueError(f"--metrics needs an http URL with a port, e.g. http://0.0.0.0:8081/metrics, not {url!r}")
    handler = type("MetricsHandler", (_Handler,), {"path_served": parts.path or "/metrics"})
    server = http.server.ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port), handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    with _lock:
        _gauges.setdefault(_key("kray_operator_leader", None), 0.0)  # a standby serves 0 until it leads
    return server


def leading() -> None:
    """This replica starts reconciling now."""
    set_gauge("kray_operator_leader", 1)
    set_gauge("kray_operator_start_time_seconds", time.time())
