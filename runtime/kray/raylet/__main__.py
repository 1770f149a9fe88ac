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
from kray.raylet import server
from kray.util import process_watch


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
    args = parser.parse_args()
    wire.set_token(config.cluster_token())
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
    raylet = server.Raylet(
        node=node, gcs_address=args.gcs, port=args.port,
        prestart=args.prestart, worker_env={},
    )
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
        raylet.drivers.close()
        raylet.pool.kill_all()
        raylet.store.destroy()
        raylet.loop.close()
    if raylet.exit_reason:
        sys.exit(1)


if __name__ == "__main__":
    main()
