"""The raylet's memory monitor (Ray's out-of-memory prevention): above KRAY_memory_usage_threshold of the
node's memory (or above all but KRAY_min_memory_free_bytes of it, whichever is higher, as Ray) it kills one
leased worker, chosen as Ray's group-by-owner policy does, so that its task fails with OutOfMemoryError (or
runs again) before the kernel's OOM killer takes the raylet or a driver.

A daemon thread reads the node's memory use every KRAY_memory_monitor_refresh_ms (the memory.stat of the
raylet's cgroup while that cgroup has a memory limit, as in a container or pod, else /proc/meminfo; the
limit is read again each time, so a changed limit applies at once) and wakes the raylet's loop only while
use is above the threshold; choosing and killing run on the loop.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from kray import config
from kray.protocol import messages
from kray.raylet import worker_pool

log = logging.getLogger(__name__)

GB = 1e9  # Ray's messages give memory in GB (10^9 bytes)


@dataclasses.dataclass(frozen=True)
class MemorySnapshot:
    used: int
    total: int
    source: str  # the file it was read from

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total else 0.0


class MemoryReader:
    """Reads this node's memory use: the raylet's own cgroup (v1 or v2) when it has a memory limit below
    the host's memory, else the host's (MemTotal - MemAvailable), as Ray's memory monitor does."""

    def __init__(self, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> None:
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.host_total = _meminfo(os.path.join(proc_root, "meminfo"))["MemTotal"]
        self.cgroup_version = 0
        self.directory = ""
        found = _own_memory_cgroup(proc_root, cgroup_root)
        if found is not None:
            self.cgroup_version, self.directory = found

    def read(self) -> MemorySnapshot:
        if self.cgroup_version:
            stat_path = os.path.join(self.directory, "memory.stat")
            stat = _key_values(stat_path)
            # Read each time: a pod's limit can be resized in place, a container's changed with `update`.
            limit = _cgroup_limit(self.cgroup_version, self.directory, self.cgroup_root, stat)
            if limit is not None and 0 < limit < self.host_total:
                return MemorySnapshot(_cgroup_used(self.cgroup_version, stat), limit, stat_path)
        path = os.path.join(self.proc_root, "meminfo")
        info = _meminfo(path)
        total = info["MemTotal"]
        return MemorySnapshot(total - info.get("MemAvailable", info.get("MemFree", 0)), total, path)


def _meminfo(path: str) -> dict[str, int]:
    with open(path) as f:
        return {k.rstrip(":"): int(v) * 1024 for k, v, *_ in (line.split() for line in f) if v.isdigit()}


def _key_values(path: str) -> dict[str, int]:
    with open(path) as f:
        return {k: int(v) for k, v in (line.split()[:2] for line in f if line.strip()) if v.isdigit()}


def _own_memory_cgroup(proc_root: str, cgroup_root: str) -> tuple[int, str] | None:
    """(cgroup version, directory) of this process's memory cgroup, or None where there is none to read."""
    try:
        with open(os.path.join(proc_root, "self", "cgroup")) as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f if line.count(":") >= 2]
    except OSError:
        return None
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            base = os.path.join(cgroup_root, "memory")
            return _usable(1, base, path)
    for hierarchy, controllers, path in entries:
        if hierarchy == "0" and not controllers:
            for base in (cgroup_root, os.path.join(cgroup_root, "unified")):
                try:
                    with open(os.path.join(base, "cgroup.controllers")) as f:
                        if "memory" in f.read().split():
                            return _usable(2, base, path)
                except OSError:
                    continue
    return None


def _usable(version: int, base: str, path: str) -> tuple[int, str] | None:
    # In a container with a cgroup namespace the path is "/" and the mount shows the container's own cgroup.
    for directory in (os.path.join(base, path.lstrip("/")), base):
        if os.path.isfile(os.path.join(directory, "memory.stat")):
            return version, directory
    return None


