"""Objects across the nodes of a 3-node loopback cluster: `wait(fetch_local=...)` and freeing every copy.

Which node holds an object is read from the nodes' object-store directories (one per node, as each
node's /dev/shm would be), never inferred from timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import kray
import numpy as np
import pytest

from . import helpers, multinode
from .multinode import MultiNodeCluster

N = 200_000  # 1.6 MB of int64: above the inline threshold, so it lives in its node's object store


@kray.remote
def make(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@kray.remote
def total(array: np.ndarray) -> int:
    return int(array.sum())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    """1 CPU per node; "gizmo" only on node 2, "widget" only on node 3; drivers run on the head."""
    with multinode.running(tmp_path_factory.mktemp("multinode-objects"), num_cpus=1,
                           resources=[None, {"gizmo": 1}, {"widget": 1}]) as started:
        yield started


def holding(cluster: MultiNodeCluster, object_hex: str) -> list[int]:
    """Indexes of the nodes whose object store has a copy of the object."""
    return [node.index for node in cluster.nodes if node.holds(object_hex)]


def holders(cluster: MultiNodeCluster, ref: kray.ObjectRef) -> list[int]:
    return holding(cluster, ref.hex())


def test_wait_fetch_local_copies_to_this_node_and_false_does_not(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    remote_only = make.options(resources={"gizmo": 1}).remote(N)
    ready, not_ready = kray.wait([remote_only], timeout=120, fetch_local=False)
    assert ready == [remote_only] and not_ready == []
    assert holders(cluster, remote_only) == [1], "fetch_local=False must not copy the object to the driver's node"

    fetched = make.options(resources={"gizmo": 1}).remote(N)
    ready, not_ready = kray.wait([fetched], timeout=120)  # fetch_local defaults to True
    assert ready == [fetched] and not_ready == []
    assert holders(cluster, fetched) == [0, 1], "wait(fetch_local=True) returned before the copy was local"
    assert kray.get(fetched, timeout=120).sum() == N * (N - 1) // 2
    assert kray.get(remote_only, timeout=120).sum() == N * (N - 1) // 2


def test_wait_with_no_time_to_fetch_reports_not_ready_and_fetches_meanwhile(
    cluster: MultiNodeCluster, connect: Callable
) -> None:
    connect(cluster)
    ref = make.options(resources={"widget": 1}).remote(N)
    other = make.options(resources={"widget": 1}).remote(10)  # small: inline with its owner, always local
    ready, _ = kray.wait([ref, other], num_returns=2, timeout=120, fetch_local=False)
    assert len(ready) == 2
    ready, not_ready = kray.wait([ref, other], num_returns=2, timeout=0)
    assert ready == [other] and not_ready == [ref], "an object not on this node yet is not ready with timeout=0"
    # As in Ray, the fetch started by that wait goes on, so polling with timeout=0 gets there.
    helpers.wait_until(lambda: kray.wait([ref], timeout=0)[0], what="the object to arrive on the driver's node")
    assert 0 in holders(cluster, ref)


def test_copies_on_every_node_are_freed_when_no_ref_is_left(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    ref = make.options(resources={"gizmo": 1}).remote(N)  # made on node 2
    value = kray.get(ref, timeout=120)  # copied to node 1 (the driver's)
    assert kray.get(total.options(resources={"widget": 1}).remote(ref), timeout=120) == N * (N - 1) // 2  # node 3
    hex_id = ref.hex()
    helpers.wait_until(lambda: holding(cluster, hex_id) == [0, 1, 2], what="a copy of the object on every node")
    del value, ref
    helpers.wait_until(lambda: not holding(cluster, hex_id), what="every node to delete its copy once no ref was left")
