"""The head's demand report as the autoscaler reads it, on a 2-node loopback cluster: each node's worker
group and Pod (labels from KRAY_NODE_GROUP/KRAY_POD_NAME), its idle time, task shapes apart from
pending placement groups (with their strategy), and `request_resources` bundles until replaced.

Gates (files the test creates) decide when tasks end; the report is polled until it says what is awaited.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kray
import pytest
from kray.autoscaler.sdk import request_resources
from kray.util import placement_group, remove_placement_group
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import helpers, tasklib
from .multinode import MultiNodeCluster, Node


class LabelledCluster(MultiNodeCluster):
    """Nodes started as the operator's Pods would be: the head in group headgroup, the others in cpu."""

    dashboard_port = 0

    def node_env(self, node: Node, token: str | None) -> dict[str, str]:
        env = super().node_env(node, token)
        env["KRAY_NODE_GROUP"] = "headgroup" if node.index == 0 else "cpu"
        env["KRAY_POD_NAME"] = f"pod-{node.index}"
        return env

    def start_args(self, node: Node) -> list[str]:
        args = super().start_args(node)
        for arg in args:
            if arg.startswith("--dashboard-port="):
                self.dashboard_port = int(arg.split("=", 1)[1])
        return args


@kray.remote(num_cpus=1)
def gated(gate: str, started: str) -> str:
    Path(started).touch()
    tasklib.wait_for_file(gate)
    return kray.get_runtime_context().get_node_id()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelledCluster]:
    started = LabelledCluster(tmp_path_factory.mktemp("autoscaler-report"), num_cpus=1, num_nodes=2).start()
    try:
        yield started
    finally:
        started.teardown()


@pytest.fixture
def report(cluster: LabelledCluster, connect: Callable) -> Callable[[], dict[str, Any]]:
    connect(cluster)
    base = f"http://127.0.0.1:{cluster.dashboard_port}"

    def get() -> dict[str, Any]:
        request = urllib.request.Request(base + "/api/cluster/demand",
                                         headers={"Authorization": f"Bearer {cluster.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))
    return get


def _by_pod(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["labels"]["kray.io/pod-name"]: n for n in state["nodes"] if n["alive"]}


def _nodes_when(report: Callable[[], dict[str, Any]], test: Callable[[dict[str, dict[str, Any]]], bool],
                what: str) -> dict[str, dict[str, Any]]:
    """The report's nodes by Pod, polled until `test` holds of them."""
    def check() -> dict[str, dict[str, Any]] | None:
        nodes = _by_pod(report())
        return nodes if test(nodes) else None
    return helpers.wait_until(check, what=what)


def test_nodes_carry_group_and_pod_and_idle_time_tracks_work(
        report: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    nodes = _nodes_when(report, lambda n: all(v["idle_s"] is not None for v in n.values()), "both nodes idle")
    assert {pod: n["labels"]["ray.io/node-group"] for pod, n in nodes.items()} == {"pod-0": "headgroup", "pod-1": "cpu"}
    worker_id = nodes["pod-1"]["node_id"]
    gate, started = tmp_path / "gate", tmp_path / "started"
    ref = gated.options(scheduling_strategy=NodeAffinitySchedulingStrategy(worker_id, soft=False)).remote(
        str(gate), str(started))
    helpers.wait_until(started.exists, what="the gated task to start")
    busy = _nodes_when(report, lambda n: n["pod-1"]["idle_s"] is None, "the worker node to report busy")
    assert busy["pod-0"]["idle_s"] is not None  # the head runs nothing
    gate.touch()
    assert kray.get(ref, timeout=60) == worker_id
    again = _nodes_when(report, lambda n: n["pod-1"]["idle_s"] is not None, "the worker node to report idle again")
    assert again["pod-1"]["idle_s"] < again["pod-0"]["idle_s"]  # its idle time restarted after the task


def test_pending_placement_group_reported_with_strategy_apart_from_tasks(report: Callable[[], dict[str, Any]]) -> None:
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")  # 3 bundles on 2 nodes: pending
    try:
        state = helpers.wait_until(lambda: (lambda s: s if s["placement_groups"] else None)(report()),  # noqa: PLC3002
                                   what="the pending group in the report")
        assert state["placement_groups"] == [{"strategy": "STRICT_SPREAD", "bundles": [{"CPU": 1.0}] * 3}]
        assert state["task_demand"] == []
        assert state["demand"] == [{"CPU": 1.0}] * 3
    finally:
        remove_placement_group(pg)
    helpers.wait_until(lambda: not report()["placement_groups"], what="the removed group to leave the report")


def test_request_resources_stands_until_replaced(report: Callable[[], dict[str, Any]]) -> None:
    request_resources(num_cpus=2, bundles=[{"GPU": 1}])
    assert report()["resource_requests"] == [{"CPU": 1.0}, {"CPU": 1.0}, {"GPU": 1.0}]
    assert report()["resource_requests"] == [{"CPU": 1.0}, {"CPU": 1.0}, {"GPU": 1.0}]
    request_resources(bundles=[{"CPU": 4}])
    assert report()["resource_requests"] == [{"CPU": 4.0}]
    request_resources()
    assert report()["resource_requests"] == []
    with pytest.raises(TypeError):
        request_resources(num_cpus=-1)


def test_queued_tasks_count_once_each_and_cancelled_ones_leave_at_once(
        report: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    running = [gated.remote(str(gate), str(tmp_path / f"started-{i}")) for i in range(2)]
    helpers.wait_until(lambda: all((tmp_path / f"started-{i}").exists() for i in range(2)),
                       what="a task on each node")
    queued = [gated.remote(str(gate), str(tmp_path / "never")) for _ in range(3)]
    state = helpers.wait_until(lambda: (lambda s: s if len(s["task_demand"]) == 3 else None)(report()),  # noqa: PLC3002
                               what="three queued shapes in the report")
    assert state["task_demand"] == [{"CPU": 1.0}] * 3
    for ref in queued:
        kray.cancel(ref)
    helpers.wait_until(lambda: report()["task_demand"] == [], what="the cancelled tasks to leave the demand")
    for ref in queued:
        with pytest.raises(kray.exceptions.TaskCancelledError):
            kray.get(ref, timeout=60)
    gate.touch()
    assert len(kray.get(running, timeout=60)) == 2
    assert not (tmp_path / "never").exists()  # no cancelled task ran


@kray.remote(num_cpus=1)
def big_result() -> bytes:
    return b"x" * (1 << 20)  # over the inline threshold: its primary copy stays in this node's store


def test_a_node_holding_a_referenced_primary_copy_is_not_idle(
        cluster: LabelledCluster, report: Callable[[], dict[str, Any]]) -> None:
    nodes = _nodes_when(report, lambda n: n["pod-1"]["idle_s"] is not None, "the worker node idle")
    affinity = NodeAffinitySchedulingStrategy(nodes["pod-1"]["node_id"], soft=False)
    ref = big_result.options(scheduling_strategy=affinity).remote()
    assert len(kray.get(ref, timeout=60)) == 1 << 20  # the driver's copy is fetched; the primary stays there
    held = _nodes_when(report, lambda n: n["pod-1"]["primary_objects"] == 1, "the primary copy in the report")
    assert held["pod-1"]["idle_s"] is None  # every resource is free, but the object would be lost with it
    del ref  # the owner frees it: the node is idle again
    _nodes_when(report, lambda n: n["pod-1"]["primary_objects"] == 0 and n["pod-1"]["idle_s"] is not None,
                "the freed object to leave the report and the node to be idle")
