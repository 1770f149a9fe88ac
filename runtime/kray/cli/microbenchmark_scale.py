"""The scale rows of `kray microbenchmark --scale` (issues 18 and 20): many actors started at once from one
driver (time until every one answered its first call, RSS per actor process), placement-group churn, and
the driver memory a million dropped refs leave behind.

Written once against a framework module (`rt`: kray, or ray under `--compare-ray`) with the standard
library only, as microbenchmark_rows. Starts a fresh cluster per row; creates actors and placement groups;
reads RSS and free memory from /proc and the open-files limit (a row that would not fit is skipped, and
says so).
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

ACTOR_COUNTS = (300, 1000, 5000)
# Memory an idle actor's process needs of its own: its USS, measured 14.8 MB (2026-12-07; its RSS, ~25 MB,
# counts pages shared with the others), with room to spare. 5,000 actors need ~78 GiB free.
MEMORY_PER_ACTOR = 16 << 20
# Open files per actor: the driver holds 3 (a socket's mailbox, its connection, the actor's connection
# back), the raylet 4 (the worker's pidfd, stdout and stderr pipes, its connection); they share one limit.
FILES_PER_ACTOR = 7
FILES_RESERVED = 1024
ANSWER_TIMEOUT_S = 1800.0
PG_CHURN = 1000


def actor_row_names(count: int) -> tuple[str, str]:
    return (f"{count:,} actors started at once: time to all answered (s)",
            f"{count:,} actors started at once: RSS per actor (MB)")


PG_ROW = f"placement groups created, ready and removed ({PG_CHURN:,} in a row)"
REFS_DROPPED = 1_000_000
REFS_ROW = f"driver memory kept after {REFS_DROPPED:,} small refs were dropped (% of what they took)"
SCALE_ROWS = (*[name for count in ACTOR_COUNTS for name in actor_row_names(count)], PG_ROW, REFS_ROW)


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident memory from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def actors_at_once(rt: Any, count: int) -> tuple[float, float]:
    """(seconds from the first creation to the last first answer, mean RSS in MB of the actors' processes)
    for `count` actors (`num_cpus=0`) created at once from this driver, each called once."""

    class _Pinged:
        def ping(self) -> int:
            return os.getpid()

    Pinged: Any = rt.remote(num_cpus=0)(_Pinged)
    start = time.perf_counter()
    actors = [Pinged.remote() for _ in range(count)]
    pids = set(rt.get([a.ping.remote() for a in actors], timeout=ANSWER_TIMEOUT_S))
    elapsed = time.perf_counter() - start
    rss = sum(rss_bytes(pid) for pid in pids)
    for actor in actors:
        rt.kill(actor)
    return elapsed, rss / max(1, len(pids)) / 1e6


def placement_group_churn(rt: Any, count: int = PG_CHURN) -> float:
    """Placement groups per second, each created, waited for until ready and removed before the next."""
    start = time.perf_counter()
    for _ in range(count):
        group = rt.util.placement_group([{"CPU": 0.01}])
        rt.get(group.ready(), timeout=60)
        rt.util.remove_placement_group(group)
    return count / (time.perf_counter() - start)


def memory_kept_after_refs_dropped(rt: Any, count: int = REFS_DROPPED) -> float:
    """Put `count` small objects, drop every ref, and return the driver's RSS growth still held, as a
    percentage of the growth at the peak (issue 20 item 7: it must go back)."""
    warm = [rt.put(i) for i in range(1000)]
    del warm
    time.sleep(0.5)
    base = rss_bytes()
    held = [rt.put(i) for i in range(count)]
    peak = rss_bytes()
    del held
    rt.get(rt.put(0))  # a get applies the released refs' decrements
    time.sleep(1.0)
    return max(0.0, (rss_bytes() - base) / max(1, peak - base) * 100)


def why_not(count: int) -> str:
    """Why `count` actors cannot run on this machine ("" when they can): free memory, or the open-files
    hard limit that the driver and raylet raise their soft limits to."""
    available = available_memory()
    if available <= count * MEMORY_PER_ACTOR:
        return (f"{count:,} actors need about {count * MEMORY_PER_ACTOR / (1 << 30):.0f} GiB free "
                f"({MEMORY_PER_ACTOR >> 20} MiB each); {available / (1 << 30):.1f} GiB are")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    needed = count * FILES_PER_ACTOR + FILES_RESERVED
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"{count:,} actors need an open-files limit of {needed:,} (ulimit -Hn); the hard limit here is {hard:,}"
    return ""


class _Fresh:
    """A cluster of its own for one row (`with`), shut down after it."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def __enter__(self) -> None:
        self.rt.init()

    def __exit__(self, *exc: object) -> None:
        self.rt.shutdown()


def fresh_cluster(rt: Any = None) -> _Fresh:
    """A local cluster of its own (kray's unless `rt` says otherwise) for one row, shut down after it."""
    if rt is None:
        import kray

        return _Fresh(kray)
    return _Fresh(rt)


def scale_rows(rt: Any, bench: Any) -> None:
    """Measure the scale rows `bench` wants (it records with `bench.record(name, mean, std, unit)`), each on
    a fresh cluster; a row skipped for lack of memory or open files is `bench.echo`ed."""
    for count in ACTOR_COUNTS:
        names = actor_row_names(count)
        if not any(bench.wants(name) for name in names):
            continue
        reason = why_not(count)
        if reason:
            bench.echo(f"skipped: {reason}")
            continue
        with fresh_cluster(rt):
            elapsed, rss_mb = actors_at_once(rt, count)
        for name, value in zip(names, (elapsed, rss_mb), strict=True):
            if bench.wants(name):
                bench.record(name, value, 0.0, "")
    if bench.wants(PG_ROW):
        with fresh_cluster(rt):
            bench.record(PG_ROW, placement_group_churn(rt), 0.0, "per second")
    if bench.wants(REFS_ROW):
        with fresh_cluster(rt):
            bench.record(REFS_ROW, memory_kept_after_refs_dropped(rt), 0.0, "")
