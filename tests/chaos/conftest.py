"""Fixtures of the chaos tier: a loaded 3-node cluster, and the table of faults and outcomes printed at
the end of the run.

Each test injects one fault into a cluster of three `kray start` nodes (head 127.0.0.1, then 127.0.0.2 and
127.0.0.3) while a driver subprocess (load_driver.py) keeps tasks, actor calls and 10 MiB objects going,
then records a row: the fault, the promise checked, results expected and received, errors, and the
processes and /dev/shm entries left after `kray stop`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from integration import helpers, multinode

LOAD_DRIVER = Path(__file__).with_name("load_driver.py")
NODE_TIMEOUT_S = 3.0
ROWS: list[dict[str, Any]] = []


@dataclass
class LoadDriver:
    """The load_driver.py subprocess, with its status and stop files."""

    proc: subprocess.Popen
    status_file: Path
    stop_file: Path
    log_file: Path
    started: float = field(default_factory=time.monotonic)

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_file.read_text()))
        except (OSError, ValueError):
            return {"rounds": 0, "expected": 0, "received": 0, "wrong": 0, "errors": {}, "fatal": None}

    def wait_rounds(self, more: int, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until `more` further rounds completed (or the driver ended); returns the status."""
        target = self.status()["rounds"] + more
        helpers.wait_until(lambda: self.status()["rounds"] >= target or self.proc.poll() is not None, timeout,
                           f"the load to complete {more} more rounds; log:\n{self.output()}")
        if self.proc.poll() is not None and not self.stop_file.exists():
            raise AssertionError(f"the load driver exited (rc={self.proc.returncode}):\n{self.output()}")
        return self.status()

    def stop(self, timeout: float = 240.0) -> dict[str, Any]:
        self.stop_file.write_text("stop")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the load driver did not finish its round within {timeout:g}s:\n{self.output()}") from None
        return self.status()

    def output(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def chaos_cluster(tmp_path: Path) -> Iterator[multinode.MultiNodeCluster]:
    cluster = multinode.MultiNodeCluster(
        tmp_path, num_cpus=2, num_nodes=3, object_store_memory=512 * helpers.MiB,
        extra_env={"KRAY_NODE_TIMEOUT_S": str(NODE_TIMEOUT_S), "KRAY_GCS_RECONNECT_TIMEOUT_S": "5"},
    ).start()
    try:
        yield cluster
    finally:
        cluster.teardown(check=False)


@pytest.fixture
def start_load(chaos_cluster: multinode.MultiNodeCluster, tmp_path: Path) -> Iterator[Any]:
    drivers: list[LoadDriver] = []

    def start() -> LoadDriver:
        env = chaos_cluster.node_env(chaos_cluster.nodes[0], chaos_cluster.token)
        env.pop(multinode.MARKER_ENV, None)  # the driver is not a node's process
        env["KRAY_TEMP_DIR"] = str(tmp_path / "driver")
        log = tmp_path / f"load-{len(drivers)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(LOAD_DRIVER), chaos_cluster.address, str(tmp_path / "status.json"),
                 str(tmp_path / "stop")], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        driver = LoadDriver(proc, tmp_path / "status.json", tmp_path / "stop", log)
        drivers.append(driver)
        driver.wait_rounds(2)
        return driver

    yield start
    for driver in drivers:
        driver.kill()


@pytest.fixture
def record(chaos_cluster: multinode.MultiNodeCluster) -> Iterator[Any]:
    """record(fault, promise, load_status, **extra): a row of the table; the processes and /dev/shm
    entries left are counted after `kray stop` of every node, at the end of the test."""
    rows: list[dict[str, Any]] = []

    def add(fault: str, promise: str, status: dict[str, Any], **extra: Any) -> None:
        rows.append({"fault": fault, "promise": promise, "expected": status.get("expected", 0),
                     "received": status.get("received", 0), "wrong": status.get("wrong", 0),
                     "errors": sum(status.get("errors", {}).values()), **extra})

    yield add
    chaos_cluster.teardown(check=False)
    for row in rows:
        row["procs left"] = chaos_cluster.left_processes
        row["shm left"] = chaos_cluster.left_shm
        ROWS.append(row)
    assert chaos_cluster.left_processes == 0, "kray processes were left after `kray stop`"
    assert chaos_cluster.left_shm == 0, "/dev/shm entries were left after `kray stop`"


def processes_of(cluster: multinode.MultiNodeCluster, index: int, module: str) -> list[psutil.Process]:
    """Node `index`'s live processes running `python -m <module>` (kray.raylet, kray.worker, kray.gcs)."""
    found = []
    for proc in cluster.nodes[index].processes():
        try:
            if module in proc.cmdline():
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    columns = ["fault", "promise", "expected", "received", "wrong", "errors", "seconds", "procs left", "shm left"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in ROWS)) for c in columns}
    terminalreporter.section("chaos: faults injected and results")
    terminalreporter.write_line("  ".join(c.ljust(widths[c]) for c in columns))
    for row in ROWS:
        terminalreporter.write_line("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    if os.environ.get("KRAY_CHAOS_TABLE"):
        Path(os.environ["KRAY_CHAOS_TABLE"]).write_text(json.dumps(ROWS, indent=1))
