"""The churn rows of `kray microbenchmark --scale` (issue 15 defect 9, issue 20 item 7): many tasks,
short-lived actors and short-lived drivers (each a job of its own) must leave the GCS's and the raylet's
memory, and every table that churn touches, flat (the GCS keeps finished jobs' records up to a bound).

`churn` runs the load on the cluster this process is attached to (drivers as subprocesses); `table_sizes` reads the GCS's table
sizes (GetTableSizes, answered on its loop) and this driver's own; `server_rss` reads the GCS's and the
local raylet's RSS with psutil (they are children of this process in a local cluster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil

import kray
from kray.cli import microbenchmark_scale
from kray.core import refs
from kray.protocol import debug_messages, wire

TASKS = 20_000
ACTORS = 500
DRIVERS = 50
TASK_BATCH = 1000
ACTOR_BATCH = 10
MiB = 1 << 20

_LOAD = f"{TASKS:,} tasks, {ACTORS:,} short-lived actors and {DRIVERS} drivers"
CHURN_ROWS = (
    f"GCS RSS growth over {_LOAD} (MB)",
    f"raylet RSS growth over {_LOAD} (MB)",
    f"table entries grown over {_LOAD} (caches of the dead excluded)",
)
# A short-lived driver: connects, runs a task, leaves (its job ends).
_DRIVER = """
import kray

@kray.remote
def one():
    return 1

kray.init(address=ADDRESS)
assert kray.get(one.remote(), timeout=300) == 1
kray.shutdown()
"""
# Tables that hold what is dead, up to a bound of Ray's: not "flat" until the bound is reached.
CACHES = ("task_event_attempts", "task_event_infos", "task_event_evicted", "task_event_ended", "actors", "dead_actors", "actor_subscribers", "recent_owner_deaths", "jobs",
          "driver.dead_actor_queues", "driver.actor_queues")


@kray.remote
def _noop(i: int) -> int:
    return i


@kray.remote(num_cpus=0)
class _ShortLived:
    """Owns an object it hands out by reference: its death reaches the driver, which borrowed it."""

    def make(self) -> list[Any]:
        return [kray.put(b"x" * 64)]


def short_lived_drivers(count: int) -> None:
    """Run `count` drivers, one after the other, each a process of its own attached to this driver's
    cluster (with its token): each registers a job, runs a task and shuts down."""
    core = refs.get_core()
    address = core.gcs_address.removeprefix("tcp://")
    env = {**os.environ, "KRAY_CLUSTER_TOKEN": wire.get_token() or ""}
    env.pop("KRAY_ADDRESS", None)
    for _ in range(count):
        done = subprocess.run([sys.executable, "-c", _DRIVER.replace("ADDRESS", repr(address))], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"a short-lived driver failed:\n{done.stdout}{done.stderr}")


def churn(tasks: int, actors: int, drivers: int = 0) -> None:
    """Run `tasks` no-op tasks (in batches), `actors` actors that each hand out a borrowed object and
    are killed, `ACTOR_BATCH` at a time, and `drivers` short-lived drivers."""
    for start in range(0, tasks, TASK_BATCH):
        count = min(TASK_BATCH, tasks - start)
        kray.get([_noop.remote(i) for i in range(count)], timeout=600)
    for start in range(0, actors, ACTOR_BATCH):
        batch = [_ShortLived.remote() for _ in range(min(ACTOR_BATCH, actors - start))]  # type: ignore[attr-defined]
        borrowed = kray.get([a.make.remote() for a in batch], timeout=600)
        assert kray.get([b[0] for b in borrowed], timeout=600) == [b"x" * 64] * len(batch)
        for actor in batch:
            kray.kill(actor)
        del borrowed
    short_lived_drivers(drivers)


def table_sizes() -> dict[str, int]:
    """The GCS's table sizes, and this driver's (prefixed "driver.")."""
    core = refs.get_core()
    sizes: dict[str, int] = dict(core.call(core.gcs_address, lambda rid: debug_messages.GetTableSizes(rid)))
    submitter = core.submitter
    sizes.update({
        "driver.connections": len(core.loop._peers),
        "driver.pending_requests": len(core.loop._pending),
        "driver.task_queues": len(submitter.queues),
        "driver.tasks": len(submitter.tasks),
        "driver.leases": len(submitter.leases),
        "driver.actor_queues": len(submitter.actors.actors),
        "driver.dead_actor_queues": len(submitter.actors.dead_actors.order),
        "driver.watched_owners": len(core.owner_watch.watched),
        "driver.owner_requests": len(core.owner_watch.requests),
    })
    return sizes


def settled_table_sizes(timeout: float = 60.0) -> dict[str, int]:
    """`table_sizes()` once every killed actor's death has reached the GCS and this driver (or at the
    timeout, whatever they are then)."""
    deadline = time.monotonic() + timeout
    while True:
        sizes = table_sizes()
        done = (sizes["owner_watchers"] == 0 and sizes["driver.watched_owners"] == 0
                and sizes["actors"] == sizes["dead_actors"])
        if done or time.monotonic() > deadline:
            return sizes
        time.sleep(0.1)


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Tables (caches of the dead excluded) that hold more entries after than before."""
    return {name: after[name] - before.get(name, 0) for name in after
            if name not in CACHES and after[name] > before.get(name, 0)}


def server_rss() -> dict[str, int]:
    """RSS in bytes of this process's local GCS and raylet (0 when not found)."""
    found = {"gcs": 0, "raylet": 0}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            for name in found:
                if f"-m kray.{name} " in cmdline:
                    found[name] = proc.memory_info().rss
        except psutil.Error:
            continue
    return found


def churn_rows(bench: Any, add: Callable[[str, float, str], None]) -> None:
    """Measure the churn rows `bench` (a microbenchmark.Bench) wants on a fresh local cluster: a warm-up
    tenth of the load first, then the whole load; RSS and table growth are measured across the latter."""
    if not any(bench.wants(name) for name in CHURN_ROWS):
        return
    with microbenchmark_scale.fresh_cluster():
        churn(TASKS // 10, ACTORS // 10, DRIVERS // 10)
        sizes = settled_table_sizes()
        rss = server_rss()
        churn(TASKS, ACTORS, DRIVERS)
        sizes_after = settled_table_sizes()
        rss_after = server_rss()
    values = ((rss_after["gcs"] - rss["gcs"]) / MiB, (rss_after["raylet"] - rss["raylet"]) / MiB,
              float(sum(grown(sizes, sizes_after).values())))
    for name, value in zip(CHURN_ROWS, values, strict=True):
        if bench.wants(name):
            add(name, value, "")
