"""Unit tests of the pure placement policies: lease decisions and placement-group bundles."""

from __future__ import annotations

import pytest
from kray.scheduling import placement, policy


def node(name: str, cpus: float, free: float | None = None, **extra: float) -> policy.NodeView:
    total = {"CPU": cpus, **extra}
    available = {"CPU": cpus if free is None else free, **extra}
    return policy.NodeView(name.encode(), f"tcp://{name}:1", total, available)


def test_pack_puts_everything_on_one_node_when_it_fits() -> None:
    nodes = [node("a", 2), node("b", 4)]
    assert placement.place([{"CPU": 1}, {"CPU": 2}], "PACK", nodes) == [b"b", b"b"]


def test_pack_falls_back_to_several_nodes_but_strict_pack_does_not() -> None:
    nodes = [node("a", 2), node("b", 2)]
    assert sorted(placement.place([{"CPU": 2}, {"CPU": 2}], "PACK", nodes)) == [b"a", b"b"]
    assert placement.place([{"CPU": 2}, {"CPU": 2}], "STRICT_PACK", nodes) is None


def test_strict_spread_needs_distinct_nodes() -> None:
    nodes = [node("a", 4), node("b", 4)]
    got = placement.place([{"CPU": 1}, {"CPU": 1}], "STRICT_SPREAD", nodes)
    assert got is not None and len(set(got)) == 2
    assert placement.place([{"CPU": 1}] * 3, "STRICT_SPREAD", nodes) is None
    spread = placement.place([{"CPU": 1}] * 3, "SPREAD", nodes)
    assert spread is not None and set(spread) == {b"a", b"b"}


def test_busy_nodes_do_not_fit_now_but_fit_by_totals() -> None:
    nodes = [node("a", 2, free=0)]
    assert placement.place([{"CPU": 1}], "PACK", nodes) is None
    assert placement.place([{"CPU": 1}], "PACK", nodes, use_totals=True) == [b"a"]


def test_unknown_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="PACK"):
        placement.place([{"CPU": 1}], "RANDOM", [node("a", 1)])


def test_group_resource_names_follow_ray() -> None:
    added = placement.bundle_resources({"CPU": 2}, "ab", 0)
    assert added["CPU_group_0_ab"] == 2 and added["CPU_group_ab"] == 2 and added["bundle_group_ab"] == 1000
    assert placement.task_request_in_group({"CPU": 1}, "ab", -1) == {"CPU_group_ab": 1, "bundle_group_ab": 0.001}


def test_lease_decision_local_spill_queue_infeasible() -> None:
    local, other = node("a", 1, free=0), node("b", 1)
    assert policy.decide(node("a", 1), {"CPU": 1}, [node("a", 1), other]).action == policy.GRANT
    spill = policy.decide(local, {"CPU": 1}, [local, other])
    assert spill.action == policy.SPILL and spill.node == other
    assert policy.decide(local, {"CPU": 1}, [local, node("b", 1, free=0)]).action == policy.QUEUE
    assert policy.decide(local, {"GPU": 1}, [local, other]).action == policy.INFEASIBLE
    gpu_node = node("g", 1, GPU=1)
    assert policy.decide(local, {"GPU": 1}, [local, gpu_node]).node == gpu_node


def test_spilled_requests_stay_and_affinity_pins() -> None:
    local, other = node("a", 1, free=0), node("b", 1)
    assert policy.decide(local, {"CPU": 1}, [local, other], spilled=policy.MAX_SPILLS).action == policy.QUEUE
    assert policy.decide(local, {"CPU": 1}, [local, other], spilled=1).action == policy.SPILL
    pinned = policy.decide(node("a", 1), {"CPU": 1}, [node("a", 1), other], ("NODE_AFFINITY", b"b", False))
    assert pinned.action == policy.SPILL and pinned.node == other
    gone = ("NODE_AFFINITY", b"zz", False)
    assert policy.decide(node("a", 1), {"CPU": 1}, [node("a", 1)], gone).action == policy.INFEASIBLE
    soft = ("NODE_AFFINITY", b"zz", True)
    assert policy.decide(node("a", 1), {"CPU": 1}, [node("a", 1)], soft).action == policy.GRANT


def test_spread_slots_rotate_over_free_nodes_in_node_id_order() -> None:
    a, b, c = node("a", 1), node("b", 1), node("c", 1)
    chosen = [policy.decide(a, {"CPU": 1}, [a, b, c], (policy.SPREAD,), 0, slot) for slot in range(3)]
    assert [d.action for d in chosen] == [policy.GRANT, policy.SPILL, policy.SPILL]
    assert [d.node.node_id for d in chosen[1:] if d.node] == [b"b", b"c"]
    # A node with nothing free left drops out of the rotation while others are free.
    busy_b = node("b", 1, free=0)
    assert policy.decide(a, {"CPU": 1}, [a, busy_b, c], (policy.SPREAD,), 0, 1).node == c


def test_local_or_queue_never_spills() -> None:
    assert policy.local_or_queue(node("a", 1), {"CPU": 1}).action == policy.GRANT
    assert policy.local_or_queue(node("a", 1, free=0), {"CPU": 1}).action == policy.QUEUE
    assert policy.local_or_queue(node("a", 1), {"GPU": 1}).action == policy.INFEASIBLE
