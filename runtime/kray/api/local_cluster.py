"""Starting and stopping the processes of a kray node on this machine (GCS and raylet).

Spawns processes, picks ports, creates session directories and the address file that
`address="auto"` reads. Used by `kray.init()` for an embedded local cluster.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import psutil

from kray import config
from kray.protocol import messages, wire

ADDRESS_FILE = os.path.join(config.TEMP_ROOT, "kray_current_cluster")


@dataclasses.dataclass
class LocalNode:
    """The processes and directories of one node started from this machine."""

    node: messages.NodeInfo
    gcs_address: str
    session_name: str
    session_dir: str
    dashboard_url: str
    shm_root: str
    processes: list[subprocess.Popen]

    def stop(self, timeout: float = 5.0) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2.0)
        shutil.rmtree(self.shm_root, ignore_errors=True)
        shutil.rmtree(os.path.join(self.session_dir, "spill"), ignore_errors=True)
        _remove_address_file_if(self.gcs_address)


def default_resources(
    num_cpus: float | None, num_gpus: float | None, resources: dict[str, float] | None,
    object_store_memory: int, ip: str, is_head: bool,
) -> dict[str, float]:
    """Ray's resource names for a node: CPU, GPU, memory, object_store_memory, node:<ip>, custom."""
    cpus = float(num_cpus) if num_cpus is not None else float(os.cpu_count() or 1)
    total: dict[str, float] = {"CPU": cpus}
    gpus = float(num_gpus) if num_gpus is not None else float(_detect_gpus())
    if gpus:
        total["GPU"] = gpus
    total["memory"] = float(int(psutil.virtual_memory().available * 0.7))
    total["object_store_memory"] = float(object_store_memory)
    total[f"node:{ip}"] = 1.0
    if is_head:
        total["node:__internal_head__"] = 1.0
    for name, amount in (resources or {}).items():
        if name in ("CPU", "GPU"):
            raise ValueError(f"Use num_cpus/num_gpus instead of resources={{'{name}': ...}}.")
        total[name] = float(amount)
    return total


def _detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        return len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()])
    except OSError:
        return 0


def default_object_store_memory() -> int:
    try:
        shm_free = shutil.disk_usage(config.SHM_ROOT).free
    except OSError:
        shm_free = 1 << 30
    by_ram = int(psutil.virtual_memory().total * config.OBJECT_STORE_FRACTION)
    return max(64 << 20, min(by_ram, int(shm_free * 0.9)))


def start_node(
    *, ip: str = "127.0.0.1", gcs_address: str | None = None, gcs_port: int | None = None,
    raylet_port: int | None = None, num_cpus: float | None = None, num_gpus: float | None = None,
    resources: dict[str, float] | None = None, object_store_memory: int | None = None,
    parent_pid: int | None = None, session_name: str | None = None, write_address_file: bool = False,
    token: str | None = None, dashboard_host: str = "127.0.0.1", dashboard_port: int | None = None,
    memory: int | None = None, include_dashboard: bool = True, health_port: int = 0,
    health_port_required: bool = False, metrics_export_port: int = 0, client_port: int = 0,
) -> LocalNode:
    """Start a GCS (when gcs_address is None, i.e. a head), a raylet and, on a head with
    include_dashboard, the HTTP server (jobs, cluster state); returns without waiting. A non-zero
    health_port gives the raylet a health endpoint there (raylet/health_http.py). The raylet serves
Prometheus metrics on metrics_export_port, or on a free port when it is 0 (nodes() reports which).
A head's GCS also listens on client_port (Ray Client's port, for `ray://` addresses) when it is not 0.

    The processes come up in parallel with the caller: zmq queues requests until they listen.
    """
    is_head = gcs_address is None
    dashboard_url = ""
    if is_head and include_dashboard:
        dashboard_port = dashboard_port or wire.free_port(dashboard_host)
        dashboard_url = f"{'127.0.0.1' if dashboard_host == '0.0.0.0' else dashboard_host}:{dashboard_port}"
    session_name = session_name or time.strftime("session_%Y-%m-%d_%H-%M-%S_") + f"{os.getpid()}_{os.urandom(2).hex()}"
    session_dir = os.path.join(config.TEMP_ROOT, session_name)
    os.makedirs(os.path.join(session_dir, "logs"), exist_ok=True)
    node_id = os.urandom(16)
    store_bytes = int(object_store_memory or default_object_store_memory())
    shm_root = os.path.join(config.SHM_ROOT, f"kray-{session_name}-{node_id.hex()[:8]}")
    shm_dir = shm_root
    spill_dir = os.path.join(session_dir, "spill", node_id.hex()[:8])
    os.makedirs(shm_dir, exist_ok=True)
    os.makedirs(spill_dir, exist_ok=True)
    processes: list[subprocess.Popen] = []
    env = _child_env()
    if token:
        env["KRAY_CLUSTER_TOKEN"] = token
    if is_head:
        gcs_port = gcs_port or wire.free_port(ip)
        gcs_address = wire.tcp(ip, gcs_port)
        processes.append(
            _spawn(
                ["-m", "kray.gcs", "--host", ip, "--port", str(gcs_port), "--parent-pid", str(parent_pid or 0),
                 "--client-port", str(client_port)],
                os.path.join(session_dir, "logs", "gcs"), env,
            )
        )
        if include_dashboard:
            processes.append(
                _spawn(
                    ["-m", "kray.dashboard", "--gcs", gcs_address, "--host", dashboard_host,
                     "--port", str(dashboard_port), "--session-dir", session_dir, "--session-name", session_name,
                     "--parent-pid", str(parent_pid or 0)],
                    os.path.join(session_dir, "logs", "dashboard"), env,
                )
            )
    assert gcs_address is not None
    raylet_port = raylet_port or wire.free_port(ip)
    total = default_resources(num_cpus, num_gpus, resources, store_bytes, ip, is_head)
    if memory:
        total["memory"] = float(memory)
    node = messages.NodeInfo(
        node_id=node_id, ip=ip, raylet_address=wire.tcp(ip, raylet_port), log_address="",
        resources=total, shm_dir=shm_dir, spill_dir=spill_dir, is_head=is_head,
        object_store_memory=store_bytes,
    )
    prestart = max(1, min(int(total["CPU"]), 4)) if total["CPU"] >= 1 else 1
    processes.append(
        _spawn(
            [
                "-m", "kray.raylet", "--gcs", gcs_address, "--ip", ip, "--port", str(raylet_port),
                "--node-id", node_id.hex(), "--resources", json.dumps(total),
                "--object-store-memory", str(store_bytes), "--shm-dir", shm_dir, "--spill-dir", spill_dir,
                "--prestart", str(prestart), "--parent-pid", str(parent_pid or 0),
                "--health-port", str(health_port), *(["--health-port-required"] if health_port_required else []),
                "--metrics-export-port", str(metrics_export_port),
                *(["--head"] if is_head else []),
            ],
            os.path.join(session_dir, "logs", "raylet"), env,
        )
    )
    node.pid = processes[-1].pid  # the raylet's: the driver watches it (core/node_watch.py)
    local = LocalNode(node, gcs_address, session_name, session_dir, dashboard_url, shm_root, processes)
    if write_address_file:
        write_address(gcs_address, session_dir, [p.pid for p in processes], token, dashboard_url, ip, [shm_root],
                      client_address=wire.tcp(ip, client_port) if is_head and client_port else "")
    return local


