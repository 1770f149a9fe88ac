"""Bounded start-up and idle processes (issue 20): 300 actors created at once from one driver on a
2-CPU node all answer while the node keeps serving, and an idle actor's process does not wake on timers.

Starts local clusters with kray.init(); reads /proc of the workers it started.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import kray
import psutil
import pytest

from . import helpers

ACTORS = 300
IDLE_WINDOW_S = 3.0
# Wake-ups an idle actor's process may have in IDLE_WINDOW_S (every thread): before issue 20 its core
# worker flushed every 50 ms and its loop checked requests and its raylet twice a second (~70).
IDLE_WAKEUPS_ALLOWED = 6
REPORT_INTERVAL_S = 1.0  # kray's task-event and metrics flush interval (config: 1000 ms)


@kray.remote(num_cpus=0)
class Numbered:
    def __init__(self, index: int) -> None:
        self.index = index

    def number(self) -> int:
        return self.index

    def pid(self) -> int:
        return os.getpid()

    def started(self) -> int:
        """When this process started, in clock ticks since boot (/proc; pids may wrap, this does not)."""
        with open("/proc/self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])


def test_300_actors_created_at_once_on_a_2_cpu_node_all_answer(
        cluster_factory: Callable[..., helpers.LocalCluster]) -> None:
    cluster_factory(num_cpus=2)
    actors = [Numbered.remote(i) for i in range(ACTORS)]
    calls = [a.number.remote() for a in actors]
    # While the workers start, the node serves everything else.
    assert kray.get(kray.put("still serving"), timeout=60) == "still serving"
    assert kray.available_resources().get("CPU") == 2.0
    assert kray.get(calls, timeout=900) == list(range(ACTORS))
    assert all(n["Alive"] for n in kray.nodes())


def test_queued_actor_creations_get_their_workers_in_order(
        cluster_factory: Callable[..., helpers.LocalCluster], monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker starts at a time: each new worker goes to the oldest creation still waiting, so the
    actors' worker processes were started in the order the actors were created (a worker starts only
    once the one before it registered, so their start times differ)."""
    monkeypatch.setenv("KRAY_WORKER_MAXIMUM_STARTUP_CONCURRENCY", "1")
    cluster_factory(num_cpus=1)
    actors = [Numbered.remote(i) for i in range(12)]
    started = kray.get([a.started.remote() for a in actors], timeout=300)
    assert started == sorted(set(started)), f"workers were not given to creations in order: {started}"


def _wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of `pid` so far (each one is a wake-up from a sleep)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def test_an_idle_actor_does_not_wake_up(cluster_factory: Callable[..., helpers.LocalCluster]) -> None:
    cluster_factory(num_cpus=1)
    actor = Numbered.remote(7)
    assert kray.get(actor.number.remote(), timeout=60) == 7
    pid = kray.get(actor.pid.remote(), timeout=60)
    assert psutil.pid_exists(pid)
    # The calls' task events and metrics are flushed once, a report interval (1 s) after them: that is
    # work, not a timer; the window starts after it.
    time.sleep(2 * REPORT_INTERVAL_S)
    before = _wakeups(pid)
    time.sleep(IDLE_WINDOW_S)
    woke = _wakeups(pid) - before
    assert woke <= IDLE_WAKEUPS_ALLOWED, f"an idle actor woke {woke} times in {IDLE_WINDOW_S:g}s"
    assert kray.get(actor.number.remote(), timeout=60) == 7  # and it still answers at once
