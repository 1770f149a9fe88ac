"""The raylet's liveness: heartbeats to the GCS on a thread of their own, the node's health endpoint
served on that thread (raylet/health_http.py), and the drivers it watches.

The heartbeat thread owns one DEALER socket to the GCS and the health endpoint's sockets, and reads
the raylet's state without locks (copies only); the driver watch runs on the raylet's loop and uses
pidfds (no polling).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from kray import config
from kray.protocol import loop as loop_mod
from kray.protocol import messages, wire
from kray.raylet import health_http

log = logging.getLogger(__name__)

# free resources, pending shapes, total resources, primary object copies in the node's store
Report = tuple[dict[str, float], list[dict[str, float]], dict[str, float], int]


class Node(Protocol):
    """What the heartbeat thread needs of the raylet."""

    loop: loop_mod.Loop
    gcs_address: str
    node: messages.NodeInfo
    view_version: int
    last_gcs_answer: float
    exit_reason: str

    def report(self) -> Report: ...

    def apply_view(self, msg: messages.ClusterView) -> None: ...

    def leave(self, reason: str) -> None: ...


class Heartbeat:
    """Sends the node's free resources and pending demand to the GCS when they change (checked every
    HEARTBEAT_PERIOD_S), a keep-alive every HEARTBEAT_KEEPALIVE_S otherwise, and answers the GCS's
    pings at once. Runs on its own thread, so a busy raylet loop never delays the node's liveness.
    Leaves the cluster (through the raylet's loop) when the GCS stays silent for too long. Serves the
    node's health endpoint, when given one (`serve_health`), between beats.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.last_answer = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kray-heartbeat", daemon=True)
        self._last_report: Report | None = None
        self._last_sent = 0.0
        self.health: health_http.HealthEndpoint | None = None
        self.accepted = False  # the GCS answered a heartbeat: it knows this node as alive
        self.rejected = ""  # why this node must leave (the GCS declared it dead, or went silent)
        self._loop_ping_sent = 0.0
        self._loop_pong = 0.0

    def serve_health(self, listeners: list[socket.socket]) -> None:
        """Answer health probes on these listening sockets (from this thread, once it runs)."""
        self.health = health_http.HealthEndpoint(listeners, self.checks)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2.0)

    def _run(self) -> None:
        sock = wire.make_socket(self.node.loop.ctx, zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.node.gcs_address)
        poller = zmq.Poller()
        try:
            self._beat(sock, poller)
        except Exception:
            log.exception("the heartbeat thread failed")
        finally:
            sock.close(0)
            if self.health is not None:  # probes are refused from now on: the node is going away
                self.health.close(poller)

    def _beat(self, sock: zmq.Socket, poller: zmq.Poller) -> None:
        poller.register(sock, zmq.POLLIN)
        if self.health is not None:
            self.health.register(poller)
        next_check = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_check:
                next_check = now + config.HEARTBEAT_PERIOD_S
                self._maybe_send(sock, now)
                silent = now - max(self.last_answer, self.node.last_gcs_answer)
                if silent > config.GCS_RECONNECT_TIMEOUT_S:
                    self._leave(f"the GCS at {self.node.gcs_address} has not answered for {silent:.0f}s")
                    return
            wait_ms = max(0, int((next_check - time.monotonic()) * 1000.0) + 1)
            events = dict(poller.poll(wait_ms))
            if events.pop(sock, 0) and not self._drain(sock):
                return
            if events and self.health is not None:
                self.health.handle(poller, {fd for fd in events if isinstance(fd, int)})

    def checks(self, include_gcs: bool) -> list[health_http.Check]:
        """The node's health, for the endpoint (on this thread, without locks): the raylet is accepted
        by a GCS that answers, is not leaving, and its event loop runs; on the head, the GCS answers."""
        now = time.monotonic()
        gcs = self.node.gcs_address
        silent = now - max(self.last_answer, self.node.last_gcs_answer)
        gcs_failure = f"the GCS at {gcs} has not answered for {silent:.0f}s" if silent > config.NODE_TIMEOUT_S else ""
        leaving = self.rejected or self.node.exit_reason
        stall = self._loop_stall(now)
        if leaving:
            failure = f"leaving the cluster: {leaving}"
        elif not self.accepted:
            failure = f"not yet accepted by the GCS at {gcs}"
        elif gcs_failure:
            failure = gcs_failure
        elif stall > health_http.LOOP_STALL_S:
            failure = f"the raylet's event loop has not run for {stall:.0f}s"
        else:
            failure = ""
        results: list[health_http.Check] = [("raylet", failure, "")]
        if include_gcs:
            results.append(("gcs", gcs_failure, "") if self.node.node.is_head else ("gcs", "", "no local gcs"))
        return results

    def _loop_stall(self, now: float) -> float:
        """How long the raylet's loop has left a wake-up of ours unanswered; sends one when none is out
        (one per probe: an idle loop is not woken on a timer)."""
        if self._loop_ping_sent <= self._loop_pong:
            self._loop_ping_sent = now
            self.node.loop.call_soon_threadsafe(self._loop_answered)
            return 0.0
        return now - self._loop_ping_sent

    def _loop_answered(self) -> None:
        self._loop_pong = time.monotonic()

    def _maybe_send(self, sock: zmq.Socket, now: float) -> None:
        try:
            report = self.node.report()
        except RuntimeError:  # a table changed size while it was copied: the next tick sends it
            return
        if report != self._last_report:
            self._last_report = report
            self._send(sock, messages.NodeHeartbeat(self.node.node.node_id, *report, changed=True,
                                                    view_version=self.node.view_version))
        elif now - self._last_sent >= min(config.HEARTBEAT_KEEPALIVE_S, config.NODE_TIMEOUT_S / 4):
            self._keepalive(sock)

    def _keepalive(self, sock: zmq.Socket) -> None:
        self._send(sock, messages.NodeHeartbeat(self.node.node.node_id, {}, [], {}, changed=False,
                                                view_version=self.node.view_version))

    def _send(self, sock: zmq.Socket, msg: Any) -> None:
        self._last_sent = time.monotonic()
        try:
            sock.send_multipart(wire.pack(msg), zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the GCS is unreachable or slow: its silence is what counts
            log.debug("heartbeat not sent: %s", e)

    def _drain(self, sock: zmq.Socket) -> bool:
        """Handle what the GCS sent; False once the node must leave."""
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return True
            try:
                msg, _ = wire.unpack(frames)
            except wire.MalformedMessage as e:
                log.warning("heartbeat: dropped a malformed message: %s", e)
                continue
            self.last_answer = time.monotonic()
            if not isinstance(msg, messages.NodeRejected):
                self.accepted = True
            if isinstance(msg, messages.ClusterView):
                self.node.loop.call_soon_threadsafe(self.node.apply_view, msg)
            elif isinstance(msg, messages.NodePing):
                self._keepalive(sock)
            elif isinstance(msg, messages.NodeRejected):
                self._leave(msg.reason)
                return False

    def _leave(self, reason: str) -> None:
        self.rejected = reason
        self.node.loop.call_soon_threadsafe(self.node.leave, reason)


class DriverWatch:
    """The drivers attached to this node: when one's process ends without saying goodbye (SIGKILL),
    `on_gone(job_id)` runs on the loop. Uses a pidfd per driver: no polling, nothing at idle."""

    def __init__(self, loop: loop_mod.Loop, on_gone: Callable[[int, bytes], None]) -> None:
        self.loop = loop
        self.on_gone = on_gone
        self.watched: dict[int, tuple[int, int, bytes]] = {}  # pidfd -> (job id, pid, driver's worker id)

    def watch(self, job_id: int, pid: int, worker_id: bytes = b"") -> None:
        if any(p == pid and j == job_id for j, p, _ in self.watched.values()):
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.on_gone(job_id, worker_id)  # gone already
            return
        except (OSError, AttributeError) as e:  # another pid namespace, or no pidfds here
            log.warning("cannot watch driver pid %d of job %d: %s", pid, job_id, e)
            return
        self.watched[fd] = (job_id, pid, worker_id)
        self.loop.add_fd(fd, lambda: self._gone(fd))

    def _gone(self, fd: int) -> None:
        job_id, pid, worker_id = self.watched.pop(fd, (0, 0, b""))
        self.loop.remove_fd(fd)
        os.close(fd)
        if job_id:
            log.info("driver pid %d of job %d is gone: ending its job", pid, job_id)
            self.on_gone(job_id, worker_id)

    def close(self) -> None:
        for fd in list(self.watched):
            try:
                self.loop.remove_fd(fd)
            except KeyError:
                pass
            os.close(fd)
        self.watched.clear()
