"""Faults injected into a loaded 3-node cluster; each test states the promise it checks (issue 15).

The load (load_driver.py): retryable tasks spread over the nodes, 10 MiB objects made on one node and read
on another, and calls to actors with max_restarts=-1 whose state is rebuilt from a constructor argument
passed by reference. Every result is checked by value. A row per fault goes into the table printed at
the end of the run (conftest.py); the processes and /dev/shm entries left are counted after `kray stop`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
from integration import helpers

from .conftest import NODE_TIMEOUT_S, processes_of

STATE_QUERY = """
import json, kray
from kray.util import state
kray.init(address={address!r})
print(json.dumps({{"actors": [a["state"] for a in state.list_actors() if a.get("class_name") == "Counter"],
                   "available": kray.available_resources().get("CPU", 0), "total": kray.cluster_resources()["CPU"]}}))
"""


def _finish_and_check(load, record, fault: str, promise: str, started: float) -> None:
    """Let the load run three more rounds, stop it, record the row, and check every result arrived."""
    load.wait_rounds(3)
    status = load.stop()
    record(fault, promise, status, seconds=round(time.monotonic() - started, 1))
    _assert_all_results(status, fault)


def _assert_all_results(status: dict, what: str) -> None:
    assert status["fatal"] is None, f"the driver failed after {what}: {status['fatal']}\n{status.get('traceback')}"
    assert status["errors"] == {} and status["wrong"] == 0, f"after {what}: {status}"
    assert status["received"] == status["expected"] > 0, f"after {what}: {status}"


def test_sigkill_of_every_worker_on_a_node_loses_no_retryable_result(chaos_cluster, start_load, record) -> None:
    """Promise: every retryable task result arrives, and actors come back with their state rebuilt."""
    load = start_load()
    workers = processes_of(chaos_cluster, 1, "kray.worker")
    assert workers, "node 1 runs no worker under load"
    for proc in workers:
        proc.kill()
    _finish_and_check(load, record, "SIGKILL all workers of node 1", "retryable results all arrive; actors rebuilt",
                      time.monotonic())


def test_sigkill_of_a_worker_nodes_raylet_loses_no_result_and_no_process(chaos_cluster, start_load, record) -> None:
    """Promise: the node is declared dead, its work is retried elsewhere (objects rebuilt from lineage),
    and its workers exit with their raylet."""
    load = start_load()
    raylet = processes_of(chaos_cluster, 2, "kray.raylet")
    assert len(raylet) == 1
    workers = processes_of(chaos_cluster, 2, "kray.worker")
    raylet[0].kill()
    started = time.monotonic()
    helpers.wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers),
                       what="the dead raylet's workers to exit")
    _finish_and_check(load, record, "SIGKILL raylet of node 2", "results all arrive; its workers exit", started)


def test_sigstop_of_a_raylet_past_the_node_timeout_then_sigcont(chaos_cluster, start_load, record) -> None:
    """Promise: a frozen node is declared dead and its work retried elsewhere; once it runs again it
    learns it was declared dead and leaves with its workers, nothing lost and nothing left."""
    load = start_load()
    raylet = processes_of(chaos_cluster, 2, "kray.raylet")[0]
    raylet.suspend()
    started = time.monotonic()
    try:
        time.sleep(NODE_TIMEOUT_S * 3)
    finally:
        raylet.resume()
    helpers.wait_until(lambda: not processes_of(chaos_cluster, 2, "kray.raylet"),
                       what="the resumed raylet, declared dead, to leave")
    _finish_and_check(load, record, f"SIGSTOP raylet of node 2 for {NODE_TIMEOUT_S * 3:g}s, SIGCONT",
                      "results all arrive; node leaves", started)


def test_sigkill_of_the_driver_frees_its_workers_and_actors(chaos_cluster, start_load, record, tmp_path) -> None:
    """Promise: a driver killed with SIGKILL leaks nothing: its actors die and every CPU is free again."""
    load = start_load()
    status = load.status()
    load.proc.send_signal(signal.SIGKILL)
    load.proc.wait()
    started = time.monotonic()
    env = chaos_cluster.node_env(chaos_cluster.nodes[0], chaos_cluster.token)
    env.pop("KRAY_TEST_MULTINODE_NODE", None)
    env["KRAY_TEMP_DIR"] = str(tmp_path / "observer")
    script = STATE_QUERY.format(address=chaos_cluster.address)

    def freed() -> dict | None:
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                             check=False)
        if out.returncode != 0:
            raise AssertionError(out.stdout + out.stderr)
        found = json.loads(out.stdout.strip().splitlines()[-1])
        done = found["actors"] and all(s == "DEAD" for s in found["actors"]) and found["available"] == found["total"]
        return found if done else None

    found = helpers.wait_until(freed, what="the killed driver's actors to die and its CPUs to be freed")
    record("SIGKILL the driver", "its actors die; all CPUs free", status,
           seconds=round(time.monotonic() - started, 1), actors=len(found["actors"]))


def test_sigkill_of_the_head_gives_the_driver_a_clear_error_not_a_hang(chaos_cluster, start_load, record) -> None:
    """Promise: when the head dies, the driver's pending calls fail with a clear error within seconds and
    the driver exits; the other nodes leave once the head stays gone."""
    load = start_load()
    chaos_cluster.kill_node(0)
    started = time.monotonic()
    helpers.wait_until(lambda: load.proc.poll() is not None, 120.0,
                       f"the driver to fail after the head died; log:\n{load.output()}")
    seconds = round(time.monotonic() - started, 1)
    status = load.status()
    errors = status["errors"]
    record("SIGKILL the head (GCS + raylet)", "driver gets a clear error, exits", status, seconds=seconds,
           exit_code=load.proc.returncode)
    assert load.proc.returncode != 0
    assert status["fatal"] or errors, f"the driver exited without saying why: {status}\n{load.output()}"
    text = (status["fatal"] or "") + " ".join(errors) + load.output()
    assert any(word in text for word in ("NodeDiedError", "head", "GCS", "RaySystemError", "died")), text
    for index in (1, 2):
        helpers.wait_until(lambda i=index: not processes_of(chaos_cluster, i, "kray.raylet"),
                           what=f"node {index}'s raylet to leave after the head died")
