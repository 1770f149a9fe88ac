"""`python -m kray.raylet`: run one node's raylet (and its object store ledger) until stopped."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys

import zmq

from kray import config
from kray.protocol import messages, wire
from kray.raylet import health_http, metrics_listener, server
from kray.util import process_watch

log = logging.getLogger("kray.raylet")


def main() -> None:
    parser = argparse.ArgumentParser(prog="kray.raylet")
    parser.add_argument("--gcs", required=True, help="tcp://host:port of the GCS")
    parser.add_argument("--ip", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--resources", required=True, help="JSON object of resource totals")
    parser.add_argument("--object-store-memory", type=int, required=True)
    parser.add_argument("--shm-dir", required=True)
    parser.add_argument("--spill-dir", required=True)
    parser.add_argument("--head", action="store_true")
    parser.add_argument("--prestart", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--health-port", type=int, default=0, help="serve /api/healthz here (0: no endpoint)")
    parser.add_argument("--health-port-required", action="store_true", help="exit if the health port is taken")
    parser.add_argument("--metrics-export-port", type=int, default=0,
                        help="serve Prometheus metrics here (0: a free port)")
    args = parser.parse_args()
    wire.set_token(config.server_token("raylet"))
    logging.basicConfig(level=config.LOG_LEVEL, format="[raylet] %(levelname)s %(message)s")
    node = messages.NodeInfo(
        node_id=bytes.fromhex(args.node_id),
        ip=args.ip,
        raylet_address=wire.tcp(args.ip, args.port),
        log_address="",
        resources=json.loads(args.resources),
        shm_dir=args.shm_dir,
        spill_dir=args.spill_dir,
        is_head=args.head,
        hostname=socket.gethostname(),
        object_store_memory=args.object_store_memory,
        labels=config.node_labels(),
    )
    metrics = _metrics_endpoint(args.ip, args.metrics_export_port)
    node.metrics_export_port = metrics.port
    health_listeners = _health_listeners(args.ip, args.health_port, args.health_port_required)
    raylet = server.Raylet(
        node=node, gcs_address=args.gcs, port=args.port,
        prestart=args.prestart, worker_env={},
    )
    if health_listeners:
        raylet.heartbeat.serve_health(health_listeners)
    metrics.attach(raylet)
    process_watch.stop_on_signals(raylet.loop, raylet.loop.stop)
    process_watch.exit_with_parent(raylet.loop, args.parent_pid, raylet.loop.stop)
    raylet.start()
    try:
        raylet.loop.run()
        if not raylet.exit_reason:
            goodbye = raylet.loop.connect(args.gcs)
            goodbye.send(messages.UnregisterNode(node.node_id))
            goodbye.sock.setsockopt(zmq.LINGER, 500)  # let the goodbye leave before the socket closes
    finally:
        raylet.heartbeat.stop()
        raylet.memory_monitor.stop()
        raylet.drivers.close()
        raylet.pool.kill_all()
        raylet.store.destroy()
        raylet.loop.close()
    if raylet.exit_reason:
        sys.exit(1)


def _metrics_endpoint(ip: str, port: int) -> metrics_listener.Endpoint:
    """Serve Prometheus metrics on `port` (0: a free one); a taken port ends start-up (the CLI checks first)."""
    try:
        return metrics_listener.Endpoint(ip, port)
    except OSError as e:
        log.error("%s; pass another --metrics-export-port", e)
        sys.exit(1)


def _health_listeners(ip: str, port: int, required: bool) -> list[socket.socket]:
    """Bind the health endpoint's port (the heartbeat thread serves it); a taken port ends start-up
    only when it was asked for explicitly, else the node runs without an endpoint (logged)."""
    if not port:
        return []
    try:
        return health_http.listen(ip, port)
    except OSError as e:
        if required:
            log.error("%s; pass another --dashboard-agent-listen-port", e)
            sys.exit(1)
        log.warning("%s: this node serves no health endpoint", e)
        return []


if __name__ == "__main__":
    main()
