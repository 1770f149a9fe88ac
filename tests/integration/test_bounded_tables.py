"""Tables that churn stay bounded (issue 20 item 7): removed placement groups and dead actors are
forgotten beyond the GCS's bound, as Ray's destroyed-actor cache, so churn leaves the tables at size.

Starts local clusters with kray.init(); the bounds are set small through the environment.
"""

from __future__ import annotations

from collections.abc import Callable

import kray
import pytest
from kray.cli import microbenchmark_churn
from kray.util import state
from kray.util.placement_group import placement_group, placement_group_table, remove_placement_group

from . import helpers

KEPT = 5
CHURN = 60


@kray.remote(num_cpus=0)
class Short:
    def ping(self) -> str:
        return "pong"


def test_placement_group_churn_leaves_the_gcs_table_bounded(
        cluster_factory: Callable[..., helpers.LocalCluster], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRAY_MAXIMUM_GCS_REMOVED_PLACEMENT_GROUP_CACHED_COUNT", str(KEPT))
    cluster_factory(num_cpus=2)
    kept = placement_group([{"CPU": 1}])
    assert kept.wait(60)
    for _ in range(CHURN):
        group = placement_group([{"CPU": 0.5}])
        assert group.wait(60)
        remove_placement_group(group)
    table = placement_group_table()
    assert len(table) <= KEPT + 1, f"{len(table)} groups kept after {CHURN} were created and removed"
    assert kept.id.hex() in table, "a live group is never forgotten"
    assert kray.available_resources().get("CPU") == 1.0


def test_actor_churn_leaves_the_gcs_table_bounded(
        cluster_factory: Callable[..., helpers.LocalCluster], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRAY_MAXIMUM_GCS_DESTROYED_ACTOR_CACHED_COUNT", str(KEPT))
    cluster_factory(num_cpus=1)
    alive = Short.remote()
    assert kray.get(alive.ping.remote(), timeout=60) == "pong"
    for _ in range(CHURN // 3):
        actors = [Short.remote() for _ in range(3)]
        assert kray.get([a.ping.remote() for a in actors], timeout=120) == ["pong"] * 3
        for actor in actors:
            kray.kill(actor)
    helpers.wait_until(lambda: len(state.list_actors()) <= KEPT + 1, 60,
                       f"the GCS to keep at most {KEPT} dead actors")
    assert any(a["state"] == "ALIVE" for a in state.list_actors()), "a live actor is never forgotten"
    assert kray.get(alive.ping.remote(), timeout=60) == "pong"


def _gcs_fds() -> int:
    # kray_processes may list a worker that exits right after (a zombie has no cmdline): read it once
    gcs = [p for p in helpers.kray_processes() if "kray.gcs" in (helpers.cmdline(p) or "")]
    assert len(gcs) == 1, f"expected this test's one GCS, found {helpers.describe(gcs)}"
    return gcs[0].num_fds()


def test_actor_churn_leaves_the_gcs_connections_bounded(
        cluster_factory: Callable[..., helpers.LocalCluster]) -> None:
    """The GCS pushes each actor's creation task over a connection of its own: it must not keep one per
    actor ever created (sockets, and descriptors, only grow)."""
    cluster_factory(num_cpus=1)
    first = Short.remote()
    assert kray.get(first.ping.remote(), timeout=60) == "pong"
    kray.kill(first)
    before = _gcs_fds()
    for _ in range(CHURN // 3):
        actors = [Short.remote() for _ in range(3)]
        assert kray.get([a.ping.remote() for a in actors], timeout=120) == ["pong"] * 3
        for actor in actors:
            kray.kill(actor)
    helpers.wait_until(lambda: _gcs_fds() <= before + 4, 60,
                       f"the GCS to hold as many descriptors as before {CHURN} actors came and went ({before})")


def test_task_and_actor_churn_leaves_the_gcs_and_driver_tables_flat(
        cluster_factory: Callable[..., helpers.LocalCluster], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 defect 9: after a warm-up, more tasks and short-lived actors (each handing the driver a
    borrowed object before it is killed) add no entry to any GCS or driver table but the bounded caches
    of the dead, which stay within their bounds."""
    monkeypatch.setenv("KRAY_MAXIMUM_GCS_DESTROYED_ACTOR_CACHED_COUNT", str(KEPT))
    cluster_factory(num_cpus=2)
    microbenchmark_churn.churn(300, 10)
    before = _settled_sizes()
    microbenchmark_churn.churn(2000, 40)
    # Each killed actor's worker is reported gone by its raylet on its own schedule, after the actor is
    # dead in the GCS: wait until all 50 owners' deaths were heard before reading the tables.
    helpers.wait_until(lambda: microbenchmark_churn.table_sizes()["recent_owner_deaths"] >= 50, 60,
                       "the killed owners' deaths to be heard")
    after = _settled_sizes()
    assert microbenchmark_churn.grown(before, after) == {}, f"before: {before}\nafter: {after}"
    assert after["dead_actors"] <= KEPT, after
    assert after["recent_owner_deaths"] >= 50, "the killed owners' deaths were not heard"


def _settled_sizes() -> dict[str, int]:
    """Table sizes once every killed actor's death reached the GCS and the driver."""
    seen: list[dict[str, int]] = []

    def settled() -> bool:
        seen.append(microbenchmark_churn.table_sizes())
        sizes = seen[-1]
        return (sizes["owner_watchers"] == 0 and sizes["driver.watched_owners"] == 0
                and sizes["actors"] == sizes["dead_actors"])

    helpers.wait_until(settled, 60, "every killed actor's death to be known")
    return seen[-1]
