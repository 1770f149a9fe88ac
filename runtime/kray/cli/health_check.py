"""`kray health-check`: is this machine's node a healthy member of its cluster? For people (pods'
probes ask the raylet's health endpoint over HTTP instead: no process per probe).

Exit 0 when the GCS answers, lists this node as alive, and the node's raylet answers too; or, with
--dashboard-agent-listen-port, when the node's health endpoint answers 200; exit 1 with a one-line
reason otherwise. Reads the address file and environment; makes a few requests over the wire
protocol or HTTP, each with a timeout.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import click

from kray.api import local_cluster
from kray.cli import node_commands
from kray.protocol import client, messages, wire

NODE_IP_ENV = "KRAY_NODE_IP"


class Unhealthy(Exception):
    """Why the node is not healthy, in words for a probe's output."""


def check(gcs_address: str, node_ip: str, timeout: float) -> str:
    """Raise Unhealthy unless the GCS at `gcs_address` answers and (when `node_ip` is given) lists a live
    node at that IP whose raylet answers too; returns a short description of what was found."""
    try:
        nodes = client.request(gcs_address, lambda rid: messages.GetNodes(rid), timeout=timeout)
    except client.TokenRefused as e:
        raise Unhealthy(str(e)) from None
    except client.NoReply:
        raise Unhealthy(f"the GCS at {gcs_address} did not answer within {timeout:g}s") from None
    alive = [n for n in nodes if n.alive]
    if not node_ip:
        return f"the GCS at {gcs_address} answers; {len(alive)} live node(s)"
    mine = [n for n in alive if n.ip == node_ip]
    if not mine:
        raise Unhealthy(f"no live node at {node_ip} in the cluster at {gcs_address} (live: "
                        f"{', '.join(n.ip for n in alive) or 'none'})")
    node = mine[0]
    try:
        client.request(node.raylet_address, lambda rid: messages.GetNodeStats(rid), timeout=timeout)
    except (client.NoReply, client.TokenRefused):
        raise Unhealthy(f"the raylet at {node.raylet_address} did not answer within {timeout:g}s") from None
    return f"node {node.node_id.hex()[:12]} at {node_ip} is alive in the cluster at {gcs_address}"


def check_endpoint(node_ip: str, port: int, timeout: float) -> str:
    """Raise Unhealthy unless the node's health endpoint (raylet/health_http.py) answers 200; returns its body."""
    host = "127.0.0.1" if not node_ip or node_ip == "0.0.0.0" else node_ip
    url = f"http://{host}:{port}/api/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.read().decode().strip()
    except urllib.error.HTTPError as e:
        raise Unhealthy(f"{url} answered {e.code}: {e.read().decode().strip()}") from None
    except (OSError, urllib.error.URLError) as e:
        raise Unhealthy(f"{url} did not answer: {getattr(e, 'reason', e)}") from None


@click.command("health-check")
@click.option("--address", default=None,
              help="HOST:PORT of the GCS (default: this machine's cluster, else KRAY_ADDRESS).")
@click.option("--node-ip-address", default=None,
              help=f"The node that must be alive (default: ${NODE_IP_ENV}, else this machine's first node).")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1), help="Seconds per request.")
@click.option("--dashboard-agent-listen-port", "health_port", default=None, type=click.IntRange(1, 65535),
              help="Ask the node's health endpoint on this port (as `kray start` was given it; default 52365) "
                   "instead of the GCS.")
def command(address: str | None, node_ip_address: str | None, timeout: float, health_port: int | None) -> None:
    """Exit 0 if this node is alive in its cluster and answers."""
    found = local_cluster.read_live_address() or {}
    if health_port is not None:
        node_ip = node_ip_address or os.environ.get(NODE_IP_ENV) or str(found.get("node_ip") or "")
        try:
            click.echo(check_endpoint(node_ip, health_port, timeout))
        except Unhealthy as e:
            raise click.ClickException(f"unhealthy: {e}") from None
        return
    gcs, token = node_commands.gcs_and_token(address, found)
    if not gcs:
        raise click.ClickException("no kray cluster runs on this machine and no --address was given")
    node_ip = node_ip_address or os.environ.get(NODE_IP_ENV) or str(found.get("node_ip") or "")
    wire.set_token(token)
    try:
        click.echo(check(gcs, node_ip, timeout))
    except Unhealthy as e:
        raise click.ClickException(f"unhealthy: {e}") from None
    finally:
        wire.set_token(None)
