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
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
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
        session_dir = os.path.dirname(os.path.dirname(raylet.node.spill_dir.rstrip(os.sep)))
        self.common = {"SessionName": os.path.basename(session_dir), "ip": raylet.node.ip}
        self._latest: dict[str, Any] | None = None
        self._gcs_counts: dict[str, Any] | None = None
        psutil.cpu_percent(interval=None)  # the first reading is a baseline

    def describe(self) -> Iterable[Metric]:
        return []

    # ------------------------------------------------------------ loop side

    def _snapshot(self) -> dict[str, Any]:
        """Copies of the raylet's tables; runs on its loop."""
        r = self.raylet
        live = set(r.pool.workers)
        for worker_id in [w for w in self.aggregate.running if w not in live]:
            self.aggregate.forget_worker(worker_id)
        spilled = getattr(r.store, "_spilled", {})
        return {
            "aggregate": self.aggregate.copy(),
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

        def build() -> None:
            try:
                box["snapshot"] = self._snapshot()
            finally:
                done.set()
            if self.raylet.node.is_head:
                self.raylet.loop.request(self.raylet.gcs_address, metrics_messages.GetClusterMetrics,
                                         on_counts, timeout=SNAPSHOT_WAIT_S)

        self.raylet.loop.call_soon_threadsafe(build)
        if done.wait(SNAPSHOT_WAIT_S) and "snapshot" in box:
            self._latest = box["snapshot"]
        if self.raylet.node.is_head:
            gcs_done.wait(SNAPSHOT_WAIT_S)
        return self._latest, self._gcs_counts

    # ------------------------------------------------------------ HTTP thread

    def collect(self) -> Iterator[Metric]:
        snapshot, gcs_counts = self._fresh()
        yield from self._host()
        if snapshot is not None:
            yield from self._node(snapshot)
            yield from _user_metrics(snapshot["aggregate"]["metrics"])
        if gcs_counts is not None:
            yield from self._cluster(gcs_counts)

    def _gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*self.common, *labels])

    def _values(self, *values: str) -> list[str]:
        return [*self.common.values(), *values]

    def _host(self) -> Iterator[Metric]:
        memory = psutil.virtual_memory()
        for name, doc, value in (
            ("ray_node_cpu_utilization", "CPU utilization of the node, in percent.", psutil.cpu_percent(interval=None)),
            ("ray_node_cpu_count", "Number of CPUs of the node.", psutil.cpu_count() or 0),
            ("ray_node_mem_used", "Memory used on the node, in bytes.", memory.total - memory.available),
            ("ray_node_mem_available", "Memory available on the node, in bytes.", memory.available),
            ("ray_node_mem_total", "Total memory of the node, in bytes.", memory.total),
        ):
            family = self._gauge(name, doc)
            family.add_metric(self._values(), float(value))
            yield family

    def _node(self, s: dict[str, Any]) -> Iterator[Metric]:
        store = s["store"]
        memory = self._gauge("ray_object_store_memory", "Object store memory by location, in bytes.", ["Location"])
        memory.add_metric(self._values("MMAP_SHM"), store["used"])
        memory.add_metric(self._values("SPILLED"), s["spilled_bytes"])
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
                                "(Waiting: for resources or a worker; Infeasible: fits no node; Running: leased).",
                                ["State"])
        waiting = sum(n for _, n, infeasible in s["pending"] if not infeasible)
        infeasible = sum(n for _, n, infeasible in s["pending"] if infeasible)
        for state, count in (("Waiting", waiting), ("Infeasible", infeasible), ("Running", s["leases"])):
            scheduler.add_metric(self._values(state), count)
        yield scheduler

    def _tasks(self, s: dict[str, Any]) -> Metric:
        tasks = self._gauge("ray_tasks", "Tasks (remote functions and actor calls) of this node by state; "
                            "PENDING_NODE_ASSIGNMENT counts lease requests waiting here.", ["Name", "State", "IsRetry"])
        counts: dict[tuple[str, str], float] = {}
        for label, n, _ in s["pending"]:
            counts[(label, "PENDING_NODE_ASSIGNMENT")] = counts.get((label, "PENDING_NODE_ASSIGNMENT"), 0) + n
        for name, n in s["aggregate"]["running"].items():
            counts[(name, "RUNNING")] = n
        for (name, state), n in s["aggregate"]["finished"].items():
            counts[(name, state)] = n
        for (name, state), n in sorted(counts.items()):
            tasks.add_metric(self._values(name, state, "0"), n)
        return tasks

    def _cluster(self, c: dict[str, Any]) -> Iterator[Metric]:
        session = {"SessionName": self.common["SessionName"]}
        nodes = GaugeMetricFamily("kray_cluster_nodes", "Nodes of the cluster by state (from the GCS).",
                                  labels=[*session, "State"])
        for state, n in sorted(c["nodes"].items()):
            nodes.add_metric([*session.values(), state], n)
        yield nodes
        actors = GaugeMetricFamily("ray_actors", "Actors of the cluster by class and state (from the GCS).",
                                   labels=[*session, "Name", "State"])
        for (name, state), n in sorted(c["actors"].items()):
            actors.add_metric([*session.values(), name, state], n)
        yield actors
        groups = GaugeMetricFamily("ray_gcs_placement_group_count", "Placement groups by state (from the GCS).",
                                   labels=[*session, "State"])
        for state, n in sorted(c["placement_groups"].items()):
            groups.add_metric([*session.values(), state], n)
        yield groups
        for name, doc, state in (("ray_running_jobs", "Jobs running now.", "RUNNING"),
                                 ("ray_finished_jobs", "Jobs finished so far.", "FINISHED")):
            family = GaugeMetricFamily(name, doc, labels=list(session))
            family.add_metric(list(session.values()), c["jobs"].get(state, 0))
            yield family


def _user_metrics(metrics: dict[str, metrics_aggregate.UserMetric]) -> Iterator[Metric]:
    for name, m in sorted(metrics.items()):
        full = USER_PREFIX + name
        labels = list(m.tag_keys)
        family: Metric
        if m.kind == "counter":
            family = CounterMetricFamily(full, m.description or name, labels=labels)
            for tags, value in m.series.items():
                family.add_metric(list(tags), value)
        elif m.kind == "gauge":
            family = GaugeMetricFamily(full, m.description or name, labels=labels)
            for tags, value in m.series.items():
                family.add_metric(list(tags), value)
        else:
            family = HistogramMetricFamily(full, m.description or name, labels=labels)
            for tags, (buckets, total, _count) in m.series.items():
                cumulative, running = [], 0
                for bound, n in zip([*(_bound(b) for b in m.boundaries), "+Inf"], buckets):
                    running += n
                    cumulative.append((bound, float(running)))
                family.add_metric(list(tags), cumulative, sum_value=total)
        yield family


def _bound(value: float) -> str:
    return repr(float(value))
