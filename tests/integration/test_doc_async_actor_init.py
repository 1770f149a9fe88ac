"""An actor whose constructor is `async def __init__` (Ray's actor-http-server example starts its server from
one): as in Ray, the instance is made first and __init__ is awaited on the actor's event loop before any
call runs, and an exception it raises fails the actor's creation."""

from __future__ import annotations

import asyncio
import threading

import kray
import pytest

from . import helpers

cluster = helpers.module_cluster(num_cpus=2)


@kray.remote
class Server:
    async def __init__(self, start: int) -> None:
        await asyncio.sleep(0)  # a real await: __init__ runs as a coroutine
        self.count = start
        self.init_loop = id(asyncio.get_running_loop())
        self.init_thread = threading.get_ident()
        self.ready = asyncio.Event()
        asyncio.get_running_loop().call_soon(self.ready.set)  # scheduled on the loop the methods use

    async def increment(self) -> int:
        await asyncio.wait_for(self.ready.wait(), timeout=60)
        self.count += 1
        return self.count

    async def where(self) -> tuple[bool, bool]:
        return id(asyncio.get_running_loop()) == self.init_loop, threading.get_ident() == self.init_thread


@kray.remote
class Broken:
    async def __init__(self) -> None:
        await asyncio.sleep(0)
        raise ValueError("the async constructor failed")

    async def ping(self) -> str:
        return "pong"


def test_async_init_is_awaited_on_the_actors_event_loop(cluster: helpers.LocalCluster) -> None:
    server = Server.remote(40)
    assert [kray.get(server.increment.remote(), timeout=60) for _ in range(2)] == [41, 42]
    assert kray.get(server.where.remote(), timeout=60) == (True, True)


def test_an_async_init_that_raises_fails_the_actors_creation(cluster: helpers.LocalCluster) -> None:
    broken = Broken.remote()
    with pytest.raises(kray.exceptions.RayActorError) as failed:
        kray.get(broken.ping.remote(), timeout=60)
    assert "the async constructor failed" in str(failed.value)
