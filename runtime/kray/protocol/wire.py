"""Frame layout and pack/unpack of typed messages, plus small zmq socket helpers.

Pure data handling and socket set-up; it never blocks on I/O itself.

Frame layout of every kray message (after any ROUTER identity frame):

    frame 0   header: pickle protocol 5 of (type_code, field_values_tuple)
    frame 1.. payload frames: raw bytes of out-of-band buffers, referenced by the message's fields
              (for example an inline object is [pickle stream, buffer, buffer, ...]); they are never
              copied into the header.

`pack` and `unpack` are mirror images: unpack(pack(m, frames)) == (m, frames).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import socket
from collections.abc import Sequence
from typing import Any

import zmq

_HEADER_PROTOCOL = 5

# type code -> message class; filled by `message` decorator in messages.py
_REGISTRY: dict[int, type] = {}
_FIELDS: dict[type, tuple[str, ...]] = {}


class MalformedMessage(ValueError):
    """A message could not be decoded: wrong frame count, bad header or unknown type code."""


class UndecodableMessage(MalformedMessage):
    """A well-formed message whose header names classes this process cannot import (for example a class
    of the sender's `__main__`). `msg` is the message with each such class replaced by `MissingClass`,
    so that the receiver can still fail the request or task it carries; `missing` names the classes."""

    def __init__(self, msg: Any, missing: list[str], cause: BaseException) -> None:
        super().__init__(f"cannot decode {type(msg).__name__}: {cause} (missing: {', '.join(missing)})")
        self.msg = msg
        self.missing = missing


class MissingClass:
    """Stands for a class the receiver cannot import, and for instances of it."""

    def __new__(cls, *args: Any, **kwargs: Any) -> MissingClass:  # noqa: PYI034 - any constructor call
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _TolerantUnpickler(pickle.Unpickler):
    def __init__(self, data: Any) -> None:
        super().__init__(io.BytesIO(data))
        self.missing: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            self.missing.append(f"{module}.{name}")
            return MissingClass


def register(code: int, cls: type) -> None:
    """Register `cls` (a dataclass) under `code`; codes are fixed for the lifetime of the protocol."""
    if code in _REGISTRY:
        raise ValueError(f"message code {code} registered twice ({_REGISTRY[code]} and {cls})")
    _REGISTRY[code] = cls
    _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    cls._code = code  # type: ignore[attr-defined]


def pack(msg: Any, payload: Sequence[Any] = ()) -> list[Any]:
    """Encode `msg` into frames: one header frame and then the payload frames unchanged."""
    values = tuple([getattr(msg, name) for name in _FIELDS[type(msg)]])
    header = pickle.dumps((msg._code, values), protocol=_HEADER_PROTOCOL)
    if payload:
        return [header, *payload]
    return [header]


def unpack(frames: Sequence[Any]) -> tuple[Any, list[Any]]:
    """Decode frames made by `pack` into (message, payload frames). Raises MalformedMessage."""
    if not frames:
        raise MalformedMessage("empty message")
    try:
        code, values = pickle.loads(frames[0])
        cls = _REGISTRY[code]
        msg = cls(*values)
    except MalformedMessage:
        raise
    except (ImportError, AttributeError) as e:  # a class this process cannot import: say what it carried
        raise _undecodable(frames[0], e) from e
    except Exception as e:  # a bad header must never take a server down
        raise MalformedMessage(f"cannot decode message header: {e!r}") from e
    return msg, list(frames[1:])


def _undecodable(header: Any, cause: BaseException) -> MalformedMessage:
    try:
        unpickler = _TolerantUnpickler(header)
        code, values = unpickler.load()
        msg = _REGISTRY[code](*values)
    except Exception as e:  # noqa: BLE001 - not even the outline decodes: a plain malformed message
        return MalformedMessage(f"cannot decode message header: {cause!r} ({e!r})")
    return UndecodableMessage(msg, unpickler.missing or [repr(cause)], cause)


def bind_random(sock: zmq.Socket, host: str) -> str:
    """Bind `sock` to a free TCP port on `host` and return its tcp:// endpoint."""
    port = sock.bind_to_random_port(f"tcp://{host}", min_port=20000, max_port=65000, max_tries=200)
    return f"tcp://{host}:{port}"


# The cluster token of this process (set once at start-up). With a token, every server socket
# requires it (ZMQ PLAIN authentication, checked by a ZAP handler thread per context) and every
# client socket presents it, so a process without the token cannot talk to the cluster at all.
_token: str | None = None
_authenticators: dict[int, Any] = {}
_USER = b"kray"


def set_token(token: str | None) -> None:
    global _token
    _token = token or None


def get_token() -> str | None:
    return _token


def _ensure_authenticator(ctx: zmq.Context) -> None:
    if id(ctx) in _authenticators:
        return
    from kray.protocol import zap  # not pyzmq's ThreadAuthenticator: it imports asyncio and ssl

    _authenticators[id(ctx)] = zap.PlainAuthenticator(ctx, _USER, (_token or "").encode())


def stop_authenticator(ctx: zmq.Context) -> None:
    auth = _authenticators.pop(id(ctx), None)
    if auth is not None:
        auth.stop()


def make_socket(ctx: zmq.Context, kind: int, identity: bytes | None = None) -> zmq.Socket:
    """A socket with kray's options: no linger on close, large high-water marks, the cluster token."""
    if _token and kind == zmq.ROUTER:
        _ensure_authenticator(ctx)
    sock = ctx.socket(kind)
    if _token:
        if kind == zmq.ROUTER:
            sock.plain_server = True
        else:
            sock.plain_username = _USER
            sock.plain_password = _token.encode()
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tcp(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def host_of(endpoint: str) -> str:
    """'tcp://1.2.3.4:5' -> '1.2.3.4'."""
    return endpoint.rsplit(":", 1)[0].removeprefix("tcp://")
