"""Tell a malformed message from a bug: compare a decoded message's field values with their declared types.

The wire format carries field values without types, so a peer can send a well-formed header whose fields
have the wrong types (a number where an object id belongs). Checking every message would cost the data
path time, so servers check only after a handler failed: a mismatch means the message was malformed (one
warning line and an error reply), no mismatch means the handler has a bug (a traceback). Pure; no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

_MAX_ITEMS_CHECKED = 64  # items of a list or dict looked at; enough to name the offending kind


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # an unresolvable annotation: no check for that class
        return {}


def mismatch(msg: Any) -> str | None:
    """A sentence naming the first field of `msg` whose value does not have its declared type, or None."""
    if not dataclasses.is_dataclass(msg) or isinstance(msg, type):
        return None
    cls: type = type(msg)
    hints = _hints(cls)
    for field in dataclasses.fields(msg):
        expected = hints.get(field.name)
        if expected is None:
            continue
        value = getattr(msg, field.name)
        if not _conforms(value, expected):
            return f"field {field.name!r} is {_describe(value)}, expected {_type_name(expected)}"
    return None


def _conforms(value: Any, expected: Any) -> bool:
    if expected is Any or expected is object:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is bytes:
        return isinstance(value, (bytes, bytearray, memoryview))
    if origin is None:
        return not isinstance(expected, type) or isinstance(value, expected)
    if not isinstance(value, origin):
        return False
    args = typing.get_args(expected)
    if origin is list and args:
        return all(_conforms(item, args[0]) for item in value[:_MAX_ITEMS_CHECKED])
    if origin is dict and len(args) == 2:
        items = list(value.items())[:_MAX_ITEMS_CHECKED]
        return all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in items)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args, strict=True))
    return True


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _type_name(expected: Any) -> str:
    if typing.get_args(expected) or not hasattr(expected, "__name__"):
        return str(expected).replace("typing.", "")
    return str(expected.__name__)
