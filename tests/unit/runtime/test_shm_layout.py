"""Unit tests of the object file format: write then map gives back the same frames, zero-copy."""

from __future__ import annotations

import os

import numpy as np
import pytest
from kray import serialization
from kray.object_store import shm, store


def test_write_and_map_round_trip(tmp_path) -> None:
    array = np.arange(50_000, dtype=np.float64)
    frames, _ = serialization.serialize(array)
    path = str(tmp_path / "obj")
    size = shm.write_object(path, frames)
    assert os.path.getsize(path) == size
    mapped = shm.map_object([path])
    out = serialization.deserialize(mapped)
    np.testing.assert_array_equal(out, array)
    assert not out.flags.writeable, "an array read from the store must be a read-only view"


def test_buffers_are_aligned(tmp_path) -> None:
    offsets, total = shm.layout(13, [5, 100, 7])
    assert all(off % 64 == 0 for off in offsets)
    assert total >= offsets[-1] + 7


def test_map_falls_back_to_the_spill_path(tmp_path) -> None:
    frames, _ = serialization.serialize(b"x" * 1000)
    spill = str(tmp_path / "spilled")
    shm.write_object(spill, frames)
    assert serialization.deserialize(shm.map_object([str(tmp_path / "missing"), spill])) == b"x" * 1000
    with pytest.raises(shm.ObjectNotFound):
        shm.map_object([str(tmp_path / "nowhere")])


def test_store_spills_oldest_objects_beyond_capacity(tmp_path) -> None:
    ledger = store.ObjectStore(str(tmp_path / "shm"), str(tmp_path / "spill"), capacity=3000)
    a, b, c = (f"{n:040x}" for n in (0xA, 0xB, 0xC))  # object ids: the store takes nothing else
    for name in (a, b, c):
        frames, _ = serialization.serialize(os.urandom(1200))
        size = shm.write_object(os.path.join(ledger.shm_dir, name), frames)
        ledger.sealed(name, size)
    assert ledger.used <= 3000
    assert os.path.exists(os.path.join(ledger.spill_dir, a)), "the oldest object must be spilled"
    assert not os.path.exists(os.path.join(ledger.shm_dir, a))
    paths = shm.object_paths(ledger.shm_dir, ledger.spill_dir, a)
    assert len(serialization.deserialize(shm.map_object(paths))) == 1200
    ledger.delete([a, b, c])
    assert ledger.used == 0 and not os.listdir(ledger.spill_dir)


def test_a_mapped_file_is_never_recycled(tmp_path) -> None:
    ledger = store.ObjectStore(str(tmp_path / "shm"), str(tmp_path / "spill"), capacity=1 << 30)
    frames, _ = serialization.serialize(np.ones(shm.RECYCLE_MIN_BYTES, dtype=np.uint8))
    held_id, free_id = "1" * 40, "2" * 40
    for name in (held_id, free_id):
        ledger.sealed(name, shm.write_object(os.path.join(ledger.shm_dir, name), frames))
    held = serialization.deserialize(shm.map_object([os.path.join(ledger.shm_dir, held_id)]))
    ledger.delete([held_id, free_id])
    pooled = shm.pool_usage(ledger.shm_dir)[1]
    assert len(pooled) == 1, "only the unmapped file may go to the reuse pool"
    # Writing a new object into the recycled file must not change the array still mapped.
    new_frames, _ = serialization.serialize(np.zeros(shm.RECYCLE_MIN_BYTES, dtype=np.uint8))
    shm.write_object(os.path.join(ledger.shm_dir, "new"), new_frames)
    assert held.sum() == shm.RECYCLE_MIN_BYTES
