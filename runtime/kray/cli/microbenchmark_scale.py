"""The scale rows of `kray microbenchmark --scale` (issue 20): many actors started at once from one
driver (time until every one answered its first call, RSS per actor process), placement-group churn, and
the driver memory a million dropped refs leave behind.

Starts a fresh local cluster per row; creates actors and placement groups; reads the actors' RSS with
psutil and the machine's free memory (a row that would not fit is skipped, and says so).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

import kray
from kray.util.placement_group import placement_group, remove_placement_group

ACTOR_COUNTS = (300, 1000)
# Memory an idle actor's process needs of its own (its RSS, ~30 MB, counts pages shared with the others;
# issue 20 saw 1,000 actors use 8.9 GB in all), with room to spare.
MEMORY_PER_ACTOR = 16 << 20
ANSWER_TIMEOUT_S = 1800.0
PG_CHURN = 1000


def actor_row_names(count: int) -> tuple[str, str]:
    return (f"{count:,} actors started at once: time to all answered (s)",
            f"{count:,} actors started at once: RSS per actor (MB)")


PG_ROW = f"placement groups created, ready and removed ({PG_CHURN:,} in a row)"
REFS_DROPPED = 1_000_000
REFS_ROW = f"driver memory kept after {REFS_DROPPED:,} small refs were dropped (% of what they took)"
SCALE_ROWS = (*[name for count in ACTOR_COUNTS for name in actor_row_names(count)], PG_ROW, REFS_ROW)


class _Pinged:
    def ping(self) -> int:
        return os.getpid()


Pinged: Any = kray.remote(num_cpus=0)(_Pinged)


def actors_at_once(count: int) -> tuple[float, float]:
    """(seconds from the first creation to the last first answer, mean RSS in MB of the actors' processes)
    for `count` actors created at once from this driver, each called once."""
    start = time.perf_counter()
    actors = [Pinged.remote() for _ in range(count)]
    pids = kray.get([a.ping.remote() for a in actors], timeout=ANSWER_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    rss = 0
    for pid in set(pids):
        try:
            rss += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    for actor in actors:
        kray.kill(actor)
    return elapsed, rss / max(1, len(set(pids))) / 1e6


def placement_group_churn(count: int = PG_CHURN) -> float:
    """Placement groups per second, each created, waited for until ready and removed before the next."""
    start = time.perf_counter()
    for _ in range(count):
        group = placement_group([{"CPU": 0.01}])
        kray.get(group.ready(), timeout=60)
        remove_placement_group(group)
    return count / (time.perf_counter() - start)


def memory_kept_after_refs_dropped(count: int = REFS_DROPPED) -> float:
    """Put `count` small objects, drop every ref, and return the driver's RSS growth still held, as a
    percentage of the growth at the peak (issue 20 item 7: it must go back)."""
    me = psutil.Process()
    warm = [kray.put(i) for i in range(1000)]
    del warm
    time.sleep(0.5)
    base = me.memory_info().rss
    held = [kray.put(i) for i in range(count)]
    peak = me.memory_info().rss
    del held
    kray.get(kray.put(0))  # a get applies the released refs' decrements
    time.sleep(1.0)
    return max(0.0, (me.memory_info().rss - base) / max(1, peak - base) * 100)


def _fits(count: int) -> bool:
    return psutil.virtual_memory().available > count * MEMORY_PER_ACTOR


def scale_rows(bench: Any, add: Callable[[str, float, str], None], echo: Callable[[str], None]) -> None:
    """Measure the scale rows `bench` (a microbenchmark.Bench) wants, each on a fresh local cluster, and
    `add(name, value, unit)` each as it completes; a row skipped for lack of memory is `echo`ed."""
    for count in ACTOR_COUNTS:
        names = actor_row_names(count)
        if not any(bench.wants(name) for name in names):
            continue
        if not _fits(count):
            echo(f"skipped: {count:,} actors need about {count * MEMORY_PER_ACTOR >> 30} GiB free; "
                 f"{psutil.virtual_memory().available >> 30} GiB are")
            continue
        with fresh_cluster():
            elapsed, rss_mb = actors_at_once(count)
        for name, value in zip(names, (elapsed, rss_mb), strict=True):
            if bench.wants(name):
                add(name, value, "")
    if bench.wants(PG_ROW):
        with fresh_cluster():
            add(PG_ROW, placement_group_churn(), "per second")
    if bench.wants(REFS_ROW):
        with fresh_cluster():
            add(REFS_ROW, memory_kept_after_refs_dropped(), "")


@contextlib.contextmanager
def fresh_cluster() -> Iterator[None]:
    """A local cluster of its own for one row, shut down after it."""
    kray.init()
    try:
        yield
    finally:
        kray.shutdown()
