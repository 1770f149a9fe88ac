"""The job rows of `kray microbenchmark`: submit-to-RUNNING and submit-to-SUCCEEDED latency of a trivial
entrypoint, the job server's idle memory, and what a 50 MiB working_dir costs the first and second time.

Starts its own local cluster with the HTTP server, writes a scratch directory, submits over HTTP.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import psutil

import kray

JOB_ROWS = (
    "job server idle RSS (MB)",
    "job submit to RUNNING latency (s)",
    "job submit to SUCCEEDED latency (s)",
    "50 MiB working_dir job submit, first time (s)",
    "50 MiB working_dir job submit, content already uploaded (s)",
)
TRIVIAL_ENTRYPOINT = "python -c 'print(1)'"
WORKING_DIR_BYTES = 50 << 20


def _dashboard_rss() -> float:
    for proc in psutil.Process().children(recursive=True):
        try:
            if "kray.dashboard" in " ".join(proc.cmdline()):
                return float(proc.memory_info().rss)
        except psutil.Error:
            continue
    return 0.0


def _latencies(client: Any, runs: int) -> tuple[list[float], list[float]]:
    from kray.job_submission import JobStatus

    to_running, to_done = [], []
    for _ in range(runs):
        start = time.perf_counter()
        job_id = client.submit_job(entrypoint=TRIVIAL_ENTRYPOINT)
        running = None
        while True:
            status = client.get_job_status(job_id)
            if running is None and status != JobStatus.PENDING:
                running = time.perf_counter() - start
            if status.is_terminal():
                break
            time.sleep(0.002)
        if status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"the benchmark job {job_id} ended {status}: {client.get_job_info(job_id).message}")
        to_done.append(time.perf_counter() - start)
        to_running.append(running or to_done[-1])
    return to_running, to_done


def _working_dir_submits(client: Any) -> tuple[float, float]:
    """Seconds to submit a job with a fresh 50 MiB working_dir, then the same directory again."""
    with tempfile.TemporaryDirectory(prefix="kray-bench-wd-") as directory:
        with open(os.path.join(directory, "data.bin"), "wb") as f:
            f.write(os.urandom(WORKING_DIR_BYTES))
        times = []
        for _ in range(2):
            start = time.perf_counter()
            client.submit_job(entrypoint="true", runtime_env={"working_dir": directory})
            times.append(time.perf_counter() - start)
    return times[0], times[1]


def job_rows(bench: Any, runs: int = 10) -> None:
    """Run the job rows on a fresh local cluster with its HTTP server (the caller's cluster is shut down)."""
    from kray.cli.microbenchmark import Result
    from kray.job_submission import JobSubmissionClient

    if not any(bench.wants(name) for name in JOB_ROWS):
        return
    context = kray.init(include_dashboard=True)
    try:
        client = JobSubmissionClient("http://" + context.dashboard_url)
        time.sleep(1.0)  # idle means idle: let start-up work settle
        if bench.wants(JOB_ROWS[0]):
            bench.add(Result(JOB_ROWS[0], _dashboard_rss() / 1e6, 0.0, unit=""))
        if bench.wants(JOB_ROWS[1]) or bench.wants(JOB_ROWS[2]):
            _latencies(client, 2)  # warm-up: the first job connects the server to the cluster
            to_running, to_done = _latencies(client, runs)
            for name, samples in ((JOB_ROWS[1], to_running), (JOB_ROWS[2], to_done)):
                if bench.wants(name):
                    bench.add(Result(name, statistics.median(samples), statistics.pstdev(samples), unit=""))
        if bench.wants(JOB_ROWS[3]) or bench.wants(JOB_ROWS[4]):
            first, again = _working_dir_submits(client)
            for name, value in ((JOB_ROWS[3], first), (JOB_ROWS[4], again)):
                if bench.wants(name):
                    bench.add(Result(name, value, 0.0, unit=""))
    finally:
        kray.shutdown()
