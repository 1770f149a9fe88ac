"""The raylet's pool of worker processes: start them, notice their death, forward their output.
Idle workers are kept per runtime_env (its canonical text): a worker only ever runs its own env.

A worker's death is noticed by its process id (a pidfd that becomes readable when it exits), not by its
pipes, which a child process may hold open. The raylet is a child subreaper, so what a dead worker
left running is adopted by the raylet and killed with it, as Ray's raylet does.

Starts and kills processes and reads their stdout/stderr pipes on the raylet's I/O thread. A
worker writes a marker line (`\\x1ekray:<job>:<task name>`) when it starts a task, so each output
line can be published to the right driver with a `(task pid=...)` prefix.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil

from kray import config
from kray.protocol import loop as loop_mod
from kray.raylet import log_files

log = logging.getLogger(__name__)

MARKER = b"\x1ekray:"

STARTING, IDLE, LEASED, DEAD = "starting", "idle", "leased", "dead"


class Worker:
    __slots__ = (
        "address",
        "blocked",
        "gpus",
        "idle_since",
        "job",
        "lease_id",
        "lease_job",
        "lease_owner",
        "lease_retriable",
        "leased_at",
        "name",
        "owner_peer",
        "pid",
        "pidfd",
        "proc",
        "resources",
        "runtime_env",
        "started_at",
        "state",
        "streams",
        "worker_id",
    )

    def __init__(self, worker_id: bytes, proc: subprocess.Popen, runtime_env: str = "") -> None:
        self.worker_id = worker_id
        self.runtime_env = runtime_env
        self.started_at = time.monotonic()
        self.proc = proc
        self.pid = proc.pid
        self.pidfd: int | None = None  # readable once the process exited
        self.address = ""
        self.state = STARTING
        self.lease_id = 0
        self.resources: dict[str, float] = {}
        self.owner_peer: loop_mod.Peer | None = None
        self.blocked = False
        self.idle_since = time.monotonic()
        self.streams: dict[int, bytearray] = {}
        self.job = -1
        self.name = ""
        self.gpus: dict[int, float] = {}  # GPU index -> share of it held by the current lease
        self.lease_job = 0
        self.leased_at = 0.0  # when the current lease was granted, and by whom, for the memory monitor
        self.lease_owner = ""
        self.lease_retriable = False


class WorkerPool:
    def __init__(
        self, loop: loop_mod.Loop, raylet_address: str, ip: str,
        publish: Callable[[int, tuple], None], on_death: Callable[[Worker, str], None], env: dict[str, str],
        gcs_address: str = "", runtime_env_dir: str = "",
    ) -> None:
        self.loop = loop
        self.raylet_address = raylet_address
        self.ip = ip
        self.publish = publish
        self.on_death = on_death
        self.env = env
        self.workers: dict[bytes, Worker] = {}
        self.idle: list[Worker] = []  # workers without a runtime_env (the fast path)
        self.idle_env: dict[str, list[Worker]] = {}  # runtime_env text -> its idle workers
        self.gcs_address = gcs_address  # where a worker fetches its runtime_env's packages
        self.runtime_env_dir = runtime_env_dir  # the node's cache of unpacked packages and virtualenvs
        self.on_exit: Callable[[Worker], None] | None = None  # every exit, expected or not
        self.logs = log_files.WorkerLogs(loop, log_files.log_dir_of(runtime_env_dir))  # kray logs
        _become_subreaper()

    @property
    def starting(self) -> int:
        return sum(1 for w in self.workers.values() if w.state == STARTING and not w.runtime_env)

    def starting_for(self, runtime_env: str) -> int:
        return sum(1 for w in self.workers.values() if w.state == STARTING and w.runtime_env == runtime_env)

    def start_worker(self, runtime_env: str = "") -> Worker:
        worker_id = os.urandom(16)
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        command = [sys.executable, "-m", "kray.worker", "--raylet", self.raylet_address, "--worker-id", worker_id.hex()]
        if runtime_env:
            # The worker sets its env up before it registers (a failure is reported, never a hang).
            command += ["--gcs", self.gcs_address, "--runtime-env-dir", self.runtime_env_dir,
                        "--runtime-env", runtime_env]
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: killing it kills its children too
            env=env,
        )
        _lower_priority(proc.pid)
        worker = Worker(worker_id, proc, runtime_env)
        self.workers[worker_id] = worker
        self.logs.started(worker_id)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            fd = stream.fileno()
            os.set_blocking(fd, False)
            worker.streams[fd] = bytearray()
            self.loop.add_fd(fd, functools.partial(self._on_output, worker, fd))
        try:
            worker.pidfd = os.pidfd_open(proc.pid)
            self.loop.add_fd(worker.pidfd, functools.partial(self._on_process_exit, worker))
        except (OSError, AttributeError) as e:  # no pidfds here: the pipes' EOF tells of its death
            log.debug("no pidfd for worker pid %d: %s", proc.pid, e)
        return worker

    def registered(self, worker_id: bytes, address: str) -> Worker | None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.state == DEAD:
            return None
        worker.address = address
        worker.state = IDLE
        worker.idle_since = time.monotonic()
        self._idle_list(worker).append(worker)
        return worker

    def _idle_list(self, worker: Worker) -> list[Worker]:
        if not worker.runtime_env:
            return self.idle
        return self.idle_env.setdefault(worker.runtime_env, [])

    def pop_idle(self, runtime_env: str = "") -> Worker | None:
        idle = self.idle if not runtime_env else self.idle_env.get(runtime_env)
        while idle:
            worker = idle.pop()
            if worker.state == IDLE:
                return worker
        return None

    def release(self, worker: Worker) -> None:
        worker.state = IDLE
        worker.lease_id = 0
        worker.resources = {}
        worker.owner_peer = None
        worker.blocked = False
        worker.idle_since = time.monotonic()
        self._idle_list(worker).append(worker)

    def kill(self, worker: Worker, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(worker.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self) -> None:
        for worker in list(self.workers.values()):
            self.kill(worker)
        deadline = time.monotonic() + 5.0
        for worker in list(self.workers.values()):
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    def trim_idle(self, keep: int, idle_seconds: float) -> None:
        """Stop idle workers beyond `keep` that have been idle for `idle_seconds`; idle workers of a
        runtime_env serve only that env, so they all go once idle that long."""
        idle = [w for w in self.idle if w.state == IDLE]
        now = time.monotonic()
        stale = idle[: max(0, len(idle) - keep)]
        for runtime_env, workers in list(self.idle_env.items()):
            workers[:] = [w for w in workers if w.state == IDLE]
            stale += workers
            if not workers:
                del self.idle_env[runtime_env]
        for worker in stale:
            if now - worker.idle_since > idle_seconds:
                worker.state = DEAD  # expected exit: not reported as a death
                self.kill(worker, signal.SIGTERM)

    def setup_overdue(self, limit_s: Callable[[str], float | None]) -> list[Worker]:
        """Workers still setting their runtime_env up after limit_s(env) seconds (None: no limit)."""
        now = time.monotonic()
        late = []
        for worker in self.workers.values():
            if worker.state == STARTING and worker.runtime_env:
                limit = limit_s(worker.runtime_env)
                if limit is not None and now - worker.started_at > limit:
                    late.append(worker)
        return late

    # ------------------------------------------------------------ output and death

    def _on_output(self, worker: Worker, fd: int) -> bool:
        """Forward what the pipe holds now; False when it held nothing (or was closed)."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._on_eof(worker, fd)
            return False
        buf = worker.streams[fd]
        buf += data
        if b"\n" not in data:
            return True
        *lines, rest = bytes(buf).split(b"\n")
        worker.streams[fd] = bytearray(rest)
        self._publish(worker, fd, lines)
        return True

    def _publish(self, worker: Worker, fd: int, lines: list[bytes]) -> None:
        is_err = worker.proc.stderr is not None and fd == worker.proc.stderr.fileno()
        batch: list[str] = []
        for line in lines:
            if line.startswith(MARKER):
                self._send(worker, is_err, batch)
                batch = []
                _, job, name = line[len(MARKER) - 1 :].decode(errors="replace").split(":", 2)
                worker.job = int(job)
                worker.name = name
            else:
                batch.append(line.decode(errors="replace"))
        self._send(worker, is_err, batch)

    def _send(self, worker: Worker, is_err: bool, lines: list[str]) -> None:
        if not lines:
            return
        self.logs.write(worker.worker_id, worker.pid, is_err, lines)
        self.publish(worker.job, (worker.name or "worker", worker.pid, self.ip, is_err, lines))

    def _on_eof(self, worker: Worker, fd: int) -> None:
        self._close_stream(worker, fd)
        if worker.streams or worker.pidfd is not None:
            return  # wait for the other stream to close too, or for the process itself to exit
        self._finish(worker)

    def _close_stream(self, worker: Worker, fd: int) -> None:
        self.loop.remove_fd(fd)
        rest = worker.streams.pop(fd, bytearray())
        if rest:
            self._publish(worker, fd, [bytes(rest)])

    def _on_process_exit(self, worker: Worker) -> None:
        """The worker process exited: forward what it wrote last, then report it, even while a child it
        left holds its pipes open."""
        if worker.pidfd is not None:
            self.loop.remove_fd(worker.pidfd)
            os.close(worker.pidfd)
            worker.pidfd = None
        for fd in list(worker.streams):
            # What is in the pipe now (bounded: a child's later output is not the worker's).
            for _ in range(64):
                if fd not in worker.streams or not self._on_output(worker, fd):
                    break
            if fd in worker.streams:
                self._close_stream(worker, fd)
        self._finish(worker)

    def _finish(self, worker: Worker) -> None:
        self.logs.close(worker.worker_id)
        try:
            code = worker.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self.kill(worker)
            code = worker.proc.wait(2.0)
        for stream in (worker.proc.stdout, worker.proc.stderr):
            if stream is not None:
                stream.close()
        self.kill(worker)  # reap anything the worker left behind in its process group
        expected = worker.state == DEAD
        worker.state = DEAD
        self.workers.pop(worker.worker_id, None)
        self.reap_orphans()
        if self.on_exit is not None:
            self.on_exit(worker)
        if not expected:
            reason = f"the worker process (pid={worker.pid}) exited with code {code}"
            if code is not None and code < 0:
                reason = f"the worker process (pid={worker.pid}) was killed by signal {-code}"
            self.on_death(worker, reason)

    def reap_orphans(self) -> None:
        """Kill and reap processes adopted by this raylet (what dead workers left running, even in a
        session of their own): every child that is not a live worker."""
        workers = {w.pid for w in self.workers.values()}
        for _ in range(3):  # an orphan's own children are adopted once it dies
            found = False
            for child in psutil.Process().children():
                if child.pid in workers:
                    continue
                found = True
                try:
                    child.kill()
                    os.waitpid(child.pid, 0)
                except (psutil.NoSuchProcess, ChildProcessError):
                    pass
                log.info("killed pid %d, left running by a worker that exited", child.pid)
            if not found:
                return

    def output_fds(self) -> list[int]:
        return [fd for w in self.workers.values() for fd in w.streams]

    def summary(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for w in self.workers.values():
            states[w.state] = states.get(w.state, 0) + 1
        return states


def _lower_priority(pid: int) -> None:
    """Run a new worker below the raylet and the GCS (at WORKER_NICENESS, as Ray's workers), so that
    user code and starting interpreters never starve the node's own processes. Done right after the
    fork, before the interpreter starts any thread (a niceness is per thread and inherited)."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, max(current, config.WORKER_NICENESS))
    except OSError as e:
        log.debug("could not lower the priority of worker pid %d: %s", pid, e)


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Adopt the orphaned descendants of this process's workers (Linux), so none outlives its worker."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as e:
        log.debug("cannot become a child subreaper here: %s", e)
