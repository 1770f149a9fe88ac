"""The GCS server: node table, job ids, and a key-value store, served on one ROUTER socket.

Single-threaded on a protocol.loop.Loop; keeps everything in memory (no I/O besides its socket).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from kray.gcs import actors
from kray.protocol import loop as loop_mod
from kray.protocol import messages, wire

log = logging.getLogger(__name__)


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
        on = self.loop.on
        on(messages.RegisterNode, self._on_register_node)
        on(messages.UnregisterNode, self._on_unregister_node)
        on(messages.GetNodes, lambda m, p, peer: peer.reply(m.req_id, list(self.nodes.values())))
        on(messages.RegisterJob, self._on_register_job)
        on(messages.KvPut, self._on_kv_put)
        on(messages.KvGet, lambda m, p, peer: peer.reply(m.req_id, self.kv.get(m.key)))

    def _on_register_node(self, msg: messages.RegisterNode, payload: list, peer: loop_mod.Peer) -> None:
        node = msg.node
        node.alive = True
        self.nodes[node.node_id] = node
        log.info("node %s registered at %s", node.node_id.hex(), node.raylet_address)
        peer.reply(msg.req_id, True)

    def _on_unregister_node(self, msg: messages.UnregisterNode, payload: list, peer: loop_mod.Peer) -> None:
        node = self.nodes.get(msg.node_id)
        if node is not None:
            node.alive = False

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
