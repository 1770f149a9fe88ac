"""Placement groups across the nodes of a 3-node loopback cluster: PACK, SPREAD, STRICT_PACK and
STRICT_SPREAD, tasks and actors placed by bundle index, removal, and groups that cannot be placed.

Where a bundle went is read from placement_group_table(); where a task ran, from the node id it
reports. Each test removes its groups, so the next one starts from a free cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kray
import pytest
from kray.util import placement_group, placement_group_table, remove_placement_group
from kray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from . import helpers, multinode
from .multinode import MultiNodeCluster

CPUS = 2  # per node


@kray.remote(num_cpus=1)
def where() -> str:
    return kray.get_runtime_context().get_node_id()


@kray.remote(num_cpus=1)
class Locator:
    def where(self) -> str:
        return kray.get_runtime_context().get_node_id()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    with multinode.running(tmp_path_factory.mktemp("multinode-pg"), num_cpus=CPUS) as started:
        yield started


def _bundle_nodes(pg) -> list[str]:
    table = placement_group_table(pg)
    return [table["bundles_to_node_id"][i] for i in range(len(pg.bundle_specs))]


def _run_in_each_bundle(pg) -> list[str]:
    strategies = [PlacementGroupSchedulingStrategy(pg, i) for i in range(len(pg.bundle_specs))]
    return kray.get([where.options(scheduling_strategy=s).remote() for s in strategies], timeout=120)


def _all_cpus_free() -> bool:
    return kray.available_resources().get("CPU") == 3 * CPUS


@pytest.mark.parametrize(
    ("strategy", "bundles", "distinct_nodes"),
    [
        ("STRICT_SPREAD", [{"CPU": 1}] * 3, 3),
        ("SPREAD", [{"CPU": 1}] * 3, 3),
        ("STRICT_PACK", [{"CPU": 1}] * 2, 1),
        ("PACK", [{"CPU": 1}] * 2, 1),
    ],
)
def test_strategy_places_bundles_and_tasks_follow_their_bundle(
    cluster: MultiNodeCluster, connect: Callable, strategy: str, bundles: list, distinct_nodes: int
) -> None:
    connect(cluster)
    helpers.wait_until(_all_cpus_free, what="a free cluster")
    pg = placement_group(bundles, strategy=strategy)
    assert kray.get(pg.ready(), timeout=120) is True
    nodes = _bundle_nodes(pg)
    assert len(set(nodes)) == distinct_nodes, f"{strategy} put its bundles on {nodes}"
    assert _run_in_each_bundle(pg) == nodes, "a task given bundle i did not run on the node of bundle i"
    remove_placement_group(pg)
    helpers.wait_until(_all_cpus_free, what="the bundles' CPUs to be given back")


def test_pack_spills_over_to_other_nodes_but_strict_pack_waits(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    helpers.wait_until(_all_cpus_free, what="a free cluster")
    bundles = [{"CPU": 1}] * (CPUS + 1)  # one node cannot hold them all
    packed = placement_group(bundles, strategy="PACK")
    assert kray.get(packed.ready(), timeout=120) is True
    assert len(set(_bundle_nodes(packed))) == 2
    remove_placement_group(packed)
    helpers.wait_until(_all_cpus_free, what="the bundles' CPUs to be given back")

    strict = placement_group(bundles, strategy="STRICT_PACK")
    assert not strict.wait(timeout_seconds=2), "STRICT_PACK placed bundles that fit no single node"
    assert placement_group_table(strict)["state"] == "PENDING"
    remove_placement_group(strict)


def test_strict_spread_needs_a_node_per_bundle(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    helpers.wait_until(_all_cpus_free, what="a free cluster")
    four = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
    assert not four.wait(timeout_seconds=2), "STRICT_SPREAD put 4 bundles on 3 nodes"
    assert placement_group_table(four)["state"] == "PENDING"
    remove_placement_group(four)
    assert placement_group_table(four)["state"] == "REMOVED"


def test_actors_are_placed_by_bundle_index(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    helpers.wait_until(_all_cpus_free, what="a free cluster")
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert kray.get(pg.ready(), timeout=120) is True
    nodes = _bundle_nodes(pg)
    actors = [Locator.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote() for i in (2, 0, 1)]
    assert kray.get([a.where.remote() for a in actors], timeout=120) == [nodes[2], nodes[0], nodes[1]]
    for actor in actors:
        kray.kill(actor)
    remove_placement_group(pg)
    helpers.wait_until(_all_cpus_free, what="the bundles' CPUs to be given back")
