"""A worker's runtime_env, entered before it registers with its raylet: packages fetched from the GCS
KV into the node's cache, variables and working directory set, the pip virtualenv's python exec'd.

Talks to the GCS (KvGet) and the raylet (WorkerSetupFailed); may replace this process with exec.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from kray import config, exceptions
from kray.protocol import client, messages

if TYPE_CHECKING:
    from kray.runtime_env import setup

log = logging.getLogger(__name__)

APPLIED_FLAG = "--runtime-env-applied"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gcs", default="", help="the GCS, where the runtime_env's packages are")
    parser.add_argument("--runtime-env", default="", help="canonical JSON of this worker's runtime_env")
    parser.add_argument("--runtime-env-dir", default="", help="the node's runtime_env cache")
    parser.add_argument(APPLIED_FLAG, action="store_true", help=argparse.SUPPRESS)


def enter(args: argparse.Namespace, worker_id: bytes) -> None:
    """Set this worker's runtime_env up (nothing to do without one). On failure, tell the raylet
    (which fails the tasks or actor waiting for this env with RuntimeEnvSetupError) and exit."""
    if not args.runtime_env or args.runtime_env_applied:
        _add_paths_again(args)
        _run_setup_hook(args, worker_id)
        return
    from kray.runtime_env import setup, validation  # only a worker with a runtime_env loads these

    try:
        prepared = setup.prepare(validation.deserialize(args.runtime_env), _fetcher(args.gcs), args.runtime_env_dir)
    except exceptions.RuntimeEnvSetupError as e:
        _report(args.raylet, worker_id, str(e))
    except Exception as e:  # noqa: BLE001 - any failure of the setup fails the env, never hangs it
        _report(args.raylet, worker_id, f"runtime_env setup failed: {type(e).__name__}: {e}")
    setup.apply_in_process(prepared)
    if setup.needs_exec(prepared):
        sys.stdout.flush()
        sys.stderr.flush()
        argv = [prepared.python, "-m", "kray.worker", *sys.argv[1:], APPLIED_FLAG]
        try:
            os.execv(prepared.python, argv)
        except OSError as e:
            _report(args.raylet, worker_id, f"could not start the runtime_env's python {prepared.python}: {e}")
    _run_setup_hook(args, worker_id)


def _run_setup_hook(args: argparse.Namespace, worker_id: bytes) -> None:
    """The env's worker_process_setup_hook, run once the env is entered (after the exec into a
    virtualenv's python, if any); a hook that fails fails the env."""
    if not args.runtime_env or '"worker_process_setup_hook"' not in args.runtime_env:
        return
    from kray.runtime_env import setup_hook, validation

    error = setup_hook.run(validation.deserialize(args.runtime_env)[setup_hook.FIELD])
    if error is not None:
        _report(args.raylet, worker_id, error)


def _add_paths_again(args: argparse.Namespace) -> None:
    """After the exec into the virtualenv's python, the working directory leads sys.path as before
    (PYTHONPATH already carries the packages)."""
    if args.runtime_env_applied:
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)


def _fetcher(gcs_address: str) -> setup.Fetch:
    from kray.runtime_env import packaging

    def fetch(uri: str) -> bytes | None:
        key = packaging.kv_key(uri)
        value = client.request(gcs_address, lambda rid: messages.KvGet(rid, key), timeout=config.REQUEST_TIMEOUT_S)
        return bytes(value) if value is not None else None

    return fetch


def _report(raylet: str, worker_id: bytes, error: str) -> NoReturn:
    """Tell the raylet that this env cannot be set up, then exit (never returns)."""
    log.error("runtime_env setup failed: %s", error)
    try:
        client.request(raylet, lambda rid: messages.WorkerSetupFailed(rid, worker_id, error),
                       timeout=config.REQUEST_TIMEOUT_S)
    except Exception:
        log.exception("could not report the runtime_env failure to the raylet")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
