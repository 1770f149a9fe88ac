"""A zmq poll loop: readable sockets and fds, timers, calls from other threads, request/reply.

Owns every socket it creates and must run on one thread; other threads reach it only through
`call_soon_threadsafe`. Used by the GCS, the raylet and every core worker's I/O thread.
A malformed message or a failing handler is logged (and answered with an error reply when the
message was a request); it never stops the loop.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import zmq

from kray.protocol import field_check, limits, messages, wire

log = logging.getLogger(__name__)

Handler = Callable[[Any, list, "Peer"], None]


class Peer:
    """Where a message came from, and how to answer it."""

    __slots__ = ("identity", "loop", "sock")

    def __init__(self, loop: Loop, sock: zmq.Socket, identity: bytes | None) -> None:
        self.loop = loop
        self.sock = sock
        self.identity = identity

    def send(self, msg: Any, payload: list | tuple = ()) -> None:
        frames = wire.pack(msg, payload)
        try:
            if self.identity is None:
                self.sock.send_multipart(frames, copy=len(frames) == 1)
            else:
                self.sock.send_multipart([self.identity, *frames], copy=len(frames) == 1)
        except zmq.ZMQError as e:
            log.warning("could not answer a peer: %s", e)

    def reply(self, req_id: int, value: Any = None, ok: bool = True) -> None:
        self.send(messages.Reply(req_id, ok, value))


class RequestTimeout(TimeoutError):
    pass


class Loop:
    def __init__(self, ctx: zmq.Context | None = None, name: str = "loop") -> None:
        self.ctx = ctx or limits.context()
        self.name = name
        self.poller = zmq.Poller()
        self.handlers: dict[type, Handler] = {}
        self.undecodable_handlers: dict[type, Callable[[Any, str, Peer], None]] = {}
        self._readers: dict[Any, Callable[[], object]] = {}
        self._calls: collections.deque = collections.deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._signaled = False
        self._timers: list = []
        self._timer_seq = itertools.count()
        self._pending: dict[int, tuple[Callable[[Any, list], None], float]] = {}
        self._req_ids = itertools.count(1)
        self._peers: dict[str, zmq.Socket] = {}
        self._peer_objs: dict[str, Peer] = {}
        self.running = False
        self.add_fd(self._wake_fd, self._drain_calls)
        self._expiry: list | None = None  # the timer of the earliest request deadline, armed only while any wait

    # ------------------------------------------------------------ registration

    def on(self, msg_type: type, handler: Handler) -> None:
        self.handlers[msg_type] = handler

    def on_undecodable(self, msg_type: type, handler: Callable[[Any, str, Peer], None]) -> None:
        """Fail what a `msg_type` message carries when its header names classes this process lacks."""
        self.undecodable_handlers[msg_type] = handler

    def add_fd(self, fd: int, callback: Callable[[], object]) -> None:
        self.poller.register(fd, zmq.POLLIN)
        self._readers[fd] = callback

    def remove_fd(self, fd: int) -> None:
        self.poller.unregister(fd)
        self._readers.pop(fd, None)

    def serve(self, sock: zmq.Socket) -> None:
        """Dispatch every message arriving on a ROUTER socket."""
        self.poller.register(sock, zmq.POLLIN)
        self._readers[sock] = lambda: self._read(sock, router=True)

    def connect(self, endpoint: str) -> Peer:
        """A DEALER connected to `endpoint` (cached), whose incoming messages are dispatched too."""
        peer = self._peer_objs.get(endpoint)
        if peer is None:
            sock = wire.make_socket(self.ctx, zmq.DEALER)
            sock.connect(endpoint)
            self.poller.register(sock, zmq.POLLIN)
            self._readers[sock] = lambda: self._read(sock, router=False)
            self._peers[endpoint] = sock
            peer = self._peer_objs[endpoint] = Peer(self, sock, None)
        return peer

    def disconnect(self, endpoint: str) -> None:
        sock = self._peers.pop(endpoint, None)
        self._peer_objs.pop(endpoint, None)
        if sock is not None:
            self.poller.unregister(sock)
            self._readers.pop(sock, None)
            sock.close(0)

    # ------------------------------------------------------------ threads and timers

    def call_soon_threadsafe(self, fn: Callable, *args: Any) -> None:
        self._calls.append((fn, args))
        if not self._signaled and self._wake_fd >= 0:
            self._signaled = True
            os.eventfd_write(self._wake_fd, 1)

    def call_later(self, delay: float, fn: Callable, *args: Any) -> list:
        entry = [time.monotonic() + delay, next(self._timer_seq), fn, args, True]
        heapq.heappush(self._timers, entry)
        return entry

    @staticmethod
    def cancel_timer(entry: list) -> None:
        entry[4] = False

    def call_every(self, period: float, fn: Callable[[], Any]) -> None:
        def tick() -> None:
            try:
                fn()
            finally:
                self.call_later(period, tick)

        self.call_later(period, tick)

    # ------------------------------------------------------------ requests

    def request(
        self,
        endpoint: str,
        make: Callable[[int], Any],
        callback: Callable[[Any, list], None],
        timeout: float = 30.0,
        payload: list | tuple = (),
    ) -> int:
        """Send make(req_id) to `endpoint`; callback(reply, payload) gets the answer or a timeout."""
        req_id = next(self._req_ids)
        deadline = time.monotonic() + timeout
        self._pending[req_id] = (callback, deadline)
        self._arm_expiry(deadline)
        self.connect(endpoint).send(make(req_id), payload)
        return req_id

    def forget(self, req_id: int) -> None:
        self._pending.pop(req_id, None)

    def _arm_expiry(self, deadline: float) -> None:
        """Have _expire_requests run by `deadline` (within a second of it): no timer while nothing waits."""
        if self._expiry is not None and self._expiry[4]:
            if self._expiry[0] <= deadline + 1.0:
                return
            self.cancel_timer(self._expiry)
        self._expiry = self.call_later(max(0.0, deadline - time.monotonic()), self._expire_requests)

    def _expire_requests(self) -> None:
        self._expiry = None
        now = time.monotonic()
        expired = [rid for rid, (_, deadline) in self._pending.items() if deadline < now]
        for rid in expired:
            callback, _ = self._pending.pop(rid)
            self._safe(callback, messages.Reply(rid, False, "request timed out"), [])
        if self._pending and self._expiry is None:
            self._arm_expiry(min(deadline for _, deadline in self._pending.values()))

    # ------------------------------------------------------------ running

    def run(self) -> None:
        self.running = True
        while self.running:
            timeout = None  # nothing due: sleep until a socket, an fd or call_soon_threadsafe wakes us
            if self._timers:
                # zmq polls in whole milliseconds: round up, or a timer due in 0.3 ms spins the loop.
                timeout = min(3_600_000, max(0, math.ceil((self._timers[0][0] - time.monotonic()) * 1000.0)))
            for sock, _ in self.poller.poll(timeout):
                reader = self._readers.get(sock)
                if reader is not None:
                    reader()
            if self._timers:
                self._run_timers()

    def stop(self) -> None:
        """Stop the loop after the current step; safe from any thread (it wakes the loop)."""
        self.running = False
        if self._wake_fd >= 0:
            os.eventfd_write(self._wake_fd, 1)

    def close(self) -> None:
        for sock in list(self._peers.values()):
            sock.close(0)
        for sock in list(self._readers):
            if isinstance(sock, zmq.Socket):
                sock.close(0)
        self._peers.clear()
        self._readers.clear()
        # Never write to the number once closed (a late call_soon_threadsafe, e.g. from an ObjectRef's
        # __del__): zmq may have reused it for a descriptor of its own.
        fd, self._wake_fd = self._wake_fd, -1
        os.close(fd)
        wire.stop_authenticator(self.ctx)

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            entry = heapq.heappop(self._timers)
            if entry[4]:
                self._safe(entry[2], *entry[3])

    def _drain_calls(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass
        self._signaled = False
        calls = self._calls
        while calls:
            fn, args = calls.popleft()
            self._safe(fn, *args)

    def _read(self, sock: zmq.Socket, router: bool) -> None:
        for _ in range(1000):  # bounded, so timers and other sockets get their turn
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity = None
            if router:
                identity, frames = frames[0], frames[1:]
            peer = Peer(self, sock, identity)
            try:
                msg, payload = wire.unpack(frames)
            except wire.UndecodableMessage as e:
                self._undecodable(e, frames[1:], peer)
                continue
            except wire.MalformedMessage as e:
                log.warning("%s: dropped a malformed message: %s", self.name, e)
                continue
            self.dispatch(msg, payload, peer)

    def dispatch(self, msg: Any, payload: list, peer: Peer) -> None:
        req_id = getattr(msg, "req_id", None)
        if req_id is not None and type(msg) in _REPLY_TYPES:
            if type(msg) in _NOTICE_TYPES:
                pending = self._pending.get(req_id)
            else:
                pending = self._pending.pop(req_id, None)
            if pending is not None:
                self._safe(pending[0], msg, payload)
            return
        handler = self.handlers.get(type(msg))
        if handler is None:
            log.warning("%s: no handler for %s", self.name, type(msg).__name__)
            if req_id is not None:
                peer.reply(req_id, f"{self.name} does not handle {type(msg).__name__}", ok=False)
            return
        try:
            handler(msg, payload, peer)
        except Exception as e:
            wrong = field_check.mismatch(msg)
            if wrong is None:
                log.exception("%s: handler for %s failed", self.name, type(msg).__name__)
                error = f"{type(e).__name__}: {e}"
            else:  # the peer sent a malformed message, not a bug here: one line, and the sender is told
                log.warning("%s: refused a malformed %s: %s", self.name, type(msg).__name__, wrong)
                error = f"malformed {type(msg).__name__}: {wrong}"
            if isinstance(req_id, int):
                peer.reply(req_id, error, ok=False)

    def _undecodable(self, error: wire.UndecodableMessage, payload: list, peer: Peer) -> None:
        """A request is answered or failed, never dropped: the handler registered with `on_undecodable`
        fails what the message carries; else a request gets an error reply (a reply fails its request)."""
        msg = error.msg
        text = f"{self.name} could not decode a {type(msg).__name__} message: {error}"
        handler = self.undecodable_handlers.get(type(msg))
        if handler is not None:
            self._safe(handler, msg, text, peer)
            return
        req_id = getattr(msg, "req_id", None)
        if req_id is None:
            log.warning("%s: dropped a message that cannot be decoded: %s", self.name, error)
        elif type(msg) in _REPLY_TYPES:
            pending = self._pending.pop(req_id, None)
            if pending is not None:
                self._safe(pending[0], messages.Reply(req_id, False, text), [])
        else:
            log.warning("%s", text)
            peer.reply(req_id, text, ok=False)

    def _safe(self, fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: callback %r failed", self.name, fn)


_NOTICE_TYPES = {messages.LeaseInfeasible, messages.LeaseQueued}  # the request stays pending
_REPLY_TYPES = {
    messages.Reply, messages.LeaseGranted, messages.LeaseSpillback, messages.ObjectValue,
    messages.RuntimeEnvSetupFailed, *_NOTICE_TYPES,
}
