"""kray.cancel: pending tasks never run; running ones get a KeyboardInterrupt (force=False) or lose their
worker (force=True); recursive cancellation reaches child tasks; finished tasks are left alone.

One 2-CPU cluster for the module. Tasks signal through files in tmp_path: "started" when they run,
"interrupted" when a KeyboardInterrupt reached them, "finished" when they returned normally.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import kray
import psutil
import pytest
from kray import exceptions

from . import helpers, tasklib

CPUS = 2
cluster = helpers.module_cluster(num_cpus=CPUS)
pytestmark = pytest.mark.usefixtures("cluster")


@kray.remote
def square(x: int) -> int:
    return x * x


@kray.remote
def touch(path: str) -> str:
    Path(path).touch()
    return "ran"


@kray.remote
def gated(gate: str, started: str) -> str:
    Path(started).touch()
    return "opened" if tasklib.wait_for_file(gate) else "gate never opened"


@kray.remote
def interruptible(signals: str) -> str:
    """Runs until its gate opens; notes a KeyboardInterrupt before letting it end the task."""
    base = Path(signals)
    (base / "pid").write_text(str(os.getpid()))
    (base / "started").touch()
    try:
        tasklib.wait_for_file(str(base / "gate"))
    except KeyboardInterrupt:
        (base / "interrupted").touch()
        raise
    (base / "finished").touch()
    return "finished"


@kray.remote
def stubborn(signals: str) -> str:
    """Ignores KeyboardInterrupt: only force=True can stop it before its gate opens."""
    base = Path(signals)
    (base / "pid").write_text(str(os.getpid()))
    (base / "started").touch()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (base / "gate").exists():
        try:
            time.sleep(0.02)
        except KeyboardInterrupt:
            (base / "interrupted").touch()
    return "finished"


@kray.remote
def parent(signals: str) -> str:
    return kray.get(interruptible.remote(signals))


def _signals(tmp_path: Path, name: str) -> Path:
    base = tmp_path / name
    base.mkdir()
    return base


def _wait_started(base: Path) -> int:
    helpers.wait_until((base / "started").exists, what=f"task {base.name} to start")
    return int((base / "pid").read_text())


def _idle_cluster() -> None:
    helpers.wait_until(lambda: kray.available_resources().get("CPU") == CPUS, what="the cluster to be idle")


def test_cancel_a_pending_task(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    blockers = [gated.remote(str(gate), str(tmp_path / f"started-{i}")) for i in range(CPUS)]
    helpers.wait_until(lambda: all((tmp_path / f"started-{i}").exists() for i in range(CPUS)),
                       what="the blockers to take every CPU")
    marker = tmp_path / "ran"
    pending = touch.remote(str(marker))
    kray.cancel(pending)
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(pending, timeout=helpers.WAIT_S)
    gate.touch()
    assert kray.get(blockers, timeout=helpers.WAIT_S) == ["opened"] * CPUS
    assert kray.get(touch.remote(str(tmp_path / "after")), timeout=helpers.WAIT_S) == "ran"
    assert not marker.exists(), "a task cancelled while pending ran anyway"
    _idle_cluster()


def test_cancel_a_running_task_raises_keyboard_interrupt_in_it(tmp_path: Path) -> None:
    base = _signals(tmp_path, "running")
    ref = interruptible.remote(str(base))
    _wait_started(base)
    kray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(ref, timeout=helpers.WAIT_S)
    helpers.wait_until((base / "interrupted").exists, what="the KeyboardInterrupt to reach the task")
    assert not (base / "finished").exists()
    assert kray.get(square.remote(4), timeout=helpers.WAIT_S) == 16
    _idle_cluster()


def test_force_cancel_kills_the_worker(tmp_path: Path) -> None:
    base = _signals(tmp_path, "forced")
    ref = stubborn.remote(str(base))
    pid = _wait_started(base)
    kray.cancel(ref, force=True)
    # Ray documents WorkerCrashedError for force=True; TaskCancelledError says the same more precisely.
    with pytest.raises((exceptions.TaskCancelledError, exceptions.WorkerCrashedError)):
        kray.get(ref, timeout=helpers.WAIT_S)
    helpers.wait_until(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        what=f"worker {pid} to be killed",
    )
    (base / "gate").touch()
    assert not (base / "finished").exists()
    assert kray.get(square.remote(5), timeout=helpers.WAIT_S) == 25
    _idle_cluster()


def test_cancel_is_recursive_by_default(tmp_path: Path) -> None:
    base = _signals(tmp_path, "child")
    ref = parent.remote(str(base))
    _wait_started(base)
    kray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(ref, timeout=helpers.WAIT_S)
    helpers.wait_until((base / "interrupted").exists, what="the child task to be cancelled too")
    _idle_cluster()


def test_cancel_not_recursive_leaves_children_running(tmp_path: Path) -> None:
    base = _signals(tmp_path, "child")
    ref = parent.remote(str(base))
    _wait_started(base)
    kray.cancel(ref, recursive=False)
    with pytest.raises(exceptions.TaskCancelledError):
        kray.get(ref, timeout=helpers.WAIT_S)
    (base / "gate").touch()
    helpers.wait_until((base / "finished").exists, what="the child to finish on its own")
    assert not (base / "interrupted").exists()
    _idle_cluster()


def test_cancel_a_finished_task_does_nothing() -> None:
    ref = square.remote(6)
    assert kray.get(ref, timeout=helpers.WAIT_S) == 36
    kray.cancel(ref)
    assert kray.get(ref, timeout=helpers.WAIT_S) == 36
