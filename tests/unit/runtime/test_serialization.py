"""Unit tests of value serialization: out-of-band buffers, contained refs, clear errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from kray import serialization
from kray.core import refs, task_args


def test_numpy_buffers_travel_out_of_band_and_come_back_equal() -> None:
    array = np.arange(10_000, dtype=np.int64)
    frames, contained = serialization.serialize({"a": array})
    assert contained == []
    assert len(frames) == 2, "the array's data must be a separate frame, not inside the pickle stream"
    assert memoryview(frames[1]).nbytes == array.nbytes
    out = serialization.deserialize(frames)
    np.testing.assert_array_equal(out["a"], array)


def test_scalars_take_the_fast_path() -> None:
    for value in (0, 1.5, "s", b"b", None, True):
        frames, contained = serialization.serialize(value)
        assert len(frames) == 1 and contained == []
        assert serialization.deserialize(frames) == value


def test_contained_object_refs_are_reported() -> None:
    ref = refs.ObjectRef(b"x" * 20, "tcp://127.0.0.1:1", _register=False)
    ref._core = None
    frames, contained = serialization.serialize([1, {"r": ref}])
    assert contained == [ref]
    rebuilt = serialization.deserialize(frames)
    assert rebuilt[1]["r"] == ref


def test_unserializable_value_error_names_the_object() -> None:
    lock = threading.Lock()
    with pytest.raises(serialization.SerializationError, match="lock"):
        serialization.serialize({"held": lock}, "argument")


class _Holder:
    def __init__(self, held: object) -> None:
        self.inner = {"x": [1, held]}


def test_the_error_points_at_the_part_that_cannot_be_pickled() -> None:
    lock = threading.Lock()
    with pytest.raises(serialization.SerializationError) as info:
        task_args.pack((1, {"k": (2, _Holder(lock))}), {}, "my_task")
    text = str(info.value)
    assert "argument 1 of my_task" in text, text
    assert "value['k'][1].inner['x'][1]" in text and "_thread.lock" in text, text

    with pytest.raises(serialization.SerializationError, match=r"keyword argument 'kw' of my_task.*value\[0\]"):
        task_args.pack((), {"kw": [lock]}, "my_task")

    def captures() -> object:
        return lock

    with pytest.raises(serialization.SerializationError, match="captured variable 'lock'"):
        serialization.dumps_function(captures, "captures")


def test_lambdas_and_local_classes_serialize_by_value() -> None:
    class Local:
        def __init__(self) -> None:
            self.x = 3

    frames, _ = serialization.serialize((lambda v: v + 1, Local()))
    fn, obj = serialization.deserialize(frames)
    assert fn(1) == 2 and obj.x == 3
