"""A container as local processes: the argv that enters the pod's namespaces and mounts its volumes,
the process group it runs in, how it is stopped; and the probes of any `Running` container (this
module's processes or podman.py's containers).

Starts and signals processes, enters namespaces with nsenter for exec probes, and opens TCP/HTTP
connections to pod IPs; writes only the container's log file.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from . import network, status, volumes

log = logging.getLogger(__name__)


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    return path or name


def launch_argv(sandbox: network.Sandbox, argv: list[str], hostname: str, mounts: list[volumes.Mount],
                workdir: str | None) -> list[str]:
    """The full command line: [pdeathsig] [ip netns exec NS] unshare --mount --uts sh -c SETUP argv.

    The setup script sets the hostname, performs the mounts in the container's private mount
    namespace and execs argv, so the process the runner started *is* the container's process.
    """
    # pdeathsig: the container dies with the runner's thread even if the test process is killed.
    prefix = [_tool("setpriv"), "--pdeathsig", "SIGKILL", "--"] if shutil.which("setpriv") else []
    if os.geteuid() != 0:
        if mounts:
            log.warning("pod runner: not root, volume mounts of %s are skipped", argv[0])
        return [*prefix, *argv]
    script = ["set -e", f"{shlex.quote(_tool('hostname'))} {shlex.quote(hostname)}"]
    script += volumes.mount_script(mounts, _tool("mount"))
    if workdir:
        script.append(f"cd {shlex.quote(workdir)}")
    script.append('exec "$@"')
    return [*prefix, *sandbox.exec_prefix(), _tool("unshare"), "--mount", "--uts", "--propagation", "private",
            "--", "/bin/sh", "-c", "\n".join(script), "kray-pod", *argv]


class Running(Protocol):
    """One run of a container, whatever runs it: processes here, or podman (podman.PodmanContainer)."""

    pid: int

    def poll(self) -> int | None: ...

    def stop(self, grace_s: float) -> int: ...

    def exec_argv(self, argv: list[str], env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """The command line (and its environment) that runs argv inside this container."""
        ...


class ContainerProcess:
    """One run of a container: a process group with its output appended to the container's log."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path, shown: list[str]) -> None:
        self.env = dict(env)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed once the process exits
        self._log.write(f"--- kray pod runner: starting {shlex.join(shown)} at {status.now()}\n".encode())
        self._log.flush()
        try:
            self.popen = subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
        except OSError:
            self._log.close()
            raise
        self.pid = self.popen.pid

    def poll(self) -> int | None:
        """The container exit code once it has exited (128+N for death by signal N), else None."""
        rc = self.popen.poll()
        if rc is None:
            return None
        self._log.close()
        return status.exit_code_of(rc)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace_s: float) -> int:
        """SIGTERM to the process group, SIGKILL after grace_s; returns the exit code."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=max(grace_s, 0.0))
            except subprocess.TimeoutExpired:
                pass
        # Children may outlive the leader in its group; they go too.
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("pod runner: pid %d did not die after SIGKILL", self.pid)
        rc = self.poll()
        return rc if rc is not None else 137

    def exec_argv(self, argv: list[str], env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """argv in this container's namespaces, with its environment plus `env`."""
        return [*enter_argv(self.pid), *argv], {**self.env, **(env or {})}


def enter_argv(pid: int) -> list[str]:
    """The prefix that runs a command in the namespaces of container process `pid` (nothing when not
    root: loopback mode shares the host's)."""
    return [_tool("nsenter"), "-t", str(pid), "-n", "-m", "-u", "--"] if os.geteuid() == 0 else []


def _port(probe_port: Any, container: Any) -> int:
    if isinstance(probe_port, int) or (isinstance(probe_port, str) and probe_port.isdigit()):
        return int(probe_port)
    for p in container.ports or []:
        if p.name == probe_port:
            return int(p.container_port)
    raise ValueError(f"no port named {probe_port!r} in container {container.name}")


def probe(spec: Any, container: Any, proc: Running, pod_ip: str) -> bool:
    """Runs one exec/tcpSocket/httpGet probe against a running container; True when it passes."""
    timeout = float(spec.timeout_seconds or 1)
    # The client names the exec handler `var_exec` (pydantic models) or `_exec` (older releases).
    exec_action = getattr(spec, "var_exec", None) or getattr(spec, "_exec", None)
    try:
        if exec_action is not None:
            argv, env = proc.exec_argv(list(exec_action.command))
            done = subprocess.run(argv, check=False, env=env, capture_output=True, timeout=timeout)
            return done.returncode == 0
        if spec.tcp_socket is not None:
            host = spec.tcp_socket.host or pod_ip
            with socket.create_connection((host, _port(spec.tcp_socket.port, container)), timeout=timeout):
                return True
        if spec.http_get is not None:
            get = spec.http_get
            scheme = (get.scheme or "HTTP").lower()
            url = f"{scheme}://{get.host or pod_ip}:{_port(get.port, container)}{get.path or '/'}"
            req = urllib.request.Request(url, headers={h.name: h.value for h in get.http_headers or []})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return bool(200 <= r.status < 400)
    except urllib.error.HTTPError as e:
        return 200 <= e.code < 400
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return False
    return True  # grpc and unknown handlers: the runner cannot check them, so they pass


PROBE_PERIOD_CAP_S = 2.0


def _due(spec: Any, next_at: float) -> tuple[bool, float]:
    """Whether a probe is due now, and when the next one is: initialDelaySeconds after the start
    (`next_at` 0.0), then every periodSeconds (capped at PROBE_PERIOD_CAP_S)."""
    now = time.monotonic()
    if next_at == 0.0:
        next_at = now + float(spec.initial_delay_seconds or 0)
    if now < next_at:
        return False, next_at
    return True, now + min(float(spec.period_seconds or 10), PROBE_PERIOD_CAP_S)


def run_liveness(rec: status.ContainerRecord, container: Any, pod_ip: str, proc: Running) -> bool:
    """Probes when due; True once failureThreshold probes in a row failed (the container must be killed).

    Honours initialDelaySeconds and failureThreshold; periodSeconds is capped as for readiness.
    """
    spec = container.liveness_probe
    if spec is None or rec.pid is None:
        return False
    due, rec.next_live_probe_at = _due(spec, rec.next_live_probe_at)
    if not due:
        return False
    if probe(spec, container, proc, pod_ip):
        rec.live_failures = 0
        return False
    rec.live_failures += 1
    return rec.live_failures >= (spec.failure_threshold or 3)


def run_readiness(rec: status.ContainerRecord, container: Any, pod_ip: str, proc: Running) -> bool:
    """Probes when due and updates rec.ready; returns whether readiness changed.

    Honours initialDelaySeconds, success/failureThreshold and periodSeconds (capped at 2 s so tests
    do not wait on long periods).
    """
    spec = container.readiness_probe
    if spec is None or rec.pid is None:
        return False
    due, rec.next_probe_at = _due(spec, rec.next_probe_at)
    if not due:
        return False
    before = rec.ready
    if probe(spec, container, proc, pod_ip):
        rec.probe_successes, rec.probe_failures = rec.probe_successes + 1, 0
        if rec.probe_successes >= (spec.success_threshold or 1):
            rec.ready = True
    else:
        rec.probe_failures, rec.probe_successes = rec.probe_failures + 1, 0
        if rec.probe_failures >= (spec.failure_threshold or 3):
            rec.ready = False
    return rec.ready != before