def _cgroup_limit(version: int, directory: str, cgroup_root: str, stat: dict[str, int] | None = None) -> int | None:
    """The memory limit in force for the cgroup: its own or an ancestor's, whichever is lowest (v1: from
    `stat`, its memory.stat, when given)."""
    try:
        if version == 1:
            stat = stat if stat is not None else _key_values(os.path.join(directory, "memory.stat"))
            if "hierarchical_memory_limit" in stat:
                return stat["hierarchical_memory_limit"]
            with open(os.path.join(directory, "memory.limit_in_bytes")) as f:
                return int(f.read())
        limits = []
        while directory.startswith(cgroup_root) and len(directory) > len(cgroup_root):
            try:
                with open(os.path.join(directory, "memory.max")) as f:
                    text = f.read().strip()
                if text != "max":
                    limits.append(int(text))
            except FileNotFoundError:
                pass
            directory = os.path.dirname(directory)
        return min(limits) if limits else None
    except (OSError, ValueError):
        return None


def _cgroup_used(version: int, stat: dict[str, int]) -> int:
    """Memory in use by the cgroup without its reclaimable file cache (inactive_file), as Ray counts it;
    shared memory (the object store's files in /dev/shm) counts as used."""
    if version == 1:
        rss = stat.get("total_rss", stat.get("rss", 0))
        cache = stat.get("total_cache", stat.get("cache", 0))
        return max(0, rss + cache - stat.get("total_inactive_file", stat.get("inactive_file", 0)))
    kernel = stat.get("kernel", stat.get("kernel_stack", 0) + stat.get("slab", 0))
    return max(0, stat.get("anon", 0) + stat.get("file", 0) - stat.get("inactive_file", 0) + kernel)


# ---------------------------------------------------------------- the policy (pure)


@dataclasses.dataclass(frozen=True)
class Candidate:
    worker_id: bytes
    owner: str  # the process that leased the worker (its caller; the GCS for an actor)
    retriable: bool
    leased_at: float


def choose(candidates: Sequence[Candidate]) -> tuple[Candidate, bool] | None:
    """Ray's group-by-owner worker killing policy: retriable tasks are grouped by their caller, the
    non-retriable ones form one group; retriable groups go first, then the largest, then the one whose
    earliest task started last; the newest worker of that group is killed. Its task may run again only
    when the group is retriable and keeps another task running (each caller always makes progress)."""
    if not candidates:
        return None
    groups: dict[tuple[bool, str], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.retriable, c.owner if c.retriable else ""), []).append(c)
    ranked = sorted(
        groups.values(),
        key=lambda g: (not g[0].retriable, -len(g), -min(c.leased_at for c in g)),
    )
    group = ranked[0]
    victim = max(group, key=lambda c: c.leased_at)
    return victim, victim.retriable and len(group) > 1


# ---------------------------------------------------------------- the monitor


