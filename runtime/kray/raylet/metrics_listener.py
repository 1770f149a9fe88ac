"""The node's Prometheus port, bound when the raylet starts and served from its first scrape on.

A node that nobody scrapes never loads prometheus_client, its HTTP stack (http, email, ssl) or the
collector (about 80 modules and 5 MB of every raylet): the port is bound at start (so that `nodes()` can
report it and a taken port ends start-up), workers' metric reports are aggregated from the start, and a
thread of its own waits for the first connection, then builds metrics_export's collector and server on
that socket. Binds a TCP socket and starts one thread.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from typing import Any

import psutil

from kray.protocol import metrics_messages
from kray.raylet import metrics_aggregate

log = logging.getLogger(__name__)


class PortTaken(OSError):
    """The metrics port is held by another process."""


def bind_address(node_ip: str) -> str:
    """A node on a loopback address (several share a machine) listens there only, else everywhere."""
    return node_ip if node_ip.startswith("127.") else "0.0.0.0"


class Endpoint:
    """The bound port; `attach` starts aggregating the raylet's metric reports and waits for a scrape."""

    def __init__(self, node_ip: str, port: int) -> None:
        try:
            self.listener = socket.create_server((bind_address(node_ip), port), backlog=64)
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortTaken(e.errno, f"the metrics export port {node_ip}:{port} is in use: {e.strerror}") from None
            raise
        self.port = int(self.listener.getsockname()[1])
        self.aggregate = metrics_aggregate.Aggregate()
        self.server: Any = None
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread: threading.Thread | None = None

    def attach(self, raylet: Any) -> None:
        raylet.loop.on(metrics_messages.ReportMetrics, lambda m, p, peer: self.aggregate.apply(m))
        psutil.cpu_percent(interval=None)  # the first reading is a baseline: the first scrape reads since now
        self._thread = threading.Thread(target=self._serve_when_scraped, args=(raylet,), name="kray-metrics",
                                        daemon=True)
        self._thread.start()

    def _serve_when_scraped(self, raylet: Any) -> None:
        stop_fd = self._stop_fd
        readable, _, _ = select.select([self.listener.fileno(), stop_fd], [], [])
        if stop_fd in readable:
            return
        try:
            from kray.raylet import metrics_export

            self.server = metrics_export.serve_on(self.listener, metrics_export.NodeCollector(raylet, self.aggregate))
        except Exception:
            log.exception("could not serve metrics on port %d", self.port)
            return
        self.server.serve_forever()

    def close(self) -> None:
        if self._stop_fd < 0:
            return
        os.eventfd_write(self._stop_fd, 1)
        if self.server is None and self._thread is not None:
            self._thread.join(2.0)  # still waiting for a first scrape: it returns at once
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.listener.close()
        fd, self._stop_fd = self._stop_fd, -1
        os.close(fd)
