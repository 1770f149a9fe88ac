"""The constructor arguments of a detached actor, held by the GCS so that the actor can be restarted after
its creator exited (issue 15 defect 3: its ref arguments were owned by the creator and die with it).

Pure data, registered with `wire` like protocol/messages.py (kept apart: that module is full). Who sends what:

    actor worker -> GCS   HoldCreationArguments (sent once the constructor ran, before the creation task's
                          TaskDone on the same connection: the arguments by value, each ArgValue "inline")
"""

from __future__ import annotations

from kray.protocol import records
from kray.protocol.messages import message


@message(233)
class HoldCreationArguments:
    actor_id: bytes
    task_id: bytes  # the creation task they belong to
    arg_values: list[records.ArgValue]
    args_object: records.ArgValue | None
