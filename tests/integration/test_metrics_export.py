"""Prometheus metrics (issue 16): every node serves Prometheus text on its MetricsExportPort, the head
adds the GCS's cluster-level series, and kray.util.metrics user metrics from tasks, actors and the
driver appear on their node's endpoint with their tags.

A real two-node cluster started with `kray start` (the head with --metrics-export-port), real HTTP
scrapes, parsed by prometheus_client's own text parser. Values are summed over the nodes, since a
task may run on either; every check waits for a condition (reports reach the raylet within a second).
Label sets are checked against what Ray 2.60's endpoint serves (scraped from real Ray), since Ray's
Grafana dashboards and users' PromQL filter and sum by them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kray
import numpy as np
import psutil
import pytest
from kray.util import metrics as user_metrics
from kray.util import placement_group, remove_placement_group
from prometheus_client.parser import text_string_to_metric_families

from . import helpers, multinode
from .multinode import MultiNodeCluster

Sample = tuple[str, dict[str, str], float]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    with multinode.running(tmp_path_factory.mktemp("metrics"), num_cpus=2, num_nodes=2) as started:
        yield started


def endpoints() -> dict[str, str]:
    """Node id -> metrics URL of every live node, from kray.nodes()."""
    return {n["NodeID"]: f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
            for n in kray.nodes() if n["Alive"]}


def scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def cluster_total(name: str, **labels: str) -> float:
    return sum(total(scrape(url), name, **labels) for url in endpoints().values())


def wait_for_total(name: str, expected: float, **labels: str) -> None:
    helpers.wait_until(lambda: cluster_total(name, **labels) == expected, timeout=helpers.WAIT_S,
                       what=f"{name}{labels} to sum to {expected} over the nodes")


@kray.remote(max_retries=0)
def metrics_ok(i: int) -> int:
    return i


@kray.remote(max_retries=0)
def metrics_fail() -> None:
    raise ValueError("this task fails on purpose")


@kray.remote
def metrics_hold(gate: str) -> None:
    while not os.path.exists(gate):
        time.sleep(0.02)


@kray.remote
def count_requests(route: str, n: int) -> None:
    counter = user_metrics.Counter("test_requests", description="Requests seen.", tag_keys=("route", "owner"))
    counter.set_default_tags({"owner": "task"})
    for _ in range(n):
        counter.inc(tags={"route": route})


@kray.remote
class MetricsActor:
    def __init__(self, name: str) -> None:
        self.gauge = user_metrics.Gauge("test_queue_depth", description="Depth.", tag_keys=("actor",))
        self.gauge.set_default_tags({"actor": name})
        self.latency = user_metrics.Histogram("test_latency_ms", description="Latency.", boundaries=[1, 10],
                                              tag_keys=("actor",))
        self.latency.set_default_tags({"actor": name})

    def handle(self, depth: float, latency: float) -> None:
        self.gauge.set(depth)
        self.latency.observe(latency)


def test_every_node_serves_its_own_port_and_the_head_adds_cluster_series(
    cluster: MultiNodeCluster, connect: Callable,
) -> None:
    connect(cluster)
    nodes = {n["NodeID"]: n for n in kray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    head_raylet = next(p for p in cluster.nodes[0].processes() if "kray.raylet" in " ".join(p.cmdline()))
    asked = head_raylet.cmdline()[head_raylet.cmdline().index("--metrics-export-port") + 1]
    head = next(n for n in nodes.values() if n["IsHead"])
    assert head["MetricsExportPort"] == int(asked) != 0  # `kray start --head --metrics-export-port N`
    assert len({(n["NodeManagerAddress"], n["MetricsExportPort"]) for n in nodes.values()}) == 2
    for node_id, url in endpoints().items():
        samples = scrape(url)
        assert total(samples, "ray_node_cpu_count") == (psutil.cpu_count() or 0)
        assert total(samples, "ray_node_mem_total") == psutil.virtual_memory().total
        assert total(samples, "ray_resources", Name="CPU", State="AVAILABLE") + \
            total(samples, "ray_resources", Name="CPU", State="USED") == 2
        cluster_series = total(samples, "kray_cluster_nodes", State="ALIVE")
        assert cluster_series == (2 if nodes[node_id]["IsHead"] else 0)


def test_series_follow_a_known_workload(cluster: MultiNodeCluster, connect: Callable, tmp_path: Path) -> None:
    connect(cluster)
    kray.get([metrics_ok.remote(i) for i in range(6)])
    failed = [metrics_fail.remote() for _ in range(2)]
    for ref in failed:
        with pytest.raises(ValueError):
            kray.get(ref)
    wait_for_total("ray_tasks", 6, Name="metrics_ok", State="FINISHED")
    wait_for_total("ray_tasks", 2, Name="metrics_fail", State="FAILED")
    assert cluster_total("ray_tasks", Name="metrics_ok", State="FAILED") == 0

    gate = tmp_path / "gate"
    held = metrics_hold.remote(str(gate))
    wait_for_total("ray_tasks", 1, Name="metrics_hold", State="RUNNING")
    gate.touch()
    kray.get(held)
    wait_for_total("ray_tasks", 0, Name="metrics_hold", State="RUNNING")
    wait_for_total("ray_tasks", 1, Name="metrics_hold", State="FINISHED")

    driver_node = kray.get_runtime_context().get_node_id()
    url = endpoints()[driver_node]
    before = total(scrape(url), "ray_object_store_used_memory")
    ref = kray.put(np.ones(4 * helpers.MiB, dtype=np.uint8))
    helpers.wait_until(lambda: total(scrape(url), "ray_object_store_used_memory") >= before + 4 * helpers.MiB,
                       what="the object store's used memory to grow by the 4 MiB put")
    del ref

    head_url = next(u for node_id, u in endpoints().items()
                    if next(n for n in kray.nodes() if n["NodeID"] == node_id)["IsHead"])
    actor = MetricsActor.remote("a1")
    kray.get(actor.handle.remote(1, 1))
    helpers.wait_until(lambda: total(scrape(head_url), "ray_actors", Name="MetricsActor", State="ALIVE") == 1,
                       what="ray_actors to count the live actor")
    kray.kill(actor)
    helpers.wait_until(lambda: total(scrape(head_url), "ray_actors", Name="MetricsActor", State="ALIVE") == 0
                       and total(scrape(head_url), "ray_actors", Name="MetricsActor", State="DEAD") == 1,
                       what="ray_actors to count the killed actor as DEAD")
    assert total(scrape(head_url), "ray_running_jobs") >= 1


def test_user_metrics_from_tasks_actors_and_the_driver_appear_with_their_tags(
    cluster: MultiNodeCluster, connect: Callable,
) -> None:
    connect(cluster)
    kray.get([count_requests.remote("/a", 3), count_requests.remote("/a", 2), count_requests.remote("/b", 4)])
    wait_for_total("ray_test_requests_total", 5, route="/a", owner="task")
    wait_for_total("ray_test_requests_total", 4, route="/b", owner="task")

    actor = MetricsActor.remote("a2")
    kray.get([actor.handle.remote(depth, latency) for depth, latency in ((3, 0.5), (7, 5), (2, 50))])
    wait_for_total("ray_test_queue_depth", 2, actor="a2")  # the last value set
    wait_for_total("ray_test_latency_ms_count", 3, actor="a2")
    assert cluster_total("ray_test_latency_ms_bucket", actor="a2", le="1.0") == 1
    assert cluster_total("ray_test_latency_ms_bucket", actor="a2", le="10.0") == 2
    assert cluster_total("ray_test_latency_ms_bucket", actor="a2", le="+Inf") == 3
    assert cluster_total("ray_test_latency_ms_sum", actor="a2") == 55.5
    kray.kill(actor)

    driver_counter = user_metrics.Counter("test_driver_events", tag_keys=("kind",))
    driver_counter.inc(2.5, tags={"kind": "x"})
    wait_for_total("ray_test_driver_events_total", 2.5, kind="x")


# Ray 2.60's label sets (its otel_scope_* labels aside), as its /metrics serves them.
HOST = {"IsHeadNode", "RayNodeType", "SessionName", "Version", "ip"}
RAYLET = {"Component", "NodeAddress", "SessionName", "Version", "WorkerId"}
RAY_LABELS = {
    "ray_node_cpu_utilization": HOST, "ray_node_cpu_count": HOST, "ray_node_mem_used": HOST,
    "ray_node_mem_available": HOST, "ray_node_mem_total": HOST, "ray_node_mem_used_host": HOST,
    "ray_node_mem_total_host": HOST, "ray_node_disk_usage": HOST, "ray_node_disk_free": HOST,
    "ray_node_network_receive_speed": HOST, "ray_node_network_send_speed": HOST,
    "ray_object_store_memory": RAYLET | {"Location", "ObjectState"},
    "ray_object_store_used_memory": RAYLET, "ray_object_store_available_memory": RAYLET,
    "ray_object_store_num_local_objects": RAYLET, "ray_resources": RAYLET | {"Name", "State"},
    "ray_scheduler_tasks": RAYLET | {"State"}, "ray_scheduler_unscheduleable_tasks": RAYLET | {"Reason"},
}
TASK_LABELS = {"Component", "IsRetry", "JobId", "Name", "NodeAddress", "SessionName", "Source", "State", "Version"}
RAY_HEAD_LABELS = {  # the GCS's series, on the head's endpoint
    "ray_actors": {"Component", "JobId", "Name", "NodeAddress", "SessionName", "Source", "State", "Version"},
    "ray_placement_groups": RAYLET | {"Source", "State"}, "ray_gcs_placement_group_count": RAYLET | {"State"},
    "ray_running_jobs": RAYLET, "ray_finished_jobs": RAYLET,
}


def families(url: str) -> dict[str, list[Sample]]:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {family.name: [(s.name, dict(s.labels), s.value) for s in family.samples]
            for family in text_string_to_metric_families(text)}


@kray.remote
def labelled_counter(gate: str) -> tuple[str, str]:
    counter = user_metrics.Counter("test_labelled", description="Labelled.", tag_keys=("kind",))
    counter.inc(3, tags={"kind": "x"})
    while not os.path.exists(gate):  # RUNNING until the test has seen it
        time.sleep(0.02)
    context = kray.get_runtime_context()
    return context.get_worker_id(), context.get_node_id()


def test_series_carry_rays_labels_with_rays_values(
    cluster: MultiNodeCluster, connect: Callable, tmp_path: Path,
) -> None:
    connect(cluster)
    nodes = {n["NodeID"]: n for n in kray.nodes() if n["Alive"]}
    session = cluster.nodes[0].session_name  # the head's: one SessionName for the whole cluster, as Ray's
    assert cluster.nodes[1].session_name != session  # the other node's own session is not what it exports
    job = kray.get_runtime_context().get_job_id()
    group = placement_group([{"CPU": 0.5}])
    kray.get(group.ready(), timeout=helpers.WAIT_S)
    actor = MetricsActor.remote("a3")
    kray.get(actor.handle.remote(1, 1))
    gate = tmp_path / "gate"
    held = labelled_counter.remote(str(gate))
    running = helpers.wait_until(
        lambda: [(node_id, labels) for node_id, url in endpoints().items()
                 for _, labels, value in families(url).get("ray_tasks", [])
                 if labels["Name"] == "labelled_counter" and labels["State"] == "RUNNING" and value == 1],
        what="the held task to show as RUNNING")
    assert [labels["Source"] for _, labels in running] == ["executor"]
    assert running[0][1]["JobId"] == job and running[0][1]["NodeAddress"] == nodes[running[0][0]]["NodeManagerAddress"]
    gate.touch()
    worker_id, node_id = kray.get(held)
    ip = nodes[node_id]["NodeManagerAddress"]
    user_url = endpoints()[node_id]
    [(_, user_labels, value)] = helpers.wait_until(
        lambda: families(user_url).get("ray_test_labelled"), what="the task's user counter on its node")
    assert value == 3  # Ray's default labels on a user metric recorded in a task, the worker's id as its own
    assert user_labels == {"Component": "core_worker", "NodeAddress": ip, "SessionName": session,
                           "Version": kray.__version__, "WorkerId": worker_id, "kind": "x"}

    for node_id, url in endpoints().items():
        node = nodes[node_id]
        scraped = families(url)
        expected = {**RAY_LABELS, **(RAY_HEAD_LABELS if node["IsHead"] else {})}
        for name, label_set in expected.items():
            assert scraped.get(name), f"{name} missing on {url}"
            for sample_name, labels, _ in scraped[name]:
                assert set(labels) - {"le"} == label_set, (sample_name, labels)
                assert labels["SessionName"] == session and labels["Version"] == kray.__version__
                assert labels.get("ip", labels.get("NodeAddress")) == node["NodeManagerAddress"]
                if "ip" in labels:
                    assert (labels["IsHeadNode"], labels["RayNodeType"]) == (
                        ("true", "head") if node["IsHead"] else ("false", "worker"))
                if "WorkerId" in labels:
                    assert labels["WorkerId"] == ""  # a raylet's or the GCS's series
                    assert labels["Component"] == ("gcs_server" if name in RAY_HEAD_LABELS else "raylet")
        for _, labels, _ in scraped.get("ray_tasks", []):  # a node that ran no task has none
            assert set(labels) == TASK_LABELS and labels["SessionName"] == session
            assert labels["NodeAddress"] == node["NodeManagerAddress"] and labels["Version"] == kray.__version__
            assert labels["Component"] == "core_worker" and labels["IsRetry"] == "0"
            if labels["State"] in ("FINISHED", "FAILED", "PENDING_NODE_ASSIGNMENT"):
                assert (labels["Source"], labels["JobId"]) == ("owner", "")  # as Ray's owner series
        if node["IsHead"]:
            assert {(labels["Source"], labels["JobId"]) for _, labels, _ in scraped["ray_actors"]} == {("gcs", "")}
            assert total(scraped["ray_placement_groups"], "ray_placement_groups", State="CREATED", Source="gcs") == 1
            assert [s for s, _, _ in scraped["ray_finished_jobs"]] == ["ray_finished_jobs_total"]  # a counter
    kray.kill(actor)
    remove_placement_group(group)


def test_an_explicit_metrics_port_that_is_taken_is_refused_by_name(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        env = {**os.environ, "KRAY_TEMP_DIR": str(tmp_path)}
        env.pop("KRAY_ADDRESS", None)
        result = subprocess.run(
            [*multinode.kray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={multinode.free_port()}",
             f"--metrics-export-port={taken}"],
            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "--metrics-export-port" in result.stderr and f"port {taken} on 127.0.0.1 is in use" in result.stderr


@pytest.mark.parametrize("make, error", [
    (lambda: user_metrics.Counter("bad name"), "Invalid metric name"),
    (lambda: user_metrics.Counter(""), "Empty name"),
    (lambda: user_metrics.Gauge("g", tag_keys=["a"]), "tag_keys should be a tuple"),
    (lambda: user_metrics.Histogram("h", boundaries=[]), "boundaries"),
    (lambda: user_metrics.Histogram("h", boundaries=[0, 1]), "must all be > 0"),
    (lambda: user_metrics.Gauge("g", tag_keys=("a",)).set_default_tags({"b": "1"}), "Unrecognized tag key 'b'"),
    (lambda: user_metrics.Gauge("g", tag_keys=("a",)).set(1), "Missing value for tag key\\(s\\): a"),
    (lambda: user_metrics.Counter("c").inc(-1), "value must be >0"),
])
def test_bad_metric_definitions_and_records_are_refused_by_name(make: Callable[[], Any], error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        make()
