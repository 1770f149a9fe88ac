"""Retries of failed RayCluster passes with exponential backoff, and a periodic resync of every cluster.

kopf only reacts to events, so a pass that failed on an API error (a quota, an RBAC rule, an object of
someone else's in the way) would wait for the next unrelated event. `Requeuer` runs one scheduler
thread: a failed key comes back after `Backoff.delay(failures)`, a pass that succeeds clears it, and every
known key comes back each `resync_s` (KubeRay requeues a RayCluster every 300 s by default). Passes run on
a small pool of its own threads, through the caller's `run` function (which serializes passes per key).

No timer or daemon of kopf: those would put a finalizer on every RayCluster (see handlers.raycluster).
Threads only; no I/O of its own.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import heapq
import logging
import threading
import time
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)

BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0
RESYNC_S = 300.0
WORKERS = 2


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential delays, capped: base, 2·base, 4·base, ... never above `cap_s`. Pure."""

    base_s: float = BASE_DELAY_S
    cap_s: float = MAX_DELAY_S

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff needs 0 < base ({self.base_s:g} s) <= cap ({self.cap_s:g} s)")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 for the first)."""
        exponent = max(0, failures - 1)
        if exponent >= 64:
            return self.cap_s
        return float(min(self.cap_s, self.base_s * (2 ** exponent)))


class Requeuer:
    """Schedules passes of keys: after failures (with backoff), at given times, and every `resync_s`."""

    def __init__(self, run: Callable[[Hashable], None], backoff: Backoff | None = None,
                 resync_s: float = RESYNC_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self.backoff = backoff or Backoff()
        self.resync_s = resync_s
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0
        self._failures: dict[Hashable, int] = {}
        self._known: dict[Hashable, float] = {}  # key -> when its next resync is due
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopped = False

    # ---- bookkeeping (called from handler threads)

    def track(self, key: Hashable) -> None:
        """Resync `key` every `resync_s` from now on (until `forget`)."""
        with self._cond:
            if key not in self._known:
                self._known[key] = self._clock() + self.resync_s
                self._push(self._known[key], key)

    def forget(self, key: Hashable) -> None:
        """The object is gone: no more retries or resyncs of it."""
        with self._cond:
            self._known.pop(key, None)
            self._failures.pop(key, None)

    def failed(self, key: Hashable) -> float:
        """A pass of `key` failed: retry after the backoff delay; returns that delay."""
        with self._cond:
            count = self._failures.get(key, 0) + 1
            self._failures[key] = count
            delay = self.backoff.delay(count)
            self._push(self._clock() + delay, key)
        return delay

    def succeeded(self, key: Hashable) -> None:
        """A pass of `key` went through: the next failure starts the backoff again."""
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        """Failed passes of `key` in a row."""
        with self._cond:
            return self._failures.get(key, 0)

    def after(self, key: Hashable, delay_s: float) -> None:
        """A pass of `key` in `delay_s` seconds (e.g. when a held-back Pod may be created)."""
        with self._cond:
            self._push(self._clock() + max(0.0, delay_s), key)

    def _push(self, due: float, key: Hashable) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        self._ensure_thread()
        self._cond.notify()

    # ---- the scheduler thread

    def due(self, now: float) -> list[Hashable]:
        """Pop the keys whose time has come (each once); resyncs of tracked keys are rescheduled."""
        with self._cond:
            ready: list[Hashable] = []
            while self._heap and self._heap[0][0] <= now:
                _, _, key = heapq.heappop(self._heap)
                resync_at = self._known.get(key)
                if resync_at is not None and resync_at <= now:
                    self._known[key] = now + self.resync_s
                    self._push(self._known[key], key)
                elif resync_at is None and key not in self._failures:
                    continue  # forgotten, and no retry pending
                if key not in ready:
                    ready.append(key)
            return ready

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopped:
            self._pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="requeue")
            self._thread = threading.Thread(target=self._loop, name="requeue", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                wait = (self._heap[0][0] - self._clock()) if self._heap else None
                if wait is None or wait > 0:
                    self._cond.wait(timeout=wait)
                    continue
            for key in self.due(self._clock()):
                assert self._pool is not None
                self._pool.submit(self._safe_run, key)

    def _safe_run(self, key: Hashable) -> None:
        try:
            self._run(key)
        except Exception as e:  # noqa: BLE001 - the run function reports its own failures
            log.warning("requeued pass of %s failed: %s", key, e)

    def stop(self) -> None:
        """Stop the scheduler thread (tests); pending retries are dropped."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
