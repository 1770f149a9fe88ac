"""`kray microbenchmark`: the loops of Ray's `ray microbenchmark`, on a local kray cluster, as a table.

Starts a local cluster (and fresh driver subprocesses for the startup row), runs time-boxed loops
in this process and prints each row as it completes, then the whole table.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import psutil

import kray
from kray.cli import (
    microbenchmark_actors,
    microbenchmark_churn,
    microbenchmark_idle,
    microbenchmark_jobs,
    microbenchmark_scale,
)

PER_SECOND = "per second"

# Rows measured on the cluster this process starts, in the order they run (Ray's names and order).
CLUSTER_ROWS = (
    "idle local cluster RSS (MB)",
    "single client get calls (Plasma Store)",
    "single client put calls (Plasma Store)",
    "multi client put calls (Plasma Store)",
    "single client put gigabytes",
    "single client tasks and get batch",
    "multi client put gigabytes",
    "single client get object containing 10k refs",
    "single client wait 1k refs",
    "single client tasks sync",
    "single client tasks async",
    "multi client tasks async",
)

# A fresh interpreter measures kray.init() plus the first task's result (the import is excluded).
_STARTUP_PROBE = """
import time
import kray

@kray.remote
def one():
    return 1

start = time.perf_counter()
kray.init()
assert kray.get(one.remote()) == 1
print(time.perf_counter() - start)
kray.shutdown()
"""


@dataclasses.dataclass(frozen=True)
class Result:
    """One row: `mean` and `std` over the rounds; `unit` is "per second" or empty when the name says it."""

    name: str
    mean: float
    std: float
    unit: str = PER_SECOND

    def line(self) -> str:
        words = [self.name, self.unit] if self.unit else [self.name]
        return " ".join(words + [f"{self.mean:.2f}", "+-", f"{self.std:.2f}"])


class Bench:
    """Runs the rows whose name contains `pattern`, each for about `duration` seconds."""

    def __init__(self, pattern: str = "", duration: float = 3.0, echo: Callable[[str], None] = click.echo) -> None:
        self.pattern = pattern
        self.duration = duration
        self.echo = echo
        self.results: list[Result] = []

    def wants(self, name: str) -> bool:
        return self.pattern in name

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.echo(result.line())

    def timeit(self, name: str, fn: Callable[[], Any], multiplier: float = 1) -> None:
        """Ray's timeit, time-boxed: a warm-up, then rounds of `step` calls; rate = multiplier x calls / s."""
        if not self.wants(name):
            return
        warmup_until = time.perf_counter() + self.duration * 0.2
        calls = 0
        while True:
            fn()
            calls += 1
            if time.perf_counter() >= warmup_until:
                break
        round_s = self.duration * 0.8 / 4
        per_call = self.duration * 0.2 / calls
        step = max(1, int(round_s / max(per_call, 1e-9) / 4))
        rates: list[float] = []
        box_until = time.perf_counter() + self.duration * 0.8
        while len(rates) < 2 or time.perf_counter() < box_until:
            start = time.perf_counter()
            done = 0
            while True:
                for _ in range(step):
                    fn()
                done += step
                if time.perf_counter() - start >= round_s:
                    break
            rates.append(multiplier * done / (time.perf_counter() - start))
        self.add(Result(name, statistics.fmean(rates), statistics.pstdev(rates)))


# --- remote functions of Ray's loops -------------------------------------------------------------


@kray.remote
def small_value() -> bytes:
    return b"ok"


@kray.remote(num_cpus=0)
class BatchClient:
    """Ray's client actor of the "multi client tasks async" row."""

    def small_value_batch(self, n: int) -> int:
        kray.get([small_value.remote() for _ in range(n)])
        return 0


@kray.remote
def create_object_containing_ref() -> list:
    return [kray.put(1) for _ in range(10000)]


@kray.remote
def do_put_small() -> None:
    for _ in range(100):
        kray.put(0)


@kray.remote
def do_put() -> None:
    import numpy as np

    for _ in range(10):
        kray.put(np.zeros(10 * 1024 * 1024, dtype=np.int64))


# --- rows ----------------------------------------------------------------------------------------


def startup_latency(bench: Bench, runs: int = 3) -> None:
    """kray.init() plus the first task's result, each run in a fresh interpreter."""
    name = "init + first task latency (s)"
    if not bench.wants(name):
        return
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _STARTUP_PROBE], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise click.ClickException(f"the startup probe failed:\n{done.stdout}{done.stderr}")
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    bench.add(Result(name, statistics.fmean(samples), statistics.pstdev(samples), unit=""))


def idle_cluster_rss(bench: Bench) -> None:
    """RSS summed over every kray process of the running local cluster (the driver excluded)."""
    name = "idle local cluster RSS (MB)"
    if not bench.wants(name):
        return
    kray.get(small_value.remote())  # a worker exists in any real use of a cluster
    time.sleep(1.0)  # let start-up work settle: this row is about an idle cluster
    total = 0
    for proc in psutil.Process().children(recursive=True):
        try:
            if "kray" in " ".join(proc.cmdline()):
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    bench.add(Result(name, total / 1e6, 0.0, unit=""))


