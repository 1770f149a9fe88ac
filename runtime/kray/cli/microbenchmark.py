"""`kray microbenchmark`: the loops of Ray's `ray microbenchmark`, on a local kray cluster, as a table.

Starts a local cluster (and fresh driver subprocesses for the startup row), runs time-boxed loops
in this process and prints each row as it completes, then the whole table. The loops themselves live in
microbenchmark_rows / microbenchmark_actors / microbenchmark_scale, written against a framework module,
so that `--compare-ray` runs the same code under Ray (microbenchmark_compare).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import click
import psutil

import kray
from kray.cli import (
    microbenchmark_actors,
    microbenchmark_churn,
    microbenchmark_compare,
    microbenchmark_idle,
    microbenchmark_jobs,
    microbenchmark_rows,
    microbenchmark_scale,
)

PER_SECOND = microbenchmark_rows.PER_SECOND

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

    def record(self, name: str, mean: float, std: float, unit: str) -> None:
        self.add(Result(name, mean, std, unit))

    def timeit(self, name: str, fn: Callable[[], Any], multiplier: float = 1) -> None:
        """Ray's timeit, time-boxed (microbenchmark_rows.time_boxed)."""
        if self.wants(name):
            mean, std = microbenchmark_rows.time_boxed(fn, self.duration, multiplier)
            self.add(Result(name, mean, std))


@kray.remote
def small_value() -> bytes:
    return b"ok"


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


def run(pattern: str = "", duration: float = 3.0, scale: bool = False,
        compare: tuple[str, str] | None = None) -> list[Result]:
    """Run the microbenchmark rows that match `pattern` (with `scale`, the scale rows and the idle rows
    instead of Ray's loops); returns the results after printing them. With `compare` (python, framework),
    the same loops then run under that framework in that interpreter, and a table of ratios follows."""
    bench = Bench(pattern, duration)
    if scale:
        microbenchmark_scale.scale_rows(kray, bench)
        microbenchmark_churn.churn_rows(bench, lambda name, value, unit: bench.add(Result(name, value, 0.0, unit=unit)))
        for name, seconds in microbenchmark_idle.idle_rows(bench):
            bench.add(Result(name, seconds, 0.0, unit=""))
    else:
        # Start-up first, before this process starts its own cluster, so that the two do not compete.
        microbenchmark_rows.startup_latency("kray", bench)
        if any(bench.wants(name) for name in (*CLUSTER_ROWS, *microbenchmark_actors.ACTOR_ROWS)):
            kray.init()
            try:
                idle_cluster_rss(bench)
                microbenchmark_rows.object_rows(kray, bench)
                microbenchmark_rows.task_rows(kray, bench)
                microbenchmark_actors.actor_rows(kray, bench)
            finally:
                kray.shutdown()
        for name, seconds in microbenchmark_idle.idle_rows(bench):
            bench.add(Result(name, seconds, 0.0, unit=""))
        microbenchmark_jobs.job_rows(bench)
    print_table(bench.results)
    if compare is not None:
        python, framework = compare
        other = microbenchmark_compare.run_other(python, framework, pattern, duration, scale, echo=bench.echo)
        microbenchmark_compare.print_ratios(bench.results, other, framework, echo=bench.echo)
    return bench.results


@click.command("microbenchmark")
@click.option("--filter", "pattern", default="", help="Run only the rows whose name contains this text.")
@click.option(
    "--duration", default=3.0, show_default=True, type=click.FloatRange(0.5), help="Seconds spent on each row."
)
@click.option("--scale", is_flag=True,
              help="Run the scale rows instead: 300, 1,000 and 5,000 actors started at once (each skipped, saying "
                   "why, where memory or open files are short), placement-group churn, task and actor churn, "
                   "idle CPU per actor and per node (minutes).")
@click.option("--compare-ray", "compare_ray", is_flag=False, flag_value="-", default=None, metavar="[=PYTHON]",
              help="Then run the same loops under Ray (importable by PYTHON, default this interpreter) in the same "
                   "run, and print kray/Ray ratios per row.")
@click.option("--compare-framework", default="ray", hidden=True,
              help="The module --compare-ray runs the loops on (kray, to test the comparison itself).")
def command(pattern: str, duration: float, scale: bool, compare_ray: str | None, compare_framework: str) -> None:
    """Run Ray's microbenchmark loops on a local kray cluster and print the rates as a table."""
    compare = None
    if compare_ray is not None:
        python = microbenchmark_compare.resolve_python(None if compare_ray == "-" else compare_ray)
        microbenchmark_compare.check_importable(python, compare_framework)  # before minutes of kray rows
        compare = (python, compare_framework)
    run(pattern, duration, scale, compare)
