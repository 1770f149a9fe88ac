"""The head's HTTP API (the dashboard port, 8265 by default): cluster state as JSON.

Runs a stdlib ThreadingHTTPServer on a thread of the GCS process and only reads the GCS's tables
(snapshots taken under the GIL). Endpoints:

    GET /api/cluster/demand   resource shapes waiting for resources (what the autoscaler reads)
    GET /api/nodes            every node with its total and free resources
    GET /api/version          kray's version
    GET /healthz              "ok"
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


def _node_json(gcs: Any, node: Any) -> dict[str, Any]:
    return {
        "node_id": node.node_id.hex(),
        "ip": node.ip,
        "alive": node.alive,
        "is_head": node.is_head,
        "resources_total": dict(node.resources),
        "resources_available": dict(gcs.available.get(node.node_id, {})) if node.alive else {},
        "pending_demand": list(gcs.pending.get(node.node_id, [])) if node.alive else [],
        "labels": dict(node.labels),
    }


def make_handler(gcs: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "kray"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/api/cluster/demand":
                nodes = list(gcs.nodes.values())
                body: Any = {
                    "demand": gcs.demand(),
                    "nodes": [_node_json(gcs, n) for n in nodes],
                }
            elif path == "/api/nodes":
                body = {"nodes": [_node_json(gcs, n) for n in list(gcs.nodes.values())]}
            elif path == "/api/version":
                from kray import __version__

                body = {"version": __version__, "ray_compatible": True}
            elif path == "/healthz":
                self._send(200, b"ok", "text/plain")
                return
            else:
                self._send(404, json.dumps({"error": f"no such endpoint: {path}"}).encode(), "application/json")
                return
            self._send(200, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler


def serve(gcs: Any, host: str, port: int) -> ThreadingHTTPServer | None:
    """Start the HTTP API on a daemon thread; None (with a warning) if the port is taken."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(gcs))
    except OSError as e:
        log.warning("the HTTP API could not listen on %s:%s: %s", host, port, e)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="kray-http", daemon=True).start()
    return server
