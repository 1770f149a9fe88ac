"""Ray's ray.util.joblib backend (register_ray / register_kray), the names ray.util.multiprocessing
exports beyond Pool, and kray.timeline(), on a real local cluster."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import joblib
import kray
import kray.util.multiprocessing
import numpy as np
import pytest
from joblib import Parallel, delayed
from kray.util.joblib import register_kray, register_ray

from . import helpers

cluster = helpers.module_cluster(num_cpus=3, resources={"joblib_slot": 2})
pytestmark = pytest.mark.usefixtures("cluster")


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(f"bad item {x}")
    return x


def _slots_held(_: int) -> float:
    return kray.get_runtime_context().get_assigned_resources().get("joblib_slot", 0.0)


def _array_sum(array: np.ndarray) -> float:
    return float(array.sum())


def test_ray_backend_runs_parallel_calls_on_the_clusters_cpus() -> None:
    register_ray()
    with joblib.parallel_backend("ray"):  # n_jobs=-1: every CPU of the cluster, as Ray
        assert joblib.effective_n_jobs() == 3
        results = Parallel()(delayed(_square_and_pid)(i) for i in range(40))
        assert [value for value, _ in results] == [i * i for i in range(40)]
        pids = {pid for _, pid in results}
        assert os.getpid() not in pids and 1 <= len(pids) <= 3
        with pytest.raises(KeyError, match="bad item 3"):  # the task's own exception, as joblib raises it
            Parallel()(delayed(_fails_on_three)(i) for i in range(8))
        # The backend is still usable after an aborted call.
        big = np.ones((512, 1024))  # 4 MiB: travels through the object store
        assert Parallel()(delayed(_array_sum)(big) for _ in range(3)) == [float(big.size)] * 3


def test_kray_backend_with_ray_remote_args_and_a_single_job() -> None:
    register_kray()
    with joblib.parallel_backend("kray", n_jobs=2, ray_remote_args={"num_cpus": 0, "resources": {"joblib_slot": 1}}):
        assert Parallel()(delayed(_slots_held)(i) for i in range(6)) == [1.0] * 6
    # Parallel's own ray_remote_args win over the backend's.
    with joblib.parallel_config(backend="kray", n_jobs=2, ray_remote_args={"resources": {"joblib_slot": 1}}):
        assert Parallel(ray_remote_args={"num_cpus": 1})(delayed(_slots_held)(i) for i in range(4)) == [0.0] * 4
    with joblib.parallel_backend("kray", n_jobs=1):  # one job runs in this process, as joblib (and Ray) do
        assert {pid for _, pid in Parallel()(delayed(_square_and_pid)(i) for i in range(3))} == {os.getpid()}
    with pytest.raises(TypeError, match="ray_remote_args"), joblib.parallel_backend("kray", ray_remote_args=[1]):
        pass
    with pytest.raises(ValueError, match="only 3 CPUs"), joblib.parallel_backend("kray", n_jobs=8):
        Parallel()(delayed(_square_and_pid)(i) for i in range(8))


def test_multiprocessing_exports_rays_names() -> None:
    # Ray re-exports the standard library's JoinableQueue and TimeoutError.
    assert kray.util.multiprocessing.JoinableQueue is multiprocessing.JoinableQueue
    assert kray.util.multiprocessing.TimeoutError is multiprocessing.TimeoutError
    queue = kray.util.multiprocessing.JoinableQueue()
    queue.put("item")
    assert queue.get(timeout=helpers.WAIT_S) == "item"
    queue.task_done()
    queue.join()


@kray.remote
def traced_step(i: int) -> int:
    return i


def test_timeline_returns_or_writes_the_chrome_trace(tmp_path: Path) -> None:
    assert kray.get([traced_step.remote(i) for i in range(3)], timeout=helpers.WAIT_S) == [0, 1, 2]

    def traced() -> list[dict[str, Any]]:
        events = kray.timeline()
        assert isinstance(events, list)
        return [e for e in events if e["name"] == "traced_step" and e["args"]["state"] == "FINISHED"]

    steps = helpers.wait_until(lambda: len(traced()) == 3 and traced(), what="three traced_step events")
    assert all(e["ph"] == "X" and e["dur"] >= 0 and e["tid"].startswith("worker ") for e in steps)
    path = tmp_path / "timeline.json"
    assert kray.timeline(filename=str(path)) is None
    written = json.loads(path.read_text())
    assert len([e for e in written if e["name"] == "traced_step"]) >= 3
