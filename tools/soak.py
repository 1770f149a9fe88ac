"""A long soak of one local cluster (issue 15's "1-hour soak of 1 million tasks and 10,000 short-lived
actors"): the churn load of `kray microbenchmark --scale` (no-op tasks in batches; short-lived actors
that hand the driver a borrowed object and are killed) spread evenly over the run, with the GCS's and
the raylet's RSS, the tables that must not grow (against the first interval) and the bounded caches'
sizes (those of the dead: task attempts, dead actors, recent owner deaths, ...) sampled after each.

    .venv/bin/python tools/soak.py --minutes 60 --tasks 1000000 --actors 10000

Prints one line per interval and a summary: RSS after the warm-up interval, at the end, the largest,
and the growth over the second half of the run (what a leak would show as a slope). Task-event and
dead-actor caches fill up to Ray's bounds first (100,000 attempts), so the first intervals grow.
"""

from __future__ import annotations

import argparse
import json
import time

import kray
from kray.cli import microbenchmark_churn as churn

MiB = 1 << 20


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the soak runs (default 60)")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="no-op tasks in all (default 1,000,000)")
    parser.add_argument("--actors", type=int, default=10_000, help="short-lived actors in all (default 10,000)")
    parser.add_argument("--intervals", type=int, default=60, help="samples over the run (default 60)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster (default 2)")
    parser.add_argument("--json", help="also write every sample to this file")
    return parser.parse_args()


def main() -> None:
    args = _parse()
    interval_s = args.minutes * 60.0 / args.intervals
    kray.init(num_cpus=args.num_cpus)
    samples = []
    done_tasks = done_actors = 0
    start = time.monotonic()
    baseline: dict[str, int] = {}  # the tables after the first interval (every shape and connection made)
    for i in range(1, args.intervals + 1):
        began = time.monotonic()
        tasks = args.tasks * i // args.intervals - done_tasks
        actors = args.actors * i // args.intervals - done_actors
        churn.churn(tasks, actors)
        done_tasks += tasks
        done_actors += actors
        sizes = churn.settled_table_sizes()
        rss = churn.server_rss()
        baseline = baseline or sizes
        sample = {"interval": i, "minutes": round((time.monotonic() - start) / 60, 2), "tasks": done_tasks,
                  "actors": done_actors, "gcs_mib": round(rss["gcs"] / MiB, 1),
                  "raylet_mib": round(rss["raylet"] / MiB, 1), "grown": churn.grown(baseline, sizes),
                  "caches": {name: sizes[name] for name in churn.CACHES if name in sizes}}
        samples.append(sample)
        print(json.dumps(sample), flush=True)
        time.sleep(max(0.0, interval_s - (time.monotonic() - began)))
    kray.shutdown()
    half = samples[len(samples) // 2]
    last = samples[-1]
    summary = {
        "minutes": last["minutes"], "tasks": done_tasks, "actors": done_actors,
        "gcs_mib_after_first_interval": samples[0]["gcs_mib"], "gcs_mib_end": last["gcs_mib"],
        "gcs_mib_max": max(s["gcs_mib"] for s in samples),
        "gcs_mib_second_half_growth": round(last["gcs_mib"] - half["gcs_mib"], 1),
        "raylet_mib_after_first_interval": samples[0]["raylet_mib"], "raylet_mib_end": last["raylet_mib"],
        "raylet_mib_max": max(s["raylet_mib"] for s in samples),
        "raylet_mib_second_half_growth": round(last["raylet_mib"] - half["raylet_mib"], 1),
        "tables_grown_at_end": last["grown"],
    }
    print("SUMMARY " + json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"samples": samples, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
