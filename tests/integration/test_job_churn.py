"""Driver churn leaves the GCS's tables at size (issue 20 item 7): every short-lived driver is a job of its
own, and the GCS forgets the oldest finished jobs beyond its bound (KRAY_MAXIMUM_GCS_DEAD_JOB_CACHED_COUNT,
10,000 by default; Ray keeps them all today) while no other table grows.

Starts a local cluster with kray.init() and drivers as subprocesses attached to it.
"""

from __future__ import annotations

from collections.abc import Callable

import kray
import psutil
import pytest
from kray.cli import microbenchmark_churn
from kray.util import state

from . import helpers

KEPT = 3
DRIVERS = 7
# Entries each live process (a driver, a worker) holds in the GCS while it lives.
PER_PROCESS = {"node_subscribers", "subscriber_of", "owners"}


def _live_workers() -> int:
    count = 0
    for proc in psutil.Process().children(recursive=True):
        try:
            count += "kray.worker" in " ".join(proc.cmdline())
        except psutil.Error:
            continue
    return count


def test_short_lived_drivers_leave_the_gcs_tables_bounded(
        cluster_factory: Callable[..., helpers.LocalCluster], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRAY_MAXIMUM_GCS_DEAD_JOB_CACHED_COUNT", str(KEPT))
    cluster_factory(num_cpus=1)
    microbenchmark_churn.short_lived_drivers(1)  # a warm-up: the first driver's connections come and go
    before, workers_before = microbenchmark_churn.table_sizes(), _live_workers()
    microbenchmark_churn.short_lived_drivers(DRIVERS)
    seen: list[dict[str, int]] = []

    def settled() -> bool:
        """Nothing grew but the entries of worker processes alive now that were not before (an idle
        worker the raylet keeps)."""
        seen.append(microbenchmark_churn.table_sizes())
        more_workers = max(0, _live_workers() - workers_before)
        grown = microbenchmark_churn.grown(before, seen[-1])
        return all(name in PER_PROCESS and count <= more_workers for name, count in grown.items())

    helpers.wait_until(settled, 60, f"the GCS's and driver's tables to be as before {DRIVERS} drivers came and went")
    after = seen[-1]
    assert after["jobs"] <= KEPT + 1, f"{after['jobs']} job records kept; the bound is {KEPT} finished + this one"
    jobs = state.list_jobs()
    assert len(jobs) == after["jobs"]
    # This driver's job (alive) is never forgotten, whatever the churn.
    mine = kray.get_runtime_context().get_job_id()
    assert any(str(job.get("job_id")) in (mine, str(int(mine, 16))) for job in jobs), (mine, jobs)
