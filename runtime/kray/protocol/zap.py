"""The ZAP handler that checks the cluster token on every connection to a kray server socket.

zmq asks a context's ZAP handler (RFC 27, a REP socket bound to inproc://zeromq.zap.01) to accept or
refuse each PLAIN handshake. pyzmq's ThreadAuthenticator does the same, but imports asyncio and ssl
(about 25 ms and 3 MB in every kray process, workers included); this one is a plain thread that answers
only what kray uses: mechanism PLAIN, one user name, one token, compared in constant time.

Starts one daemon thread per context; `stop` ends it and closes its socket.
"""

from __future__ import annotations

import os
import threading

import zmq

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_VERSION = b"1.0"


def same(a: bytes, b: bytes) -> bool:
    """a == b in time that does not depend on where they differ (hmac.compare_digest would load
    OpenSSL's libcrypto into every process for this one comparison)."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b, strict=True):
        diff |= x ^ y
    return diff == 0


def answer(frames: list[bytes], user: bytes, password: bytes) -> list[bytes]:
    """The ZAP reply to one request: 200 for PLAIN with this user and password, else 400."""
    request_id = frames[1] if len(frames) > 1 else b""
    if len(frames) < 6 or frames[0] != _VERSION:
        return [_VERSION, request_id, b"400", b"malformed ZAP request", b"", b""]
    mechanism, credentials = frames[5], frames[6:]
    ok = (mechanism == b"PLAIN" and len(credentials) == 2
          and same(credentials[0], user) and same(credentials[1], password))
    if ok:
        return [_VERSION, request_id, b"200", b"OK", user, b""]
    return [_VERSION, request_id, b"400", b"wrong cluster token", b"", b""]


class PlainAuthenticator:
    """Answers the ZAP requests of one context on a thread of its own."""

    def __init__(self, ctx: zmq.Context, user: bytes, password: bytes) -> None:
        self.user = user
        self.password = password
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.thread = threading.Thread(target=self._serve, name="kray-zap", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._stop_fd, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if self._stop_fd in events:
                    return
                if self.sock in events:
                    self.sock.send_multipart(answer(self.sock.recv_multipart(), self.user, self.password))
        except zmq.ContextTerminated:
            return
        finally:
            self.sock.close(0)

    def stop(self, timeout: float = 2.0) -> None:
        if self._stop_fd < 0:
            return
        if self.thread.is_alive():
            os.eventfd_write(self._stop_fd, 1)
            self.thread.join(timeout)
        fd, self._stop_fd = self._stop_fd, -1
        os.close(fd)
