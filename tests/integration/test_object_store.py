"""The object store: large objects in the session's shared memory, zero-copy numpy get (a 1 GiB round
trip included), objects freed when no reference (local or borrowed) is left, spilling when full.

Each test starts its own cluster so that the store's size and its /dev/shm directory are its own.
"""

from __future__ import annotations

import gc
from pathlib import Path

import kray
import numpy as np
import psutil

from . import helpers, tasklib
from .helpers import GiB, MiB


@kray.remote
def make_array(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.uint8)


@kray.remote
def describe_array(array: np.ndarray) -> tuple[bool, int, int]:
    return bool(array.flags.writeable), int(array.nbytes), int(array.sum())


@kray.remote
def total(array: np.ndarray) -> int:
    return int(array.sum())


@kray.remote
def wrap(refs: list) -> list:
    return refs


@kray.remote
def sum_after_gate(refs: list, started: str, gate: str) -> int:
    Path(started).touch()
    tasklib.wait_for_file(gate)
    return int(kray.get(refs[0]).sum())


def _assert_in_shared_memory(array: np.ndarray) -> None:
    where = helpers.mapping_of(array.ctypes.data)
    assert where is not None and where.startswith(str(helpers.SHM_ROOT)), (
        f"array data lives in {where!r}, not in shared memory (base chain: {helpers.base_chain(array)})"
    )


def _shm_usage(cluster: helpers.LocalCluster) -> int:
    return helpers.allocated_bytes(cluster.shm_dir())


def test_large_objects_live_in_shared_memory_and_numpy_get_is_zero_copy(cluster_factory) -> None:
    cluster = cluster_factory(num_cpus=1, object_store_memory=512 * MiB)
    array = np.arange(2 * MiB // 8, dtype=np.int64)  # 2 MiB, far above the inline threshold
    ref = kray.put(array)
    assert _shm_usage(cluster) >= array.nbytes, "a 2 MiB object is not in /dev/shm/kray-<session>/"

    out = kray.get(ref, timeout=helpers.WAIT_S)
    np.testing.assert_array_equal(out, array)
    assert not out.flags.writeable, "a numpy array from get() must be a read-only view of the store"
    assert not out.flags.owndata
    _assert_in_shared_memory(out)

    # A task's large return value comes back the same way.
    produced = kray.get(make_array.remote(3 * MiB, 5), timeout=helpers.WAIT_S)
    assert produced.nbytes == 3 * MiB and produced[0] == 5 and produced[-1] == 5
    assert not produced.flags.writeable
    _assert_in_shared_memory(produced)

    # Inside a task, a large argument is a read-only view as well.
    writeable, nbytes, summed = kray.get(describe_array.remote(ref), timeout=helpers.WAIT_S)
    assert (writeable, nbytes, summed) == (False, array.nbytes, int(array.sum()))


def test_one_gib_numpy_round_trip_without_a_copy(cluster_factory) -> None:
    cluster_factory(num_cpus=1, object_store_memory=int(1.5 * GiB))
    n = GiB // 8
    array = np.arange(n, dtype=np.int64)
    ref = kray.put(array)
    del array
    gc.collect()

    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    out = kray.get(ref, timeout=120)
    grown = proc.memory_info().rss - rss_before
    assert grown < 256 * MiB, f"get() of a 1 GiB array grew this process's RSS by {grown / MiB:.0f} MiB"
    assert not out.flags.writeable
    _assert_in_shared_memory(out)
    assert out.shape == (n,)
    assert out[0] == 0 and out[12_345_678] == 12_345_678 and out[-1] == n - 1
    assert int(out.sum()) == n * (n - 1) // 2
    del out, ref
    gc.collect()


def test_objects_are_freed_when_no_reference_is_left(cluster_factory) -> None:
    cluster = cluster_factory(num_cpus=1, object_store_memory=512 * MiB)
    anchor = kray.put(np.zeros(MiB, dtype=np.uint8))  # keeps the session's directory in place
    baseline = _shm_usage(cluster)

    ref = kray.put(np.ones(16 * MiB, dtype=np.uint8))
    assert _shm_usage(cluster) >= baseline + 16 * MiB
    del ref
    gc.collect()
    helpers.wait_until(lambda: _shm_usage(cluster) <= baseline + MiB, what="a put object to be freed after del")

    produced = make_array.remote(16 * MiB, 1)
    value = kray.get(produced, timeout=helpers.WAIT_S)
    assert value[0] == 1
    assert _shm_usage(cluster) >= baseline + 16 * MiB
    del value  # the value read zero-copy pins the object as well
    gc.collect()
    assert _shm_usage(cluster) >= baseline + 16 * MiB, "freed while the driver still held its ObjectRef"
    del produced
    gc.collect()
    helpers.wait_until(lambda: _shm_usage(cluster) <= baseline + MiB, what="a task's output to be freed after del")
    del anchor


def test_refs_contained_in_other_objects_keep_the_object_alive(cluster_factory) -> None:
    cluster = cluster_factory(num_cpus=1, object_store_memory=512 * MiB)
    anchor = kray.put(np.zeros(MiB, dtype=np.uint8))
    baseline = _shm_usage(cluster)

    ref = kray.put(np.full(16 * MiB, 2, dtype=np.uint8))
    wrapped = kray.get(wrap.remote([ref]), timeout=helpers.WAIT_S)  # a copy of the ref came back inside a list
    del ref
    gc.collect()
    (inner,) = wrapped
    assert kray.get(inner, timeout=helpers.WAIT_S)[-1] == 2
    del inner, wrapped
    gc.collect()
    helpers.wait_until(lambda: _shm_usage(cluster) <= baseline + MiB, what="the object to be freed")
    del anchor


def test_a_borrowing_task_keeps_the_object_alive(cluster_factory, tmp_path: Path) -> None:
    cluster = cluster_factory(num_cpus=1, object_store_memory=512 * MiB)
    anchor = kray.put(np.zeros(MiB, dtype=np.uint8))
    baseline = _shm_usage(cluster)

    started, gate = tmp_path / "started", tmp_path / "gate"
    ref = kray.put(np.full(16 * MiB, 3, dtype=np.uint8))
    result = sum_after_gate.remote([ref], str(started), str(gate))  # nested: the task borrows the ref
    helpers.wait_until(started.exists, what="the borrowing task to start")
    del ref
    gc.collect()
    gate.touch()
    assert kray.get(result, timeout=helpers.WAIT_S) == 3 * 16 * MiB
    helpers.wait_until(
        lambda: _shm_usage(cluster) <= baseline + MiB, what="the object to be freed once the borrower finished"
    )
    del anchor


def test_a_full_store_spills_instead_of_failing(cluster_factory) -> None:
    cluster_factory(num_cpus=1, object_store_memory=200 * MiB)
    count = 10 * MiB  # int64 elements: 80 MiB per array, five of them in a 200 MiB store
    refs = [kray.put(np.full(count, i, dtype=np.int64)) for i in range(5)]
    for i, ref in enumerate(refs):
        out = kray.get(ref, timeout=120)
        assert out.shape == (count,) and out[0] == i and out[-1] == i
        assert bool((out == i).all()), f"object {i} came back with the wrong content"
        del out
    # A task can read a spilled object as well.
    assert kray.get(total.remote(refs[0]), timeout=120) == 0
    assert kray.get(total.remote(refs[4]), timeout=120) == 4 * count
