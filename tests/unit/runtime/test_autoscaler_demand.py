"""The runtime's side of the autoscaler, without processes: idle timing (gcs.autoscaling), the report's
added fields, and request_resources' bundles (autoscaler.sdk)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kray.autoscaler import sdk
from kray.gcs import autoscaling
from kray.object_store import store


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_node_is_idle_only_with_everything_free_and_nothing_waiting() -> None:
    total = {"CPU": 2.0, "memory": 10.0}
    assert autoscaling.is_idle(total, {"CPU": 2.0, "memory": 10.0}, [])
    assert not autoscaling.is_idle(total, {"CPU": 1.0, "memory": 10.0}, [])
    assert not autoscaling.is_idle(total, {"CPU": 2.0, "memory": 10.0}, [{"CPU": 4.0}])


def test_idle_time_starts_when_idle_and_resets_when_busy() -> None:
    clock = Clock()
    idle = autoscaling.IdleTracker(clock)
    total = {"CPU": 1.0}
    idle.update(b"n", total, total, [])
    clock.now += 5
    idle.update(b"n", total, total, [])  # still idle: the start stays
    assert idle.idle_s(b"n") == 5.0
    idle.update(b"n", total, {"CPU": 0.0}, [])
    assert idle.idle_s(b"n") is None
    idle.update(b"n", total, total, [])
    clock.now += 1
    assert idle.idle_s(b"n") == 1.0
    idle.forget(b"n")
    assert idle.idle_s(b"n") is None


def test_report_adds_idle_time_task_shapes_groups_and_requests() -> None:
    clock = Clock()
    idle = autoscaling.IdleTracker(clock)
    idle.update(b"a", {"CPU": 1.0}, {"CPU": 1.0}, [])
    clock.now += 2
    state = {"nodes": [{"alive": True}, {"alive": False}], "demand": []}
    pending = {b"a": [{"CPU": 1.0}, {"CPU_group_abc": 1.0}]}
    groups = [{"strategy": "STRICT_SPREAD", "bundles": [{"CPU": 1.0}]}]
    out = autoscaling.report(state, idle, [b"a", b"b"], pending, groups, json.dumps([{"CPU": 2}]).encode())
    assert [n["idle_s"] for n in out["nodes"]] == [2.0, None]
    assert out["task_demand"] == [{"CPU": 1.0}]  # a task waiting for a group's bundle is the group's demand
    assert out["placement_groups"] == groups and out["resource_requests"] == [{"CPU": 2.0}]
    assert autoscaling.resource_requests(b"not json") == [] and autoscaling.resource_requests(None) == []


def test_request_resources_bundles_as_rays() -> None:
    assert sdk._bundles(2, [{"GPU": 1}]) == [{"CPU": 1.0}, {"CPU": 1.0}, {"GPU": 1.0}]
    assert sdk._bundles(None, None) == [] and sdk._bundles(0, []) == []
    assert sdk.RESOURCE_REQUEST_KEY == autoscaling.RESOURCE_REQUEST_KEY
    for bad in ({"num_cpus": -1}, {"num_cpus": 1.5}, {"bundles": [{"CPU": -1}]}, {"bundles": ["CPU"]}):
        with pytest.raises(TypeError):
            sdk._bundles(bad.get("num_cpus"), bad.get("bundles"))  # type: ignore[arg-type]


def test_a_node_holding_primary_copies_is_busy_and_reported() -> None:
    clock = Clock()
    idle = autoscaling.IdleTracker(clock)
    total = {"CPU": 1.0}
    assert not autoscaling.is_idle(total, total, [], primary_objects=2)
    idle.update(b"n", total, total, [], primary_objects=1)
    assert idle.idle_s(b"n") is None and idle.primary_objects(b"n") == 1
    idle.update(b"n", total, total, [], primary_objects=0)
    clock.now += 2
    assert idle.idle_s(b"n") == 2.0 and idle.primary_objects(b"n") == 0
    state = autoscaling.report({"nodes": [{"alive": True}]}, idle, [b"n"], {}, [], None)
    assert state["nodes"][0]["primary_objects"] == 0 and state["nodes"][0]["idle_s"] == 2.0


def test_the_store_counts_primary_copies_until_freed_or_their_job_ends(tmp_path: Any) -> None:
    ledger = store.ObjectStore(str(tmp_path / "shm"), str(tmp_path / "spill"), capacity=1 << 20)
    a, b, c = ("a" * 40, "b" * 40, "c" * 40)
    for name in (a, b, c):
        (tmp_path / "shm" / name).write_bytes(b"x")
    ledger.sealed(a, 1, primary=True, job_id=1)
    ledger.sealed(b, 1, primary=False, job_id=1)  # a fetched copy: lost with the node, but not the only one
    ledger.sealed(c, 1, primary=True, job_id=2)
    assert ledger.primary_count == 2
    ledger.delete([a])
    assert ledger.primary_count == 1
    ledger.job_finished(2)  # its owners are gone: nobody can use or free it any more
    assert ledger.primary_count == 0
