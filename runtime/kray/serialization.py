"""How values become bytes and back: cloudpickle with pickle protocol 5 out-of-band buffers.

Pure (no I/O). `serialize` returns the frames of a value ([pickle stream, *buffers]) and the
ObjectRefs it contains, which the caller must keep alive as long as the serialized value lives.
Large buffers (numpy arrays, bytes) stay out of band, so writing them to shared memory and
reading them back never copies them through pickle.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import threading
from collections.abc import Sequence
from typing import Any

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
            f"Could not serialize the {what}: {_describe(value)}{_culprit_text(value, 'value')}: "
            f"{type(e).__name__}: {e}. Pass only values that can be pickled (cloudpickle), or create the "
            "object inside the task instead of passing it."
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
            f"Could not serialize the remote function or class {name}{_culprit_text(fn, '')}: "
            f"{type(e).__name__}: {e}. "
            "It probably captures an object that cannot be pickled (a lock, a socket, an open file); "
            "create such objects inside the function instead."
        ) from e


def dumps_by_value(value: Any, what: str) -> bytes:
    """Pickle an option's value (e.g. retry_exceptions' classes) as function bodies are pickled, so that
    classes of the driver's `__main__` reach workers intact."""
    try:
        return cloudpickle.dumps(value, protocol=5)
    except Exception as e:
        raise SerializationError(f"Could not serialize the option {what}={value!r}: {type(e).__name__}: {e}.") from e


@functools.lru_cache(maxsize=256)
def loads_by_value(blob: bytes) -> Any:
    """The value of `dumps_by_value` (cached: the same options come with many tasks)."""
    return cloudpickle.loads(blob)


def _collector_stack() -> list:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


def find_culprit(value: Any, path: str = "", depth: int = 0) -> tuple[str, Any] | None:
    """The innermost part of `value` that does not pickle, as (path, part); None if none is found.

    Looks inside containers, instances' attributes, the variables functions capture and class
    attributes, as Ray's inspect_serializability does. Only called once serialization failed.
    """
    if depth > 8:
        return None
    for child_path, child in _parts(value, path):
        try:
            cloudpickle.dumps(child, protocol=5)
        except Exception:  # noqa: BLE001 - any failure to pickle makes this part the suspect
            return find_culprit(child, child_path, depth + 1) or (child_path, child)
    return None


def _parts(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [(f"{path}[{k!r}]", v) for k, v in list(value.items())[:1000]]
    if isinstance(value, (list, tuple)):
        return [(f"{path}[{i}]", v) for i, v in enumerate(value[:1000])]
    if isinstance(value, (set, frozenset)):
        return [(f"{path} item", v) for v in list(value)[:1000]]
    if inspect.isfunction(value) or inspect.ismethod(value):
        try:
            captured = inspect.getclosurevars(value)
        except (TypeError, ValueError):
            return []
        return [(f"{path or value.__qualname__}'s captured variable {k!r}", v)
                for k, v in {**captured.globals, **captured.nonlocals}.items() if not inspect.ismodule(v)]
    if isinstance(value, type):
        return [(f"{path or value.__qualname__}.{k}", v) for k, v in vars(value).items()
                if not (k.startswith("__") and k.endswith("__"))]
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return [(f"{path}.{k}", v) for k, v in attributes.items()]
    return []


def _culprit_text(value: Any, root: str) -> str:
    stack = _collector_stack()
    stack.append([])  # ObjectRefs met on the way are not pickled out of band (which would pin them)
    try:
        found = find_culprit(value, root)
    except Exception:  # noqa: BLE001 - the search is a courtesy; the original error is what matters
        return ""
    finally:
        stack.pop()
    if found is None:
        return ""
    where, part = found
    return f"; the part that cannot be pickled is {where}: {_describe(part)}"


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any failure to pickle is what is looked for
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
