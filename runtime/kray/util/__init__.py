"""kray.util: ActorPool, Queue, scheduling strategies, the state API, list_named_actors and
inspect_serializability (kray.util.multiprocessing holds the Pool).

Names are loaded lazily, so that kray's own server processes (which use kray.util.process_watch)
do not import the driver API.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorPool",
    "NodeAffinitySchedulingStrategy",
    "PlacementGroup",
    "Queue",
    "get_current_placement_group",
    "get_node_ip_address",
    "get_placement_group",
    "inspect_serializability",
    "list_actors",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


def __getattr__(name: str) -> Any:
    if name == "ActorPool":
        from kray.util.actor_pool import ActorPool

        return ActorPool
    if name == "Queue":
        from kray.util.queue import Queue

        return Queue
    if name == "list_named_actors":
        from kray.util.named_actors import list_named_actors

        return list_named_actors
    if name == "inspect_serializability":
        from kray.util.serializability import inspect_serializability

        return inspect_serializability
    if name == "list_actors":
        from kray.util.state import list_actors

        return list_actors
    if name in ("placement_group", "remove_placement_group", "get_placement_group", "placement_group_table",
                "get_current_placement_group", "PlacementGroup"):
        import importlib

        module = importlib.import_module("kray.util.placement_group")
        # The submodule shares its name with the function; as in Ray, kray.util.placement_group is
        # the function once asked for.
        globals()["placement_group"] = module.placement_group
        return getattr(module, name)
    if name == "get_node_ip_address":
        from kray._private.services import get_node_ip_address

        return get_node_ip_address
    if name == "NodeAffinitySchedulingStrategy":
        from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy
    raise AttributeError(f"module 'kray.util' has no attribute {name!r}")
