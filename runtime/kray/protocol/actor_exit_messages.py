"""Messages that end an actor for good with the reason of its death (not `kray.kill()`): the actor
called `kray.actor.exit_actor()` or `sys.exit(0)`, or its last handle went out of scope.

Pure data, registered with `wire` like kray.protocol.messages (codes 170-174). Who sends what:

    actor's worker -> GCS   EndActor(reason=EXIT_ACTOR or SYS_EXIT), answered True once the GCS is ending it
    owner -> GCS            EndActor(reason=OUT_OF_SCOPE, req_id=0), not answered
"""

from __future__ import annotations

from kray.protocol.messages import message

EXIT_ACTOR = "exit_actor"
SYS_EXIT = "sys_exit"
OUT_OF_SCOPE = "out_of_scope"
REASONS = (EXIT_ACTOR, SYS_EXIT, OUT_OF_SCOPE)


@message(170)
class EndActor:
    """End the actor `actor_id` without restarting it, as KillActor(no_restart=True) does, recording
    `reason` (one of REASONS) as its death cause."""

    req_id: int
    actor_id: bytes
    reason: str
