"""Tasks and objects on one shared local cluster: remote/options, get/put/wait, ObjectRef arguments,
num_returns, retries, task errors, crashed workers, unserializable arguments, runtime context, nodes.

One cluster for the module (4 CPUs, 2 units of a custom resource); tests leave it idle when they end.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from pathlib import Path

import cloudpickle
import kray
import numpy as np
import pytest
from kray import exceptions

from . import helpers, tasklib

CPUS = 4
cluster = helpers.module_cluster(num_cpus=CPUS, resources={"custom": 2})
pytestmark = pytest.mark.usefixtures("cluster")


class CustomError(Exception):
    """A user's exception class, defined where the driver runs."""


@kray.remote
def echo(x):
    return x


@kray.remote
def square(x: int) -> int:
    return x * x


@kray.remote
def gated(gate: str, started: str | None = None) -> str:
    if started:
        Path(started).touch()
    return "opened" if tasklib.wait_for_file(gate) else "gate never opened"


@kray.remote
def inspect_args(top, in_list, in_dict, *, kw):
    def show(value):
        return ("ref", kray.get(value)) if isinstance(value, kray.ObjectRef) else ("value", value)

    return {"top": show(top), "list": show(in_list[0]), "dict": show(in_dict["k"]), "kw": show(kw)}


@kray.remote
def fetch_pickled(blob: bytes):
    return kray.get(cloudpickle.loads(blob))


@kray.remote
def assigned_resources() -> dict:
    return kray.get_runtime_context().get_assigned_resources()


@kray.remote
def context_in_task() -> dict:
    ctx = kray.get_runtime_context()
    return {
        "job": ctx.get_job_id(),
        "task": ctx.get_task_id(),
        "node": ctx.get_node_id(),
        "resources": ctx.get_assigned_resources(),
        "accelerators": ctx.get_accelerator_ids(),
        "actor": (ctx.get_actor_id(), ctx.get_actor_name()),
        "group": ctx.get_placement_group_id(),
        "gcs": ctx.gcs_address,
    }


def _raise_from_helper(message: str) -> None:
    raise ValueError(message)


@kray.remote
def fail(kind: str, message: str):
    if kind == "value":
        _raise_from_helper(message)
    raise CustomError(message)


# --- remote, options, get, put ------------------------------------------------------------------


def test_remote_returns_an_object_ref() -> None:
    ref = square.remote(4)
    assert isinstance(ref, kray.ObjectRef)
    assert kray.get(ref, timeout=helpers.WAIT_S) == 16


def test_get_a_list_keeps_order() -> None:
    refs = [square.remote(i) for i in range(200)]
    assert kray.get(refs, timeout=helpers.WAIT_S) == [i * i for i in range(200)]
    assert kray.get([], timeout=helpers.WAIT_S) == []


