"""The node's Prometheus endpoint (Ray's `--metrics-export-port`): node CPU and memory, the object
store, logical resources, tasks by state, workers, the scheduler's queue, the user metrics that this
node's workers and drivers report (kray.util.metrics), and on the head the GCS's cluster-level series
(nodes, actors, placement groups, jobs), as Ray's head exports its GCS's metrics.

Loaded at the first scrape of the port that metrics_listener bound at start; served by a WSGI server
(prometheus_client's app) on that socket, on threads of its own. A scrape never touches the raylet's
tables from that thread: it posts one call to the raylet's loop that copies what it needs (counts
only, cheap) and waits up to SNAPSHOT_WAIT_S for it; a wedged loop makes the scrape use the last copy.
psutil's readings are taken on the HTTP thread. Names are Ray's where Ray has one (ray_*), kray_*
otherwise.

Labels are Ray 2.x's, so that Ray's Grafana dashboards and PromQL work unchanged: host series
(ray_node_*) carry IsHeadNode, RayNodeType, SessionName, Version, ip; the raylet's and the GCS's carry
Component (raylet, gcs_server), NodeAddress, SessionName, Version, WorkerId=""; ray_tasks and user
metrics carry Component=core_worker, NodeAddress, SessionName, Version, and ray_tasks Source, JobId,
user metrics the recording process's WorkerId (hex). Ray's core workers each export their own
ray_tasks; kray sums a node's, so RUNNING comes as Source=executor per job, and FINISHED, FAILED
(counted where the task ran) and PENDING_NODE_ASSIGNMENT (the node's lease queue) as Source=owner
with JobId="", the values Ray's owner series have: sums by Name, State or node stay Ray's.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref import simple_server

import psutil
from prometheus_client import make_wsgi_app
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

import kray
from kray import ids
from kray.protocol import metrics_messages
from kray.raylet import metrics_aggregate

SNAPSHOT_WAIT_S = 2.0
USER_PREFIX = "ray_"  # Ray exports application metrics as ray_<name>


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


def serve_on(listener: socket.socket, collector: NodeCollector) -> simple_server.WSGIServer:
    """A WSGI server of prometheus_client's app for `collector`, on an already bound and listening socket
    (call serve_forever on it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = _Server(listener.getsockname()[:2], _QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    host, port = listener.getsockname()[:2]
    server.server_name, server.server_port = socket.getfqdn(host), port
    server.setup_environ()
    server.set_app(make_wsgi_app(registry))
    return server


class NodeCollector:
    """prometheus_client calls `collect` on the HTTP thread for every scrape."""

    def __init__(self, raylet: Any, aggregate: metrics_aggregate.Aggregate | None = None) -> None:
        """`aggregate`: the workers' reports gathered since start (metrics_listener); else from now on."""
        self.raylet = raylet
        if aggregate is None:
            aggregate = metrics_aggregate.Aggregate()
            raylet.loop.on(metrics_messages.ReportMetrics, lambda m, p, peer: aggregate.apply(m))
        self.aggregate = aggregate
        # A head's session is the cluster's; another node asks the GCS for it (at its first scrape).
        self._session_known = threading.Event()
        if raylet.node.is_head:
            self._session_known.set()
        self._set_session(metrics_messages.session_name_of(raylet.node.spill_dir))
        self._latest: dict[str, Any] | None = None
        self._gcs_counts: dict[str, Any] | None = None
        psutil.cpu_percent(interval=None)  # the first reading is a baseline
        self._net_lock = threading.Lock()
        self._net_last = _net_reading()  # (monotonic time, bytes received, bytes sent) at the last scrape

    def describe(self) -> Iterable[Metric]:
        return []

    def _set_session(self, session: str) -> None:
        """Ray's label sets of every family, for the cluster's session `session`."""
        ip, head = self.raylet.node.ip, bool(self.raylet.node.is_head)
        self.host_labels = {"IsHeadNode": "true" if head else "false", "RayNodeType": "head" if head else "worker",
                            "SessionName": session, "Version": kray.__version__, "ip": ip}
        self.worker_labels = {"Component": "core_worker", "NodeAddress": ip, "SessionName": session,
                              "Version": kray.__version__}
        self.common = {**self.worker_labels, "Component": "raylet", "WorkerId": ""}  # the raylet's series
        self.gcs_labels = {**self.common, "Component": "gcs_server"}

    # ------------------------------------------------------------ loop side

    def _snapshot(self) -> dict[str, Any]:
        """Copies of the raylet's tables; runs on its loop."""
        r = self.raylet
        live = set(r.pool.workers)
        for worker_id in [w for w in self.aggregate.running if w not in live]:
            self.aggregate.forget_worker(worker_id)
        spilled = getattr(r.store, "_spilled", {})
        aggregate = self.aggregate.copy()
        running: dict[tuple[str, str], int] = {}  # (task name, job id in hex) -> running now
        for worker_id, per_name in aggregate["running_by_worker"].items():
            job = _job_hex(r.pool.workers.get(worker_id))
            for name, count in per_name.items():
                running[(name, job)] = running.get((name, job), 0) + count
        return {
            "aggregate": aggregate,
            "running": running,
            "total": dict(r.total),
            "available": {k: max(0.0, v) for k, v in r.available.items()},
            "store": r.store.stats(),
            "spilled_bytes": sum(spilled.values()),
            "workers": r.pool.summary(),
            "pending": [(req.msg.label, 1 + req.backlog, req.infeasible_sent) for req in r.pending],
            "leases": len(r.leases),
        }

    def _fresh(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        done = threading.Event()
        gcs_done = threading.Event()
        box: dict[str, Any] = {}

        def on_counts(reply: Any, payload: list) -> None:
            if getattr(reply, "ok", False) and isinstance(reply.value, dict):
                self._gcs_counts = reply.value
            gcs_done.set()

        def on_session(reply: Any, payload: list) -> None:
            if getattr(reply, "ok", False) and isinstance(reply.value, str) and reply.value:
                self._set_session(reply.value)
                self._session_known.set()

        def build() -> None:
            try:
                box["snapshot"] = self._snapshot()
            finally:
                done.set()
            if not self._session_known.is_set():
                self.raylet.loop.request(self.raylet.gcs_address, metrics_messages.GetSessionName,
                                         on_session, timeout=SNAPSHOT_WAIT_S)
            if self.raylet.node.is_head:
                self.raylet.loop.request(self.raylet.gcs_address, metrics_messages.GetClusterMetrics,
                                         on_counts, timeout=SNAPSHOT_WAIT_S)

        self.raylet.loop.call_soon_threadsafe(build)
        if done.wait(SNAPSHOT_WAIT_S) and "snapshot" in box:
            self._latest = box["snapshot"]
        if self.raylet.node.is_head:
            gcs_done.wait(SNAPSHOT_WAIT_S)
        else:
            self._session_known.wait(SNAPSHOT_WAIT_S)  # until known, the node's own session name
        return self._latest, self._gcs_counts

    # ------------------------------------------------------------ HTTP thread

    def collect(self) -> Iterator[Metric]:
        snapshot, gcs_counts = self._fresh()
        yield from self._host()
        if snapshot is not None:
            yield from self._node(snapshot)
            yield from _user_metrics(snapshot["aggregate"]["metrics"], self.worker_labels)
        if gcs_counts is not None:
            yield from self._cluster(gcs_counts)

    def _gauge(self, name: str, doc: str, labels: Iterable[str] = (), base: dict[str, str] | None = None,
               ) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*(self.common if base is None else base), *labels])

    def _values(self, *values: str, base: dict[str, str] | None = None) -> list[str]:
        return [*(self.common if base is None else base).values(), *values]

    def _host(self) -> Iterator[Metric]:
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage("/")
        with self._net_lock:
            (then, received_before, sent_before), now = self._net_last, _net_reading()
            self._net_last = now
        elapsed = max(now[0] - then, 1e-3)
        for name, doc, value in (
            ("ray_node_mem_used_host", "Memory used on the host, in bytes.", memory.total - memory.available),
            ("ray_node_mem_total_host", "Total memory of the host, in bytes.", memory.total),
            ("ray_node_disk_usage", "Disk space used on the root filesystem, in bytes.", disk.used),
            ("ray_node_disk_free", "Disk space free on the root filesystem, in bytes.", disk.free),
            ("ray_node_network_received", "Bytes received by the host so far.", now[1]),
            ("ray_node_network_sent", "Bytes sent by the host so far.", now[2]),
            ("ray_node_network_receive_speed", "Bytes received per second since the last scrape.",
             max(0.0, now[1] - received_before) / elapsed),
            ("ray_node_network_send_speed", "Bytes sent per second since the last scrape.",
             max(0.0, now[2] - sent_before) / elapsed),
            ("ray_node_cpu_utilization", "CPU utilization of the node, in percent.", psutil.cpu_percent(interval=None)),
            ("ray_node_cpu_count", "Number of CPUs of the node.", psutil.cpu_count() or 0),
            ("ray_node_mem_used", "Memory used on the node, in bytes.", memory.total - memory.available),
            ("ray_node_mem_available", "Memory available on the node, in bytes.", memory.available),
            ("ray_node_mem_total", "Total memory of the node, in bytes.", memory.total),
        ):
            family = self._gauge(name, doc, base=self.host_labels)
            family.add_metric(self._values(base=self.host_labels), float(value))
            yield family

    def _node(self, s: dict[str, Any]) -> Iterator[Metric]:
        store = s["store"]
        memory = self._gauge("ray_object_store_memory", "Object store memory by location, in bytes.",
                             ["Location", "ObjectState"])
        memory.add_metric(self._values("MMAP_SHM", "SEALED"), store["used"])
        memory.add_metric(self._values("SPILLED", ""), s["spilled_bytes"])
        yield memory
        for name, doc, value in (
            ("ray_object_store_available_memory", "Object store memory free, in bytes.",
             max(0, store["capacity"] - store["used"])),
            ("ray_object_store_used_memory", "Object store memory in use, in bytes.", store["used"]),
            ("ray_object_store_num_local_objects", "Objects in this node's object store.", store["num_objects"]),
            ("kray_object_store_spilled_objects", "Objects of this node spilled to disk now.", store["num_spilled"]),
        ):
            family = self._gauge(name, doc)
            family.add_metric(self._values(), float(value))
            yield family
        spilled_total = CounterMetricFamily("kray_object_store_spilled_bytes", "Bytes spilled to disk so far.",
                                            labels=list(self.common))
        spilled_total.add_metric(self._values(), float(store["spilled_bytes_total"]))
        yield spilled_total
        resources = self._gauge("ray_resources", "Logical resources of the node by state.", ["Name", "State"])
        for name, total in sorted(s["total"].items()):
            free = min(total, s["available"].get(name, 0.0))
            resources.add_metric(self._values(name, "USED"), total - free)
            resources.add_metric(self._values(name, "AVAILABLE"), free)
        yield resources
        yield self._tasks(s)
        workers = self._gauge("kray_workers", "Worker processes of the node by state.", ["State"])
        for state, count in sorted(s["workers"].items()):
            workers.add_metric(self._values(str(state)), count)
        yield workers
        scheduler = self._gauge("ray_scheduler_tasks", "Lease requests at this node's scheduler by state "
                                "(Waiting: for resources or a worker; Executing: leased).", ["State"])
        waiting = sum(n for _, n, infeasible in s["pending"] if not infeasible)
        infeasible = sum(n for _, n, infeasible in s["pending"] if infeasible)
        for state, count in (("Waiting", waiting), ("Executing", s["leases"])):
            scheduler.add_metric(self._values(state), count)
        yield scheduler
        unschedulable = self._gauge("ray_scheduler_unscheduleable_tasks", "Lease requests that cannot be "
                                    "scheduled now, by reason (Infeasible: fits no node).", ["Reason"])
        unschedulable.add_metric(self._values("Infeasible"), infeasible)
        yield unschedulable

    def _tasks(self, s: dict[str, Any]) -> Metric:
        tasks = self._gauge("ray_tasks", "Tasks (remote functions and actor calls) of this node by state; "
                            "PENDING_NODE_ASSIGNMENT counts lease requests waiting here.",
                            ["Name", "State", "IsRetry", "JobId", "Source"], base=self.worker_labels)
        counts: dict[tuple[str, str, str, str], float] = {}  # (name, state, JobId, Source) -> tasks
        for label, n, _ in s["pending"]:
            key = (label, "PENDING_NODE_ASSIGNMENT", "", "owner")
            counts[key] = counts.get(key, 0) + n
        for (name, job), n in s["running"].items():
            counts[(name, "RUNNING", job, "executor")] = n
        for (name, state), n in s["aggregate"]["finished"].items():
            counts[(name, state, "", "owner")] = n
        for (name, state, job, source), n in sorted(counts.items()):
            tasks.add_metric(self._values(name, state, "0", job, source, base=self.worker_labels), n)
        return tasks

    def _cluster(self, c: dict[str, Any]) -> Iterator[Metric]:
        gcs = self.gcs_labels
        nodes = self._gauge("kray_cluster_nodes", "Nodes of the cluster by state (from the GCS).", ["State"], gcs)
        for state, n in sorted(c["nodes"].items()):
            nodes.add_metric(self._values(state, base=gcs), n)
        yield nodes
        # Ray's GCS series of actors has no WorkerId, and JobId="" (Source=gcs).
        actor_base = {k: v for k, v in gcs.items() if k != "WorkerId"}
        actors = self._gauge("ray_actors", "Actors of the cluster by class and state (from the GCS).",
                             ["Name", "State", "JobId", "Source"], actor_base)
        for (name, state), n in sorted(c["actors"].items()):
            actors.add_metric(self._values(name, state, "", "gcs", base=actor_base), n)
        yield actors
        groups = self._gauge("ray_placement_groups", "Placement groups by state (from the GCS).",
                             ["State", "Source"], gcs)
        counts = self._gauge("ray_gcs_placement_group_count", "Placement groups by state (from the GCS), "
                             "in the GCS's own spelling (Pending, Created, Removed).", ["State"], gcs)
        for state, n in sorted(c["placement_groups"].items()):
            groups.add_metric(self._values(state, "gcs", base=gcs), n)
            counts.add_metric(self._values(state.capitalize(), base=gcs), n)
        yield groups
        yield counts
        running = self._gauge("ray_running_jobs", "Jobs running now.", base=gcs)
        running.add_metric(self._values(base=gcs), c["jobs"].get("RUNNING", 0))
        yield running
        finished = CounterMetricFamily("ray_finished_jobs", "Jobs finished so far.", labels=list(gcs))
        finished.add_metric(self._values(base=gcs), c["jobs"].get("FINISHED", 0))
        yield finished


def _net_reading() -> tuple[float, float, float]:
    counters = psutil.net_io_counters()
    if counters is None:  # no network interfaces readable (e.g. no /proc/net/dev)
        return time.monotonic(), 0.0, 0.0
    return time.monotonic(), float(counters.bytes_recv), float(counters.bytes_sent)


def _job_hex(worker: Any) -> str:
    """Ray's JobId of the job whose lease `worker` runs (its last task's job for an actor's worker)."""
    if worker is None:
        return ""
    job = worker.lease_job or max(worker.job, 0)
    return ids.job_id_hex(job) if job > 0 else ""


def _user_metrics(metrics: dict[str, metrics_aggregate.UserMetric], base: dict[str, str]) -> Iterator[Metric]:
    """`ray_<name>` families with Ray's default labels (`base`, then the recording process's WorkerId)
    before the metric's own tag keys; a tag key named like a default label replaces it."""
    for name, m in sorted(metrics.items()):
        full = USER_PREFIX + name
        defaults = {key: value for key, value in base.items() if key not in m.tag_keys}
        per_worker = "WorkerId" not in m.tag_keys
        labels = [*defaults, *(["WorkerId"] if per_worker else []), *m.tag_keys]
        rows: dict[tuple[str, ...], Any] = {}
        for (worker, *tags), value in m.series.items():
            row = (*defaults.values(), *([worker] if per_worker else []), *tags)
            rows[row] = _merge(m.kind, rows.get(row), value)
        if m.kind == "histogram":
            histogram = HistogramMetricFamily(full, m.description or name, labels=labels)
            for row, (buckets, total, _count) in rows.items():
                cumulative, running = [], 0
                for bound, n in zip([*(_bound(b) for b in m.boundaries), "+Inf"], buckets):
                    running += n
                    cumulative.append((bound, float(running)))
                histogram.add_metric(list(row), cumulative, sum_value=total)
            yield histogram
            continue
        family = (CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily)(
            full, m.description or name, labels=labels)
        for row, value in rows.items():
            family.add_metric(list(row), value)
        yield family


def _merge(kind: str, old: Any, value: Any) -> Any:
    """Two processes' series that share every label (a tag key named WorkerId): summed, or for a gauge
    the larger value."""
    if old is None:
        return value
    if kind == "counter":
        return old + value
    if kind == "gauge":
        return max(old, value)
    return [[a + b for a, b in zip(old[0], value[0])], old[1] + value[1], old[2] + value[2]]


def _bound(value: float) -> str:
    return repr(float(value))
