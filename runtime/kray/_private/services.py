"""`ray._private.services.get_node_ip_address()`, which Ray's and KubeRay's examples call to tell nodes apart
(`ray.util.get_node_ip_address` is the same function)."""

from __future__ import annotations

import socket


def get_node_ip_address(address: str = "8.8.8.8:53") -> str:
    """The IP address of this process's node: inside a driver, task or actor connected to a cluster, the
    address its node joined with; otherwise, as Ray, the local address this machine would use to reach
    `address` (no packet is sent), or 127.0.0.1 when it has no route."""
    from kray.core import refs

    core = refs.get_core()
    if core is not None:
        return str(core.node.ip)
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, int(port)))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
