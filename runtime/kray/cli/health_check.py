"""`kray health-check`: is this machine's node a healthy member of its cluster? A pod's probe command.

Exit 0 when the GCS answers, lists this node as alive, and the node's raylet answers too; exit 1 with
a one-line reason otherwise. Reads the address file and environment; makes a few requests over the
wire protocol, each with a timeout.
"""

from __future__ import annotations

import os

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


@click.command("health-check")
@click.option("--address", default=None,
              help="HOST:PORT of the GCS (default: this machine's cluster, else KRAY_ADDRESS).")
@click.option("--node-ip-address", default=None,
              help=f"The node that must be alive (default: ${NODE_IP_ENV}, else this machine's first node).")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1), help="Seconds per request.")
def command(address: str | None, node_ip_address: str | None, timeout: float) -> None:
    """Exit 0 if this node is alive in its cluster and answers (for readiness and liveness probes)."""
    found = local_cluster.read_live_address() or {}
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
