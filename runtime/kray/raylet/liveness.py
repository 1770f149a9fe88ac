"""The raylet's liveness: heartbeats to the GCS on a thread of their own, and the drivers it watches.

The heartbeat thread owns one DEALER socket to the GCS and reads the raylet's state without locks
(copies only); the driver watch runs on the raylet's loop and uses pidfds (no polling).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from kray import config
from kray.protocol import loop as loop_mod
from kray.protocol import messages, wire

log = logging.getLogger(__name__)

Report = tuple[dict[str, float], list[dict[str, float]], dict[str, float]]


class Node(Protocol):
    """What the heartbeat thread needs of the raylet."""

    loop: loop_mod.Loop
    gcs_address: str
    node: messages.NodeInfo
    view_version: int
    last_gcs_answer: float

    def report(self) -> Report: ...

    def apply_view(self, msg: messages.ClusterView) -> None: ...

    def leave(self, reason: str) -> None: ...


class Heartbeat:
    """Sends the node's free resources and pending demand to the GCS when they change (checked every
    HEARTBEAT_PERIOD_S), a keep-alive every HEARTBEAT_KEEPALIVE_S otherwise, and answers the GCS's
    pings at once. Runs on its own thread, so a busy raylet loop never delays the node's liveness.
    Leaves the cluster (through the raylet's loop) when the GCS stays silent for too long.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.last_answer = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kray-heartbeat", daemon=True)
        self._last_report: Report | None = None
        self._last_sent = 0.0

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
        try:
            self._beat(sock)
        except Exception:
            log.exception("the heartbeat thread failed")
        finally:
            sock.close(0)

    def _beat(self, sock: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
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
            if poller.poll(wait_ms) and not self._drain(sock):
                return

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
            if isinstance(msg, messages.ClusterView):
                self.node.loop.call_soon_threadsafe(self.node.apply_view, msg)
            elif isinstance(msg, messages.NodePing):
                self._keepalive(sock)
            elif isinstance(msg, messages.NodeRejected):
                self._leave(msg.reason)
                return False

    def _leave(self, reason: str) -> None:
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
