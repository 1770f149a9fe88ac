"""How a task's arguments are packed by the submitter and unpacked by the worker.

Pure data handling (no I/O): top-level ObjectRef arguments are replaced by markers and resolved by
the worker before the call; ObjectRefs nested inside other values stay refs. A failure to
serialize names the offending argument.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from kray import serialization
from kray.core import object_table, refs
from kray.protocol import messages

_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})


class ArgMarker:
    """Stands for the index-th top-level ObjectRef argument inside the pickled arguments."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (ArgMarker, (self.index,))


def pack(
    args: tuple, kwargs: dict, function_name: str
) -> tuple[list[Any], list[Any], list[refs.ObjectRef]]:
    """Serialize (args, kwargs); returns (frames, contained refs, top-level refs)."""
    if not kwargs and all(type(a) in _SCALARS for a in args):
        # Plain values only (the common case of small calls): the C pickler, no ref scanning.
        return [pickle.dumps((list(args), {}), protocol=5)], [], []
    top: list[refs.ObjectRef] = []
    ObjectRef = refs.ObjectRef

    def mark(value: Any) -> Any:
        if type(value) is ObjectRef:
            top.append(value)
            return ArgMarker(len(top) - 1)
        return value

    new_args = [mark(a) for a in args]
    new_kwargs = {k: mark(v) for k, v in kwargs.items()} if kwargs else {}
    try:
        frames, contained = serialization.serialize((new_args, new_kwargs), "arguments")
    except serialization.SerializationError:
        _raise_for_culprit(args, kwargs, function_name)
        raise
    return frames, contained, top


def _raise_for_culprit(args: tuple, kwargs: dict, function_name: str) -> None:
    """Find the argument that does not serialize and raise an error that names it."""
    named = [(f"argument {i}", a) for i, a in enumerate(args)] + [
        (f"keyword argument {k!r}", v) for k, v in kwargs.items()
    ]
    for label, value in named:
        serialization.serialize(value, f"{label} of {function_name}")  # raises, naming the culprit


def unpack(
    args_frames: list[Any], resolve: Callable[[int], Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Rebuild (args, kwargs), replacing each marker with resolve(index)."""
    args, kwargs = serialization.deserialize(args_frames)
    for i, value in enumerate(args):
        if type(value) is ArgMarker:
            args[i] = resolve(value.index)
    for key, value in kwargs.items():
        if type(value) is ArgMarker:
            kwargs[key] = resolve(value.index)
    return args, kwargs


def arg_value(objects: object_table.ObjectTable, oid: bytes, owner: str) -> messages.ArgValue:
    """How a resolved top-level argument travels: the value itself when this owner holds it inline (or the
    error it stands for), the node of its shared-memory copy, else a ref the worker fetches."""
    entry = objects.get(oid)
    if entry is None or not entry.owned or entry.state != object_table.READY:
        return messages.ArgValue("ref", oid, owner)
    if entry.kind == object_table.SHM:
        return messages.ArgValue("shm", oid, owner, entry.node_id)
    data = pickle.dumps([bytes(f) for f in entry.frames or []], protocol=5)
    kind = "error" if entry.kind == object_table.ERROR else "inline"
    return messages.ArgValue(kind, oid, owner, b"", data)
