"""`python -m kray.worker`: a worker process started by a raylet; registers and runs tasks."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kray import config
from kray.core import core_worker, refs
from kray.protocol import messages, wire
from kray.util import process_watch
from kray.worker import env_setup, executor


def main() -> None:
    parser = argparse.ArgumentParser(prog="kray.worker")
    parser.add_argument("--raylet", required=True)
    parser.add_argument("--worker-id", required=True)
    env_setup.add_arguments(parser)
    args = parser.parse_args()
    wire.set_token(config.server_token("worker"))
    worker_id = bytes.fromhex(args.worker_id)
    env_setup.enter(args, worker_id)  # a runtime_env is set up before the worker registers
    # After the env's worker_process_setup_hook, so that a logging configuration it made stands (as in Ray).
    logging.basicConfig(level=config.LOG_LEVEL, format="[worker] %(levelname)s %(message)s")
    ip = wire.host_of(args.raylet)
    # Until the raylet answers, the node is known only by its raylet's address.
    provisional = messages.NodeInfo(b"", ip, args.raylet, "", {}, "", "", False)
    core = core_worker.CoreWorker(node=provisional, gcs_address="", job_id=0, worker_id=worker_id, is_driver=False)
    core.runtime_env = args.runtime_env  # its tasks' children inherit it
    execution = executor.Executor(core)
    core.start()
    reply = core.call(args.raylet, lambda rid: messages.RegisterWorker(rid, worker_id, os.getpid(), core.address))
    node = reply["node"]
    core.node = node
    core.node_id = node.node_id
    core.nodes = {node.node_id: node}
    core.gcs_address = reply["gcs_address"]
    core.subscribe_nodes()
    refs.set_core(core)
    raylet_pid = os.getppid()
    core.loop.call_soon_threadsafe(
        process_watch.exit_with_parent, core.loop, raylet_pid, lambda: os._exit(0)
    )
    try:
        execution.run_forever()
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
