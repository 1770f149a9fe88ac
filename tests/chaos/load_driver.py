"""A driver that keeps a steady load on a cluster while the chaos tests inject faults; run as a script.

    python load_driver.py ADDRESS STATUS_FILE STOP_FILE

Each round submits retryable tasks (SPREAD over the nodes), calls restartable actors whose state comes
from a constructor argument passed by reference, and makes 10 MiB objects on the nodes that are then
read by other tasks. Every result is checked, and the counts (expected, received, errors by type) are
written to STATUS_FILE as JSON after each round. The driver runs until STOP_FILE exists, then finishes
the round, writes the final counts and exits 0; an exception that ends the driver is recorded too.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import kray
import numpy as np

TASKS_PER_ROUND = 6
BLOBS_PER_ROUND = 2
BLOB_BYTES = 10 * 1024 * 1024
ACTORS = 2
RESULT_TIMEOUT_S = 120.0


@kray.remote(max_retries=-1, scheduling_strategy="SPREAD")
def square(x: int) -> int:
    time.sleep(0.05)
    return x * x


@kray.remote(max_retries=-1, scheduling_strategy="SPREAD")
def make_blob(seed: int) -> np.ndarray:
    return np.full(BLOB_BYTES // 8, seed, dtype=np.int64)


@kray.remote(max_retries=-1, scheduling_strategy="SPREAD")
def blob_sum(blob: np.ndarray) -> int:
    return int(blob.sum())


@kray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class Counter:
    """Its state after a restart is rebuilt from the constructor's argument (a ref to an array)."""

    def __init__(self, base: np.ndarray) -> None:
        self.base_sum = int(base.sum())
        self.calls = 0

    def add(self) -> int:
        self.calls += 1
        return self.base_sum


def main() -> None:
    address, status_file, stop_file = sys.argv[1:4]
    kray.init(address=address)
    counts = {"rounds": 0, "expected": 0, "received": 0, "wrong": 0, "errors": {}, "fatal": None}
    base = np.arange(1000, dtype=np.int64)
    base_sum = int(base.sum())
    base_ref = kray.put(base)
    actors = [Counter.options(scheduling_strategy="SPREAD").remote(base_ref) for _ in range(ACTORS)]
    round_index = 0
    try:
        while not os.path.exists(stop_file):
            round_index += 1
            refs = [square.remote(i) for i in range(TASKS_PER_ROUND)]
            wanted: list = [i * i for i in range(TASKS_PER_ROUND)]
            kinds = ["task"] * TASKS_PER_ROUND
            seeds = [round_index * 10 + k for k in range(BLOBS_PER_ROUND)]
            refs += [blob_sum.remote(make_blob.remote(s)) for s in seeds]
            wanted += [s * (BLOB_BYTES // 8) for s in seeds]
            kinds += ["blob"] * BLOBS_PER_ROUND
            refs += [a.add.remote() for a in actors]
            wanted += [base_sum] * ACTORS
            kinds += [f"actor{i}" for i in range(ACTORS)]
            counts["expected"] += len(refs)
            for ref, want, kind in zip(refs, wanted, kinds):
                try:
                    got = kray.get(ref, timeout=RESULT_TIMEOUT_S)
                except Exception as e:  # noqa: BLE001 - counted by type: the test decides what is allowed
                    name = f"{type(e).__name__} ({kind})"
                    counts["errors"][name] = counts["errors"].get(name, 0) + 1
                    print(f"round {round_index}: {kind} {ref.hex()}: {type(e).__name__}: {e}", flush=True)
                    continue
                if got == want:
                    counts["received"] += 1
                else:
                    counts["wrong"] += 1
            counts["rounds"] = round_index
            _write(status_file, counts)
    except BaseException as e:  # the driver itself failed: say how, then exit non-zero
        counts["fatal"] = f"{type(e).__name__}: {e}"
        counts["traceback"] = traceback.format_exc()[-2000:]
        _write(status_file, counts)
        raise
    _write(status_file, counts)


def _write(path: str, counts: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(counts, f)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
