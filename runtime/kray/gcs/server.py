"""The GCS server: node table, job ids, and a key-value store, served on one ROUTER socket.

Single-threaded on a protocol.loop.Loop; keeps everything in memory (no I/O besides its socket).
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from typing import Any

import zmq

from kray import config
from kray.gcs import (
    actor_args,
    actors,
    autoscaling,
    liveness,
    owners,
    packages,
    placement_groups,
    task_events,
)
from kray.gcs import metrics as gcs_metrics
from kray.gcs import table_sizes as gcs_table_sizes
from kray.protocol import loop as loop_mod
from kray.protocol import messages, wire

log = logging.getLogger(__name__)

# Ray's NodeDeathInfo.Reason values, as kray.nodes() reports them under "DeathReason".
EXPECTED_TERMINATION, UNEXPECTED_TERMINATION = 1, 2


class Gcs:
    def __init__(self, host: str, port: int, client_port: int = 0) -> None:
        self.loop = loop_mod.Loop(name="gcs")
        self.router = wire.make_socket(self.loop.ctx, zmq.ROUTER)
        self.router.bind(wire.tcp(host, port))
        self._bind_loopback(host, port)
        if client_port:
            # kray has no Ray Client proxy: Ray's client port is another door to this GCS, so that drivers
            # given `ray://HOST:10001` (Ray Client's address) connect as drivers given HOST:6379 do.
            self.router.bind(wire.tcp(host, client_port))
            self._bind_loopback(host, client_port)
        self.address = wire.tcp(host, port)
        self.loop.serve(self.router)
        self.nodes: dict[bytes, messages.NodeInfo] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self._job_ids = itertools.count(1)
        self._finished_jobs: collections.deque[int] = collections.deque()  # oldest first, bounded (config)
        self.kv: dict[str, bytes] = {}
        self.started_at = time.time()
        self.packages = packages.PackageRefs(self.kv, self.loop)
        self.actors = actors.ActorManager(self.loop, self.address, self.nodes, self.packages)
        actor_args.install(self.actors)  # a detached actor's constructor arguments, held by value
        self.available: dict[bytes, dict[str, float]] = {}
        self.pending: dict[bytes, list[dict[str, float]]] = {}
        self.idle = autoscaling.IdleTracker()
        self.liveness = liveness.NodeLiveness(self.loop, self.nodes, self._node_died)
        self.view_version = 1
        self._view_push: list | None = None  # the pending (debounced) push of a changed view
        self.node_subscribers: dict[bytes | None, loop_mod.Peer] = {}
        self.subscriber_of: dict[bytes, bytes | None] = {}  # worker id -> its node_subscribers key
        self.owners = owners.OwnerRegistry(self.loop)  # borrowers hear of their owners' deaths
        gcs_table_sizes.install(self)  # GetTableSizes, to see that churn leaves the tables flat
        self.placement_groups = placement_groups.PlacementGroupManager(
            self.loop, self.nodes, lambda node_id: self.available.get(node_id, {})
        )
        on = self.loop.on
        on(messages.RegisterNode, self._on_register_node)
        on(messages.UnregisterNode, self._on_unregister_node)
        on(messages.GetNodes, lambda m, p, peer: peer.reply(m.req_id, list(self.nodes.values())))
        on(messages.RegisterJob, self._on_register_job)
        # Raylets ask every lease holder to return idle leases; the GCS holds only actors' leases,
        # which are never idle, so it has nothing to return.
        on(messages.ReleaseIdleLeases, lambda m, p, peer: None)
        on(messages.KvPut, self._on_kv_put)
        on(messages.KvGet, lambda m, p, peer: peer.reply(m.req_id, self.kv.get(m.key)))
        on(messages.KvExists, self._on_kv_exists)
        on(messages.HoldPackages, self._on_hold_packages)
        on(messages.KvKeys, lambda m, p, peer: peer.reply(m.req_id, [k for k in self.kv if k.startswith(m.prefix)]))
        on(messages.KvDel, lambda m, p, peer: peer.reply(m.req_id, self.kv.pop(m.key, None) is not None))
        on(messages.GetClusterState, lambda m, p, peer: peer.reply(m.req_id, self.cluster_state()))
        on(messages.SubmissionEnded, self._on_submission_ended)
        on(messages.NodeHeartbeat, self._on_heartbeat)
        on(messages.JobFinished, self._on_job_finished)
        on(messages.SubscribeNodes, self._on_subscribe_nodes)
        on(messages.WorkersExited, self._on_workers_exited)
        self.task_events = task_events.TaskEventStore(self.loop)  # TaskEventsReport, GetTaskEvents (state API)
        gcs_metrics.install(self)  # GetClusterMetrics, for the head node's metrics endpoint

    def _bind_loopback(self, host: str, port: int) -> None:
        if not host.startswith("127.") and host != "0.0.0.0":
            # As Ray's GCS, also reachable on loopback: KubeRay sets RAY_ADDRESS=127.0.0.1:6379 in head pods.
            try:
                self.router.bind(wire.tcp("127.0.0.1", port))
            except zmq.ZMQError as e:
                log.info("the GCS is not reachable on 127.0.0.1:%s too: %s", port, e)

    def _on_register_node(self, msg: messages.RegisterNode, payload: list, peer: loop_mod.Peer) -> None:
        node = msg.node
        node.alive = True
        self.nodes[node.node_id] = node
        self.liveness.seen(node.node_id)
        self.available[node.node_id] = dict(node.resources)
        self.idle.update(node.node_id, node.resources, node.resources, [])
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
        job = self.jobs.get(msg.job_id)
        if job is not None and "end_time" not in job:
            job["end_time"] = time.time()
            self._finished_jobs.append(msg.job_id)
            while len(self._finished_jobs) > config.FINISHED_JOBS_KEPT:
                self.jobs.pop(self._finished_jobs.popleft(), None)
        self.actors.end_job(msg.job_id)
        self.placement_groups.end_job(msg.job_id)
        self.packages.release(f"job:{msg.job_id}")
        for node in self.nodes.values():
            if node.alive:
                self.loop.connect(node.raylet_address).send(msg)

    def _on_subscribe_nodes(self, msg: messages.SubscribeNodes, payload: list, peer: loop_mod.Peer) -> None:
        self.node_subscribers[peer.identity] = peer
        if msg.worker_id:
            self.subscriber_of[msg.worker_id] = peer.identity

    def _on_workers_exited(self, msg: messages.WorkersExited, payload: list, peer: loop_mod.Peer) -> None:
        """Processes that ended: their subscriptions go (churned workers would otherwise pile up)."""
        self.actors.creators_exited(self.owners.identities_of(msg.worker_ids))  # their actors die, as in Ray
        self.owners.workers_exited(msg.worker_ids)
        for worker_id in msg.worker_ids:
            identity = self.subscriber_of.pop(worker_id, None)
            if identity is not None:
                self.node_subscribers.pop(identity, None)

    def _on_heartbeat(self, msg: messages.NodeHeartbeat, payload: list, peer: loop_mod.Peer) -> None:
        node = self.nodes.get(msg.node_id)
        if node is None or not node.alive:
            # A node declared dead stays dead, and a GCS that restarted never knew the node: either
            # way it must leave, and join again as a new node (a pod's container restart does that).
            reason = ("it was declared dead" if node is not None
                      else "this GCS does not know it (the head restarted?)")
            peer.send(messages.NodeRejected(msg.node_id, f"node {msg.node_id.hex()} is not in the cluster: {reason}"))
            return
        self.liveness.seen(msg.node_id, peer)
        if msg.changed:  # else a keep-alive: the last report stands
            self.pending[msg.node_id] = msg.pending
            self.idle.update(msg.node_id, msg.total or node.resources, msg.available, msg.pending, msg.primary_objects)
            if msg.available != self.available.get(msg.node_id) or (msg.total and msg.total != node.resources):
                self.available[msg.node_id] = msg.available
                if msg.total:
                    node.resources = msg.total  # placement-group bundles add resources to a node
                self._view_changed()
        if msg.view_version != self.view_version:
            peer.send(self._view())
        else:
            peer.send(messages.HeartbeatAck(self.view_version))

    def _view(self) -> messages.ClusterView:
        return messages.ClusterView([
            (n.node_id, n.raylet_address, n.resources, self.available.get(n.node_id, {}), n.alive)
            for n in self.nodes.values()
        ], self.view_version)

    def _view_changed(self) -> None:
        """A node's free resources changed: every raylet hears of it within a heartbeat period (one push
        for all changes in that period; nothing is sent while nothing changes)."""
        self.view_version += 1
        if self._view_push is None:
            self._view_push = self.loop.call_later(config.HEARTBEAT_PERIOD_S, self._broadcast_view)

    def _broadcast_view(self) -> None:
        """Tell every raylet at once that a node joined or died, or that free resources changed."""
        if self._view_push is not None:
            self.loop.cancel_timer(self._view_push)
            self._view_push = None
        self.view_version += 1
        view = self._view()
        for node in self.nodes.values():
            if node.alive:
                self.loop.connect(node.raylet_address).send(view)

    def _node_died(self, node: messages.NodeInfo, reason: str, expected: bool = False) -> None:
        log.warning("node %s (%s) is dead: %s", node.node_id.hex(), node.ip, reason)
        node.alive = False
        node.death_reason = EXPECTED_TERMINATION if expected else UNEXPECTED_TERMINATION
        node.death_message = reason
        self.pending.pop(node.node_id, None)
        self.idle.forget(node.node_id)
        self.liveness.forget(node.node_id)
        for peer in self.node_subscribers.values():
            peer.send(messages.NodeDied(node.node_id, reason))
        self.owners.node_died(node.node_id, reason)
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
        job_id = next(self._job_ids)
        self.jobs[job_id] = {
            "job_id": job_id,
            "driver_pid": msg.driver_pid,
            "namespace": msg.namespace,
            "entrypoint": msg.entrypoint,
            "submission_id": msg.submission_id,
            "start_time": time.time(),
        }
        peer.reply(msg.req_id, job_id)

    def _on_submission_ended(self, msg: messages.SubmissionEnded, payload: list, peer: loop_mod.Peer) -> None:
        """A job's entrypoint is gone: its drivers may have died without saying goodbye (SIGKILL)."""
        for job_id, job in list(self.jobs.items()):
            if job.get("submission_id") == msg.submission_id and "end_time" not in job:
                self._on_job_finished(messages.JobFinished(job_id), [], peer)
        self.packages.release(f"submission:{msg.submission_id}")
        peer.reply(msg.req_id, True)

    def cluster_state(self) -> dict[str, Any]:
        """Every node with its free resources and pending shapes, and the cluster's demand."""
        nodes = []
        for node in self.nodes.values():
            nodes.append({
                "node_id": node.node_id.hex(),
                "ip": node.ip,
                "alive": node.alive,
                "is_head": node.is_head,
                "resources_total": dict(node.resources),
                "resources_available": dict(self.available.get(node.node_id, {})) if node.alive else {},
                "pending_demand": list(self.pending.get(node.node_id, [])) if node.alive else [],
                "labels": dict(node.labels),
            })
        state = {"nodes": nodes, "demand": self.demand(), "jobs": [dict(j) for j in self.jobs.values()]}
        return autoscaling.report(state, self.idle, list(self.nodes), self.pending, self.placement_groups.pending(),
                                  self.kv.get(autoscaling.RESOURCE_REQUEST_KEY))

    def _on_kv_exists(self, msg: messages.KvExists, payload: list, peer: loop_mod.Peer) -> None:
        found = msg.key in self.kv
        if found:
            self.packages.touched(msg.key)  # about to be used: keep it until its user holds it
        peer.reply(msg.req_id, found)

    def _on_hold_packages(self, msg: messages.HoldPackages, payload: list, peer: loop_mod.Peer) -> None:
        self.packages.hold(msg.holder, msg.uris)
        peer.reply(msg.req_id, True)

    def _on_kv_put(self, msg: messages.KvPut, payload: list, peer: loop_mod.Peer) -> None:
        if not isinstance(msg.key, str) or not isinstance(msg.value, (bytes, bytearray, memoryview)):
            # Refused before it is stored: one bad key would break every later KvKeys.
            raise TypeError("KvPut takes a str key and a bytes value")
        if not msg.overwrite and msg.key in self.kv:
            peer.reply(msg.req_id, False)
            return
        self.kv[msg.key] = msg.value
        self.packages.touched(msg.key)
        peer.reply(msg.req_id, True)
