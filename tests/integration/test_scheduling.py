"""Resources and scheduling: CPU, GPU, memory and custom resources limit concurrency; infeasible tasks
stay pending; nested tasks on one CPU do not deadlock.

Each test starts a cluster of the shape it needs. Concurrency is measured from the [start, end]
times each task records in a file, never from how long anything took.
"""

from __future__ import annotations

import os
from pathlib import Path

import kray
import pytest
from kray import exceptions

from . import helpers, tasklib


@kray.remote
def record(directory: str, seconds: float) -> dict:
    tasklib.record_interval(directory, seconds)
    return kray.get_runtime_context().get_assigned_resources()


@kray.remote
def square(x: int) -> int:
    return x * x


@kray.remote
def fib(n: int) -> int:
    if n < 2:
        return n
    return sum(kray.get([fib.remote(n - 1), fib.remote(n - 2)]))


@kray.remote
def fan_out(k: int) -> int:
    return sum(kray.get([square.remote(i) for i in range(k)]))


@kray.remote
def chain(depth: int) -> int:
    return 0 if depth == 0 else 1 + kray.get(chain.remote(depth - 1))


@kray.remote(num_gpus=1)
def gpu_task(directory: str) -> tuple[dict, str | None]:
    tasklib.record_interval(directory, 0.3)
    return kray.get_runtime_context().get_assigned_resources(), os.environ.get("CUDA_VISIBLE_DEVICES")


def _run_and_measure(tmp_path: Path, name: str, task, count: int, seconds: float = 0.5) -> tuple[int, list]:
    directory = tmp_path / name
    directory.mkdir()
    assigned = kray.get([task.remote(str(directory), seconds) for _ in range(count)], timeout=120)
    intervals = tasklib.read_intervals(directory)
    assert len(intervals) == count, f"{count} tasks ran but {len(intervals)} recorded their times"
    return tasklib.max_overlap(intervals), assigned


def _assert_stays_pending(ref: kray.ObjectRef) -> None:
    ready, not_ready = kray.wait([ref], timeout=1.0)
    assert ready == [] and not_ready == [ref]
    ready, not_ready = kray.wait([ref], timeout=0.5)
    assert ready == [] and not_ready == [ref], "an infeasible task must stay pending"
    kray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(ref, timeout=helpers.WAIT_S)


def test_cpus_limit_how_many_tasks_run_at_once(cluster_factory, tmp_path: Path) -> None:
    cluster_factory(num_cpus=2)
    overlap, assigned = _run_and_measure(tmp_path, "one-cpu", record, 4)
    assert overlap <= 2, f"{overlap} tasks of 1 CPU ran at once on 2 CPUs"
    assert assigned == [{"CPU": 1.0}] * 4
    overlap, _ = _run_and_measure(tmp_path, "two-cpus", record.options(num_cpus=2), 3, 0.3)
    assert overlap == 1, f"{overlap} tasks of 2 CPUs ran at once on 2 CPUs"


def test_custom_resources_limit_concurrency_and_unknown_ones_stay_pending(cluster_factory, tmp_path: Path) -> None:
    cluster_factory(num_cpus=4, resources={"gizmo": 1})
    overlap, assigned = _run_and_measure(tmp_path, "gizmo", record.options(resources={"gizmo": 1}), 3, 0.3)
    assert overlap == 1, f"{overlap} tasks each needing the only gizmo ran at once"
    assert assigned == [{"CPU": 1.0, "gizmo": 1.0}] * 3
    overlap, _ = _run_and_measure(tmp_path, "half-gizmo", record.options(resources={"gizmo": 0.5}), 4, 0.3)
    assert overlap <= 2
    _assert_stays_pending(record.options(resources={"gizmo": 2}).remote(str(tmp_path), 0))
    _assert_stays_pending(record.options(resources={"absent": 1}).remote(str(tmp_path), 0))


def test_gpus_are_accounted_and_assigned(cluster_factory, tmp_path: Path) -> None:
    cluster_factory(num_cpus=2, num_gpus=1)
    directory = tmp_path / "gpu"
    directory.mkdir()
    results = kray.get([gpu_task.remote(str(directory)) for _ in range(2)], timeout=120)
    assert tasklib.max_overlap(tasklib.read_intervals(directory)) == 1
    for assigned, visible in results:
        assert assigned == {"CPU": 1.0, "GPU": 1.0}
        assert visible == "0", "a task given GPU 0 should see CUDA_VISIBLE_DEVICES=0, as in Ray"
    _assert_stays_pending(gpu_task.options(num_gpus=2).remote(str(directory)))


def test_memory_is_accounted(cluster_factory, tmp_path: Path) -> None:
    cluster_factory(num_cpus=2)
    total_memory = kray.cluster_resources()["memory"]
    big = int(total_memory * 0.6)  # two of these do not fit
    overlap, assigned = _run_and_measure(tmp_path, "memory", record.options(memory=big), 2, 0.3)
    assert overlap == 1, "two tasks each asking for 60% of the node's memory ran at once"
    assert assigned[0]["memory"] == pytest.approx(big, rel=0.01)
    _assert_stays_pending(record.options(memory=int(total_memory * 2)).remote(str(tmp_path), 0))


def test_infeasible_task_stays_pending(cluster_factory) -> None:
    cluster_factory(num_cpus=2)
    _assert_stays_pending(square.options(num_cpus=64).remote(1))
    assert kray.get(square.remote(3), timeout=helpers.WAIT_S) == 9  # the rest of the cluster is unaffected


def test_nested_tasks_on_one_cpu_do_not_deadlock(cluster_factory) -> None:
    cluster_factory(num_cpus=1)
    assert kray.get(fan_out.remote(4), timeout=120) == 0 + 1 + 4 + 9
    assert kray.get(chain.remote(3), timeout=120) == 3
    assert kray.get(fib.remote(5), timeout=120) == 5
    # The CPU a blocked task lent out comes back when it finishes.
    helpers.wait_until(lambda: kray.available_resources().get("CPU") == 1, what="the CPU to be returned")
