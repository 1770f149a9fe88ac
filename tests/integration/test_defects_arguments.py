"""Every kind of argument reaches tasks, actor constructors and actor methods intact (issue 15, defect 1).

Kinds: plain scalars and small containers (pickled inline), small and large numpy arrays (pickle-5
out-of-band buffers, inline or in shared memory), top-level ObjectRefs (resolved before the call),
ObjectRefs nested in a list (passed through as refs), each positional and as a keyword argument.
One shared local cluster (2 CPUs); every actor made here is killed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kray
import numpy as np
import pytest

from . import helpers

cluster = helpers.module_cluster(num_cpus=2)
pytestmark = pytest.mark.usefixtures("cluster")


def describe(value: Any) -> Any:
    """A comparable summary of an argument as the callee sees it (a nested ref is fetched)."""
    if isinstance(value, list) and value and isinstance(value[0], kray.ObjectRef):
        return ["nested ref", describe(kray.get(value[0]))]
    if isinstance(value, np.ndarray):
        return ["array", value.dtype.str, value.shape, float(value.sum())]
    return ["value", value]


@kray.remote
def task_describe(first: Any = None, *, second: Any = None) -> list[Any]:
    return [describe(first), describe(second)]


@kray.remote
class Holder:
    """Keeps the constructor's arguments and describes them, or the arguments of a method call."""

    def __init__(self, first: Any = None, *, second: Any = None) -> None:
        self.seen = [describe(first), describe(second)]

    def constructor_arguments(self) -> list[Any]:
        return self.seen

    def method_describe(self, first: Any = None, *, second: Any = None) -> list[Any]:
        return [describe(first), describe(second)]


def _small_array() -> np.ndarray:
    return np.arange(16, dtype=np.float64)  # 128 bytes: an out-of-band buffer, small enough to go inline


def _large_array() -> np.ndarray:
    return np.arange(64 * 1024, dtype=np.float64)  # 512 KiB: goes to shared memory


KINDS: dict[str, Callable[[], tuple[Any, Any]]] = {
    # name -> () -> (the argument to pass, what the callee must see)
    "scalar": lambda: (42, describe(42)),
    "container": lambda: ({"a": [1, 2]}, describe({"a": [1, 2]})),
    "small-array": lambda: (_small_array(), describe(_small_array())),
    "large-array": lambda: (_large_array(), describe(_large_array())),
    "ref": lambda: (kray.put(_small_array()), describe(_small_array())),
    "large-ref": lambda: (kray.put(_large_array()), describe(_large_array())),
    "task-ref": lambda: (task_describe.remote(7), describe([describe(7), describe(None)])),
    "nested-ref": lambda: ([kray.put(_small_array())], ["nested ref", describe(_small_array())]),
}


@pytest.mark.parametrize("as_keyword", [False, True], ids=["positional", "keyword"])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("target", ["task", "actor-constructor", "actor-method"])
def test_argument_kinds_reach_the_callee(target: str, kind: str, as_keyword: bool) -> None:
    value, expected = KINDS[kind]()
    args, kwargs = ((), {"second": value}) if as_keyword else ((value,), {})
    seen_expected = [describe(None), expected] if as_keyword else [expected, describe(None)]
    if target == "task":
        seen = kray.get(task_describe.remote(*args, **kwargs), timeout=60)
    elif target == "actor-constructor":
        actor = Holder.remote(*args, **kwargs)
        try:
            seen = kray.get(actor.constructor_arguments.remote(), timeout=60)
        finally:
            kray.kill(actor)
    else:
        actor = Holder.remote()
        try:
            seen = kray.get(actor.method_describe.remote(*args, **kwargs), timeout=60)
        finally:
            kray.kill(actor)
    assert seen == seen_expected
