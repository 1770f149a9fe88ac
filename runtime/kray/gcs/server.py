"""The GCS server: node table, job ids, and a key-value store, served on one ROUTER socket.

Single-threaded on a protocol.loop.Loop; keeps everything in memory (no I/O besides its socket).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from kray import config
from kray.gcs import actors, placement_groups
from kray.protocol import loop as loop_mod
from kray.protocol import messages, wire

log = logging.getLogger(__name__)

# Ray's NodeDeathInfo.Reason values, as kray.nodes() reports them under "DeathReason".
EXPECTED_TERMINATION, UNEXPECTED_TERMINATION = 1, 2


class Gcs:
    def __init__(self, host: str, port: int) -> None:
        self.loop = loop_mod.Loop(name="gcs")
        self.router = wire.make_socket(self.loop.ctx, zmq.ROUTER)
        self.router.bind(wire.tcp(host, port))
        self.address = wire.tcp(host, port)
        self.loop.serve(self.router)
        self.nodes: dict[bytes, messages.NodeInfo] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.kv: dict[str, bytes] = {}
        self.started_at = time.time()
        self.actors = actors.ActorManager(self.loop, self.address, self.nodes)
        self.available: dict[bytes, dict[str, float]] = {}
        self.pending: dict[bytes, list[dict[str, float]]] = {}
        self.last_seen: dict[bytes, float] = {}
        self.node_subscribers: dict[bytes | None, loop_mod.Peer] = {}
        self.placement_groups = placement_groups.PlacementGroupManager(
            self.loop, self.nodes, lambda node_id: self.available.get(node_id, {})
        )
        on = self.loop.on
        on(messages.RegisterNode, self._on_register_node)
        on(messages.UnregisterNode, self._on_unregister_node)
        on(messages.GetNodes, lambda m, p, peer: peer.reply(m.req_id, list(self.nodes.values())))
        on(messages.RegisterJob, self._on_register_job)
        on(messages.KvPut, self._on_kv_put)
        on(messages.KvGet, lambda m, p, peer: peer.reply(m.req_id, self.kv.get(m.key)))
        on(messages.NodeHeartbeat, self._on_heartbeat)
        on(messages.JobFinished, self._on_job_finished)
        on(messages.SubscribeNodes, lambda m, p, peer: self.node_subscribers.__setitem__(peer.identity, peer))
        self.loop.call_every(0.5, self._check_heartbeats)

    def _on_register_node(self, msg: messages.RegisterNode, payload: list, peer: loop_mod.Peer) -> None:
        node = msg.node
        node.alive = True
        self.nodes[node.node_id] = node
        self.last_seen[node.node_id] = time.monotonic()
        self.available[node.node_id] = dict(node.resources)
        self.placement_groups.node_added()
        log.info("node %s registered at %s", node.node_id.hex(), node.raylet_address)
        peer.reply(msg.req_id, True)
        self._broadcast_view()

    def _on_unregister_node(self, msg: messages.UnregisterNode, payload: list, peer: loop_mod.Peer) -> None:
        node = self.nodes.get(msg.node_id)
        if node is not None and node.alive:
            self._node_died(node, "the node shut down", expected=True)

    def _on_job_finished(self, msg: messages.JobFinished, payload: list, peer: loop_mod.Peer) -> None:
        """A driver ended: its actors end (unless detached) and every raylet drops the job's work."""
        self.actors.end_job(msg.job_id)
        for node in self.nodes.values():
            if node.alive:
                self.loop.connect(node.raylet_address).send(msg)

    def _on_heartbeat(self, msg: messages.NodeHeartbeat, payload: list, peer: loop_mod.Peer) -> None:
        node = self.nodes.get(msg.node_id)
        if node is None or not node.alive:
            # A node declared dead stays dead, and a GCS that restarted never knew the node: either
            # way it must leave, and join again as a new node (a pod's container restart does that).
            reason = ("it was declared dead" if node is not None
                      else "this GCS does not know it (the head restarted?)")
            peer.send(messages.NodeRejected(msg.node_id, f"node {msg.node_id.hex()} is not in the cluster: {reason}"))
            return
        self.last_seen[msg.node_id] = time.monotonic()
        self.available[msg.node_id] = msg.available
        self.pending[msg.node_id] = msg.pending
        if msg.total:
            node.resources = msg.total  # placement-group bundles add resources to a node
        peer.send(self._view())

    def _view(self) -> messages.ClusterView:
        return messages.ClusterView([
            (n.node_id, n.raylet_address, n.resources, self.available.get(n.node_id, {}), n.alive)
            for n in self.nodes.values()
        ])

    def _broadcast_view(self) -> None:
        """Tell every raylet at once that a node joined or died (heartbeat answers would, a beat later)."""
        view = self._view()
        for node in self.nodes.values():
            if node.alive:
                self.loop.connect(node.raylet_address).send(view)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for node in list(self.nodes.values()):
            if node.alive and now - self.last_seen.get(node.node_id, now) > config.NODE_TIMEOUT_S:
                self._node_died(node, f"no heartbeat for {config.NODE_TIMEOUT_S:g}s")

    def _node_died(self, node: messages.NodeInfo, reason: str, expected: bool = False) -> None:
        log.warning("node %s (%s) is dead: %s", node.node_id.hex(), node.ip, reason)
        node.alive = False
        node.death_reason = EXPECTED_TERMINATION if expected else UNEXPECTED_TERMINATION
        node.death_message = reason
        self.pending.pop(node.node_id, None)
        for peer in self.node_subscribers.values():
            peer.send(messages.NodeDied(node.node_id, reason))
        self.actors.node_died(node.node_id, reason)
        self._broadcast_view()

    def demand(self) -> list[dict[str, float]]:
        """Resource shapes that wait for resources anywhere in the cluster (for the autoscaler)."""
        shapes = [shape for pending in self.pending.values() for shape in pending]
        # A task waiting for a placement group's bundle is not demand of its own: the group's
        # bundles are (once, while the group is pending).
        shapes = [s for s in shapes if not any("_group_" in name for name in s)]
        return shapes + self.placement_groups.demand()

    def _on_register_job(self, msg: messages.RegisterJob, payload: list, peer: loop_mod.Peer) -> None:
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = {
            "job_id": job_id,
            "driver_pid": msg.driver_pid,
            "namespace": msg.namespace,
            "entrypoint": msg.entrypoint,
            "start_time": time.time(),
        }
        peer.reply(msg.req_id, job_id)

    def _on_kv_put(self, msg: messages.KvPut, payload: list, peer: loop_mod.Peer) -> None:
        if not msg.overwrite and msg.key in self.kv:
            peer.reply(msg.req_id, False)
            return
        self.kv[msg.key] = msg.value
        peer.reply(msg.req_id, True)
