"""The GCS's answer to GetTableSizes (issue 15 defect 9): how many entries each of its tables holds,
read on its loop (a consistent view), so that a test or a person can check that churn of tasks, actors,
drivers and placement groups leaves them flat.
"""

from __future__ import annotations

from typing import Any

from kray.protocol import debug_messages
from kray.protocol import loop as loop_mod


def install(gcs: Any) -> None:
    def answer(msg: debug_messages.GetTableSizes, payload: list, peer: loop_mod.Peer) -> None:
        peer.reply(msg.req_id, sizes(gcs))

    gcs.loop.on(debug_messages.GetTableSizes, answer)


def sizes(gcs: Any) -> dict[str, int]:
    actors = gcs.actors
    groups = gcs.placement_groups
    table: dict[str, int] = {
        "nodes": len(gcs.nodes),
        "jobs": len(gcs.jobs),
        "kv": len(gcs.kv),
        "node_subscribers": len(gcs.node_subscribers),
        "subscriber_of": len(gcs.subscriber_of),
        "actors": len(actors.actors),
        "dead_actors": len(actors.dead),
        "named_actors": len(actors.named),
        "actor_creation_tasks": len(actors.by_creation_task),
        "actor_subscribers": len(actors.subscribers),
        "placement_groups": len(groups.groups),
        "connections": len(gcs.loop._peers),
        "pending_requests": len(gcs.loop._pending),
    }
    events = getattr(gcs, "task_events", None)
    if events is not None:
        table["task_event_attempts"] = len(events.attempts)
        table["task_event_infos"] = len(events.infos)
        table["task_event_evicted"] = len(events.evicted)
        table["task_event_ended"] = len(events.ended)
    table.update(gcs.owners.sizes())
    return table
