"""A placement group lives as long as the job that made it, unless lifetime="detached" (issue 15,
defect 2), as in Ray.

A one-node cluster started with the real `kray start`; a driver script creates both kinds of group
and exits; this test process, a second driver, then looks at the groups.
"""

from __future__ import annotations

from pathlib import Path

import kray
import pytest
from kray.util import placement_group_table, remove_placement_group
from kray.util.placement_group import PlacementGroup

from . import helpers, multinode

CREATOR = """
import sys
import kray
from kray.util import placement_group

kray.init(address=sys.argv[1])
kept = placement_group([{"CPU": 1}], name="kept", lifetime="detached")
temporary = placement_group([{"CPU": 1}], name="temporary")
kray.get([kept.ready(), temporary.ready()], timeout=60)
print("CREATED", kept.id.hex(), temporary.id.hex(), flush=True)
kray.shutdown()
"""


def test_a_detached_placement_group_outlives_its_driver(tmp_path: Path, connect, monkeypatch: pytest.MonkeyPatch) -> None:
    with multinode.running(tmp_path, num_nodes=1, num_cpus=2) as cluster:
        monkeypatch.setenv("KRAY_CLUSTER_TOKEN", cluster.token)
        with helpers.DriverProcess(CREATOR, tmp_path, "creator", args=[cluster.address]) as creator:
            created = creator.wait_for(r"^CREATED (\w+) (\w+)$", timeout=120)
            assert creator.finish() == 0, creator.output()
        kept_id, temporary_id = created.group(1), created.group(2)
        connect(cluster)
        try:
            helpers.wait_until(
                lambda: placement_group_table().get(temporary_id, {}).get("state") == "REMOVED",
                what="the driver's non-detached group to be removed with its job",
            )
            table = placement_group_table()
            assert table[kept_id]["state"] == "CREATED"
            helpers.wait_until(lambda: kray.available_resources().get("CPU", 0) == 1,
                               what="the removed group's CPU to come back (the detached one keeps its own)")
            remove_placement_group(PlacementGroup(bytes.fromhex(kept_id), [{"CPU": 1}]))
        finally:
            kray.shutdown()
