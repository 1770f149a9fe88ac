"""The GCS's side of a detached actor's held constructor arguments (issue 15 defect 3): the actor's worker
sends them by value once its constructor ran (worker/creation_args.py), and they replace the by-location
arguments of the creation task the GCS keeps, so that a restart needs nothing from the creator, which may
have exited. They go when the actor is dead (ActorManager._mark_dead clears the creation task).

Runs on the GCS's loop; no I/O.
"""

from __future__ import annotations

import logging
from typing import Any

from kray.protocol import actor_args_messages, records
from kray.protocol import loop as loop_mod

log = logging.getLogger(__name__)


def install(actors: Any) -> None:
    """Handle HoldCreationArguments on the ActorManager's loop."""

    def on_hold(msg: actor_args_messages.HoldCreationArguments, payload: list, peer: loop_mod.Peer) -> None:
        values = list(msg.arg_values)
        if not all(isinstance(v, records.ArgValue) and v.kind == "inline" for v in values) or not (
                msg.args_object is None or isinstance(msg.args_object, records.ArgValue)):
            raise TypeError("HoldCreationArguments takes inline ArgValues")
        record = actors.actors.get(msg.actor_id)
        if record is None or record.info.state == "DEAD" or record.creation.task_id != msg.task_id:
            return  # an actor killed meanwhile: nothing to restart
        record.creation.arg_values = values
        if msg.args_object is not None:
            record.creation.args_object = msg.args_object
        log.info("holding the constructor arguments of detached actor %s (%d bytes)", msg.actor_id.hex(),
                 sum(len(v.data) for v in values) + (len(msg.args_object.data) if msg.args_object else 0))

    actors.loop.on(actor_args_messages.HoldCreationArguments, on_hold)
