"""`kray start`, `kray stop` and `kray status`: run this machine's kray processes, as Ray's CLI does.

Starts and signals processes, reads and writes the address file in the session directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from typing import Any

import click
import psutil

from kray import config
from kray.api import local_cluster
from kray.protocol import client, messages, wire
from kray.raylet import health_http


def _node_ip(explicit: str | None, toward: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("KRAY_NODE_IP"):
        return os.environ["KRAY_NODE_IP"]
    if toward:
        host = toward.split(":")[0]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((host, 9))
                return str(s.getsockname()[0])
        except OSError:
            pass
    return "127.0.0.1"


@click.command()
@click.option("--head", is_flag=True, help="Start the head node (GCS and raylet).")
@click.option("--address", default=None, help="HOST:PORT of the head's GCS, to join as a worker node.")
@click.option("--port", default=6379, show_default=True, type=int, help="The GCS port on the head.")
@click.option("--node-ip-address", default=None, help="The IP this node binds and advertises.")
@click.option("--num-cpus", type=float, default=None)
@click.option("--num-gpus", type=float, default=None)
@click.option("--memory", type=int, default=None, help="Memory (bytes) schedulable on this node.")
@click.option("--resources", default=None, help='Custom resources as JSON, e.g. \'{"gizmo": 2}\'.')
@click.option("--object-store-memory", type=int, default=None)
@click.option("--dashboard-host", default="127.0.0.1")
@click.option("--dashboard-port", default=8265, type=int)
@click.option("--metrics-export-port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port of this node's Prometheus metrics (/metrics). 0: a free port.")
@click.option("--dashboard-agent-listen-port", "health_port", default=health_http.DEFAULT_PORT, show_default=True,
              type=click.IntRange(0, 65535),
              help="Port of this node's health endpoint (/api/healthz, /api/local_raylet_healthz, as Ray's "
                   "dashboard agent serves them; Kubernetes probes read it). 0: none.")
@click.option("--ray-client-server-port", "client_port", default=10001, show_default=True,
              type=click.IntRange(0, 65535),
              help="Head only: Ray Client's port, where `ray://HOST:PORT` addresses reach the GCS (0: none).")
@click.option("--block", is_flag=True, help="Stay in the foreground; exit non-zero if a kray process dies.")
@click.option("--no-auth", is_flag=True,
              help="Run without a cluster token: anyone who reaches this node's ports can run code on it.")
def start(
    head: bool, address: str | None, port: int, node_ip_address: str | None, num_cpus: float | None,
    num_gpus: float | None, memory: int | None, resources: str | None, object_store_memory: int | None,
    dashboard_host: str, dashboard_port: int, metrics_export_port: int, client_port: int, block: bool,
    health_port: int, no_auth: bool,
) -> None:
    """Start kray's processes on this machine: a head node, or a node joining --address."""
    if head == bool(address):
        raise click.UsageError("Pass exactly one of --head or --address=HEAD_HOST:PORT.")
    try:
        custom = json.loads(resources) if resources else None
    except ValueError as e:
        raise click.BadParameter(f"--resources must be a JSON object: {e}") from None
    if custom is not None and not isinstance(custom, dict):
        raise click.BadParameter('--resources must be a JSON object, e.g. \'{"gizmo": 2}\'.')
    ip = _node_ip(node_ip_address, address)
    gcs_address = None if head else f"tcp://{address if ':' in address else address + ':6379'}"  # type: ignore[operator]
    if no_auth:
        os.environ[config.AUTH_MODE_VARIABLE] = "disabled"  # for this node's processes, which inherit it
    token = None if config.auth_disabled() else _token_for(gcs_address)
    if token is None:
        click.echo("WARNING: kray is running without authentication (--no-auth): anyone who can reach this "
                   "node's ports can run code as this user. Use it only on a trusted, private network.", err=True)
    if gcs_address is not None:
        _check_joinable(gcs_address, token)
    # The health endpoint is optional when its default port is taken: this node then serves none.
    health_port, health_required = _checked_port(
        ip, health_port, "health_port", "--dashboard-agent-listen-port",
        "WARNING: the health port {port} on {ip} is in use (another node on this machine?): this node serves "
        "no health endpoint; pass --dashboard-agent-listen-port to choose one.")
    # The metrics port falls back to a free one (kray.nodes() reports it as MetricsExportPort).
    metrics_export_port, _ = _checked_port(
        ip, metrics_export_port, "metrics_export_port", "--metrics-export-port",
        "Note: the metrics port {port} on {ip} is in use (another node on this machine?): this node serves its "
        "metrics on a free port instead (see MetricsExportPort in kray.nodes()).")
    client_port, _ = _checked_port(
        ip, client_port if head else 0, "client_port", "--ray-client-server-port",
        "Note: the Ray Client port {port} on {ip} is in use (another cluster on this machine?): `ray://` addresses "
        "do not reach this cluster; pass --ray-client-server-port to choose a port.")
    node = local_cluster.start_node(
        ip=ip, gcs_address=gcs_address, gcs_port=port if head else None, num_cpus=num_cpus,
        num_gpus=num_gpus, resources=custom, memory=memory, object_store_memory=object_store_memory,
        parent_pid=os.getpid() if block else None, write_address_file=True, token=token,
        dashboard_host=dashboard_host, dashboard_port=dashboard_port,
        health_port=health_port, health_port_required=health_required, metrics_export_port=metrics_export_port,
        client_port=client_port,
    )
    _wait_registered(node, token)
    joined = node.gcs_address.removeprefix("tcp://")
    if head:
        click.echo(f"kray runtime started (head node, GCS at {joined}, dashboard and HTTP API at "
                   f"http://{node.dashboard_url}/).")
        click.echo("To add another node to this cluster, run:")
        if token is None:
            click.echo(f"    kray start --no-auth --address='{joined}'")
        else:
            token_file = _write_token_file(node.session_dir, token)
            # The secret itself is never printed (it would land in pod logs): only where to read it.
            click.echo(f"    KRAY_CLUSTER_TOKEN=\"$(cat {token_file})\" kray start --address='{joined}'")
        click.echo("To connect to this cluster from Python:")
        click.echo("    import kray; kray.init(address='auto')   # on this machine")
        click.echo(f"    import kray; kray.init(address='{joined}')")
    else:
        click.echo(f"kray runtime started (node joined the cluster at {joined}).")
    click.echo("To stop kray's processes on this machine, run: kray stop")
    if not block:
        return
    _block(node)


