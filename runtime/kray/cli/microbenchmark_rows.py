"""The loops of `kray microbenchmark`, written once against a framework module passed in (`rt`: kray, or
ray for `--compare-ray`), so that both run the very same code in one run.

Standard library only, and importable without kray's dependencies: `--compare-ray=PYTHON` runs this file
under another interpreter (`PYTHON -m kray.cli.microbenchmark_rows --framework ray`, with kray's source
on PYTHONPATH), which prints one `ROW {json}` line per result. Rows that need numpy skip where it is
missing, and say so. Starts clusters (rt.init) and fresh interpreters (the start-up row).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PER_SECOND = "per second"
ROW_PREFIX = "ROW "
STARTUP_ROW = "init + first task latency (s)"

# A fresh interpreter measures init() plus the first task's result (the import is excluded).
_STARTUP_PROBE = """
import time
import {framework} as rt

@rt.remote
def one():
    return 1

start = time.perf_counter()
rt.init()
assert rt.get(one.remote()) == 1
print(time.perf_counter() - start)
rt.shutdown()
"""


def time_boxed(fn: Callable[[], Any], duration: float, multiplier: float = 1) -> tuple[float, float]:
    """Ray's timeit, time-boxed: a warm-up, then rounds of `step` calls; (mean, std) of
    multiplier x calls / s over the rounds."""
    warmup_until = time.perf_counter() + duration * 0.2
    calls = 0
    while True:
        fn()
        calls += 1
        if time.perf_counter() >= warmup_until:
            break
    round_s = duration * 0.8 / 4
    per_call = duration * 0.2 / calls
    step = max(1, int(round_s / max(per_call, 1e-9) / 4))
    rates: list[float] = []
    box_until = time.perf_counter() + duration * 0.8
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
    return statistics.fmean(rates), statistics.pstdev(rates)


class Recorder:
    """What the rows need of a bench (`wants`, `timeit`, `record`, `echo`), printing `ROW {json}` lines:
    the bench of a run of this module as a script."""

    def __init__(self, pattern: str, duration: float, out: Callable[[str], None] = print) -> None:
        self.pattern = pattern
        self.duration = duration
        self.out = out

    def wants(self, name: str) -> bool:
        return self.pattern in name

    def timeit(self, name: str, fn: Callable[[], Any], multiplier: float = 1) -> None:
        if self.wants(name):
            mean, std = time_boxed(fn, self.duration, multiplier)
            self.record(name, mean, std, PER_SECOND)

    def record(self, name: str, mean: float, std: float, unit: str) -> None:
        self.out(ROW_PREFIX + json.dumps({"name": name, "mean": mean, "std": std, "unit": unit}))

    def echo(self, line: str) -> None:
        self.out(line)


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The rows a script run printed (its other lines are ignored)."""
    return [json.loads(line[len(ROW_PREFIX):]) for line in text.splitlines() if line.startswith(ROW_PREFIX)]


# --- Ray's loops (python/ray/_private/ray_perf.py) ------------------------------------------------


def object_rows(rt: Any, bench: Any) -> None:
    @rt.remote
    def do_put_small() -> None:
        for _ in range(100):
            rt.put(0)

    @rt.remote
    def do_put() -> None:
        import numpy as np

        for _ in range(10):
            rt.put(np.zeros(10 * 1024 * 1024, dtype=np.int64))

    @rt.remote
    def small_value() -> bytes:
        return b"ok"

    @rt.remote
    def create_object_containing_ref() -> list:
        return [rt.put(1) for _ in range(10000)]

    value = rt.put(0)
    bench.timeit("single client get calls (Plasma Store)", lambda: rt.get(value))
    bench.timeit("single client put calls (Plasma Store)", lambda: rt.put(0))
    bench.timeit("multi client put calls (Plasma Store)", lambda: rt.get([do_put_small.remote() for _ in range(10)]),
                 1000)
    numpy_rows = ("single client put gigabytes", "multi client put gigabytes")
    np: Any
    try:
        import numpy as np
    except ImportError:
        if any(bench.wants(name) for name in numpy_rows):
            bench.echo(f"skipped: {' and '.join(numpy_rows)} need numpy, which {sys.executable} lacks")
        np = None
    if np is not None and bench.wants("single client put gigabytes"):
        arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)  # 0.8 GB
        bench.timeit("single client put gigabytes", lambda: rt.put(arr), 8 * 0.1)
        del arr
    bench.timeit("single client tasks and get batch", lambda: rt.get([small_value.remote() for _ in range(1000)]))
    if np is not None:
        bench.timeit("multi client put gigabytes", lambda: rt.get([do_put.remote() for _ in range(10)]), 10 * 8 * 0.1)
    if bench.wants("single client get object containing 10k refs"):
        containing = create_object_containing_ref.remote()
        bench.timeit("single client get object containing 10k refs", lambda: rt.get(containing))
        del containing


