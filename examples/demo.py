"""A small kray program on an embedded local cluster, run by `make demo`.

Estimates pi with parallel Monte-Carlo tasks, shares one numpy matrix with many tasks through the
object store (no copies), sums a range with nested tasks, shows a task's error coming back to the
driver, and prints results and timings.
"""

from __future__ import annotations

import time

import numpy as np

import kray


@kray.remote
def sample_pi(num_samples: int, seed: int) -> int:
    """How many of `num_samples` random points of the unit square fall inside the quarter circle."""
    rng = np.random.default_rng(seed)
    points = rng.random((num_samples, 2))
    return int(np.count_nonzero((points**2).sum(axis=1) <= 1.0))


@kray.remote
def column_stats(matrix: np.ndarray, first: int, last: int) -> list[tuple[int, float, float]]:
    """Mean and standard deviation of columns [first, last) of a matrix that lives in shared memory."""
    block = matrix[:, first:last]  # a read-only view: the task did not copy the matrix
    return [(first + i, float(m), float(s)) for i, (m, s) in enumerate(zip(block.mean(0), block.std(0)))]


@kray.remote
def tree_sum(lo: int, hi: int, leaf: int) -> int:
    """Sum of range(lo, hi), split in halves by nested tasks down to `leaf` numbers per task."""
    if hi - lo <= leaf:
        return sum(range(lo, hi))
    mid = (lo + hi) // 2
    return sum(kray.get([tree_sum.remote(lo, mid, leaf), tree_sum.remote(mid, hi, leaf)]))


def timed(label: str, start: float) -> None:
    print(f"   ({label} in {time.perf_counter() - start:.2f} s)")


def estimate_pi(tasks: int = 8, samples_per_task: int = 1_000_000) -> None:
    print(f"\n1. Monte-Carlo pi: {tasks} tasks x {samples_per_task:,} samples")
    start = time.perf_counter()
    refs = [sample_pi.remote(samples_per_task, seed) for seed in range(tasks)]
    inside = 0
    pending = refs
    while pending:  # take results as they finish, not in submission order
        ready, pending = kray.wait(pending, num_returns=1)
        inside += kray.get(ready[0])
    estimate = 4 * inside / (tasks * samples_per_task)
    print(f"   pi ~ {estimate:.5f} (error {abs(estimate - np.pi):.5f})")
    timed("computed", start)


def shared_matrix_stats(rows: int = 4000, cols: int = 256, tasks: int = 8) -> None:
    print(f"\n2. One {rows}x{cols} float64 matrix ({rows * cols * 8 / 1e6:.1f} MB) put once, read by {tasks} tasks")
    start = time.perf_counter()
    matrix = np.random.default_rng(0).normal(loc=np.arange(cols), scale=1.0, size=(rows, cols))
    ref = kray.put(matrix)  # stored once in shared memory; tasks get read-only views of it
    step = cols // tasks
    parts = kray.get([column_stats.remote(ref, i, i + step) for i in range(0, cols, step)])
    stats = [row for part in parts for row in part]
    worst = max(abs(mean - col) for col, mean, _ in stats)
    print(f"   {len(stats)} columns; column means match their expected values within {worst:.3f}")
    back = kray.get(ref)
    print(f"   get() gives a read-only view, no copy: writeable={back.flags.writeable}")
    timed("computed", start)


def nested_sum(n: int = 2_000_000, leaf: int = 250_000) -> None:
    print(f"\n3. Nested tasks: sum(range({n:,})) split down to {leaf:,} numbers per task")
    start = time.perf_counter()
    total = kray.get(tree_sum.remote(0, n, leaf))
    expected = n * (n - 1) // 2
    print(f"   {total:,} ({'correct' if total == expected else f'WRONG, expected {expected:,}'})")
    timed("computed", start)


@kray.remote
def parse_reading(text: str) -> float:
    return float(text)


def task_errors() -> None:
    print("\n4. A task's exception comes back on get(), as the original class, with the remote traceback")
    try:
        kray.get(parse_reading.remote("12.5 degrees"))
    except ValueError as e:  # also a kray.exceptions.RayTaskError
        print(f"   caught {type(e).__name__}: {str(e).strip().splitlines()[-1]}")


def main() -> None:
    start = time.perf_counter()
    kray.init()
    resources = kray.cluster_resources()
    print(f"kray local cluster up in {time.perf_counter() - start:.2f} s: "
          f"{resources.get('CPU', 0):g} CPUs, {len(kray.nodes())} node(s)")
    try:
        estimate_pi()
        shared_matrix_stats()
        nested_sum()
        task_errors()
    finally:
        kray.shutdown()
    print(f"\ndemo finished in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
