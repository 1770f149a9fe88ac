"""The memory monitor's pure parts, without processes: Ray's group-by-owner killing policy, where a
node's memory use is read (cgroup v1/v2 or /proc/meminfo, from files laid out as the kernel does), and
the owner's out-of-memory retry budget and backoff."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from kray.core import oom_retry
from kray.raylet import memory_monitor as mm

GiB = 1 << 30


def worker(name: str, owner: str, retriable: bool, leased_at: float) -> mm.Candidate:
    return mm.Candidate(name.encode(), owner, retriable, leased_at)


def test_the_policy_prefers_retriable_tasks_and_kills_the_newest_of_the_largest_group() -> None:
    chosen = mm.choose([
        worker("actor", "gcs", False, 1.0),
        worker("a-old", "driver-a", True, 2.0),
        worker("a-new", "driver-a", True, 5.0),
        worker("b-new", "driver-b", True, 9.0),
    ])
    assert chosen is not None
    victim, retry = chosen
    assert victim.worker_id == b"a-new" and retry  # driver-a keeps a task running, so this one runs again


def test_the_last_task_of_a_caller_is_killed_without_retry() -> None:
    victim, retry = mm.choose([worker("only", "driver", True, 1.0), worker("actor", "gcs", False, 9.0)]) or (None, None)
    assert victim is not None and victim.worker_id == b"only" and retry is False


def test_non_retriable_work_forms_one_group_whatever_its_caller() -> None:
    victim, retry = mm.choose([worker("x", "driver-a", False, 1.0), worker("y", "driver-b", False, 3.0)]) or (None, None)
    assert victim is not None and victim.worker_id == b"y" and retry is False


def test_between_groups_of_one_size_the_one_that_started_last_goes_first() -> None:
    victim, _ = mm.choose([
        worker("a1", "a", True, 1.0), worker("a2", "a", True, 8.0),
        worker("b1", "b", True, 4.0), worker("b2", "b", True, 5.0),
    ]) or (None, None)
    assert victim is not None and victim.worker_id == b"b2"
    assert mm.choose([]) is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _proc(tmp_path: Path, cgroup: str, total_kib: int = 16 * 1024 * 1024, available_kib: int = 12 * 1024 * 1024) -> Path:
    proc = tmp_path / "proc"
    _write(proc / "meminfo", f"MemTotal: {total_kib} kB\nMemFree: 1 kB\nMemAvailable: {available_kib} kB\n")
    _write(proc / "self" / "cgroup", cgroup)
    return proc


def test_a_cgroup_v1_limit_is_read_with_its_use_less_inactive_file_cache(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "4:memory:/pod/abc\n0::/\n")
    group = tmp_path / "cg" / "memory" / "pod" / "abc"
    _write(group / "memory.stat", f"rss 5\ntotal_rss {GiB}\ntotal_cache {GiB // 2}\ntotal_inactive_file {GiB // 4}\n"
                                  f"hierarchical_memory_limit {2 * GiB}\n")
    reader = mm.MemoryReader(str(proc), str(tmp_path / "cg"))
    snap = reader.read()
    assert (snap.used, snap.total, reader.cgroup_version) == (GiB + GiB // 4, 2 * GiB, 1)
    assert snap.source.endswith("pod/abc/memory.stat")


def test_without_a_limit_below_the_host_memory_the_host_is_read(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "4:memory:/\n")
    _write(tmp_path / "cg" / "memory" / "memory.stat", "total_rss 1\nhierarchical_memory_limit 9223372036854771712\n")
    snap = mm.MemoryReader(str(proc), str(tmp_path / "cg")).read()
    assert (snap.used, snap.total) == (4 * GiB, 16 * GiB)
    assert snap.fraction == 0.25


def test_a_cgroup_v2_limit_is_the_lowest_of_its_ancestors(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "0::/kubepods/pod1/ctr\n")
    root = tmp_path / "cg"
    _write(root / "cgroup.controllers", "cpu io memory pids\n")
    _write(root / "kubepods" / "memory.max", "max\n")
    _write(root / "kubepods" / "pod1" / "memory.max", f"{3 * GiB}\n")
    _write(root / "kubepods" / "pod1" / "ctr" / "memory.max", f"{4 * GiB}\n")
    _write(root / "kubepods" / "pod1" / "ctr" / "memory.stat",
           f"anon {GiB}\nfile {GiB}\ninactive_file {GiB // 2}\nkernel {GiB // 8}\n")
    reader = mm.MemoryReader(str(proc), str(root))
    snap = reader.read()
    assert reader.cgroup_version == 2 and snap.total == 3 * GiB
    assert snap.used == GiB + GiB // 2 + GiB // 8


def test_a_changed_cgroup_limit_is_read_again(tmp_path: Path) -> None:
    proc = _proc(tmp_path, "0::/pod\n")
    root = tmp_path / "cg"
    _write(root / "cgroup.controllers", "memory\n")
    _write(root / "pod" / "memory.max", "max\n")
    _write(root / "pod" / "memory.stat", f"anon {GiB}\nfile 0\ninactive_file 0\nkernel 0\n")
    reader = mm.MemoryReader(str(proc), str(root))
    assert reader.read().total == 16 * GiB  # no limit yet: the host's memory
    _write(root / "pod" / "memory.max", f"{2 * GiB}\n")  # a limit set (or resized) while the raylet runs
    assert (reader.read().total, reader.read().used) == (2 * GiB, GiB)
    _write(root / "pod" / "memory.max", f"{3 * GiB}\n")
    assert reader.read().total == 3 * GiB
    # cgroup v1: the limit in memory.stat, read with the use.
    proc = _proc(tmp_path / "v1", "4:memory:/pod\n")
    stat = tmp_path / "v1" / "cg" / "memory" / "pod" / "memory.stat"
    _write(stat, f"total_rss {GiB}\nhierarchical_memory_limit {4 * GiB}\n")
    reader = mm.MemoryReader(str(proc), str(tmp_path / "v1" / "cg"))
    assert reader.read().total == 4 * GiB
    _write(stat, f"total_rss {GiB}\nhierarchical_memory_limit {GiB + GiB // 2}\n")
    assert reader.read().total == GiB + GiB // 2


def test_min_memory_free_bytes_raises_the_threshold_as_rays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRAY_memory_usage_threshold", "0.5")
    assert mm.MemoryMonitor(None).threshold_bytes(16 * GiB) == 8 * GiB  # not set: the fraction alone
    monkeypatch.setenv("RAY_min_memory_free_bytes", str(2 * GiB))
    assert mm.MemoryMonitor(None).threshold_bytes(16 * GiB) == 14 * GiB  # max(8, 16 - 2)
    assert mm.MemoryMonitor(None).threshold_bytes(3 * GiB) == GiB + GiB // 2  # max(1.5, 1)
    monkeypatch.setenv("KRAY_min_memory_free_bytes", str(32 * GiB))  # more than there is: the fraction
    assert mm.MemoryMonitor(None).threshold_bytes(16 * GiB) == 8 * GiB
    monkeypatch.setenv("KRAY_min_memory_free_bytes", "-2")
    with pytest.raises(ValueError, match="KRAY_min_memory_free_bytes=-2 must be >= 0"):
        mm.MemoryMonitor(None)


def _record(max_retries: int, retries_left: int, attempt: int) -> SimpleNamespace:
    return SimpleNamespace(spec=SimpleNamespace(max_retries=max_retries, attempt=attempt), retries_left=retries_left)


def test_oom_retries_are_counted_apart_from_max_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    assert oom_retry.oom_retries_left(_record(0, 0, 0)) == 0  # not retriable: never
    assert oom_retry.oom_retries_left(_record(3, 3, 7)) == -1  # Ray's default: without limit
    monkeypatch.setenv("KRAY_task_oom_retries", "2")
    assert oom_retry.oom_retries_left(_record(3, 3, 0)) == 2
    assert oom_retry.oom_retries_left(_record(3, 2, 2)) == 1  # one of the two attempts was a max_retries one
    assert oom_retry.oom_retries_left(_record(-1, -1, 2)) == 0


def test_the_oom_backoff_doubles_from_its_base_up_to_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [oom_retry.backoff_s(a) for a in (0, 1, 2)] == [1.0, 2.0, 4.0]
    assert oom_retry.backoff_s(40) == 60.0
    monkeypatch.setenv("RAY_task_oom_retry_delay_base_ms", "100")
    assert oom_retry.backoff_s(1) == pytest.approx(0.2)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("KRAY_memory_usage_threshold", "1.5", "KRAY_memory_usage_threshold=1.5 must be a fraction between 0 and 1"),
    ("RAY_memory_usage_threshold", "-0.1", "RAY_memory_usage_threshold=-0.1 must be a fraction"),
    ("RAY_memory_monitor_refresh_ms", "-3", "RAY_memory_monitor_refresh_ms=-3 must be >= 0"),
    ("KRAY_memory_monitor_refresh_ms", "soon", "KRAY_memory_monitor_refresh_ms='soon' must be an integer"),
])
def test_a_bad_memory_monitor_setting_is_refused_by_name(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    from kray import config

    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(says)):
        config.memory_usage_threshold()
        config.memory_monitor_refresh_ms()
