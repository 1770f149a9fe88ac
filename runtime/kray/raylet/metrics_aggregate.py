"""What the node's workers and drivers report for its metrics endpoint, summed on the raylet's loop:
user metrics (kray.util.metrics Counter, Gauge, Histogram) and the tasks they run by state.

`apply(ReportMetrics)` runs on the loop; `copy()` (also on the loop) returns plain data that the
endpoint's thread turns into Prometheus families. A user metric's series are kept per process, as
Ray's carry the recording worker's WorkerId: a counter or histogram adds up what that process sent, a
gauge keeps the last value it set for each tag set. A worker's RUNNING tasks count only while the
worker lives (`forget_worker` drops them when it exits mid-task).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from kray.protocol import metrics_messages

log = logging.getLogger(__name__)

# Most series one node keeps per user metric; more tag sets are dropped (and logged once).
MAX_SERIES_PER_METRIC = 10_000
KINDS = ("counter", "gauge", "histogram")


@dataclasses.dataclass
class UserMetric:
    kind: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...]
    # (worker id in hex, *tag values in tag_keys order) -> number (counter, gauge) or
    # [bucket counts, sum, count] (histogram)
    series: dict[tuple[str, ...], Any] = dataclasses.field(default_factory=dict)


class Aggregate:
    def __init__(self) -> None:
        self.metrics: dict[str, UserMetric] = {}
        self.finished: dict[tuple[str, str], int] = {}  # (task name, FINISHED|FAILED) -> count
        self.running: dict[bytes, dict[str, int]] = {}  # worker id -> task name -> running now
        self._warned: set[str] = set()

    # ------------------------------------------------------------ on the loop

    def apply(self, msg: metrics_messages.ReportMetrics) -> None:
        """Fold one report in; a malformed update is logged and skipped, the rest still count."""
        worker = bytes(msg.worker_id).hex() if msg.updates else ""
        for update in msg.updates:
            try:
                self._apply_update(update, worker)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
                self._warn_once(repr(update)[:60], f"dropped a malformed metric update: {e}")
        for key, delta in dict(msg.task_states).items():
            name, state = key
            if state == "RUNNING":
                running = self.running.setdefault(msg.worker_id, {})
                running[name] = running.get(name, 0) + int(delta)
                if running[name] <= 0:
                    del running[name]
            else:
                self.finished[(name, state)] = self.finished.get((name, state), 0) + int(delta)

    def forget_worker(self, worker_id: bytes) -> None:
        self.running.pop(worker_id, None)

    def copy(self) -> dict[str, Any]:
        """Plain copies of every table (for the endpoint's thread)."""
        metrics = {name: dataclasses.replace(m, series={k: _copy_value(v) for k, v in m.series.items()})
                   for name, m in self.metrics.items()}
        running: dict[str, int] = {}
        for per_worker in self.running.values():
            for name, count in per_worker.items():
                running[name] = running.get(name, 0) + count
        by_worker = {worker: dict(per_worker) for worker, per_worker in self.running.items() if per_worker}
        return {"metrics": metrics, "finished": dict(self.finished), "running": running,
                "running_by_worker": by_worker}

    def _apply_update(self, update: Any, worker: str) -> None:
        kind, name, description, tag_keys, boundaries, tags, value = update
        if kind not in KINDS:
            raise ValueError(f"unknown metric kind {kind!r}")
        tag_keys = tuple(str(k) for k in tag_keys)
        boundaries = tuple(float(b) for b in boundaries)
        metric = self.metrics.get(name)
        if metric is None:
            metric = self.metrics[name] = UserMetric(kind, str(description), tag_keys, boundaries)
        elif (metric.kind, metric.tag_keys, metric.boundaries) != (kind, tag_keys, boundaries):
            self._warn_once(name, f"metric {name!r} was reported as a {kind} with tag keys {tag_keys} "
                                  f"but is a {metric.kind} with tag keys {metric.tag_keys} here: update dropped")
            return
        values = tuple(str(v) for v in tags)
        if len(values) != len(tag_keys):
            raise ValueError(f"{len(values)} tag values for {len(tag_keys)} tag keys")
        key = (worker, *values)
        if key not in metric.series and len(metric.series) >= MAX_SERIES_PER_METRIC:
            self._warn_once(name, f"metric {name!r} has more than {MAX_SERIES_PER_METRIC} tag sets: new ones dropped")
            return
        if kind == "counter":
            amount = float(value)
            if amount < 0 or math.isnan(amount):
                raise ValueError(f"a counter increase must be >= 0, not {amount}")
            metric.series[key] = metric.series.get(key, 0.0) + amount
        elif kind == "gauge":
            metric.series[key] = float(value)
        else:
            buckets, total, count = value
            if len(buckets) != len(boundaries) + 1:
                raise ValueError(f"{len(buckets)} bucket counts for {len(boundaries)} boundaries")
            old = metric.series.get(key) or [[0] * (len(boundaries) + 1), 0.0, 0]
            metric.series[key] = [[a + int(b) for a, b in zip(old[0], buckets)], old[1] + float(total),
                                  old[2] + int(count)]

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", text)


def _copy_value(value: Any) -> Any:
    return [list(value[0]), value[1], value[2]] if isinstance(value, list) else value