def _checked_port(ip: str, port: int, param: str, flag: str, taken_default: str) -> tuple[int, bool]:
    """(port to use, whether it was given explicitly). A port given explicitly must be free; a default one
    that is taken (another node on this machine) becomes 0 and `taken_default` is printed."""
    explicit = click.get_current_context().get_parameter_source(param) != click.core.ParameterSource.DEFAULT
    if port and not health_http.port_free(ip, port):
        if explicit:
            raise click.BadParameter(f"port {port} on {ip} is in use", param_hint=flag)
        click.echo(taken_default.format(port=port, ip=ip), err=True)
        return 0, False
    return port, explicit


def _write_token_file(session_dir: str, token: str) -> str:
    """The cluster token in a file readable by this user only; returns its path."""
    path = os.path.join(session_dir, "cluster_token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return path


def _token_for(gcs_address: str | None) -> str:
    """The cluster token: KRAY_CLUSTER_TOKEN, else this machine's cluster's, else a new one (head)."""
    given = config.cluster_token()
    if given:
        return given
    found = local_cluster.read_address()
    if gcs_address is not None and found and found.get("gcs_address") == gcs_address and found.get("token"):
        return str(found["token"])
    if gcs_address is not None:
        raise click.ClickException(
            "Joining a cluster needs its token: set KRAY_CLUSTER_TOKEN to the token that "
            "`kray start --head` printed."
        )
    return local_cluster.new_token()


def _check_joinable(gcs_address: str, token: str | None) -> None:
    """Wait (up to KRAY_START_TIMEOUT_S) for the head to answer: in a pod, the head may start later."""
    wire.set_token(token)
    deadline = time.monotonic() + config.START_TIMEOUT_S
    try:
        while True:
            try:
                client.request(gcs_address, lambda rid: messages.GetNodes(rid), timeout=2.0)
                return
            except client.TokenRefused as e:
                raise click.ClickException(str(e)) from None
            except client.NoReply:
                if time.monotonic() > deadline:
                    raise click.ClickException(
                        f"No kray head answered at {gcs_address} within {config.START_TIMEOUT_S:g}s; is "
                        "`kray start --head` running there?"
                    ) from None
    finally:
        wire.set_token(None)


def _wait_registered(node: local_cluster.LocalNode, token: str | None) -> None:
    """Return once the GCS lists the new node, so that drivers started next find it."""
    wire.set_token(token)
    deadline = time.monotonic() + config.START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            dead = [p for p in node.processes if p.poll() is not None]
            if dead:
                node.stop()
                raise click.ClickException(
                    f"a kray process exited during start-up (code {dead[0].returncode}); see the logs in "
                    f"{node.session_dir}/logs"
                )
            try:
                nodes = client.request(node.gcs_address, lambda rid: messages.GetNodes(rid), timeout=2.0)
            except client.NoReply:
                continue
            if any(n.node_id == node.node.node_id and n.alive for n in nodes) and (
                not node.dashboard_url or local_cluster.dashboard_listening(node.dashboard_url)
            ):
                return
            time.sleep(0.02)
    finally:
        wire.set_token(None)
    node.stop()
    raise click.ClickException(f"the node did not register with the GCS within {config.START_TIMEOUT_S:g}s")


def _block(node: local_cluster.LocalNode) -> None:
    stopping = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping["flag"]:
        dead = [p for p in node.processes if p.poll() is not None]
        if dead:
            click.echo(f"a kray process exited (pid={dead[0].pid}, code={dead[0].returncode}); stopping", err=True)
            node.stop()
            sys.exit(1)
        time.sleep(0.2)
    node.stop()


@click.command()
@click.option("--force", is_flag=True, help="Send SIGKILL instead of SIGTERM.")
@click.option("--grace-period", default=10, show_default=True, type=int,
              help="Seconds to wait for the processes to exit before killing them with SIGKILL.")
def stop(force: bool, grace_period: int) -> None:
    """Stop the kray processes started on this machine by `kray start`, and wait until they exited."""
    found = local_cluster.read_address()
    if not found:
        click.echo("No kray cluster started by `kray start` was found on this machine.")
        return
    sig = signal.SIGKILL if force else signal.SIGTERM
    procs = []
    for pid in found.get("pids", []):
        try:
            proc = psutil.Process(int(pid))
            if "kray" not in " ".join(proc.cmdline()):
                continue  # that pid now belongs to some other program
            proc.send_signal(sig)
            procs.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    _, alive = psutil.wait_procs(procs, timeout=max(0, grace_period))
    for proc in alive:  # as Ray's `ray stop`: what ignores SIGTERM for the grace period is killed
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    # A raylet that was killed could not remove its objects' shared memory: what it left is freed here.
    for shm_dir in found.get("shm_dirs", []):
        if os.path.dirname(shm_dir) == config.SHM_ROOT and os.path.basename(shm_dir).startswith("kray-"):
            shutil.rmtree(shm_dir, ignore_errors=True)
    try:
        os.unlink(local_cluster.ADDRESS_FILE)
    except FileNotFoundError:
        pass
    killed = f" ({len(alive)} killed after {grace_period}s)" if alive else ""
    click.echo(f"Stopped {len(procs)} kray process(es){killed}.")


def gcs_and_token(address: str | None, found: dict[str, Any]) -> tuple[str | None, str | None]:
    """The GCS to talk to (`address`, else the cluster recorded on this machine in `found`, else
    KRAY_ADDRESS) and the token for it (KRAY_CLUSTER_TOKEN, else the recorded one of that cluster)."""
    gcs = f"tcp://{address}" if address else found.get("gcs_address") or (
        f"tcp://{config.ADDRESS}" if config.ADDRESS else None
    )
    token = config.cluster_token() or (found.get("token") if gcs and found.get("gcs_address") == gcs else None)
    return gcs, token


@click.command()
@click.option("--address", default=None, help="HOST:PORT of the GCS (default: this machine's cluster).")
def status(address: str | None) -> None:
    """Show the cluster's nodes and their used/total resources."""
    gcs, token = gcs_and_token(address, local_cluster.read_address() or {})
    if not gcs:
        raise click.ClickException("No running kray cluster found; pass --address=HOST:PORT.")
    wire.set_token(token)
    try:
        nodes = client.request(gcs, lambda rid: messages.GetNodes(rid), timeout=5.0)
    except (client.NoReply, client.TokenRefused) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"======== kray cluster at {gcs.removeprefix('tcp://')} ========")
    for node in nodes:
        state = "alive" if node.alive else "dead"
        click.echo(f"node {node.node_id.hex()[:12]} {node.ip} {'(head) ' if node.is_head else ''}{state}")
        if not node.alive:
            continue
        stats = client.request(node.raylet_address, lambda rid: messages.GetNodeStats(rid), timeout=5.0)
        for name in ("CPU", "GPU", *sorted(k for k in node.resources if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:"))):
            if name in stats["total"]:
                total = stats["total"][name]
                used = total - stats["available"].get(name, 0.0)
                click.echo(f"    {used:g}/{total:g} {name}")
        if stats["pending_leases"]:
            click.echo(f"    pending demand: {stats['pending_leases']}")
