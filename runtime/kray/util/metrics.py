"""Application metrics, as Ray's `ray.util.metrics`: Counter, Gauge and Histogram with a name, a
description, tag keys and default tags, usable in tasks, actors and the driver.

Each process records into a local table (under a lock, no I/O on the caller's thread); the first
update after a report schedules the next one FLUSH_INTERVAL_S later on the core worker's I/O thread,
which sends everything gathered (ReportMetrics) to the node's raylet; an idle process sends nothing.
The raylet keeps each process's series and serves them on its metrics endpoint
(raylet/metrics_export.py) as `ray_<name>` with Ray's default labels (Component, NodeAddress,
SessionName, Version and the process's WorkerId), as Ray does. The executor reports its tasks' states
through `task_started`/`task_finished` on the same path (Ray's `ray_tasks`): those run once per task,
so they only bump counters of the calling thread (no lock); the flush sums the threads' counters.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from typing import Any

from kray.core import refs
from kray.protocol import metrics_messages

FLUSH_INTERVAL_S = 1.0
_VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

__all__ = ["Counter", "Gauge", "Histogram", "Metric"]


class _Recorder:
    """This process's updates since its last report to the raylet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self.gauges: dict[tuple[str, tuple[str, ...]], float] = {}
        self.histograms: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
        self.meta: dict[str, tuple[str, str, tuple[str, ...], tuple[float, ...]]] = {}
        # Task counts, cumulative: each thread's own (name -> started, (name, failed) -> ended), written
        # only by that thread; and the totals last reported, of which each report sends the change.
        self.thread_counts: list[dict[Any, int]] = []
        self.local = threading.local()
        self.reported: dict[tuple[str, str], int] = {}
        self.scheduled = False

    def declare(self, kind: str, name: str, description: str, tag_keys: tuple[str, ...],
                boundaries: tuple[float, ...]) -> None:
        with self.lock:
            self.meta[name] = (kind, description, tag_keys, boundaries)

    def add(self, name: str, tags: tuple[str, ...], value: float) -> None:
        with self.lock:
            self.counters[(name, tags)] = self.counters.get((name, tags), 0.0) + value
        self._schedule()

    def set(self, name: str, tags: tuple[str, ...], value: float) -> None:
        with self.lock:
            self.gauges[(name, tags)] = value
        self._schedule()

    def observe(self, name: str, tags: tuple[str, ...], boundaries: tuple[float, ...], value: float) -> None:
        with self.lock:
            entry = self.histograms.get((name, tags))
            if entry is None:
                entry = self.histograms[(name, tags)] = [[0] * (len(boundaries) + 1), 0.0, 0]
            entry[0][bisect.bisect_left(boundaries, value)] += 1  # bucket i holds values <= boundaries[i]
            entry[1] += value
            entry[2] += 1
        self._schedule()

    def counts(self) -> dict[Any, int]:
        """The calling thread's task counts (made on its first task)."""
        try:
            return self.local.counts  # type: ignore[no-any-return]
        except AttributeError:
            counts: dict[Any, int] = {}
            self.local.counts = counts
            with self.lock:
                self.thread_counts.append(counts)
            return counts

    def task_changes(self) -> dict[tuple[str, str], int]:
        """What changed in the task counts since the last call: {(name, state): delta}. A name's
        RUNNING is its starts less its ends, never below 0 (a task cancelled before it started ends
        without a start)."""
        with self.lock:
            tables = list(self.thread_counts)
        started: dict[str, int] = {}
        ended: dict[tuple[str, str], int] = {}
        for table in tables:
            for key, n in table.copy().items():  # copy() holds the GIL throughout: a consistent view
                if isinstance(key, str):
                    started[key] = started.get(key, 0) + n
                else:
                    state_key = (key[0], "FAILED" if key[1] else "FINISHED")
                    ended[state_key] = ended.get(state_key, 0) + n
        totals = dict(ended)
        for name, n in started.items():
            totals[(name, "RUNNING")] = max(0, n - ended.get((name, "FINISHED"), 0) - ended.get((name, "FAILED"), 0))
        reported = self.reported
        changes = {key: n - reported.get(key, 0) for key, n in totals.items() if n != reported.get(key, 0)}
        self.reported = totals
        return changes

    def _schedule(self) -> None:
        if self.scheduled:
            return
        core = refs.get_core()
        if core is None:
            return  # kept until the process joins a cluster and records again
        self.scheduled = True
        core.loop.call_soon_threadsafe(core.loop.call_later, FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        """Send what was gathered to this node's raylet (on the core worker's I/O thread)."""
        with self.lock:
            self.scheduled = False
            updates: list[Any] = []
            for (name, tags), value in self.counters.items():
                updates.append(self._update(name, tags, value))
            for (name, tags), value in self.gauges.items():
                updates.append(self._update(name, tags, value))
            for (name, tags), entry in self.histograms.items():
                updates.append(self._update(name, tags, (entry[0], entry[1], entry[2])))
            self.counters, self.gauges, self.histograms = {}, {}, {}
        task_states = self.task_changes()
        core = refs.get_core()
        if core is None or not (updates or task_states):
            return
        core.loop.connect(core.raylet_address).send(
            metrics_messages.ReportMetrics(core.worker_id, updates, task_states))

    def _update(self, name: str, tags: tuple[str, ...], value: Any) -> tuple[Any, ...]:
        kind, description, tag_keys, boundaries = self.meta[name]
        return (kind, name, description, tag_keys, boundaries, tags, value)


_recorder = _Recorder()


def task_started(name: str) -> None:
    """The executor began running task or actor call `name` (counted as RUNNING on the node)."""
    counts = _recorder.counts()
    counts[name] = counts.get(name, 0) + 1
    if not _recorder.scheduled:
        _recorder._schedule()


def task_finished(name: str, failed: bool) -> None:
    """The executor finished `name`: FINISHED, or FAILED when it returned an error."""
    counts = _recorder.counts()
    key = (name, failed)
    counts[key] = counts.get(key, 0) + 1
    if not _recorder.scheduled:
        _recorder._schedule()


class Metric:
    """The base of Counter, Gauge and Histogram: name, description, tag keys and default tags."""

    _kind = ""

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        if not _VALID_NAME.match(name):
            raise ValueError(f"Invalid metric name: {name!r}. Metric names can only contain letters, numbers, "
                             "_ and :, and cannot start with a number.")
        if tag_keys is None:
            tag_keys = ()
        if not isinstance(tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(tag_keys)}")
        for key in tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        self._name = name
        self._description = description
        self._tag_keys = tag_keys
        self._default_tags: dict[str, str] = {}
        self._boundaries: tuple[float, ...] = ()

    def _declare(self) -> None:
        _recorder.declare(self._kind, self._name, self._description, self._tag_keys, self._boundaries)

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags used when a record names none for a key; returns the metric (Ray's chaining)."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key!r} of metric {self._name!r}; its tag_keys are "
                                 f"{self._tag_keys}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)} for tag {key!r}.")
        self._default_tags = dict(default_tags)
        return self

    def _tags(self, tags: dict[str, str] | None) -> tuple[str, ...]:
        final = dict(self._default_tags)
        for key, value in (tags or {}).items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key!r} of metric {self._name!r}; its tag_keys are "
                                 f"{self._tag_keys}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)} for tag {key!r}.")
            final[key] = value
        missing = [k for k in self._tag_keys if k not in final]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {', '.join(missing)} of metric {self._name!r}.")
        return tuple(final[k] for k in self._tag_keys)

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self._name, "description": self._description, "tag_keys": self._tag_keys,
                "default_tags": dict(self._default_tags)}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    return float(value)


