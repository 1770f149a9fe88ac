"""The operator's Prometheus metrics: counters of reconcile passes, retries and failed Pods, served as the
text exposition format (version 0.0.4) on `--metrics URL` (the Helm chart's metrics Service scrapes it).

A tiny registry of our own (prometheus_client is not a dependency of kray). Counters are guarded by a
lock; `serve` runs one HTTP server thread. Its only I/O is that server.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Mapping

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

HELP = {
    "kray_operator_reconcile_total": ("counter", "Reconcile passes, by kind and result (success, error, invalid)."),
    "kray_operator_reconcile_seconds_total": ("counter", "Seconds spent in reconcile passes, by kind."),
    "kray_operator_requeue_total": ("counter", "Passes scheduled again after a failure, by kind."),
    "kray_operator_failed_pods_total": ("counter", "Failed Pods whose replacement backs off."),
    "kray_operator_leader": ("gauge", "1 while this replica reconciles (holds the Lease, or runs without election)."),
    "kray_operator_start_time_seconds": ("gauge", "Unix time when this replica started reconciling."),
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


def value(name: str, labels: Mapping[str, str] | None = None) -> float:
    """The current value of a counter or gauge (0 when never set)."""
    key = _key(name, labels)
    with _lock:
        return _counters.get(key, _gauges.get(key, 0.0))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def render() -> str:
    """Every metric in the Prometheus text format."""
    with _lock:
        samples = {**_counters, **_gauges}
    lines: list[str] = []
    for name, (kind, help_text) in HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for (metric, labels), sample in sorted(samples.items()):
            if metric != name:
                continue
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {_number(sample)}" if label_text else f"{name} {_number(sample)}")
    return "\n".join(lines) + "\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    path_served = "/metrics"

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path != self.path_served:
            self.send_error(404, f"metrics are at {self.path_served}")
            return
        body = render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
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
