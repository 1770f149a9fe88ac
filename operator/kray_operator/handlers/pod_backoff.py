"""Back-off of replacements for failed Pods (restartPolicy Never/OnFailure Pods that end in phase Failed).

KubeRay deletes a failed Pod and creates a new one on its next reconcile, at once; a Pod that fails at
start-up then loops as fast as the API server allows. kray does as the kubelet's CrashLoopBackOff does
for containers: the n-th failure in a row of a group holds its new Pods back for `Backoff.delay(n)`
(1 s, 2 s, 4 s ... capped), and a group that has not failed for RESET_AFTER_S starts over.

Memory of the operator process only (a restarted operator starts the back-off over). Bookkeeping under
a lock (passes of different clusters run on different threads); the current time is passed in; no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections.abc import Hashable, Iterable

from kray_operator.builders import observed
from kray_operator.handlers import requeue

BASE_DELAY_S = 1.0
MAX_DELAY_S = 300.0  # the kubelet's CrashLoopBackOff cap
RESET_AFTER_S = 600.0  # the kubelet forgets a container's back-off after 10 min without failure
REASON = "FailedPodBackOff"
HEAD_GROUP = "headgroup"


@dataclasses.dataclass
class GroupFailures:
    """Failures in a row of one group: how many, which Pods, and until when new Pods wait."""

    count: int = 0
    seen: set[str] = dataclasses.field(default_factory=set)
    last_failure: float = 0.0
    not_before: float = 0.0
    until_utc: str = ""  # not_before as an RFC 3339 time, for the status line
    last_pod: str = ""


@dataclasses.dataclass(frozen=True)
class Notice:
    """A newly seen failed Pod: the Event to post."""

    group: str
    pod: str
    count: int
    delay_s: float

    @property
    def message(self) -> str:
        return (f"Pod {self.pod} of group {self.group} failed ({self.count} in a row); its replacement "
                f"is created after a back-off of {self.delay_s:g} s")


class FailedPodBackoff:
    """Failures per (cluster key, group): what to hold back, and the Events and status line to show."""

    def __init__(self, backoff: requeue.Backoff | None = None, reset_after_s: float = RESET_AFTER_S) -> None:
        self.backoff = backoff or requeue.Backoff(BASE_DELAY_S, MAX_DELAY_S)
        self.reset_after_s = reset_after_s
        self._groups: dict[tuple[Hashable, str], GroupFailures] = {}
        self._lock = threading.Lock()

    def observe(self, key: Hashable, pods: Iterable[observed.PodView], now: float,
                wall_now: float) -> list[Notice]:
        """Record the failed Pods of `pods` (each counts once); returns a Notice per new failure.

        `now` is monotonic (time.monotonic()), `wall_now` the same instant as time.time().
        """
        notices: list[Notice] = []
        with self._lock:
            for pod in pods:
                notice = self._observe_one(key, pod, now, wall_now)
                if notice is not None:
                    notices.append(notice)
        return notices

    def _observe_one(self, key: Hashable, pod: observed.PodView, now: float, wall_now: float) -> Notice | None:
        if pod.phase != "Failed" or pod.deleting:
            return None
        group = HEAD_GROUP if pod.node_type == "head" else pod.group
        state = self._groups.setdefault((key, group), GroupFailures())
        if state.count and now - state.last_failure > self.reset_after_s:
            state.count, state.seen = 0, set()
        if pod.name in state.seen:
            return None
        state.seen.add(pod.name)
        state.count += 1
        state.last_failure = now
        state.last_pod = pod.name
        delay = self.backoff.delay(state.count)
        state.not_before = now + delay
        until = datetime.datetime.fromtimestamp(wall_now + delay, datetime.timezone.utc)
        state.until_utc = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        return Notice(group, pod.name, state.count, delay)

    def hold(self, key: Hashable, group: str | None, now: float) -> float:
        """Seconds until a new Pod of `group` (None: the head) may be created; 0 when it may now."""
        with self._lock:
            state = self._groups.get((key, HEAD_GROUP if group is None else group))
        if state is None:
            return 0.0
        return max(0.0, state.not_before - now)

    def summary(self, key: Hashable, now: float) -> str:
        """A status line about the groups of `key` still backing off ("" when none); stable between passes."""
        parts = []
        with self._lock:
            items = sorted(self._groups.items(), key=lambda item: str(item[0][1]))
        for (k, group), state in items:
            if k != key or state.not_before <= now:
                continue
            parts.append(f"group {group}: {state.count} failed Pods in a row (last {state.last_pod}); "
                         f"new Pods wait until {state.until_utc}")
        return "; ".join(parts)

    def forget(self, key: Hashable) -> None:
        """The cluster is gone."""
        with self._lock:
            for group_key in [g for g in self._groups if g[0] == key]:
                del self._groups[group_key]
