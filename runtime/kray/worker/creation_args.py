"""A detached actor's constructor arguments, copied by value to the GCS once the constructor ran, so that
a restart after its creator exited rebuilds it with the same arguments (issue 15 defect 3).

The creator owns the objects behind its ref arguments, and a detached actor outlives the creator: once the
creator exits, a restart asking it for them would fail with OwnerDiedError. So the actor's worker, which
has just resolved them, sends their serialized values to the GCS (HoldCreationArguments), which puts them
into the creation task it keeps (gcs/actor_args.py). Refs nested inside the arguments stay refs (as in
Ray, their owner's death makes them unreadable). Runs on the executing thread; reads shared memory and
asks owners through the core worker.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

from kray.core import object_table, refs
from kray.protocol import actor_args_messages, messages

log = logging.getLogger(__name__)

_BY_LOCATION = ("ref", "shm")


def needed(spec: messages.TaskSpec) -> bool:
    """Whether `spec` creates a detached, restartable actor whose arguments live outside its spec."""
    options = spec.actor_options
    if options is None or not options.detached or options.max_restarts == 0:
        return False
    return any(v.kind in _BY_LOCATION for v in spec.arg_values or ()) or (
        spec.args_object is not None and spec.args_object.kind in _BY_LOCATION)


def hold(core: Any, spec: messages.TaskSpec) -> None:
    """Send the constructor's arguments by value to the GCS (the creation task's owner), ahead of its TaskDone.

    A failure only costs restarts after the creator's exit (they fail as before): the actor runs anyway."""
    try:
        values = [_by_value(core, v) for v in spec.arg_values or ()]
        packed = _by_value(core, spec.args_object) if spec.args_object is not None else None
    except Exception as e:  # noqa: BLE001 - reported, and the actor is created regardless
        log.warning("the constructor arguments of detached actor %s are not held by the GCS: a restart after "
                    "its creator exited will fail to read them (%s)", spec.actor_id.hex(), e)
        return
    core.send(spec.owner, actor_args_messages.HoldCreationArguments(spec.actor_id, spec.task_id, values, packed))


def _by_value(core: Any, value: messages.ArgValue) -> messages.ArgValue:
    if value.kind not in _BY_LOCATION:
        return value
    frames = _frames(core, value)
    return messages.ArgValue("inline", value.object_id, value.owner, b"", pickle.dumps(
        [bytes(f) for f in frames], protocol=5))


def _frames(core: Any, value: messages.ArgValue) -> list[Any]:
    if value.kind == "shm":
        return list(core.map_shm(value.node_id, value.object_id.hex(), value.owner))
    ref = refs.ObjectRef(value.object_id, value.owner)  # borrowed while it is read (its owner is alive)
    core.wait([ref], 1, None, fetch_local=False)
    entry = core.objects.get(value.object_id)
    if entry is None or entry.kind == object_table.ERROR:
        raise RuntimeError(f"argument {value.object_id.hex()} of the actor's constructor cannot be read again")
    if entry.kind == object_table.SHM:
        return list(core.map_shm(entry.node_id, value.object_id.hex(), entry.owner))
    return list(entry.frames or [])
