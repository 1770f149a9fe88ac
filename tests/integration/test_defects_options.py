"""Options that kray used to accept and ignore now work as in Ray (issue 15, defect 2): max_calls,
max_pending_calls, @kray.method(max_task_retries=, retry_exceptions=), get_current_placement_group(),
and the refusals of placement_group options kray cannot honour.

One shared local cluster (2 CPUs); actors and placement groups made here are removed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import kray
import psutil
import pytest
from kray import exceptions
from kray.util import (
    get_current_placement_group,
    placement_group,
    remove_placement_group,
    scheduling_strategies,
)

from . import helpers, tasklib

cluster = helpers.module_cluster(num_cpus=2, resources={"accelerator_type:A100": 1})
pytestmark = pytest.mark.usefixtures("cluster")



@kray.remote
def pid() -> int:
    return os.getpid()


def _gone(process_id: int) -> bool:
    try:
        return not helpers.alive([psutil.Process(process_id)])
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("max_calls", [1, 2])
def test_max_calls_retires_the_worker_after_that_many_calls(max_calls: int) -> None:
    pids = [kray.get(pid.options(max_calls=max_calls).remote(), timeout=helpers.WAIT_S) for _ in range(4)]
    assert max(Counter(pids).values()) <= max_calls, pids
    assert len(set(pids)) >= 4 // max_calls
    for old in set(pids) - {pids[-1]}:
        helpers.wait_until(lambda old=old: _gone(old), what=f"worker {old} to exit after max_calls")


def test_max_calls_must_be_a_non_negative_integer() -> None:
    with pytest.raises(ValueError, match="max_calls"):
        pid.options(max_calls=-1)


@kray.remote
class Gated:
    def wait(self, gate: str) -> bool:
        return tasklib.wait_for_file(gate)


def test_max_pending_calls_raises_pending_calls_limit_exceeded(actors, tmp_path: Path) -> None:
    actor = Gated.options(max_pending_calls=2, max_concurrency=1).remote()
    actors.append(actor)
    gate = tmp_path / "gate"
    first = [actor.wait.remote(str(gate)) for _ in range(2)]
    with pytest.raises(exceptions.PendingCallsLimitExceeded, match="max_pending_calls=2"):
        actor.wait.remote(str(gate))
    gate.touch()
    assert kray.get(first, timeout=helpers.WAIT_S) == [True, True]
    assert kray.get(actor.wait.remote(str(gate)), timeout=helpers.WAIT_S) is True  # room again


def test_max_pending_calls_is_validated() -> None:
    with pytest.raises(ValueError, match="max_pending_calls"):
        Gated.options(max_pending_calls=0)


class Flaky(Exception):
    """Raised by a method the first times it is called."""


@kray.remote
class Retrying:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    @kray.method(max_task_retries=2, retry_exceptions=[Flaky])
    def twice_flaky(self) -> int:
        self.calls["twice_flaky"] += 1
        if self.calls["twice_flaky"] <= 2:
            raise Flaky("not yet")
        return self.calls["twice_flaky"]

    @kray.method(max_task_retries=1, retry_exceptions=[Flaky])
    def always_flaky(self) -> None:
        self.calls["always_flaky"] += 1
        raise Flaky("never")

    @kray.method(max_task_retries=3)
    def value_error(self) -> None:
        self.calls["value_error"] += 1
        raise ValueError("not retried: only listed exceptions are")

    def count(self, name: str) -> int:
        return self.calls[name]


def test_method_retry_exceptions_within_max_task_retries(actors) -> None:
    actor = Retrying.remote()
    actors.append(actor)
    assert kray.get(actor.twice_flaky.remote(), timeout=helpers.WAIT_S) == 3
    with pytest.raises(Flaky):
        kray.get(actor.always_flaky.remote(), timeout=helpers.WAIT_S)
    assert kray.get(actor.count.remote("always_flaky"), timeout=helpers.WAIT_S) == 2
    with pytest.raises(ValueError, match="not retried"):
        kray.get(actor.value_error.remote(), timeout=helpers.WAIT_S)
    assert kray.get(actor.count.remote("value_error"), timeout=helpers.WAIT_S) == 1


def test_method_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_task_retries"):
        kray.method(max_task_retries="3")
    with pytest.raises(TypeError, match="retry_exceptions"):
        kray.method(retry_exceptions=["not a class"])
    with pytest.raises(ValueError, match="unknown_option"):
        kray.method(unknown_option=1)


@kray.remote
def current_group() -> str | None:
    group = get_current_placement_group()
    return None if group is None else group.id.hex()


@kray.remote
class GroupReporter:
    def current(self) -> str | None:
        group = get_current_placement_group()
        return None if group is None else group.id.hex()


def test_get_current_placement_group_inside_a_task_and_an_actor(actors) -> None:
    group = placement_group([{"CPU": 1}])
    try:
        assert kray.get(group.ready(), timeout=helpers.WAIT_S)
        strategy = scheduling_strategies.PlacementGroupSchedulingStrategy(group)
        assert kray.get(current_group.options(scheduling_strategy=strategy).remote(), timeout=helpers.WAIT_S) == group.id.hex()
        actor = GroupReporter.options(scheduling_strategy=strategy, num_cpus=1).remote()
        actors.append(actor)
        assert kray.get(actor.current.remote(), timeout=helpers.WAIT_S) == group.id.hex()
        assert kray.get(current_group.remote(), timeout=helpers.WAIT_S) is None
        assert get_current_placement_group() is None  # in the driver
    finally:
        for handle in actors:
            kray.kill(handle)
        remove_placement_group(group)


@kray.remote
def parent_reports_child_group() -> list[Any]:
    import kray.util
    from kray.util.placement_group import placement_group as make_group

    # What `from kray.util import placement_group` leaves in a fresh process: the attribute is the function.
    kray.util.placement_group = make_group
    child = current_group.options(num_cpus=0).remote()
    own = current_group.options(num_cpus=0, placement_group=None).remote()  # opts out of the capture
    # So does a strategy without a group, as Ray's documentation shows.
    escaped = current_group.options(
        num_cpus=0, scheduling_strategy=scheduling_strategies.PlacementGroupSchedulingStrategy(placement_group=None)
    ).remote()
    assert kray.get(escaped) is None
    return [kray.get(child), kray.get(own), kray.get_runtime_context().should_capture_child_tasks_in_placement_group]


@pytest.mark.parametrize("capture", [True, False])
def test_placement_group_capture_child_tasks(capture: bool) -> None:
    group = placement_group([{"CPU": 1}])
    try:
        assert kray.get(group.ready(), timeout=helpers.WAIT_S)
        strategy = scheduling_strategies.PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=capture)
        child, own, flag = kray.get(parent_reports_child_group.options(scheduling_strategy=strategy).remote(),
                                    timeout=helpers.WAIT_S)
        assert child == (group.id.hex() if capture else None)
        assert own is None and flag is capture
    finally:
        remove_placement_group(group)


def test_placement_group_options_kray_cannot_honour_are_refused() -> None:
    with pytest.raises(ValueError, match="_max_cpu_fraction_per_node"):
        placement_group([{"CPU": 1}], _max_cpu_fraction_per_node=0.5)
    with pytest.raises(ValueError, match="bundle_label_selector"):
        placement_group([{"CPU": 1}], bundle_label_selector=[{"zone": "a"}])
    with pytest.raises(TypeError):
        placement_group([{"CPU": 1}], no_such_option=1)  # type: ignore[call-arg]


@kray.remote
def assigned() -> dict[str, float]:
    return kray.get_runtime_context().get_assigned_resources()


def test_accelerator_type_asks_for_a_node_with_that_accelerator() -> None:
    got = kray.get(assigned.options(accelerator_type="A100").remote(), timeout=helpers.WAIT_S)
    assert got.get("accelerator_type:A100") == pytest.approx(0.001)


def test_options_without_meaning_in_kray_warn_once_and_impossible_ones_are_refused() -> None:
    with pytest.raises(ValueError, match="label_selector"):
        pid.options(label_selector={"zone": "a"})
    with pytest.raises(ValueError, match="label_selector"):
        Gated.options(label_selector={"zone": "a"})
    with pytest.warns(UserWarning, match="_metadata"):  # enable_task_events works now (test_task_events)
        quiet = pid.options(_metadata={"library": "x"})
    assert kray.get(quiet.remote(), timeout=helpers.WAIT_S) > 0
