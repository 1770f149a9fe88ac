"""kray.util.inspect_serializability, without processes: it names the path to what cannot be pickled."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from typing import Any

import cloudpickle
import kray.util
import pytest
from kray.experimental import tqdm_ray
from kray.util.serializability import FailureTuple

LOCK = threading.Lock()


def uses_a_global_lock() -> bool:
    return LOCK.locked()


class Connection:
    def __init__(self) -> None:
        self.host = "db"
        self.guard = threading.Lock()


class Service:
    def __init__(self) -> None:
        self.name = "svc"
        self.connection = Connection()


def test_a_serializable_object_passes_quietly_apart_from_the_header() -> None:
    out = io.StringIO()
    ok, failures = kray.util.inspect_serializability({"a": [1, 2]}, name="data", print_file=out)
    assert ok and failures == set()
    assert "Checking Serializability of" in out.getvalue() and "FAIL" not in out.getvalue()


@pytest.fixture
def by_value() -> Iterator[None]:
    """Pickle this module's functions by value, as cloudpickle does for a script's or a notebook's."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


@pytest.mark.usefixtures("by_value")
def test_a_functions_global_is_named() -> None:
    out = io.StringIO()
    ok, failures = kray.util.inspect_serializability(uses_a_global_lock, name="uses_a_global_lock", print_file=out)
    assert not ok
    (failure,) = failures
    assert isinstance(failure, FailureTuple)
    assert failure.path == ("uses_a_global_lock", "LOCK") and failure.name == "LOCK"
    assert failure.obj is LOCK and failure.parent is uses_a_global_lock
    text = out.getvalue()
    assert "Detected 1 global variables" in text and "Serializing 'LOCK'" in text
    assert "path=uses_a_global_lock -> LOCK" in text and "was found to be non-serializable" in text


def test_a_closure_and_nested_attributes_are_walked() -> None:
    service = Service()

    def handler() -> str:
        return service.name

    ok, failures = kray.util.inspect_serializability(handler, print_file=io.StringIO())
    assert not ok
    assert [f.path for f in failures] == [("service", "connection", "guard")]
    assert next(iter(failures)).parent is service.connection


def test_depth_bounds_the_walk() -> None:
    ok, failures = kray.util.inspect_serializability(Service(), name="svc", depth=1, print_file=io.StringIO())
    assert not ok
    assert [f.path for f in failures] == [("svc", "connection")]
    with pytest.raises(ValueError, match="depth"):
        kray.util.inspect_serializability(Service(), depth=-1)


def test_tqdm_lines_show_progress(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Any] = list(tqdm_ray.tqdm(range(4), desc="load", flush_interval_s=0))
    assert seen == [0, 1, 2, 3]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("load:  25%|#####") and " 1/4 " in lines[0]
    assert lines[-1].startswith("load: 100%|####################| 4/4 ")
    bar = tqdm_ray.tqdm(total=None, unit="rows", flush_interval_s=3600)
    bar.update(5)
    bar.close()
    bar.update(1)  # after close: counted, not shown
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[-1].startswith("5rows [")
    with pytest.raises(TypeError, match="without an iterable"):
        iter(tqdm_ray.tqdm(total=3)).__next__()