class Counter(Metric):
    """A cumulative metric that only goes up (a Prometheus counter, exported as ray_<name>_total)."""

    _kind = "counter"

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        self._declare()

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        amount = _number(value, "Counter.inc's value")
        if amount <= 0 or math.isnan(amount):
            raise ValueError(f"value must be >0, got {value}")
        _recorder.add(self._name, self._tags(tags), amount)


class Gauge(Metric):
    """The last value set (a Prometheus gauge)."""

    _kind = "gauge"

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        self._declare()

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        _recorder.set(self._name, self._tags(tags), _number(value, "Gauge.set's value"))


class Histogram(Metric):
    """Observations counted in buckets whose upper bounds are `boundaries` (a Prometheus histogram)."""

    _kind = "histogram"

    def __init__(self, name: str, description: str = "", boundaries: list[float] | None = None,
                 tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)
        if not boundaries:
            raise ValueError("boundaries must be a non-empty list of positive numbers, e.g. [0.1, 1, 10]")
        bounds = [_number(b, "a histogram boundary") for b in boundaries]
        if any(b <= 0 for b in bounds):
            raise ValueError(f"Invalid `boundaries` argument: {boundaries}; they must all be > 0.")
        self._boundaries = tuple(sorted(set(bounds)))
        self._declare()

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        _recorder.observe(self._name, self._tags(tags), self._boundaries, _number(value, "Histogram.observe's value"))

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": list(self._boundaries)}
