"""A blocking request/reply helper for code that has no loop of its own (init, the CLI).

Opens a DEALER socket, sends one request, waits for its reply with a timeout, closes the socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

from kray.protocol import messages, wire


class NoReply(ConnectionError):
    """The server did not answer in time (it is not running, or not reachable)."""


class TokenRefused(ConnectionError):
    """The server refused this process's cluster token (or its lack of one)."""


_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def request(endpoint: str, make: Callable[[int], Any], timeout: float = 5.0, ctx: zmq.Context | None = None) -> Any:
    """Send make(1) to `endpoint` and return the reply's value.

    Raises NoReply (nothing answered), TokenRefused (the cluster token was refused) or RuntimeError.
    """
    context = ctx or zmq.Context.instance()
    sock = wire.make_socket(context, zmq.DEALER)
    monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
    try:
        sock.connect(endpoint)
        sock.send_multipart(wire.pack(make(1)))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        events = dict(poller.poll(int(timeout * 1000)))
        if sock not in events:
            if monitor in events:
                raise TokenRefused(
                    f"the kray cluster at {endpoint} refused this process's cluster token. Set "
                    "KRAY_CLUSTER_TOKEN to the token printed by `kray start --head` (it is also in the "
                    "address file on the head's machine)."
                )
            raise NoReply(f"no answer from {endpoint} within {timeout:g}s")
        msg, _ = wire.unpack(sock.recv_multipart())
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
    if isinstance(msg, messages.Reply):
        if not msg.ok:
            raise RuntimeError(str(msg.value))
        return msg.value
    return msg
