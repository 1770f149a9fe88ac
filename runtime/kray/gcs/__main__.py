"""`python -m kray.gcs`: run the GCS until SIGTERM or until the process that started it exits."""

from __future__ import annotations

import argparse
import logging

from kray import config
from kray.gcs import server
from kray.protocol import wire
from kray.util import process_watch


def main() -> None:
    parser = argparse.ArgumentParser(prog="kray.gcs")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--client-port", type=int, default=0, help="Ray Client's port, also served (0: none).")
    args = parser.parse_args()
    wire.set_token(config.server_token("GCS"))
    logging.basicConfig(level=config.LOG_LEVEL, format="[gcs] %(levelname)s %(message)s")
    gcs = server.Gcs(args.host, args.port, client_port=args.client_port)
    process_watch.stop_on_signals(gcs.loop, gcs.loop.stop)
    process_watch.exit_with_parent(gcs.loop, args.parent_pid, gcs.loop.stop)
    gcs.loop.run()
    gcs.loop.close()


if __name__ == "__main__":
    main()
