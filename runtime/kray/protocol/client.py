"""A blocking request/reply helper for code that has no loop of its own (init, the CLI).

Opens a DEALER socket, sends one request, waits for its reply with a timeout, closes the socket.
"""

from __future__ import annotations

from typing import Any, Callable

import zmq

from kray.protocol import messages, wire


class NoReply(ConnectionError):
    """The server did not answer in time (it is not running, or not reachable)."""


def request(endpoint: str, make: Callable[[int], Any], timeout: float = 5.0, ctx: zmq.Context | None = None) -> Any:
    """Send make(1) to `endpoint` and return the reply's value; raises NoReply or RuntimeError."""
    context = ctx or zmq.Context.instance()
    sock = wire.make_socket(context, zmq.DEALER)
    try:
        sock.connect(endpoint)
        sock.send_multipart(wire.pack(make(1)))
        if not sock.poll(int(timeout * 1000)):
            raise NoReply(f"no answer from {endpoint} within {timeout:g}s")
        msg, _ = wire.unpack(sock.recv_multipart())
    finally:
        sock.close(0)
    if isinstance(msg, messages.Reply):
        if not msg.ok:
            raise RuntimeError(str(msg.value))
        return msg.value
    return msg