def object_rows(bench: Bench) -> None:
    try:
        import numpy as np
    except ImportError as e:
        raise click.ClickException("kray microbenchmark needs numpy: pip install numpy") from e

    value = kray.put(0)
    bench.timeit("single client get calls (Plasma Store)", lambda: kray.get(value))
    bench.timeit("single client put calls (Plasma Store)", lambda: kray.put(0))
    bench.timeit(
        "multi client put calls (Plasma Store)",
        lambda: kray.get([do_put_small.remote() for _ in range(10)]),
        1000,
    )
    if bench.wants("single client put gigabytes"):
        arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)  # 0.8 GB
        bench.timeit("single client put gigabytes", lambda: kray.put(arr), 8 * 0.1)
        del arr
    bench.timeit(
        "single client tasks and get batch", lambda: kray.get([small_value.remote() for _ in range(1000)])
    )
    bench.timeit("multi client put gigabytes", lambda: kray.get([do_put.remote() for _ in range(10)]), 10 * 8 * 0.1)
    if bench.wants("single client get object containing 10k refs"):
        containing = create_object_containing_ref.remote()
        bench.timeit("single client get object containing 10k refs", lambda: kray.get(containing))
        del containing


def _wait_1k_refs() -> None:
    not_ready = [small_value.remote() for _ in range(1000)]
    fetch_local = True  # as in Ray: ask for the fetch once, then only poll
    for _ in range(1000):
        _ready, not_ready = kray.wait(not_ready, fetch_local=fetch_local)
        fetch_local = False


def task_rows(bench: Bench) -> None:
    bench.timeit("single client wait 1k refs", _wait_1k_refs)
    bench.timeit("single client tasks sync", lambda: kray.get(small_value.remote()))
    bench.timeit(
        "single client tasks async", lambda: kray.get([small_value.remote() for _ in range(1000)]), 1000
    )
    # Ray drives this row from cpu_count // 2 actors, each submitting a batch of tasks and waiting for
    # them (Ray's batch is 10,000 tasks; 1,000 here, so that several rounds fit in the time box).
    n = 1000
    clients = [BatchClient.remote() for _ in range(max(1, (os.cpu_count() or 2) // 2))]
    kray.get([c.small_value_batch.remote(1) for c in clients])
    bench.timeit("multi client tasks async", lambda: kray.get([c.small_value_batch.remote(n) for c in clients]),
                 n * len(clients))
    for c in clients:
        kray.kill(c)


def actor_rows(bench: Bench) -> None:
    """Ray's actor rows, in Ray's order, after the task rows (see microbenchmark_actors)."""
    if any(bench.wants(name) for name in microbenchmark_actors.ACTOR_ROWS):
        microbenchmark_actors.actor_rows(bench)


def print_table(results: list[Result], echo: Callable[[str], None] = click.echo) -> None:
    if not results:
        echo("no benchmark matched the filter")
        return
    width = max(len(r.name) for r in results)
    echo("")
    echo(f"{'metric':<{width}}  {'rate':>14}  {'± stddev':>12}  unit")
    echo(f"{'-' * width}  {'-' * 14}  {'-' * 12}  {'-' * 10}")
    for r in results:
        echo(f"{r.name:<{width}}  {r.mean:>14,.2f}  {r.std:>12,.2f}  {r.unit or '(see name)'}")


def run(pattern: str = "", duration: float = 3.0, scale: bool = False) -> list[Result]:
    """Run the microbenchmark rows that match `pattern` (with `scale`, the scale rows and the idle rows
    instead of Ray's loops); returns the results after printing them."""
    bench = Bench(pattern, duration)
    if scale:
        microbenchmark_scale.scale_rows(
            bench, lambda name, value, unit: bench.add(Result(name, value, 0.0, unit=unit)), bench.echo)
        microbenchmark_churn.churn_rows(bench, lambda name, value, unit: bench.add(Result(name, value, 0.0, unit=unit)))
        for name, seconds in microbenchmark_idle.idle_rows(bench):
            bench.add(Result(name, seconds, 0.0, unit=""))
        print_table(bench.results)
        return bench.results
    startup_latency(bench)  # before this process starts its own cluster, so the two do not compete
    if any(bench.wants(name) for name in (*CLUSTER_ROWS, *microbenchmark_actors.ACTOR_ROWS)):
        kray.init()
        try:
            idle_cluster_rss(bench)
            object_rows(bench)
            task_rows(bench)
            actor_rows(bench)
        finally:
            kray.shutdown()
    for name, seconds in microbenchmark_idle.idle_rows(bench):
        bench.add(Result(name, seconds, 0.0, unit=""))
    microbenchmark_jobs.job_rows(bench)
    print_table(bench.results)
    return bench.results


@click.command("microbenchmark")
@click.option("--filter", "pattern", default="", help="Run only the rows whose name contains this text.")
@click.option(
    "--duration", default=3.0, show_default=True, type=click.FloatRange(0.5), help="Seconds spent on each row."
)
@click.option("--scale", is_flag=True,
              help="Run the scale rows instead: 300 and 1,000 actors started at once, placement-group churn, task and actor churn, "
                   "idle CPU per actor and per node (minutes).")
def command(pattern: str, duration: float, scale: bool) -> None:
    """Run Ray's microbenchmark loops on a local kray cluster and print the rates as a table."""
    run(pattern, duration, scale)
