"""The idle rows of `kray microbenchmark`: CPU-seconds that each kind of kray process spends in 10 s
while nothing happens, on a local cluster holding 100 idle actors (issue 20's goal: under 0.5 s in all).

Starts its own local cluster and actors; reads the CPU times of its child processes with psutil.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

import kray

IDLE_ACTORS = 100
WINDOW_S = 10.0
SETTLE_S = 3.0  # start-up work (imports, first flushes, trims) ends before the window opens

IDLE_ROWS = (
    "idle CPU per 10 s: GCS (s)",
    "idle CPU per 10 s: raylet (s)",
    "idle CPU per 10 s: per idle actor (ms)",
    "idle CPU per 10 s: driver (s)",
    f"idle CPU per 10 s: {IDLE_ACTORS} idle actors + node (s)",
)


class _Idle:
    def pid(self) -> int:
        return os.getpid()


Idle: Any = kray.remote(num_cpus=0)(_Idle)


def _kind(proc: psutil.Process, actor_pids: set[int]) -> str:
    if proc.pid in actor_pids:
        return "actor"
    cmdline = " ".join(proc.cmdline())
    for kind in ("gcs", "raylet", "worker", "dashboard"):
        if f"kray.{kind}" in cmdline:
            return kind
    return "other"


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(window_s: float = WINDOW_S) -> dict[str, float]:
    """CPU-seconds per 10 s of each process kind of the running local cluster, with IDLE_ACTORS idle actors."""
    actors = [Idle.remote() for _ in range(IDLE_ACTORS)]
    actor_pids = set(kray.get([a.pid.remote() for a in actors], timeout=900))
    time.sleep(SETTLE_S)
    me = psutil.Process()
    procs = [p for p in me.children(recursive=True) if _kind(p, actor_pids) != "other"]
    before = {p.pid: _cpu(p) for p in procs}
    mine = _cpu(me)
    time.sleep(window_s)
    scale = 10.0 / window_s
    spent: dict[str, float] = {"driver": (_cpu(me) - mine) * scale}
    for proc in procs:
        try:
            used = (_cpu(proc) - before[proc.pid]) * scale
        except psutil.Error:
            continue
        kind = _kind(proc, actor_pids)
        spent[kind] = spent.get(kind, 0.0) + used
    for actor in actors:
        kray.kill(actor)
    return spent


def idle_rows(bench: Any) -> list[tuple[str, float]]:
    """The idle rows that `bench` (a microbenchmark.Bench) wants, as (name, CPU-seconds), measured on
    a fresh local cluster."""
    if not any(bench.wants(name) for name in IDLE_ROWS):
        return []
    kray.init()
    try:
        spent = measure()
    finally:
        kray.shutdown()
    node = sum(v for k, v in spent.items() if k != "driver")
    values = (spent.get("gcs", 0.0), spent.get("raylet", 0.0), spent.get("actor", 0.0) / IDLE_ACTORS * 1000.0,
              spent["driver"], node)
    return [(name, value) for name, value in zip(IDLE_ROWS, values, strict=True) if bench.wants(name)]
