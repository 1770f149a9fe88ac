"""kray.actor: the actor names Ray programs import from `ray.actor` (ActorClass, ActorHandle,
ActorMethod, method) and `exit_actor()`.

exit_actor asks the GCS (through the actor's core worker) to end the current actor for good.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import NoReturn

from kray.api.actor import ActorClass, ActorHandle, ActorMethod, method
from kray.core import refs
from kray.protocol import actor_exit_messages as exit_messages

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"]

# How long the actor's process waits to be stopped by its raylet before it exits by itself.
_EXIT_GRACE_S = 30.0


def exit_actor() -> NoReturn:
    """End the current actor from inside one of its methods, as Ray's `ray.actor.exit_actor()`.

    The actor's `atexit` handlers run, then the actor dies and is not restarted (whatever its
    max_restarts): the call that invoked exit_actor and every queued call fail with ActorDiedError
    (a RayActorError), and a named actor's name is free again. Outside an actor it raises TypeError.
    """
    core = refs.get_core()
    if core is None or core.is_driver or not core.actor_id:
        raise TypeError("exit_actor() is called outside an actor; it can only end the actor whose method calls it. "
                        "Use kray.kill(handle) to end an actor from elsewhere.")
    atexit._run_exitfuncs()  # as Ray's graceful exit does; the process is then stopped by its raylet
    core.call(core.gcs_address, lambda rid: exit_messages.EndActor(rid, core.actor_id, exit_messages.EXIT_ACTOR))
    threading.Event().wait(_EXIT_GRACE_S)
    os._exit(0)