def dashboard_listening(url: str) -> bool:
    """Whether the HTTP server at `url` (HOST:PORT) accepts connections yet."""
    host, _, port = url.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_dashboard(node: LocalNode, timeout: float) -> None:
    """Return once the node's HTTP server listens (a job submitted next must find it)."""
    deadline = time.monotonic() + timeout
    while node.dashboard_url and not dashboard_listening(node.dashboard_url):
        if time.monotonic() > deadline:
            raise ConnectionError(f"the HTTP server (job API) did not listen on {node.dashboard_url} within "
                                  f"{timeout:g}s; see {node.session_dir}/logs/dashboard.err")
        time.sleep(0.02)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Children must import the same kray as this process, wherever it was imported from.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _spawn(args: list[str], log_prefix: str, env: dict[str, str]) -> subprocess.Popen:
    out = open(log_prefix + ".out", "ab")  # noqa: SIM115 - the child keeps its own copies; closed below
    err = open(log_prefix + ".err", "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True, env=env, close_fds=True,
        )
    finally:
        out.close()
        err.close()


def write_address(
    gcs_address: str, session_dir: str, pids: list[int], token: str | None = None, dashboard_url: str = "",
    node_ip: str = "", shm_dirs: list[str] | None = None, client_address: str = "",
) -> None:
    """Record this machine's cluster (readable by its owner only: it holds the cluster token).

    A second node of the same cluster started on this machine adds its processes to the record, so
    that `kray stop` stops them all; drivers keep using the first node (`node_ip`).
    """
    os.makedirs(config.TEMP_ROOT, exist_ok=True)
    record = {"gcs_address": gcs_address, "session_dir": session_dir, "pids": pids, "token": token,
              "dashboard_url": dashboard_url, "node_ip": node_ip, "shm_dirs": list(shm_dirs or [])}
    if client_address:
        record["client_address"] = client_address  # Ray Client's port of this head's GCS
    current = read_address()
    if current and current.get("gcs_address") == gcs_address and _any_alive(current.get("pids", [])):
        record = dict(current, pids=[*current.get("pids", []), *pids],
                      shm_dirs=[*current.get("shm_dirs", []), *(shm_dirs or [])])
        record["token"] = record.get("token") or token
    tmp = ADDRESS_FILE + f".{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, ADDRESS_FILE)


def _any_alive(pids: list[int]) -> bool:
    return any(psutil.pid_exists(int(pid)) for pid in pids)


def read_live_address() -> dict[str, Any] | None:
    """The record of this machine's cluster, or None when there is none or its processes are gone."""
    found = read_address()
    if found and found.get("pids") and not _any_alive(found["pids"]):
        return None  # left behind by a cluster that was killed
    return found


def new_token() -> str:
    return os.urandom(16).hex()


def read_address() -> dict[str, Any] | None:
    try:
        with open(ADDRESS_FILE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _remove_address_file_if(gcs_address: str) -> None:
    current = read_address()
    if current and current.get("gcs_address") == gcs_address:
        try:
            os.unlink(ADDRESS_FILE)
        except FileNotFoundError:
            pass
