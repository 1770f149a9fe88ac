"""The job supervisor: an async actor that runs one job's entrypoint in a shell and hands out its output.

Runs inside a worker process on the node that fits the entrypoint's resources; spawns and signals the
entrypoint's process group, keeps its output in a file, and answers long-polls from the job manager.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from typing import Any

from kray import config

# Read at most this much output per poll, so one answer stays a small message.
MAX_CHUNK = 4 << 20
GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guard.py")


class JobSupervisor:
    """One submitted job's entrypoint. Created detached and named, so a restarted job server finds it."""

    def __init__(self, submission_id: str, entrypoint: str, runtime_env: dict[str, Any]) -> None:
        self.submission_id = submission_id
        self.entrypoint = entrypoint
        self.runtime_env = runtime_env
        self.proc: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None
        self.size = 0
        self.changed: asyncio.Event | None = None
        # Unlinked at once: nothing is left behind however this worker ends.
        self.log_file = tempfile.TemporaryFile(prefix=f"kray-job-{submission_id}-")  # noqa: SIM115

    async def start(self) -> dict[str, Any]:
        """Set up the runtime_env, start the entrypoint, and say where it runs."""
        import kray
        from kray.core import refs

        core = refs.get_core()
        env, cwd = await asyncio.get_running_loop().run_in_executor(None, self._prepare, core)
        self.changed = asyncio.Event()
        # The guard runs the entrypoint's shell in a process group of its own and ends the whole group
        # when this worker dies, so no driver outlives its supervisor.
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, GUARD, str(config.JOB_STOP_WAIT_S), self.entrypoint,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=env, cwd=cwd,
        )
        asyncio.get_running_loop().create_task(self._pump())
        return {
            "pid": self.proc.pid,
            "node_ip_address": core.node.ip,
            "node_id": kray.get_runtime_context().get_node_id(),
        }

    def _prepare(self, core: Any) -> tuple[dict[str, str], str | None]:
        """The entrypoint's environment: this cluster's address and token, and its runtime_env."""
        from kray.protocol import messages, wire

        env = dict(os.environ)
        gcs = core.gcs_address.removeprefix("tcp://")
        env.update({
            "KRAY_ADDRESS": gcs, "RAY_ADDRESS": gcs, "KRAY_NODE_IP": core.node.ip,
            "KRAY_JOB_SUBMISSION_ID": self.submission_id, "PYTHONUNBUFFERED": "1",
        })
        if wire.get_token():
            env["KRAY_CLUSTER_TOKEN"] = wire.get_token() or ""
        # `python` in an entrypoint is the interpreter kray runs on (a venv need not be activated).
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        cwd = None
        if self.runtime_env:
            from kray import runtime_env as runtime_env_mod
            from kray.runtime_env import packaging, setup

            def fetch(uri: str) -> bytes | None:
                key = packaging.kv_key(uri)
                value: bytes | None = core.call(core.gcs_address, lambda rid: messages.KvGet(rid, key))
                return value

            prepared = setup.prepare(runtime_env_mod.validate(self.runtime_env), fetch,
                                     os.path.join(config.TEMP_ROOT, "runtime_env_cache"))
            env.update(prepared.env)
            env["PATH"] = os.path.dirname(prepared.python) + os.pathsep + env.get("PATH", "")
            env[config.JOB_RUNTIME_ENV_VAR] = _json(self.runtime_env)
            cwd = prepared.cwd
        return env, cwd

    async def _pump(self) -> None:
        assert self.proc is not None and self.changed is not None
        reader = asyncio.get_running_loop().create_task(self._read_output())
        code = await self.proc.wait()
        # A process the entrypoint left behind may hold the pipe open: read what is there, not forever.
        try:
            await asyncio.wait_for(reader, 2.0)
        except asyncio.TimeoutError:
            pass
        self.exit_code = code
        self.changed.set()

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self.changed is not None
        while True:
            chunk = await self.proc.stdout.read(1 << 16)
            if not chunk:
                return
            self.log_file.write(chunk)
            self.log_file.flush()
            self.size += len(chunk)
            self.changed.set()

    async def poll(self, offset: int, wait_s: float) -> dict[str, Any]:
        """Output from `offset` on (waiting up to wait_s for some), and the exit code once it is all read."""
        if self.changed is None:
            raise RuntimeError("poll() before start()")
        if self.size <= offset and self.exit_code is None:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        data = os.pread(self.log_file.fileno(), MAX_CHUNK, offset) if self.size > offset else b""
        done = self.exit_code is not None and offset + len(data) >= self.size
        return {"data": data, "exit_code": self.exit_code if done else None}

    async def stop(self, grace_s: float) -> bool:
        """SIGTERM the entrypoint's process group, then SIGKILL after grace_s. False if it had ended."""
        if self.proc is None or self.exit_code is not None:
            return False
        pgid = self.proc.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace_s)
        except asyncio.TimeoutError:
            _signal_group(pgid, signal.SIGKILL)
        # Whatever the shell started in its group goes too (a driver that ignored SIGTERM, its children).
        _signal_group(pgid, signal.SIGKILL)
        return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