def test_get_timeout_raises_get_timeout_error(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    ref = gated.remote(str(gate))
    try:
        with pytest.raises(exceptions.GetTimeoutError) as info:
            kray.get(ref, timeout=0.5)
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(exceptions.GetTimeoutError):
            kray.get([square.remote(2), ref], timeout=0.5)
    finally:
        gate.touch()
    assert kray.get(ref, timeout=helpers.WAIT_S) == "opened"


def test_put_and_get_round_trip() -> None:
    values = [
        0,
        "text",
        {"nested": [1, 2, (3, 4)], "none": None},
        b"x" * (2 * helpers.MiB),
        np.arange(10),
        np.arange(300_000, dtype=np.float64),
        CustomError("kept as a value"),
    ]
    for value in values:
        ref = kray.put(value)
        assert isinstance(ref, kray.ObjectRef)
        out = kray.get(ref, timeout=helpers.WAIT_S)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(out, value)
        elif isinstance(value, Exception):
            assert type(out) is CustomError and out.args == value.args
        else:
            assert out == value
    # A put object passed to a task arrives as its value.
    assert kray.get(echo.remote(kray.put({"k": 1})), timeout=helpers.WAIT_S) == {"k": 1}


def test_put_of_an_object_ref_is_refused() -> None:
    with pytest.raises(TypeError):
        kray.put(kray.put(1))


def test_options_override_without_changing_the_function() -> None:
    assert kray.get(assigned_resources.remote(), timeout=helpers.WAIT_S) == {"CPU": 1.0}
    two = assigned_resources.options(num_cpus=2, resources={"custom": 1})
    assert kray.get(two.remote(), timeout=helpers.WAIT_S) == {"CPU": 2.0, "custom": 1.0}
    # options() returns a new callable; the original keeps its own.
    assert kray.get(assigned_resources.remote(), timeout=helpers.WAIT_S) == {"CPU": 1.0}
    renamed = echo.options(name="renamed_echo", max_retries=0, num_cpus=0.5)
    assert kray.get(renamed.remote("ok"), timeout=helpers.WAIT_S) == "ok"


def test_remote_decorator_accepts_ray_options() -> None:
    @kray.remote(num_cpus=0.5, num_gpus=0, memory=10 * helpers.MiB, max_retries=1, retry_exceptions=False,
                 name="decorated", resources={"custom": 0.5})
    def decorated(x: int) -> int:
        return x + 1

    assert kray.get(decorated.remote(1), timeout=helpers.WAIT_S) == 2


# --- wait ---------------------------------------------------------------------------------------


def test_wait_returns_ready_and_not_ready(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    fast = [square.remote(i) for i in range(3)]
    slow = [gated.remote(str(gate)) for _ in range(2)]
    refs = [fast[0], slow[0], fast[1], slow[1], fast[2]]
    try:
        ready, not_ready = kray.wait(refs, num_returns=3, timeout=helpers.WAIT_S)
        assert isinstance(ready, list) and isinstance(not_ready, list)
        assert set(ready) == set(fast) and set(not_ready) == set(slow)
        assert ready == [r for r in refs if r in ready], "ready must keep the order of the input"
        assert not_ready == [r for r in refs if r in not_ready]

        ready, not_ready = kray.wait(refs, timeout=helpers.WAIT_S)  # num_returns defaults to 1
        assert len(ready) == 1 and ready[0] in fast and len(not_ready) == 4

        ready, not_ready = kray.wait(slow, timeout=0.3)  # timeout: returns what is ready, maybe nothing
        assert ready == [] and not_ready == slow

        ready, not_ready = kray.wait(refs, num_returns=5, timeout=0.3)
        assert set(ready) == set(fast) and set(not_ready) == set(slow)

        ready, not_ready = kray.wait(fast, num_returns=3, timeout=helpers.WAIT_S, fetch_local=False)
        assert set(ready) == set(fast) and not_ready == []

        with pytest.raises(ValueError):
            kray.wait(fast, num_returns=4)
    finally:
        gate.touch()
    assert kray.get(slow, timeout=helpers.WAIT_S) == ["opened", "opened"]


# --- ObjectRefs as arguments --------------------------------------------------------------------


def test_top_level_refs_are_resolved_and_nested_refs_passed_through() -> None:
    small = kray.put("small")
    big = kray.put(np.arange(100_000))
    produced = square.remote(9)
    out = kray.get(inspect_args.remote(small, [produced], {"k": small}, kw=big), timeout=helpers.WAIT_S)
    assert out["top"] == ("value", "small")
    assert out["list"] == ("ref", 81)
    assert out["dict"] == ("ref", "small")
    kind, array = out["kw"]
    assert kind == "value"
    np.testing.assert_array_equal(array, np.arange(100_000))
    # A task's output passed on to the next task is resolved too.
    assert kray.get(square.remote(square.remote(3)), timeout=helpers.WAIT_S) == 81


def test_a_pickled_ref_can_be_fetched_in_another_task() -> None:
    small, big = kray.put({"payload": 42}), kray.put(np.full(200_000, 7, dtype=np.int32))
    produced = square.remote(12)
    assert kray.get(fetch_pickled.remote(cloudpickle.dumps(small)), timeout=helpers.WAIT_S) == {"payload": 42}
    out = kray.get(fetch_pickled.remote(cloudpickle.dumps(big)), timeout=helpers.WAIT_S)
    np.testing.assert_array_equal(out, np.full(200_000, 7, dtype=np.int32))
    assert kray.get(fetch_pickled.remote(cloudpickle.dumps(produced)), timeout=helpers.WAIT_S) == 144


def test_a_pickled_ref_outlives_the_drivers_own_ref() -> None:
    # As in Ray, pickling a ref out of band keeps its object alive although the driver drops the ref.
    blob = cloudpickle.dumps(kray.put(np.full(200_000, 3, dtype=np.int32)))
    out = kray.get(fetch_pickled.remote(blob), timeout=helpers.WAIT_S)
    np.testing.assert_array_equal(out, np.full(200_000, 3, dtype=np.int32))


# --- num_returns --------------------------------------------------------------------------------


def test_num_returns() -> None:
    @kray.remote(num_returns=3)
    def three():
        return "a", "b", "c"

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert all(isinstance(r, kray.ObjectRef) for r in refs)
    assert kray.get(refs, timeout=helpers.WAIT_S) == ["a", "b", "c"]
    assert kray.get(refs[1], timeout=helpers.WAIT_S) == "b"

    pair = echo.options(num_returns=2).remote((1, [2]))
    assert kray.get(pair, timeout=helpers.WAIT_S) == [1, [2]]

    single = three.options(num_returns=1).remote()
    assert isinstance(single, kray.ObjectRef)
    assert kray.get(single, timeout=helpers.WAIT_S) == ("a", "b", "c")


# --- retries ------------------------------------------------------------------------------------


def test_max_retries_reruns_a_task_whose_worker_died(tmp_path: Path) -> None:
    @kray.remote(max_retries=1)
    def die_first_time(counter: str) -> int:
        attempt = tasklib.bump(counter)
        if attempt == 1:
            os._exit(1)
        return attempt

    counter = tmp_path / "attempts"
    assert kray.get(die_first_time.remote(str(counter)), timeout=helpers.WAIT_S) == 2
    assert tasklib.count(counter) == 2


def test_worker_crash_after_all_retries_raises_worker_crashed_error(tmp_path: Path) -> None:
    @kray.remote(max_retries=2)
    def always_die(counter: str) -> None:
        tasklib.bump(counter)
        os._exit(1)

    counter = tmp_path / "attempts"
    with pytest.raises(exceptions.WorkerCrashedError):
        kray.get(always_die.remote(str(counter)), timeout=helpers.WAIT_S)
    assert tasklib.count(counter) == 3  # the first run and two retries


def test_worker_dying_mid_task_without_retries_raises_worker_crashed_error(tmp_path: Path) -> None:
    @kray.remote(max_retries=0)
    def crash(counter: str) -> None:
        tasklib.bump(counter)
        os._exit(1)

    counter = tmp_path / "attempts"
    with pytest.raises(exceptions.WorkerCrashedError):
        kray.get(crash.remote(str(counter)), timeout=helpers.WAIT_S)
    assert tasklib.count(counter) == 1
    assert kray.get(square.remote(5), timeout=helpers.WAIT_S) == 25  # the cluster carries on


def test_retry_exceptions_true_retries_application_errors(tmp_path: Path) -> None:
    @kray.remote(max_retries=3, retry_exceptions=True)
    def flaky(counter: str) -> int:
        attempt = tasklib.bump(counter)
        if attempt < 3:
            raise ValueError(f"attempt {attempt} fails")
        return attempt

    counter = tmp_path / "attempts"
    assert kray.get(flaky.remote(str(counter)), timeout=helpers.WAIT_S) == 3

    counter_listed = tmp_path / "attempts-listed"
    listed = flaky.options(retry_exceptions=[ValueError])
    assert kray.get(listed.remote(str(counter_listed)), timeout=helpers.WAIT_S) == 3


def test_retry_exceptions_gives_up_after_max_retries(tmp_path: Path) -> None:
    @kray.remote(max_retries=2, retry_exceptions=True)
    def always_fails(counter: str) -> None:
        raise ValueError(f"attempt {tasklib.bump(counter)} fails")

    counter = tmp_path / "attempts"
    with pytest.raises(ValueError, match="attempt 3 fails"):
        kray.get(always_fails.remote(str(counter)), timeout=helpers.WAIT_S)
    assert tasklib.count(counter) == 3


def test_exceptions_outside_retry_exceptions_are_not_retried(tmp_path: Path) -> None:
    @kray.remote(max_retries=3, retry_exceptions=[ValueError])
    def raises_key_error(counter: str) -> None:
        tasklib.bump(counter)
        raise KeyError("not retryable")

    @kray.remote(max_retries=3)  # retry_exceptions defaults to False: system failures only
    def raises_value_error(counter: str) -> None:
        tasklib.bump(counter)
        raise ValueError("not retried by default")

    listed, default = tmp_path / "listed", tmp_path / "default"
    with pytest.raises(KeyError):
        kray.get(raises_key_error.remote(str(listed)), timeout=helpers.WAIT_S)
    with pytest.raises(ValueError):
        kray.get(raises_value_error.remote(str(default)), timeout=helpers.WAIT_S)
    assert tasklib.count(listed) == 1
    assert tasklib.count(default) == 1


# --- errors -------------------------------------------------------------------------------------


def test_task_error_is_an_instance_of_the_original_class_with_the_remote_traceback() -> None:
    with pytest.raises(ValueError) as info:
        kray.get(fail.remote("value", "boom-7341"), timeout=helpers.WAIT_S)
    err = info.value
    assert isinstance(err, exceptions.RayTaskError)
    text = str(err)
    assert "boom-7341" in text
    assert "_raise_from_helper" in text and "fail" in text, f"no remote traceback in:\n{text}"
    assert 'File "' in text, f"no remote traceback in:\n{text}"

    with pytest.raises(CustomError) as info_custom:
        kray.get(fail.remote("custom", "custom-9120"), timeout=helpers.WAIT_S)
    assert isinstance(info_custom.value, exceptions.RayTaskError)
    assert "custom-9120" in str(info_custom.value)

    # A failed task's output passed to another task fails that task with the same error.
    with pytest.raises(ValueError, match="boom-5150"):
        kray.get(echo.remote(fail.remote("value", "boom-5150")), timeout=helpers.WAIT_S)


def test_unserializable_argument_gives_an_error_naming_the_object() -> None:
    lock = threading.Lock()
    with pytest.raises((TypeError, exceptions.RayError)) as info:
        kray.get(echo.remote(lock), timeout=helpers.WAIT_S)
    assert "lock" in str(info.value).lower(), str(info.value)
    with pytest.raises((TypeError, exceptions.RayError)) as info_nested:
        echo.remote([1, {"deep": lock}])
    assert "value[1]['deep']" in str(info_nested.value) and "lock" in str(info_nested.value), str(info_nested.value)
    with pytest.raises((TypeError, exceptions.RayError)) as info_put:
        kray.put({"inside": lock})
    assert "lock" in str(info_put.value).lower(), str(info_put.value)
    assert kray.get(square.remote(3), timeout=helpers.WAIT_S) == 9


# --- runtime context, nodes, resources ----------------------------------------------------------


def test_runtime_context_in_the_driver_and_in_tasks() -> None:
    driver = kray.get_runtime_context()
    job, node = driver.get_job_id(), driver.get_node_id()
    assert isinstance(job, str) and job
    assert isinstance(node, str) and node
    assert driver.get_task_id() is None

    first, second = kray.get([context_in_task.remote(), context_in_task.remote()], timeout=helpers.WAIT_S)
    for seen in (first, second):
        assert seen["job"] == job
        assert seen["node"] == node
        assert isinstance(seen["task"], str) and seen["task"]
        assert seen["resources"] == {"CPU": 1.0}
        assert seen["accelerators"] == {"GPU": []} and seen["actor"] == (None, None) and seen["group"] is None
        assert seen["gcs"] == driver.gcs_address and ":" in seen["gcs"]
    assert first["task"] != second["task"]
    assert node == kray.nodes()[0]["NodeID"]

    big = kray.get(context_in_task.options(num_cpus=2, resources={"custom": 1}).remote(), timeout=helpers.WAIT_S)
    assert big["resources"] == {"CPU": 2.0, "custom": 1.0}


def test_nodes_has_rays_shape() -> None:
    nodes = kray.nodes()
    assert isinstance(nodes, list) and len(nodes) == 1
    node = nodes[0]
    rays_keys = (
        "NodeID", "Alive", "NodeManagerAddress", "NodeManagerHostname", "NodeManagerPort", "ObjectManagerPort",
        "ObjectStoreSocketName", "RayletSocketName", "MetricsExportPort", "NodeName", "RuntimeEnvAgentPort",
        "DeathReason", "DeathReasonMessage", "alive", "Resources", "Labels",
    )
    for key in rays_keys:
        assert key in node, f"kray.nodes()[0] lacks {key!r}: {sorted(node)}"
    assert node["Alive"] is True and node["alive"] is True
    assert node["DeathReason"] == 0 and node["DeathReasonMessage"] == ""
    assert isinstance(node["NodeID"], str) and node["NodeID"]
    ipaddress.ip_address(node["NodeManagerAddress"])
    assert isinstance(node["NodeManagerPort"], int)
    assert node["Resources"]["CPU"] == CPUS
    assert node["Resources"]["custom"] == 2


def test_cluster_and_available_resources(tmp_path: Path) -> None:
    total = kray.cluster_resources()
    assert total["CPU"] == CPUS and total["custom"] == 2
    helpers.wait_until(lambda: kray.available_resources().get("CPU") == CPUS, what="an idle cluster")

    gate = tmp_path / "gate"
    started = [tmp_path / f"started-{i}" for i in range(2)]
    refs = [
        gated.remote(str(gate), str(started[0])),
        gated.options(num_cpus=2, resources={"custom": 1}).remote(str(gate), str(started[1])),
    ]
    try:
        helpers.wait_until(lambda: all(p.exists() for p in started), what="both tasks to start")
        helpers.wait_until(
            lambda: kray.available_resources().get("CPU", 0) == CPUS - 3
            and kray.available_resources().get("custom", 0) == 1,
            what=f"available CPU to drop to {CPUS - 3} and custom to 1",
        )
        assert kray.cluster_resources()["CPU"] == CPUS  # the total does not move
    finally:
        gate.touch()
    assert kray.get(refs, timeout=helpers.WAIT_S) == ["opened", "opened"]
    helpers.wait_until(
        lambda: kray.available_resources().get("CPU") == CPUS and kray.available_resources().get("custom") == 2,
        what="resources to come back",
    )
