"""Issue 17, memory protection: the raylet's memory monitor kills a worker before the node runs out of
memory, as Ray's does (group-by-owner policy, OutOfMemoryError, OOM retries apart from max_retries).

The local cluster runs inside a memory cgroup of its own with a 1.5 GiB limit (made here, as root; the
monitor reads the raylet's cgroup as Ray's does in a container), so the figures are the cluster's own and
other processes on the machine cannot move them. Where no cgroup can be made, the threshold is set just
above the host's current use instead. A task allocates at most ~1.1 GiB.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import kray
import psutil
import pytest
from kray.exceptions import ActorDiedError, OutOfMemoryError

from . import helpers

GiB = helpers.GiB
LIMIT = int(1.5 * GiB)  # the cgroup's hard limit (the kernel's OOM killer acts there)
TRIGGER = 1 * GiB  # the monitor's threshold, in bytes of the cgroup's use


def _chunks_until_killed(workdir: str, tag: str, cap: int) -> str:
    """Spawn a child (its own session), then allocate 64 MiB at a time up to `cap`, and wait to be killed."""
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    with open(os.path.join(workdir, f"{tag}.attempts"), "a") as f:
        f.write(f"{os.getpid()} {child.pid}\n")
    held = []
    while len(held) * (64 << 20) < cap:
        held.append(b"\x01" * (64 << 20))  # touched pages: they count as used memory
        time.sleep(0.025)
    time.sleep(helpers.WAIT_S)
    return "not killed"


@kray.remote(num_cpus=1)
def hog(workdir: str, tag: str, cap: int) -> str:
    return _chunks_until_killed(workdir, tag, cap)


@kray.remote(num_cpus=0.5)
def sleeper(workdir: str, tag: str) -> str:
    Path(workdir, f"{tag}.started").touch()
    deadline = time.monotonic() + helpers.WAIT_S
    while not Path(workdir, f"{tag}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "slept"


@kray.remote(num_cpus=1)
class Hog:
    def allocate(self, workdir: str, cap: int) -> str:
        return _chunks_until_killed(workdir, "actor", cap)


def _attempts(workdir: Path, tag: str) -> list[tuple[int, int]]:
    path = workdir / f"{tag}.attempts"
    if not path.exists():
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in path.read_text().splitlines())]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ---------------------------------------------------------------- where the cluster's memory is measured


def _own_memory_cgroup(cgroup_text: str) -> Path | None:
    """The cgroup v1 memory directory in `cgroup_text` (a /proc/PID/cgroup), or its v2 directory where the
    unified hierarchy has the memory controller."""
    entries = [line.split(":", 2) for line in cgroup_text.splitlines()]
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory", path.lstrip("/"))
    root = Path("/sys/fs/cgroup")
    for hierarchy, _, path in entries:
        controllers_file = root / "cgroup.controllers"
        if hierarchy == "0" and controllers_file.exists() and "memory" in controllers_file.read_text().split():
            return root / path.lstrip("/")
    return None


def _usage(group: Path) -> int:
    for name in ("memory.usage_in_bytes", "memory.current"):
        if (group / name).exists():
            return int((group / name).read_text())
    raise AssertionError(f"no memory usage file in {group}")


@contextlib.contextmanager
def _cluster_cgroup(limit: int = LIMIT) -> Iterator[Path | None]:
    """A child memory cgroup limited to `limit` bytes, or None where this process cannot make one."""
    home = _own_memory_cgroup(Path("/proc/self/cgroup").read_text()) if Path("/proc/self/cgroup").exists() else None
    group = home / f"kray-oom-test-{os.getpid()}" if home is not None else None
    try:
        assert home is not None and group is not None
        group.mkdir()
        limit_file = group / ("memory.limit_in_bytes" if (group / "memory.limit_in_bytes").exists() else "memory.max")
        limit_file.write_text(str(limit))
        _move(os.getpid(), group)  # can this process join it (and so start the cluster in it)?
        _move(os.getpid(), home)
    except (AssertionError, OSError):
        if group is not None and group.exists():
            group.rmdir()
        yield None
        return
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():  # only processes this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        helpers.wait_until(lambda: not (group / "cgroup.procs").read_text().split(), what="the cgroup to empty")
        group.rmdir()


def _move(pid: int, group: Path) -> None:
    (group / "cgroup.procs").write_text(str(pid))


@pytest.fixture
def oom_cluster(cluster_factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, str]]:
    """A 3-CPU local cluster whose raylet kills above TRIGGER bytes; yields (allocation cap, where measured)."""
    monkeypatch.setenv("KRAY_memory_monitor_refresh_ms", "100")
    monkeypatch.setenv("KRAY_task_oom_retry_delay_base_ms", "100")
    with _cluster_cgroup() as group:
        if group is None:
            memory = psutil.virtual_memory()
            used = memory.total - memory.available
            monkeypatch.setenv("KRAY_memory_usage_threshold", f"{(used + 0.6 * GiB) / memory.total:.6f}")
            cluster_factory(num_cpus=3)
            yield int(1.1 * GiB), "host"
            return
        monkeypatch.setenv("KRAY_memory_usage_threshold", f"{TRIGGER / LIMIT:.6f}")
        _move(os.getpid(), group)  # the cluster's processes start inside the group and stay there
        try:
            cluster = cluster_factory(num_cpus=3)
        finally:
            _move(os.getpid(), group.parent)
        try:
            baseline = _usage(group)
            assert baseline < TRIGGER - 0.4 * GiB, f"the idle cluster already uses {baseline} bytes of its cgroup"
            # Enough to pass the threshold with a margin, well below the hard limit.
            yield min(int(1.1 * GiB), TRIGGER - baseline + int(0.25 * GiB)), str(group)
        finally:
            cluster.shutdown()  # (and leak-checked) before the group goes


def _raylet() -> psutil.Process:
    found = [p for p in helpers.kray_processes() if "kray.raylet" in (helpers.cmdline(p) or "")]
    assert len(found) == 1, helpers.describe(found)
    return found[0]


def test_the_memory_monitor_kills_retries_and_fails_tasks_as_ray_does(oom_cluster, tmp_path: Path) -> None:
    cap, measured = oom_cluster
    raylet = _raylet()

    # 1. Two retriable tasks of one caller: the newest (the allocating one) is killed and retried while the
    #    other keeps running; once it is its caller's only task left, it fails with OutOfMemoryError.
    other = sleeper.remote(str(tmp_path), "retriable")
    helpers.wait_until(lambda: (tmp_path / "retriable.started").exists(), what="the sleeping task to start")
    hungry = hog.remote(str(tmp_path), "retriable", cap)
    helpers.wait_until(lambda: len(_attempts(tmp_path, "retriable")) >= 2,
                       what=f"the allocating task to be killed and run again (memory read from {measured})")
    (tmp_path / "retriable.release").touch()
    assert kray.get(other, timeout=helpers.WAIT_S) == "slept"
    with pytest.raises(OutOfMemoryError) as failed:
        kray.get(hungry, timeout=helpers.WAIT_S)
    text = str(failed.value)
    assert "Task was killed due to the node running low on memory" in text and "task ID: " in text
    assert "name=" in text and "hog" in text
    assert "which exceeds the memory usage threshold of" in text and "GB / " in text
    assert "KRAY_memory_usage_threshold" in text and "KRAY_memory_monitor_refresh_ms" in text
    attempts = _attempts(tmp_path, "retriable")
    assert len({pid for pid, _ in attempts}) == len(attempts)  # each attempt ran in a new worker
    for _, child in attempts:  # what a killed worker left running is reaped by the raylet
        helpers.wait_until(lambda child=child: _gone(child), what=f"the killed worker's child {child} to die")

    # 2. Non-retriable tasks (max_retries=0) form one group: the newest is killed and fails at once.
    other = sleeper.options(max_retries=0).remote(str(tmp_path), "once")
    helpers.wait_until(lambda: (tmp_path / "once.started").exists(), what="the second sleeping task to start")
    with pytest.raises(OutOfMemoryError, match="running low on memory"):
        kray.get(hog.options(max_retries=0).remote(str(tmp_path), "once", cap), timeout=helpers.WAIT_S)
    assert len(_attempts(tmp_path, "once")) == 1
    (tmp_path / "once.release").touch()
    assert kray.get(other, timeout=helpers.WAIT_S) == "slept"

    # 3. An actor (max_restarts=0, as Ray's default) killed so is dead, and says why.
    actor = Hog.remote()
    with pytest.raises(ActorDiedError, match="running low on memory"):
        kray.get(actor.allocate.remote(str(tmp_path), cap), timeout=helpers.WAIT_S)

    # The raylet and this driver live on, and the node runs new work.
    assert raylet.is_running() and _raylet().pid == raylet.pid
    assert kray.get(kray.remote(lambda: 7).remote(), timeout=helpers.WAIT_S) == 7


def _limit_file(group: Path) -> Path:
    return group / ("memory.limit_in_bytes" if (group / "memory.limit_in_bytes").exists() else "memory.max")


def _oom_text(workdir: Path, tag: str, cap: int) -> str:
    with pytest.raises(OutOfMemoryError) as failed:
        kray.get(hog.options(max_retries=0).remote(str(workdir), tag, cap), timeout=helpers.WAIT_S)
    return str(failed.value)


def test_system_config_min_free_bytes_and_a_changed_cgroup_limit(cluster_factory, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """kray.init(_system_config=...) sets the raylet's threshold; min_memory_free_bytes raises it to all but
    that many bytes, as Ray's max(threshold * total, total - min free); a lowered cgroup limit applies at once."""
    with pytest.raises(ValueError, match="_system_config\\['memory_usage_threshold'\\] must be a fraction"):
        kray.init(_system_config={"memory_usage_threshold": 1.5})
    with pytest.raises(TypeError, match="_system_config\\['min_memory_free_bytes'\\] must be an integer"):
        kray.init(_system_config={"min_memory_free_bytes": "1G"})
    assert not kray.is_initialized()
    system_config = {"memory_usage_threshold": 0.5, "memory_monitor_refresh_ms": 100}
    with _cluster_cgroup(2 * GiB) as group:
        if group is None:  # the host's memory: min free leaves 0.6 GiB above what is in use now
            memory = psutil.virtual_memory()
            monkeypatch.setenv("KRAY_min_memory_free_bytes", str(int(memory.available - 0.6 * GiB)))
            cluster_factory(num_cpus=2, _system_config={**system_config, "memory_usage_threshold": 0.01})
            text = _oom_text(tmp_path, "host", int(1.1 * GiB))
            threshold = float(re.search(r"memory usage threshold of ([0-9.]+)\.", text).group(1))  # type: ignore[union-attr]
            assert threshold > 0.01 and "running low on memory" in text
            return
        # 2 GiB: 0.5 of it is 1 GiB, all but 0.8 GiB is 1.2 GiB; the higher one counts.
        monkeypatch.setenv("KRAY_min_memory_free_bytes", str(int(0.8 * GiB)))
        _move(os.getpid(), group)
        try:
            cluster = cluster_factory(num_cpus=2, _system_config=system_config)
        finally:
            _move(os.getpid(), group.parent)
        try:
            baseline = _usage(group)
            assert baseline < 0.3 * GiB, f"the idle cluster already uses {baseline} bytes of its cgroup"
            text = _oom_text(tmp_path, "2gib", int(1.2 * GiB) - baseline + int(0.25 * GiB))
            assert "GB / 2.15GB (" in text and "memory usage threshold of 0.6." in text, text
            # Lowered to 1.25 GiB while the raylet runs: 0.5 of it (0.625 GiB) is now above all but 0.8 GiB.
            helpers.wait_until(lambda: _usage(group) < 0.4 * GiB, what="the killed task's memory to be freed")
            _limit_file(group).write_text(str(int(1.25 * GiB)))
            text = _oom_text(tmp_path, "1.25gib", int(0.625 * GiB) - _usage(group) + int(0.25 * GiB))
            assert "GB / 1.34GB (" in text and "memory usage threshold of 0.5." in text, text
        finally:
            cluster.shutdown()
