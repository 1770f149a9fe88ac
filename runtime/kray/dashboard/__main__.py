"""`python -m kray.dashboard`: the head's HTTP server (jobs, cluster state) until SIGTERM or its parent exits.

Started by `kray start --head` (and by `kray.init(include_dashboard=True)`) next to the GCS and raylet.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import signal

from aiohttp import web

from kray import config
from kray.dashboard import app as app_mod
from kray.protocol import wire
from kray.util import process_watch


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    # Job watchers wait on actor calls in threads: give them more than the default handful.
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="kray-http"))
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    app = app_mod.make_app(args.gcs, args.session_dir, args.session_name, wire.get_token())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, reuse_address=True)
    await site.start()
    while not stopped.is_set():
        if args.parent_pid and not process_watch.pid_alive(args.parent_pid):
            break
        try:
            await asyncio.wait_for(stopped.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="kray.dashboard")
    parser.add_argument("--gcs", required=True, help="tcp://HOST:PORT of the GCS")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8265)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--session-name", default="")
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args()
    wire.set_token(config.server_token("HTTP server"))
    logging.basicConfig(level=config.LOG_LEVEL, format="[dashboard] %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args))
    except OSError as e:
        raise SystemExit(f"kray dashboard: cannot listen on {args.host}:{args.port}: {e}") from None


if __name__ == "__main__":
    main()
