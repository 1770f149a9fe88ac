"""The part of the kubelet's HTTPS API that `kubectl logs` reaches through the API server:
GET /containerLogs/{namespace}/{pod}/{container} (follow, tailLines, limitBytes), from the runner's logs.

Runs a threaded HTTPS server on the node's address with a throwaway self-signed certificate (the API
server does not verify kubelet certificates unless told to); reads the runner's container log files.
"""

from __future__ import annotations

import http.server
import logging
import re
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
FOLLOW_POLL_S = 0.2
# The runner's own lines in a container log ("--- kray pod runner: starting CMD at TIME"); a kubelet's
# log has only the container's output, so they are left out.
_RUNNER_LINE = re.compile(rb"--- kray pod runner: .*? at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", re.DOTALL)
CHUNK = 64 * 1024

# (namespace, pod, container) -> the log file, and whether the container may still write to it.
LogPath = Callable[[str, str, str], Path]
IsRunning = Callable[[str, str, str], bool]


def _self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "kubelet.crt", directory / "kubelet.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=kray-pod-runner", "-addext", f"subjectAltName=IP:{host}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def _tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class KubeletApi:
    """Serves container logs for `kubectl logs [-f]`; `port` is what the Node advertises."""

    def __init__(self, host: str, workdir: Path, log_path: LogPath, is_running: IsRunning) -> None:
        self.host = host
        self.workdir = workdir
        self.log_path = log_path
        self.is_running = is_running
        self.stopping = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> KubeletApi:
        cert, key = _self_signed(self.workdir, self.host)
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.serve(self)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("kubelet api: " + format, *args)

        server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="pod runner kubelet api", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def serve(self, request: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(request.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            request.send_error(404, "only /containerLogs/{namespace}/{pod}/{container} is served")
            return
        _, namespace, pod, container = parts
        query = urllib.parse.parse_qs(url.query)
        try:
            path = self.log_path(namespace, pod, container)
            data = path.read_bytes()
        except (KeyError, OSError):
            request.send_error(404, f"no log of container {container} in pod {namespace}/{pod}")
            return
        tail = int((query.get("tailLines") or ["-1"])[0])
        limit = int((query.get("limitBytes") or ["0"])[0])
        follow = (query.get("follow") or ["false"])[0] in ("true", "1")
        body = _tail(_RUNNER_LINE.sub(b"", data), tail)
        if limit > 0:
            body = body[:limit]
        request.send_response(200)
        request.send_header("Content-Type", "text/plain")
        if not follow:
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
            return
        request.send_header("Connection", "close")  # HTTP/1.0: the body ends when the connection does
        request.end_headers()
        try:
            self._follow(request, path, body, len(data), (namespace, pod, container))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return

    def _follow(self, request: http.server.BaseHTTPRequestHandler, path: Path, first: bytes, offset: int,
                key: tuple[str, str, str]) -> None:
        def send(chunk: bytes) -> None:
            if chunk:
                request.wfile.write(chunk)
                request.wfile.flush()

        send(first)
        while not self.stopping.is_set():
            running = self.is_running(*key)
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(CHUNK)
            if chunk:
                offset += len(chunk)
                send(_RUNNER_LINE.sub(b"", chunk))
                continue
            if not running:
                break
            time.sleep(FOLLOW_POLL_S)