def task_rows(rt: Any, bench: Any) -> None:
    @rt.remote
    def small_value() -> bytes:
        return b"ok"

    class _BatchClient:
        """Ray's client actor of the "multi client tasks async" row."""

        def small_value_batch(self, n: int) -> int:
            rt.get([small_value.remote() for _ in range(n)])
            return 0

    BatchClient: Any = rt.remote(num_cpus=0)(_BatchClient)

    def wait_1k_refs() -> None:
        not_ready = [small_value.remote() for _ in range(1000)]
        fetch_local = True  # as in Ray: ask for the fetch once, then only poll
        for _ in range(1000):
            _ready, not_ready = rt.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False

    bench.timeit("single client wait 1k refs", wait_1k_refs)
    bench.timeit("single client tasks sync", lambda: rt.get(small_value.remote()))
    bench.timeit("single client tasks async", lambda: rt.get([small_value.remote() for _ in range(1000)]), 1000)
    if not bench.wants("multi client tasks async"):
        return
    # Ray drives this row from cpu_count // 2 actors, each submitting a batch of tasks and waiting for
    # them (Ray's batch is 10,000 tasks; 1,000 here, so that several rounds fit in the time box).
    n = 1000
    clients = [BatchClient.remote() for _ in range(max(1, (os.cpu_count() or 2) // 2))]
    rt.get([c.small_value_batch.remote(1) for c in clients])
    bench.timeit("multi client tasks async", lambda: rt.get([c.small_value_batch.remote(n) for c in clients]),
                 n * len(clients))
    for c in clients:
        rt.kill(c)


def startup_latency(framework: str, bench: Any, runs: int = 3) -> None:
    """init() plus the first task's result, each run in a fresh interpreter (this one's python)."""
    if not bench.wants(STARTUP_ROW):
        return
    samples = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", _STARTUP_PROBE.format(framework=framework)],
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the startup probe failed:\n{done.stdout}{done.stderr}")
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    bench.record(STARTUP_ROW, statistics.fmean(samples), statistics.pstdev(samples), "")


# --- a run of this module under another interpreter -----------------------------------------------


def run_rows(rt: Any, framework: str, bench: Any, scale: bool) -> None:
    """The rows both frameworks run: Ray's loops, or (with `scale`) the scale rows that make sense under Ray."""
    from kray.cli import microbenchmark_actors, microbenchmark_scale

    if scale:
        microbenchmark_scale.scale_rows(rt, bench)
        return
    startup_latency(framework, bench)
    rt.init()
    try:
        object_rows(rt, bench)
        task_rows(rt, bench)
        microbenchmark_actors.actor_rows(rt, bench)
    finally:
        rt.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="microbenchmark_rows")
    parser.add_argument("--framework", default="ray", help="the module to run the rows on (ray or kray)")
    parser.add_argument("--filter", default="")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--scale", action="store_true")
    args = parser.parse_args(argv)
    rt = importlib.import_module(args.framework)
    run_rows(rt, args.framework, Recorder(args.filter, args.duration, lambda line: print(line, flush=True)),
             args.scale)


if __name__ == "__main__":
    main()
