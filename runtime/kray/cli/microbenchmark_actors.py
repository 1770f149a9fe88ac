"""The actor rows of `kray microbenchmark`, with Ray's names and loops (python/ray/_private/ray_perf.py),
written once against a framework module (`rt`: kray, or ray under `--compare-ray`), standard library
only, as microbenchmark_rows.

Creates actors on the running cluster; no other I/O.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

ACTOR_ROWS = (
    "1:1 actor calls sync", "1:1 actor calls async", "1:1 actor calls concurrent", "1:n actor calls async",
    "n:n actor calls async", "n:n actor calls with arg async", "1:1 async-actor calls sync",
    "1:1 async-actor calls async", "1:1 async-actor calls with args async", "1:n async-actor calls async",
    "n:n async-actor calls async",
)


def _classes(rt: Any) -> tuple[Any, Any, Any]:
    @rt.remote
    def small_value_task() -> bytes:
        return b"ok"

    @rt.remote
    class Actor:
        def small_value(self) -> bytes:
            return b"ok"

        def small_value_arg(self, x: Any) -> bytes:
            return b"ok"

        def small_value_batch(self, n: int) -> None:
            rt.get([small_value_task.remote() for _ in range(n)])

    @rt.remote
    class AsyncActor:
        async def small_value(self) -> bytes:
            return b"ok"

        async def small_value_with_arg(self, x: Any) -> bytes:
            return b"ok"

    @rt.remote(num_cpus=0)
    class Client:
        """Calls its servers from another process: the n:n rows."""

        def __init__(self, servers: Any) -> None:
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n: int) -> None:
            refs: list[Any] = []
            for server in self.servers:
                refs.extend(server.small_value.remote() for _ in range(n))
            rt.get(refs)

        def small_value_batch_arg(self, n: int) -> None:
            x = rt.put(0)
            refs: list[Any] = []
            for server in self.servers:
                refs.extend(server.small_value_arg.remote(x) for _ in range(n))
            rt.get(refs)

    return Actor, AsyncActor, Client


def actor_rows(rt: Any, bench: Any) -> None:
    """Ray's actor rows, in Ray's order, on the cluster `rt` is attached to."""
    if not any(bench.wants(name) for name in ACTOR_ROWS):
        return
    Actor, AsyncActor, Client = _classes(rt)
    n_cpu = max(1, multiprocessing.cpu_count() // 2)
    a = Actor.remote()
    bench.timeit("1:1 actor calls sync", lambda: rt.get(a.small_value.remote()))
    bench.timeit("1:1 actor calls async", lambda: rt.get([a.small_value.remote() for _ in range(1000)]), 1000)
    concurrent = Actor.options(max_concurrency=16).remote()
    bench.timeit(
        "1:1 actor calls concurrent", lambda: rt.get([concurrent.small_value.remote() for _ in range(1000)]), 1000
    )
    n = 5000
    actors = [Actor.remote() for _ in range(n_cpu)]
    bench.timeit(
        "1:n actor calls async",
        lambda: rt.get([actors[i % n_cpu].small_value.remote() for i in range(n)]), n,
    )
    m, per = 4, 1000
    servers = [Actor.remote() for _ in range(m)]
    clients = [Client.remote(s) for s in servers]
    bench.timeit("n:n actor calls async", lambda: rt.get([c.small_value_batch.remote(per) for c in clients]), m * per)
    bench.timeit(
        "n:n actor calls with arg async",
        lambda: rt.get([c.small_value_batch_arg.remote(per) for c in clients]), m * per,
    )
    aa = AsyncActor.remote()
    bench.timeit("1:1 async-actor calls sync", lambda: rt.get(aa.small_value.remote()))
    bench.timeit("1:1 async-actor calls async", lambda: rt.get([aa.small_value.remote() for _ in range(1000)]), 1000)
    bench.timeit(
        "1:1 async-actor calls with args async",
        lambda: rt.get([aa.small_value_with_arg.remote(i) for i in range(1000)]), 1000,
    )
    async_actors = [AsyncActor.remote() for _ in range(n_cpu)]
    bench.timeit(
        "1:n async-actor calls async",
        lambda: rt.get([async_actors[i % n_cpu].small_value.remote() for i in range(n)]), n,
    )
    async_servers = [AsyncActor.remote() for _ in range(m)]
    async_clients = [Client.remote(s) for s in async_servers]
    bench.timeit(
        "n:n async-actor calls async",
        lambda: rt.get([c.small_value_batch.remote(per) for c in async_clients]), m * per,
    )
    for handle in [a, concurrent, *actors, *servers, *clients, aa, *async_actors, *async_servers, *async_clients]:
        rt.kill(handle)
