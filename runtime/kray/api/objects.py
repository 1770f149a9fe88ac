"""`get`, `put`, `wait` and `cancel`: argument checks in Ray's words, then the core worker.

Thin layer; blocking happens in kray.core.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import Any

from kray import config
from kray.api import runtime
from kray.core import generators, reference_table, refs


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """Return the value(s) of an ObjectRef or a list of ObjectRefs, waiting up to `timeout` seconds."""
    core = runtime.current_core()
    if isinstance(object_refs, refs.ObjectRef):
        return core.get_objects([object_refs], _timeout(timeout))[0]
    if not isinstance(object_refs, (list, tuple)):
        raise ValueError(  # noqa: TRY004 - Ray raises ValueError
            f"'object_refs' must either be an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}."
        )
    for ref in object_refs:
        if not isinstance(ref, refs.ObjectRef):
            raise ValueError(  # noqa: TRY004 - Ray raises ValueError
                f"'object_refs' must either be an ObjectRef or a list of ObjectRefs; the list holds a "
                f"{type(ref).__name__}."
            )
    return core.get_objects(list(object_refs), _timeout(timeout))


def put(value: Any, *, _owner: Any = None) -> refs.ObjectRef:
    """Store `value` in the cluster's object store and return an ObjectRef to it."""
    if isinstance(value, refs.ObjectRef):
        raise TypeError(
            "Calling 'put' on an ObjectRef is not allowed. If you really want to do this, you can wrap "
            "the ObjectRef in a list and call 'put' on it."
        )
    core = runtime.current_core()
    ref = core.put(value)
    if core.call_sites is not None:  # RAY_record_ref_creation_sites=1: `kray memory` shows where
        reference_table.record(core, ref, "put object")
    return ref


def wait(
    object_refs: Sequence[refs.ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[refs.ObjectRef], list[refs.ObjectRef]]:
    """Return (ready, not_ready) once `num_returns` refs are ready or `timeout` seconds passed.

    Both lists keep the order of `object_refs`. With fetch_local=True (the default) an object counts
    as ready once a copy is on this node (it is fetched from the node that holds it); with False, as
    soon as it exists anywhere in the cluster.
    """
    if isinstance(object_refs, refs.ObjectRef):
        raise TypeError("wait() expected a list of ObjectRefs, got a single ObjectRef.")
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expected a list of ObjectRefs, got {type(object_refs).__name__}.")
    streams = False
    if not all(isinstance(ref, refs.ObjectRef) for ref in object_refs):
        bad = next((ref for ref in object_refs if not isinstance(ref, (refs.ObjectRef, generators.ObjectRefGenerator))), None)
        if bad is not None:
            raise TypeError(f"wait() expected a list of ObjectRefs, got a list holding a {type(bad).__name__}.")
        streams = True  # ObjectRefGenerators: ready when next() would not block, as in Ray
    if len({id(ref) if streams else ref._id for ref in object_refs}) != len(object_refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if not isinstance(num_returns, int) or num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > len(object_refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided to kray.wait.")
    core = runtime.current_core()
    if streams:
        return generators.wait(core, list(object_refs), num_returns, _timeout(timeout), bool(fetch_local))
    return core.wait(list(object_refs), num_returns, _timeout(timeout), fetch_local=bool(fetch_local))


def cancel(object_ref: refs.ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces `object_ref` (or an ObjectRefGenerator's task); `get` on it then raises
    TaskCancelledError."""
    if isinstance(object_ref, generators.ObjectRefGenerator):
        object_ref = object_ref.completed()
    if not isinstance(object_ref, refs.ObjectRef):
        raise TypeError(f"cancel() expected an ObjectRef, got {type(object_ref).__name__}.")
    core = runtime.current_core()
    if force and _is_actor_call(core, object_ref.task_id()):
        raise ValueError(
            "force=True is not supported for actor tasks (an actor has state, so its calls are not killed); "
            "use kray.cancel(ref) or kray.kill(actor)."
        )
    core.loop.call_soon_threadsafe(core.submitter.cancel, object_ref.task_id(), force, recursive)


def _is_actor_call(core: Any, task_id: bytes) -> bool:
    """Asked on the I/O thread, after every call this thread submitted before has been registered there."""
    answer: concurrent.futures.Future[bool] = concurrent.futures.Future()

    def look() -> None:
        record = core.submitter.tasks.get(task_id)
        answer.set_result(record is not None and bool(record.spec.actor_id))

    core.loop.call_soon_threadsafe(look)
    return answer.result(timeout=config.REQUEST_TIMEOUT_S)


def _timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be a non-negative number or None, got {timeout!r}.")
    return float(timeout)
