"""How values become bytes and back: cloudpickle with pickle protocol 5 out-of-band buffers.

Pure (no I/O). `serialize` returns the frames of a value ([pickle stream, *buffers]) and the
ObjectRefs it contains, which the caller must keep alive as long as the serialized value lives.
Large buffers (numpy arrays, bytes) stay out of band, so writing them to shared memory and
reading them back never copies them through pickle.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any, Sequence

import cloudpickle

_state = threading.local()
_SCALARS = (int, float, str, bytes, bool, type(None))


class SerializationError(TypeError):
    """A value could not be serialized; the message names it and says what to do."""


def serialize(value: Any, what: str = "value") -> tuple[list[Any], list[Any]]:
    """Serialize `value` into frames; returns (frames, contained ObjectRefs)."""
    if type(value) in _SCALARS:
        return [pickle.dumps(value, protocol=5)], []
    buffers: list[pickle.PickleBuffer] = []
    stack = _collector_stack()
    contained: list[Any] = []
    stack.append(contained)
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as e:
        raise SerializationError(
            f"Could not serialize the {what} {_describe(value)}: {type(e).__name__}: {e}. "
            "Pass only values that can be pickled (cloudpickle), or create the object inside the "
            "task instead of passing it."
        ) from e
    finally:
        stack.pop()
    if not buffers:
        return [data], contained
    return [data, *[b.raw() for b in buffers]], contained


def deserialize(frames: Sequence[Any]) -> Any:
    """Rebuild a value from frames made by `serialize` (buffers are used without copying)."""
    data = frames[0]
    if len(frames) == 1:
        return pickle.loads(data)
    return pickle.loads(data, buffers=frames[1:])


def record_contained_ref(ref: Any) -> bool:
    """Called by ObjectRef.__reduce__: note that the value being serialized contains `ref`.

    Returns False when no kray serialization is in progress: the ref is being pickled out of band
    (for example with cloudpickle.dumps by the user).
    """
    stack = getattr(_state, "stack", None)
    if stack:
        stack[-1].append(ref)
        return True
    return False


def dumps_function(fn: Any, name: str) -> bytes:
    try:
        return cloudpickle.dumps(fn, protocol=5)
    except Exception as e:
        raise SerializationError(
            f"Could not serialize the remote function or class {name}: {type(e).__name__}: {e}. "
            "It probably captures an object that cannot be pickled (a lock, a socket, an open file); "
            "create such objects inside the function instead."
        ) from e


def _collector_stack() -> list:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{text} (type {type(value).__module__}.{type(value).__qualname__})"


def frames_to_bytes(frames: Sequence[Any]) -> bytes:
    """Pack a small object's frames into one bytes blob (for embedding in a task spec)."""
    if len(frames) == 1:
        return bytes(frames[0])
    return pickle.dumps([bytes(f) for f in frames], protocol=5)


def frames_from_bytes(blob: bytes, multi: bool) -> list[Any]:
    return pickle.loads(blob) if multi else [blob]
