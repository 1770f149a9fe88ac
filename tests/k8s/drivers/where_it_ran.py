"""A driver for the k8s tier, run inside a kray pod as `kubectl exec` would run it.

`kray.init()` finds the cluster through the pod's KRAY_ADDRESS (the head Service) and token; the driver
waits for `expected` live nodes, spreads tasks over them, makes an array on every node and reads it
back here (a cross-node fetch), and prints one line `REPORT {json}` for the test to check.
"""

from __future__ import annotations

import json
import sys
import time

import kray
import numpy as np
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

NODES_TIMEOUT_S = 90.0
ARRAY_LENGTH = 2_000_000  # 16 MB: kept in the making node's object store, fetched in chunks


@kray.remote
def where() -> str:
    return kray.get_runtime_context().get_node_id()


@kray.remote
def make(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


def live_nodes() -> dict[str, str]:
    return {n["NodeID"]: n["NodeManagerAddress"] for n in kray.nodes() if n["Alive"]}


def main(expected: int) -> None:
    kray.init()
    deadline = time.monotonic() + NODES_TIMEOUT_S
    while len(live_nodes()) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {live_nodes()} of {expected} nodes are alive after {NODES_TIMEOUT_S:g}s")
        time.sleep(0.2)
    nodes = live_nodes()
    spread = kray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(3 * len(nodes))],
                      timeout=120)
    sums = {}
    for node_id, ip in nodes.items():
        pinned = NodeAffinitySchedulingStrategy(node_id, soft=False)
        sums[ip] = int(kray.get(make.options(scheduling_strategy=pinned).remote(ARRAY_LENGTH), timeout=120).sum())
    report = {
        "driver_node": nodes[kray.get_runtime_context().get_node_id()],
        "nodes": sorted(nodes.values()),
        "spread": sorted({nodes[n] for n in spread}),
        "sums": sums,
        "expected_sum": ARRAY_LENGTH * (ARRAY_LENGTH - 1) // 2,
    }
    print("REPORT " + json.dumps(report), flush=True)
    kray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]))
