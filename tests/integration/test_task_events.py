"""Task events: a known workload's state transitions reach the GCS (kray.util.state.list_tasks) with
their states, attempts, errors, workers and nodes; enable_task_events=False keeps tasks out; the
cluster-wide switch and the GCS's bound (Ray's _system_config names) work."""

from __future__ import annotations

import os
from pathlib import Path

import kray
import pytest
from kray.util import state, state_sources

from . import helpers


@kray.remote
def square(x: int) -> int:
    return x * x

@kray.remote(max_retries=0)
def explode() -> None:
    raise ValueError("boom from explode")

@kray.remote(max_retries=1, retry_exceptions=True)
def flaky(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).write_text("tried")
        raise RuntimeError("first attempt fails")
    return "second attempt"

@kray.remote
def hidden() -> int:
    return 7

@kray.remote(max_restarts=1, max_task_retries=0)
class Phoenix:
    def pid(self) -> int:
        return os.getpid()

    def die(self) -> None:
        os._exit(1)


def _tasks(**equal: object) -> list:
    return state.list_tasks(filters=[(k, "=", v) for k, v in equal.items()], limit=10_000, detail=True)


def test_a_known_workload_is_recorded_with_states_errors_attempts_and_restarts(cluster_factory, tmp_path: Path) -> None:
    cluster_factory(num_cpus=2)
    assert kray.get([square.remote(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="boom from explode"):
        kray.get(explode.remote())
    assert kray.get(flaky.remote(str(tmp_path / "marker"))) == "second attempt"
    assert kray.get(hidden.options(enable_task_events=False).remote()) == 7
    phoenix = Phoenix.remote()
    first_pid = kray.get(phoenix.pid.remote())
    with pytest.raises(kray.exceptions.RayError):
        kray.get(phoenix.die.remote())
    second_pid = helpers.wait_until(lambda: _pid_or_none(phoenix), what="the actor to restart")
    assert second_pid != first_pid

    # The owner reports the end, the worker that ran the task its start: both reports arrive within a second.
    finished = helpers.wait_until(lambda: len(rows := _tasks(name="square", state="FINISHED")) == 5
                                  and all(len(r.events) == 5 for r in rows) and rows,
                                  what=f"the five square tasks to be reported FINISHED ({_seen()})")
    for row in finished:
        assert row.type == "NORMAL_TASK" and row.attempt_number == 0 and row.worker_pid > 0
        assert [e["state"] for e in row.events] == [
            "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING", "FINISHED"]
        assert row.node_id == kray.get_runtime_context().get_node_id()
        assert row.start_time_ms <= row.end_time_ms and row.job_id == kray.get_runtime_context().get_job_id()

    failed = helpers.wait_until(lambda: _tasks(name="explode", state="FAILED"), what="explode reported FAILED")
    assert failed[0].error_type == "TASK_EXECUTION_EXCEPTION"
    assert "boom from explode" in failed[0].error_message

    attempts = helpers.wait_until(lambda: (rows := _tasks(name="flaky")) and len(rows) == 2
                                  and {r.state for r in rows} == {"FAILED", "FINISHED"} and rows,
                                  what="both attempts of flaky")
    by_attempt = {r.attempt_number: r for r in attempts}
    assert by_attempt[0].state == "FAILED" and "first attempt fails" in by_attempt[0].error_message
    assert by_attempt[1].state == "FINISHED"

    # The restart is creation attempt 1, run by the new worker (the killed worker's own last events,
    # not yet sent when it died, are lost with it).
    creations = helpers.wait_until(lambda: _tasks(type="ACTOR_CREATION_TASK", attempt_number=1, state="FINISHED"),
                                   what="the second creation of the restarted actor")
    assert creations[0].func_or_class_name == "Phoenix" and creations[0].state == "FINISHED"
    assert creations[0].worker_pid == second_pid
    died = helpers.wait_until(lambda: _tasks(name="Phoenix.die", state="FAILED"), what="the killed call FAILED")
    assert died[0].type == "ACTOR_TASK" and died[0].error_type in ("ACTOR_DIED", "ACTOR_UNAVAILABLE", "WORKER_DIED")
    actor = state.get_actor(phoenix._actor_id.hex())
    assert actor is not None and actor.num_restarts == 1 and actor.state == "ALIVE"

    assert _tasks(name="hidden") == []  # enable_task_events=False: never recorded


def _seen() -> list:
    return [(r.name, r.state, r.attempt_number) for r in state.list_tasks(limit=100)]


def _pid_or_none(handle: object) -> int | None:
    try:
        return int(kray.get(handle.pid.remote(), timeout=5))  # type: ignore[attr-defined]
    except kray.exceptions.RayError:
        return None


def test_system_config_bounds_the_gcs_and_counts_what_it_dropped(cluster_factory) -> None:
    cluster_factory(num_cpus=1, _system_config={"task_events_max_num_task_in_gcs": 5,
                                               "task_events_report_interval_ms": 100})

    @kray.remote
    def one(i: int) -> int:
        return i

    assert kray.get([one.remote(i) for i in range(20)]) == list(range(20))
    source = state_sources.resolve()

    def settled() -> tuple | None:
        rows, total, dropped = source.tasks([], 100)
        return (rows, total, dropped) if dropped >= 15 and all(r["state"] == "FINISHED" for r in rows) else None

    rows, total, dropped = helpers.wait_until(settled, what="15 of 20 task attempts dropped by the GCS")
    assert total == len(rows) == 5
    assert dropped == 15


def test_system_config_refuses_unknown_keys_and_a_zero_interval_switches_recording_off(cluster_factory) -> None:
    with pytest.raises(ValueError, match="not_a_setting"):
        kray.init(_system_config={"not_a_setting": 1})
    cluster_factory(num_cpus=1, _system_config={"task_events_report_interval_ms": 0})

    @kray.remote
    def quiet() -> int:
        return 1

    @kray.remote
    class Quiet:
        def ping(self) -> int:
            return 1

    assert kray.get([quiet.remote() for _ in range(3)]) == [1, 1, 1]
    assert kray.get(Quiet.remote().ping.remote()) == 1
    assert state.list_tasks() == []
