"""The `kubernetes` Service for container-mode pods: a TCP relay from the node's bridge address, port
443, to the test API server (which listens on the host's loopback only), the names that resolve to it,
and the KUBERNETES_SERVICE_* variables the kubelet gives every container.

Opens a listening socket on the pod bridge and relays bytes on threads; TLS passes through untouched,
so in-cluster clients verify the API server's own certificate (its SANs include kubernetes.default.svc).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import urllib.parse

log = logging.getLogger(__name__)
PORT = 443
# The API server's certificate names these (tests/k8s/controlplane/pki.py), so TLS verifies through them.
SERVICE_NAME = "kubernetes.default.svc"
NAMES = ("kubernetes", "kubernetes.default", SERVICE_NAME, "kubernetes.default.svc.cluster.local")
CONNECT_TIMEOUT_S = 10.0
CHUNK = 1 << 16


def service_env() -> dict[str, str]:
    """The kubelet's env for the `kubernetes` Service, with its DNS name where a cluster has its ClusterIP
    (the relay listens on the node, not on a ClusterIP)."""
    return {"KUBERNETES_SERVICE_HOST": SERVICE_NAME, "KUBERNETES_SERVICE_PORT": str(PORT),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(PORT), "KUBERNETES_PORT": f"tcp://{SERVICE_NAME}:{PORT}"}


def hosts_lines(node_ip: str) -> str:
    """Lines of a pod's hosts file that make the Service's names resolve to the relay."""
    return f"{node_ip}\t{' '.join(NAMES)}\n"


def upstream_of(server_url: str) -> tuple[str, int]:
    """(host, port) of an API server URL such as https://127.0.0.1:6443."""
    parsed = urllib.parse.urlsplit(server_url)
    return parsed.hostname or "127.0.0.1", parsed.port or 443


class ApiRelay:
    """Accepts connections on (listen_ip, 443) and relays each to the API server, both ways."""

    def __init__(self, listen_ip: str, upstream: tuple[str, int]) -> None:
        self.listen_ip = listen_ip
        self.upstream = upstream
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> ApiRelay:
        """Listens and serves on a daemon thread; raises OSError when the address is taken."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_ip, PORT))
        listener.listen(64)
        listener.settimeout(0.5)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="pod runner api relay", daemon=True)
        self._thread.start()
        log.info("pod runner: API server relay on %s:%d -> %s:%d", self.listen_ip, PORT, *self.upstream)
        return self

    def stop(self) -> None:
        """Stops listening and closes every relayed connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for s in list(self._open):
                _close(s)
            self._open.clear()

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), name="pod runner api relay conn",
                             daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
        except OSError as e:
            log.warning("pod runner: API relay cannot reach %s:%d: %s", *self.upstream, e)
            _close(client)
            return
        pair = {client: server, server: client}
        with self._lock:
            self._open.update(pair)
        sel = selectors.DefaultSelector()
        try:
            for s in pair:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=0.5):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(CHUNK)
                    if not data:
                        return
                    pair[src].setblocking(True)
                    pair[src].sendall(data)
                    pair[src].setblocking(False)
        except OSError:
            return  # either side closed or reset: the connection ends
        finally:
            sel.close()
            with self._lock:
                self._open.difference_update(pair)
            for s in pair:
                _close(s)


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass
