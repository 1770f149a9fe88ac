"""The node's health endpoint: a tiny HTTP/1.0 server for Kubernetes httpGet probes, served from the
raylet's heartbeat thread (liveness.Heartbeat polls its sockets), so a probe starts no process and
no thread and never waits on the raylet's event loop.

Paths are Ray's dashboard agent's: `/api/healthz` (raylet and, on the head, the GCS; Ray >= 2.53 and
KubeRay's httpGet probes) and `/api/local_raylet_healthz` (the raylet only); 200 with a body of
`name: success` lines when healthy, 503 with the reason otherwise. Owns its listening sockets and
the probe connections (non-blocking, at most MAX_CONNECTIONS, closed after CONNECTION_DEADLINE_S).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import time
from collections.abc import Callable

import zmq

log = logging.getLogger(__name__)

DEFAULT_PORT = 52365  # Ray's --dashboard-agent-listen-port default, where KubeRay's probes look
HEALTH_PATH = "/api/healthz"
RAYLET_HEALTH_PATH = "/api/local_raylet_healthz"
MAX_CONNECTIONS = 16
CONNECTION_DEADLINE_S = 2.0
MAX_REQUEST_BYTES = 8192
# A raylet loop that leaves a wake-up unanswered this long is wedged, not busy (each handler is short).
LOOP_STALL_S = 30.0

# (name, failure reason or "" when healthy, detail shown when healthy)
Check = tuple[str, str, str]


class PortTaken(OSError):
    """The health port is held by another process (another node on this machine?)."""


def bind_addresses(node_ip: str) -> list[str]:
    """Where the endpoint listens: the node's own loopback address (several nodes may share a machine
    on 127.0.0.x), else every address, so that both the kubelet (pod IP) and `localhost` reach it."""
    return [node_ip] if node_ip.startswith("127.") else ["0.0.0.0"]


def listen(node_ip: str, port: int) -> list[socket.socket]:
    """Bind and listen on the health port; raise PortTaken naming the port when it is in use."""
    sockets: list[socket.socket] = []
    try:
        for host in bind_addresses(node_ip):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(32)
            sock.setblocking(False)
    except OSError as e:
        for sock in sockets:
            sock.close()
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortTaken(e.errno, f"the health port {node_ip}:{port} is in use: {e.strerror}") from None
        raise
    return sockets


def port_free(node_ip: str, port: int) -> bool:
    """Whether `listen(node_ip, port)` would succeed now."""
    try:
        for sock in listen(node_ip, port):
            sock.close()
    except OSError:
        return False
    return True


def answer(method: str, path: str, checks: Callable[[bool], list[Check]]) -> tuple[int, str]:
    """The status and body for one request; `checks(include_gcs)` runs the node's checks."""
    if method not in ("GET", "HEAD"):
        return 405, f"{method} is not allowed; use GET\n"
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if path == HEALTH_PATH:
        results = checks(True)
    elif path == RAYLET_HEALTH_PATH:
        results = checks(False)
    else:
        return 404, f"no such path {path!r}; try {HEALTH_PATH}\n"
    healthy = all(not failure for _, failure, _ in results)
    lines = [f"{name}: {failure or ('success' + (f' ({detail})' if detail else ''))}"
             for name, failure, detail in results]
    return (200 if healthy else 503), "\n".join(lines) + "\n"


def parse_request_line(data: bytes) -> tuple[str, str] | None:
    """(method, path) of a complete HTTP request head, None while incomplete; raises ValueError if bad."""
    if b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError("request head too large")
        return None
    first = data.split(b"\n", 1)[0].decode("latin-1").strip()
    parts = first.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {first[:80]!r}")
    return parts[0], parts[1]


def response_bytes(status: int, body: str, head_only: bool = False) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}.get(status, "Error")
    payload = body.encode()
    head = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    return head if head_only else head + payload


@dataclasses.dataclass
class _Connection:
    sock: socket.socket
    since: float
    data: bytes = b""


class HealthEndpoint:
    """The listening sockets and open probe connections, driven by the heartbeat thread's poller.

    `checks(include_gcs)` is called on that thread for every request; it must not block.
    """

    def __init__(self, listeners: list[socket.socket], checks: Callable[[bool], list[Check]]) -> None:
        self.listeners = {s.fileno(): s for s in listeners}
        self.checks = checks
        self.connections: dict[int, _Connection] = {}
        self.port = listeners[0].getsockname()[1] if listeners else 0

    def register(self, poller: zmq.Poller) -> None:
        for fd in self.listeners:
            poller.register(fd, zmq.POLLIN)

    def handle(self, poller: zmq.Poller, ready: set[int]) -> None:
        """Accept and answer what `ready` (file descriptors the poller reported) allows; drop stale ones."""
        for fd in ready:
            if fd in self.listeners:
                self._accept(poller, self.listeners[fd])
            elif fd in self.connections:
                self._read(poller, fd)
        now = time.monotonic()
        for fd, conn in list(self.connections.items()):
            if now - conn.since > CONNECTION_DEADLINE_S:
                self._close(poller, fd)

    def close(self, poller: zmq.Poller | None = None) -> None:
        for fd in list(self.connections):
            self._close(poller, fd)
        for fd, sock in self.listeners.items():
            _unregister(poller, fd)
            sock.close()
        self.listeners.clear()

    def _accept(self, poller: zmq.Poller, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. out of file descriptors: the probe fails, the node goes on
                log.warning("health endpoint: accept failed: %s", e)
                return
            if len(self.connections) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            self.connections[sock.fileno()] = _Connection(sock, time.monotonic())
            poller.register(sock.fileno(), zmq.POLLIN)

    def _read(self, poller: zmq.Poller, fd: int) -> None:
        conn = self.connections[fd]
        try:
            chunk = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(poller, fd)
            return
        if not chunk:
            self._close(poller, fd)
            return
        conn.data += chunk
        try:
            request = parse_request_line(conn.data)
        except ValueError as e:
            self._reply(poller, fd, 400, f"{e}\n")
            return
        if request is None:
            return
        method, path = request
        try:
            status, body = answer(method, path, self.checks)
        except Exception as e:  # a failing check is an unhealthy node, never a dead thread
            log.exception("health endpoint: a check failed")
            status, body = 503, f"the health check itself failed: {e}\n"
        self._reply(poller, fd, status, body, head_only=method == "HEAD")

    def _reply(self, poller: zmq.Poller, fd: int, status: int, body: str, head_only: bool = False) -> None:
        conn = self.connections[fd]
        try:
            conn.sock.send(response_bytes(status, body, head_only))  # a few hundred bytes: fits the buffer
        except OSError:
            pass
        self._close(poller, fd)

    def _close(self, poller: zmq.Poller | None, fd: int) -> None:
        conn = self.connections.pop(fd, None)
        if conn is None:
            return
        _unregister(poller, fd)
        conn.sock.close()


def _unregister(poller: zmq.Poller | None, fd: int) -> None:
    if poller is not None:
        try:
            poller.unregister(fd)
        except KeyError:  # never registered (the thread ended before it served)
            pass
