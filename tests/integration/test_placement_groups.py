"""Placement groups on a local cluster: reservation, scheduling into bundles, removal, pending demand."""

from __future__ import annotations

import time

import kray
import pytest
from kray.util import placement_group, placement_group_table, remove_placement_group
from kray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@kray.remote
def assigned() -> dict:
    return kray.get_runtime_context().get_assigned_resources()


@kray.remote
def group_id() -> str | None:
    return kray.get_runtime_context().get_placement_group_id()


def _until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_bundles_are_reserved_used_and_returned(cluster_factory) -> None:
    cluster_factory(num_cpus=3)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert kray.get(pg.ready(), timeout=30) is True
    assert placement_group_table(pg)["state"] == "CREATED"
    _until(lambda: kray.available_resources().get("CPU") == 1.0, "the bundles to leave one CPU free")

    inside = kray.get(assigned.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1)).remote(), timeout=30)
    assert inside == {"CPU": 1.0}  # the task's own resources, not the group's internal names (Ray since 2.6)
    assert kray.get(group_id.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote(),
                    timeout=30) == pg.id.hex()
    assert kray.get(group_id.remote(), timeout=30) is None

    @kray.remote(num_cpus=1)
    class InGroup:
        def ping(self) -> str:
            return "pong"

    actor = InGroup.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    assert kray.get(actor.ping.remote(), timeout=30) == "pong"
    kray.kill(actor)

    remove_placement_group(pg)
    _until(lambda: kray.available_resources().get("CPU") == 3.0, "the bundles to be given back")
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_a_group_that_cannot_fit_stays_pending(cluster_factory) -> None:
    cluster_factory(num_cpus=2)
    too_big = placement_group([{"CPU": 2}, {"CPU": 2}], strategy="STRICT_PACK")
    assert too_big.wait(timeout_seconds=1) is False
    assert placement_group_table(too_big)["state"] == "PENDING"
    remove_placement_group(too_big)
    assert placement_group_table(too_big)["state"] == "REMOVED"


def test_bad_bundles_and_strategies_are_rejected(cluster_factory) -> None:
    cluster_factory(num_cpus=1)
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="positive amount"):
        placement_group([{"CPU": 0}])
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="SIDEWAYS")
    pg = placement_group([{"CPU": 1}])
    with pytest.raises(ValueError, match="out of range"):
        PlacementGroupSchedulingStrategy(pg, 3)
