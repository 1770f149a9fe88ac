"""A driver for the autoscaler tests, run inside the head pod (a head with num-cpus 0: no task runs there).

`tasks N WORKERS DIR`: N 1-CPU tasks, each marking its node in DIR (pods share the host's files) and holding
its CPU until WORKERS nodes are marked (so WORKERS of them run at once, on distinct 1-CPU nodes), then
printing `REPORT {"nodes": [...]}` with where each ran.
`gpu GATE`: one task that asks for a GPU, left pending until the file GATE exists; then exits.
`hold IDLE_S DIR`: a STRICT_SPREAD placement group of 2 x {CPU: 1} (printing where its bundles went), removed
once ready; then `request_resources(num_cpus=2)` until both worker nodes have been idle for IDLE_S (as the
head reports it), writing DIR/held, and until DIR/gate exists; then the request is cleared.
`timed`: one 1-CPU task; prints when it was submitted and when it started (wall clock, for the benchmark).
`cancel DIR`: three 1-CPU tasks (DIR/submitted), cancelled once DIR/cancel exists (DIR/cancelled), then once
DIR/go exists one more task, waited for.
`busy DIR`: two 1-CPU tasks on two nodes at once (marks in DIR/marks), then one long task that writes its
Pod's name to DIR/busy and runs until DIR/gate exists.
`object DIR`: two 1-CPU tasks on two nodes at once (marks in DIR/marks), one returning a 1 MiB result (its
primary copy stays on its node) whose Pod's name goes to DIR/holder; the reference is held until DIR/gate
exists, then dropped, and the driver stays connected until DIR/done exists.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

import kray
from kray.autoscaler.sdk import request_resources
from kray.util import placement_group, placement_group_table, remove_placement_group

POLL_S = 0.2


def mark_and_wait(workers: int, directory: str) -> str:
    """Mark this node in `directory`, then wait until `workers` nodes are marked; this node's id."""
    node = kray.get_runtime_context().get_node_id()
    open(os.path.join(directory, node), "w").close()
    while len(os.listdir(directory)) < workers:
        time.sleep(POLL_S)
    return node


@kray.remote(num_cpus=1)
def hold_until(workers: int, directory: str) -> str:
    return mark_and_wait(workers, directory)


@kray.remote(num_gpus=1)
def needs_gpu() -> int:
    return 1


@kray.remote(num_cpus=1)
def started_at() -> float:
    return time.time()


@kray.remote(num_cpus=1)
def long_task(directory: str) -> str:
    pod = os.environ.get("KRAY_POD_NAME", "")
    with open(os.path.join(directory, "busy"), "w") as f:
        f.write(pod)
    while not os.path.exists(os.path.join(directory, "gate")):
        time.sleep(POLL_S)
    return pod


@kray.remote(num_cpus=1)
def pod_and_result(workers: int, directory: str, size: int) -> tuple[str, bytes]:
    mark_and_wait(workers, directory)
    return os.environ.get("KRAY_POD_NAME", ""), b"x" * size


def idle_workers(at_least: float) -> int:
    """Worker nodes the head reports idle for `at_least` seconds (its HTTP API, with the pod's token)."""
    request = urllib.request.Request("http://127.0.0.1:8265/api/cluster/demand",
                                     headers={"Authorization": f"Bearer {os.environ['KRAY_CLUSTER_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        nodes = json.loads(response.read())["nodes"]
    return sum(1 for n in nodes if n["alive"] and not n["is_head"] and (n["idle_s"] or 0) >= at_least)


def hold(idle_s: float, directory: str) -> None:
    pg = placement_group([{"CPU": 1}] * 2, strategy="STRICT_SPREAD")
    kray.get(pg.ready(), timeout=600)
    table = placement_group_table(pg)
    bundle_nodes = [table["bundles_to_node_id"][i] for i in range(2)]
    remove_placement_group(pg)
    request_resources(num_cpus=2)
    while idle_workers(idle_s) < 2:
        time.sleep(POLL_S)
    with open(os.path.join(directory, "held"), "w") as f:
        f.write(json.dumps({"bundle_nodes": bundle_nodes}))
    while not os.path.exists(os.path.join(directory, "gate")):
        time.sleep(POLL_S)
    request_resources()
    print("REPORT " + json.dumps({"bundle_nodes": bundle_nodes}), flush=True)


def touch_and_wait(directory: str, mark: str, gate: str) -> None:
    open(os.path.join(directory, mark), "w").close()
    while not os.path.exists(os.path.join(directory, gate)):
        time.sleep(POLL_S)


def main(argv: list[str]) -> None:
    kray.init()
    if argv[0] == "tasks":
        count, workers, directory = int(argv[1]), int(argv[2]), argv[3]
        nodes = kray.get([hold_until.remote(workers, directory) for _ in range(count)], timeout=600)
        print("REPORT " + json.dumps({"nodes": nodes}), flush=True)
    elif argv[0] == "gpu":
        pending = needs_gpu.remote()
        print("SUBMITTED", flush=True)
        while not os.path.exists(argv[1]):
            time.sleep(POLL_S)
        ready, _ = kray.wait([pending], timeout=0)
        print("REPORT " + json.dumps({"ran": bool(ready)}), flush=True)
    elif argv[0] == "timed":
        submitted = time.time()
        started = kray.get(started_at.remote(), timeout=600)
        print("REPORT " + json.dumps({"submitted": submitted, "started": started}), flush=True)
    elif argv[0] == "cancel":
        refs = [started_at.remote() for _ in range(3)]
        touch_and_wait(argv[1], "submitted", "cancel")
        for ref in refs:
            kray.cancel(ref)
        cancelled = 0
        for ref in refs:
            try:
                kray.get(ref, timeout=600)
            except kray.exceptions.TaskCancelledError:
                cancelled += 1
        touch_and_wait(argv[1], "cancelled", "go")
        kray.get(started_at.remote(), timeout=600)
        print("REPORT " + json.dumps({"cancelled": cancelled}), flush=True)
    elif argv[0] == "busy":
        marks = os.path.join(argv[1], "marks")
        nodes = kray.get([hold_until.remote(2, marks) for _ in range(2)], timeout=600)
        pod = kray.get(long_task.remote(argv[1]), timeout=600)
        print("REPORT " + json.dumps({"nodes": nodes, "busy_pod": pod}), flush=True)
    elif argv[0] == "hold":
        hold(float(argv[1]), argv[2])
    elif argv[0] == "object":
        marks = os.path.join(argv[1], "marks")
        refs = [pod_and_result.remote(2, marks, size) for size in (1 << 20, 0)]
        holder = kray.get(refs[0], timeout=600)[0]
        other = kray.get(refs[1], timeout=600)[0]
        with open(os.path.join(argv[1], "holder"), "w") as f:
            f.write(holder)
        touch_and_wait(argv[1], "held", "gate")
        del refs  # the owner frees the object: its node may go now
        touch_and_wait(argv[1], "dropped", "done")
        print("REPORT " + json.dumps({"holder": holder, "other": other}), flush=True)
    kray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