class MemoryMonitor:
    """One per raylet. `raylet` gives the loop, the worker pool, the leases and the node."""

    def __init__(self, raylet: Any, reader: MemoryReader | None = None) -> None:
        self.raylet = raylet
        self.refresh_ms = config.memory_monitor_refresh_ms()
        self.threshold = config.memory_usage_threshold()
        self.min_free = config.min_memory_free_bytes()  # -1: not set
        self.reader = reader
        self.killing = b""  # the worker killed last: the next is chosen only once it is gone, as in Ray
        self.kills: dict[bytes, tuple[str, bool]] = {}  # worker id -> (OutOfMemoryError text, retry)
        self.kill_count = 0
        self._posted = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet_until = 0.0

    def start(self) -> None:
        if self.refresh_ms <= 0:
            log.info("MemoryMonitor disabled. Set KRAY_memory_monitor_refresh_ms > 0 to enable it.")
            return
        try:
            self.reader = self.reader or MemoryReader()
            first = self.reader.read()
        except (OSError, KeyError, ValueError) as e:
            log.warning("the memory monitor cannot read this node's memory use (%s); it is off", e)
            return
        log.info("MemoryMonitor initialized with usage threshold at %d bytes (%.2f of %d bytes, min free %d "
                 "bytes, read from %s)", self.threshold_bytes(first.total), self.threshold, first.total,
                 self.min_free, first.source)
        self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def threshold_bytes(self, total: int) -> int:
        """Use above this many bytes of `total` kills, as Ray's: the threshold's share of the node's memory,
        raised to all but min_memory_free_bytes of it when that is set and higher."""
        fraction = int(total * self.threshold)
        return max(fraction, total - self.min_free) if self.min_free >= 0 else fraction

    def _run(self) -> None:
        reader = self.reader
        assert reader is not None
        period = self.refresh_ms / 1000.0
        while not self._stop.wait(period):
            try:
                snapshot = reader.read()
            except (OSError, KeyError, ValueError) as e:
                log.debug("reading memory use failed: %s", e)
                continue
            if snapshot.used > self.threshold_bytes(snapshot.total) and not self._posted:
                self._posted = True
                self.raylet.loop.call_soon_threadsafe(self._above_threshold, snapshot)

    # ------------------------------------------------------------ on the raylet's loop

    def on_grant(self, worker: worker_pool.Worker, request: messages.RequestLease) -> None:
        worker.leased_at = time.monotonic()
        worker.lease_owner = request.owner
        worker.lease_retriable = request.retriable

    def death_notice(self, worker: worker_pool.Worker, reason: str) -> messages.WorkerDied:
        """What the owner of a dead leased worker is told: the OutOfMemoryError text if this monitor killed it."""
        kill = self.kills.pop(worker.worker_id, None)
        if kill is None:
            return messages.WorkerDied(worker.worker_id, worker.lease_id, reason)
        return messages.WorkerDied(worker.worker_id, worker.lease_id, kill[0], oom=True, oom_retry=kill[1])

    def _above_threshold(self, snapshot: MemorySnapshot) -> None:
        self._posted = False
        pool = self.raylet.pool
        if self.killing in pool.workers:
            return  # still waiting for the last one to exit
        self.killing = b""
        for worker_id in [w for w in self.kills if w not in pool.workers]:
            del self.kills[worker_id]
        leased = {w.worker_id: w for w in self.raylet.leases.values()
                  if w.state == worker_pool.LEASED and w.worker_id in pool.workers}
        chosen = choose([Candidate(w.worker_id, w.lease_owner, w.lease_retriable, w.leased_at)
                         for w in leased.values()])
        if chosen is None:
            if time.monotonic() > self._quiet_until:
                self._quiet_until = time.monotonic() + 10.0
                log.warning("memory use %.2fGB / %.2fGB (%.2f) is above the threshold %.2f, and no task or "
                            "actor worker runs on this node to free it", snapshot.used / GB, snapshot.total / GB,
                            snapshot.fraction, self.threshold_bytes(snapshot.total) / max(snapshot.total, 1))
            return
        candidate, retry = chosen
        worker = leased[candidate.worker_id]
        text = self._message(worker, snapshot, len(leased))
        self.kills[worker.worker_id] = (text, retry)
        self.killing = worker.worker_id
        self.kill_count += 1
        log.error("killing worker pid %d (retry=%s): %s", worker.pid, retry, text)
        pool.kill(worker)

    def _message(self, worker: worker_pool.Worker, snapshot: MemorySnapshot, running: int) -> str:
        node = self.raylet.node
        try:
            info = psutil.Process(worker.pid).memory_info()
            own = max(0, info.rss - getattr(info, "shared", 0))
        except (psutil.Error, OSError):
            own = 0
        kind = "actor" if worker.lease_owner == self.raylet.gcs_address else "task"
        return (
            "Task was killed due to the node running low on memory.\n"
            f"Memory on the node (IP: {node.ip}, ID: {node.node_id.hex()}) where the {kind} "
            f"(name={worker.name or '(unnamed)'}, pid={worker.pid}, memory used={own / GB:.2f}GB) was running was "
            f"{snapshot.used / GB:.2f}GB / {snapshot.total / GB:.2f}GB ({snapshot.fraction:.6f}), which exceeds "
            f"the memory usage threshold of {self.threshold_bytes(snapshot.total) / max(snapshot.total, 1):.6g}. kray killed this worker (ID: {worker.worker_id.hex()}) "
            f"because it was the most recently scheduled {'retriable ' if worker.lease_retriable else ''}task of "
            f"the caller with the most tasks running on this node ({running} task and actor worker(s) were "
            f"running here; memory read from {snapshot.source}).\n"
            "Consider provisioning more memory on this node or reducing task parallelism by requesting more CPUs "
            "per task. To adjust the kill threshold, set the environment variable `KRAY_memory_usage_threshold` "
            "(or `RAY_memory_usage_threshold`), or the bytes to keep free with `KRAY_min_memory_free_bytes`, when "
            "starting kray. To disable worker killing, set the environment "
            "variable `KRAY_memory_monitor_refresh_ms` to zero."
        )
