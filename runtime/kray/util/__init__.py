"""kray.util: ActorPool, Queue, scheduling strategies and the state API.

Names are loaded lazily, so that kray's own server processes (which use kray.util.process_watch)
do not import the driver API.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ActorPool", "Queue", "list_actors", "NodeAffinitySchedulingStrategy"]


def __getattr__(name: str) -> Any:
    if name == "ActorPool":
        from kray.util.actor_pool import ActorPool

        return ActorPool
    if name == "Queue":
        from kray.util.queue import Queue

        return Queue
    if name == "list_actors":
        from kray.util.state import list_actors

        return list_actors
    if name == "NodeAffinitySchedulingStrategy":
        from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy
    raise AttributeError(f"module 'kray.util' has no attribute {name!r}")
