"""The GCS's cluster-level metrics: nodes alive/dead, actors by state and class, placement groups by
state, jobs by state. The GCS does not serve HTTP itself: as in Ray, where the GCS reports to the head
node's metrics agent, the head raylet asks for these counts (GetClusterMetrics) and its endpoint
(raylet/metrics_export.py) exports them. Counting runs on the GCS loop, so it reads its tables safely.
Every raylet's endpoint also asks it once for the cluster's session name (GetSessionName): the head
node's, which Ray's series carry as SessionName on every node of the cluster.
"""

from __future__ import annotations

from typing import Any

from kray.protocol import loop as loop_mod
from kray.protocol import metrics_messages


def cluster_counts(gcs: Any) -> dict[str, Any]:
    """Counts of the GCS's tables; keys are tuples of label values, values are numbers."""
    nodes: dict[str, int] = {"ALIVE": 0, "DEAD": 0}
    for node in gcs.nodes.values():
        nodes["ALIVE" if node.alive else "DEAD"] += 1
    actors: dict[tuple[str, str], int] = {}
    for record in gcs.actors.actors.values():
        key = (record.info.options.class_name, record.info.state)
        actors[key] = actors.get(key, 0) + 1
    groups: dict[str, int] = {}
    for group in gcs.placement_groups.groups.values():
        groups[group.info.state] = groups.get(group.info.state, 0) + 1
    jobs: dict[str, int] = {"RUNNING": 0, "FINISHED": 0}
    for job in gcs.jobs.values():
        jobs["FINISHED" if "end_time" in job else "RUNNING"] += 1
    return {"nodes": nodes, "actors": actors, "placement_groups": groups, "jobs": jobs}


def session_name(gcs: Any) -> str:
    """The head node's session name (a live head first), or "" while no head has registered."""
    heads = sorted((not node.alive, node.node_id) for node in gcs.nodes.values() if node.is_head)
    if not heads:
        return ""
    return metrics_messages.session_name_of(gcs.nodes[heads[0][1]].spill_dir)


def install(gcs: Any) -> None:
    """Answer GetClusterMetrics and GetSessionName on the GCS's loop."""

    def on_get(msg: metrics_messages.GetClusterMetrics, payload: list, peer: loop_mod.Peer) -> None:
        peer.reply(msg.req_id, cluster_counts(gcs))

    def on_session(msg: metrics_messages.GetSessionName, payload: list, peer: loop_mod.Peer) -> None:
        peer.reply(msg.req_id, session_name(gcs))

    gcs.loop.on(metrics_messages.GetClusterMetrics, on_get)
    gcs.loop.on(metrics_messages.GetSessionName, on_session)
