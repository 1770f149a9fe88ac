"""Helpers of the integration tier: waiting, process and shared-memory inspection, driver subprocesses.

Runs in the test process only: starts subprocesses, reads /proc and /dev/shm. What tasks call
lives in tasklib.py, which workers receive by value.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# Conventions of kray's local clusters (see the issue): its processes carry `kray` in their command
# line (the GCS runs as `python -m kray.gcs`), and a session's objects live in /dev/shm/kray-<session>/.
PROCESS_MARKER = "kray"
GCS_MARKER = "kray.gcs"
SHM_ROOT = Path("/dev/shm")
SHM_PREFIX = "kray-"

# Generous bounds for things that must happen eventually; no test asserts on speed.
WAIT_S = 60.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def wait_until(predicate: Callable[[], T], timeout: float = WAIT_S, what: str = "the condition") -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


# --- processes ---------------------------------------------------------------------------------


def cmdline(proc: psutil.Process) -> str | None:
    """The process's command line, or None once it has exited (a zombie has none): read it once."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def kray_processes(root: psutil.Process | None = None) -> list[psutil.Process]:
    """Live kray processes (GCS, raylet, workers) among the descendants of `root` (default: us)."""
    root = root or psutil.Process()
    found = []
    for proc in root.children(recursive=True):
        text = cmdline(proc)
        if text is not None and PROCESS_MARKER in text:
            found.append(proc)
    return found


def alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    """The processes of `procs` that still run (zombies count as gone)."""
    return [p for p in procs if cmdline(p) is not None]


def describe(procs: Iterable[psutil.Process]) -> str:
    return "; ".join(f"pid {p.pid}: {(cmdline(p) or '')[:160]}" for p in procs) or "none"


def foreign_gcs_processes() -> list[psutil.Process]:
    """GCS processes on this machine that are not descendants of this test process."""
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in ours or proc.pid == os.getpid():
            continue
        text = cmdline(proc)
        if text is not None and GCS_MARKER in text:
            found.append(proc)
    return found


# --- shared memory -----------------------------------------------------------------------------


def shm_entries() -> set[str]:
    """Names of the kray session entries under /dev/shm."""
    return {p.name for p in SHM_ROOT.glob(SHM_PREFIX + "*")}


def allocated_bytes(path: Path) -> int:
    """Bytes of memory that the files under `path` occupy (allocated blocks, not apparent size)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def referenced_shm_names(procs: Iterable[psutil.Process]) -> set[str]:
    """kray session entry names that these processes map, hold open or name on their command line."""
    pattern = re.compile(re.escape(str(SHM_ROOT)) + r"/(" + re.escape(SHM_PREFIX) + r"[^/\s]+)")
    names: set[str] = set()
    for proc in procs:
        texts: list[str] = []
        try:
            texts.append(" ".join(proc.cmdline()))
            texts.extend(f.path for f in proc.open_files())
            texts.extend(m.path for m in proc.memory_maps())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for text in texts:
            names.update(pattern.findall(text))
    return names


def mapping_of(address: int) -> str | None:
    """Path name of the mapping of this process that holds `address` ('' if anonymous, None if none)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip() if len(fields) > 5 else ""
    return None


def base_chain(obj: Any) -> list[str]:
    """Type names along a numpy array's `.base` chain, for assertion messages."""
    chain: list[str] = []
    while obj is not None and len(chain) < 10:
        chain.append(type(obj).__name__)
        obj = getattr(obj, "base", None) if hasattr(obj, "base") else getattr(obj, "obj", None)
    return chain


# --- clusters ----------------------------------------------------------------------------------


