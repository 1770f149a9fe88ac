"""A small kray program: Monte-Carlo pi with tasks, a shared numpy array, and nested tasks.

Run with `make demo`; it starts an embedded local cluster with kray.init().
"""

from __future__ import annotations

import random
import time

import numpy as np

import kray


@kray.remote
def sample_pi(num_samples: int, seed: int) -> int:
    rng = random.Random(seed)
    return sum(1 for _ in range(num_samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)


@kray.remote
def column_means(matrix: np.ndarray, start: int, stop: int) -> np.ndarray:
    # `matrix` arrives as a read-only view of shared memory: no copy was made for this task.
    return matrix[:, start:stop].mean(axis=0)


@kray.remote
def fib(n: int) -> int:
    if n < 2:
        return n
    return sum(kray.get([fib.remote(n - 1), fib.remote(n - 2)]))


def main() -> None:
    started = time.perf_counter()
    kray.init()
    print(f"local cluster up in {time.perf_counter() - started:.2f}s: {kray.cluster_resources()['CPU']:g} CPUs")

    t = time.perf_counter()
    samples, chunks = 200_000, 16
    hits = kray.get([sample_pi.remote(samples, seed) for seed in range(chunks)])
    print(f"pi ~= {4 * sum(hits) / (samples * chunks):.4f}  ({chunks} tasks, {time.perf_counter() - t:.2f}s)")

    t = time.perf_counter()
    matrix = np.random.default_rng(0).random((2_000, 1_000))
    matrix_ref = kray.put(matrix)  # 16 MB in shared memory, shared by every task below
    parts = kray.get([column_means.remote(matrix_ref, i, i + 250) for i in range(0, 1_000, 250)])
    means = np.concatenate(parts)
    assert np.allclose(means, matrix.mean(axis=0))
    print(f"column means of a 16 MB matrix in 4 tasks: first {means[:3].round(4)}  ({time.perf_counter() - t:.2f}s)")

    t = time.perf_counter()
    print(f"fib(8) with nested tasks = {kray.get(fib.remote(8))}  ({time.perf_counter() - t:.2f}s)")

    @kray.remote
    def fails() -> None:
        raise ValueError("raised inside a task")

    try:
        kray.get(fails.remote())
    except ValueError as e:
        print(f"a task's exception re-raised on get: {type(e).__name__}: {str(e).splitlines()[0]}")
    kray.shutdown()
    print(f"done in {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    main()