class LocalCluster:
    """One `kray.init()` of this test process, with what it started, to check for leaks on shutdown."""

    def __init__(self, **init_kwargs: Any) -> None:
        self.init_kwargs = init_kwargs
        self.shm_before: set[str] = set()
        self.processes: list[psutil.Process] = []
        self.stopped = False

    def start(self) -> LocalCluster:
        import kray

        self.shm_before = shm_entries()
        kray.init(**self.init_kwargs)
        self.processes = kray_processes()
        return self

    def session_shm_entries(self) -> set[str]:
        """/dev/shm entries this cluster created (narrowed to ours if other sessions made some too)."""
        new = shm_entries() - self.shm_before
        if len(new) <= 1:
            return new
        ours = new & referenced_shm_names([psutil.Process(), *kray_processes()])
        return ours or new

    def shm_dir(self) -> Path:
        """This session's /dev/shm/kray-<session> directory (exists once an object is stored)."""
        entries = self.session_shm_entries()
        if len(entries) != 1:
            raise AssertionError(
                f"expected exactly one {SHM_ROOT}/{SHM_PREFIX}<session> entry for this cluster, "
                f"found {sorted(entries)}"
            )
        return SHM_ROOT / entries.pop()

    def shutdown(self, timeout: float = WAIT_S) -> None:
        """`kray.shutdown()`, then check that no process or shared-memory entry of ours is left."""
        import kray

        if self.stopped:
            return
        self.stopped = True
        session = self.session_shm_entries()
        watched = self.processes + kray_processes()
        kray.shutdown()
        try:
            wait_until(lambda: not alive(watched) and not kray_processes(), timeout, "kray's processes to exit")
        except AssertionError:
            raise AssertionError(
                f"processes left after kray.shutdown(): {describe(alive(watched) + kray_processes())}"
            ) from None
        try:
            wait_until(lambda: not (session & shm_entries()), timeout, "the session's /dev/shm entries")
        except AssertionError:
            left = sorted(session & shm_entries())
            raise AssertionError(f"shared memory left after kray.shutdown(): {left}") from None


def module_cluster(**init_kwargs: Any) -> Any:
    """A module-scoped fixture: one local cluster shared by the tests of a module (assign it to a name)."""

    @pytest.fixture(scope="module")
    def fixture() -> Iterator[LocalCluster]:
        cluster = LocalCluster(**init_kwargs).start()
        try:
            yield cluster
        finally:
            cluster.shutdown()

    return fixture


# --- driver subprocesses -----------------------------------------------------------------------


def package_root() -> str:
    """The directory that holds the `kray` package this test process imports."""
    import kray

    return str(Path(kray.__file__).resolve().parent.parent)


class DriverProcess:
    """A driver script run in its own interpreter; its stdout and stderr are collected line by line.

    Scripts that must stay up while the test looks at them end with `sys.stdin.read()`: `finish()`
    closes stdin, which lets them shut down.
    """

    def __init__(self, script: str, workdir: Path, name: str = "driver", args: Iterable[str] = ()) -> None:
        path = workdir / f"{name}.py"
        path.write_text(textwrap.dedent(script))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(path), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=workdir,
            env=env,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._open = 2
        self._cond = threading.Condition()
        for stream_name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(stream_name, stream), daemon=True).start()

    def _pump(self, stream_name: str, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines[stream_name].append(_ANSI.sub("", line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return (
                "--- stdout ---\n" + "\n".join(self.lines["stdout"])
                + "\n--- stderr ---\n" + "\n".join(self.lines["stderr"])
            )

    def wait_for(self, pattern: str, stream: str = "stdout", timeout: float = WAIT_S) -> re.Match[str]:
        """The first line of `stream` ("stdout", "stderr" or "any") that matches `pattern`."""
        regex = re.compile(pattern)
        streams = ["stdout", "stderr"] if stream == "any" else [stream]
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name in streams:
                    for line in self.lines[name]:
                        match = regex.search(line)
                        if match:
                            return match
                if self._open == 0:
                    raise AssertionError(
                        f"driver exited (rc={self.proc.wait()}) without printing {pattern!r} on {stream}\n"
                        + self._output_locked()
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"driver printed no line matching {pattern!r} on {stream} within {timeout:.0f}s\n"
                        + self._output_locked()
                    )
                self._cond.wait(remaining)

    def _output_locked(self) -> str:
        return (
            "--- stdout ---\n" + "\n".join(self.lines["stdout"])
            + "\n--- stderr ---\n" + "\n".join(self.lines["stderr"])
        )

    def finish(self, timeout: float = WAIT_S) -> int:
        """Close the driver's stdin and wait for it to exit; kill it (and fail) if it does not."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"driver did not exit within {timeout:.0f}s\n{self.output()}") from None
        with self._cond:
            self._cond.wait_for(lambda: self._open == 0, timeout=5)
        return rc

    def kill(self) -> None:
        """Kill the driver and the processes it started (only ever ours)."""
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        self.proc.kill()
        self.proc.wait()
        for child in family:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass

    def __enter__(self) -> DriverProcess:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            try:
                self.finish()
            except AssertionError:
                if exc[0] is None:
                    raise
