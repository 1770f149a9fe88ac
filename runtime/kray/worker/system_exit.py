"""`sys.exit()` inside a task or an actor method ends the worker process, as in Ray: with code 0 an
actor exits for good (INTENDED_USER_EXIT, not restarted, like exit_actor); any other code is a crash
(the task fails with WorkerCrashedError or is retried, the actor restarts within max_restarts).

Called by the executor on the thread that ran the user's code; flushes output and exits the process.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any, NoReturn

from kray.protocol import actor_exit_messages as exit_messages

# How long the process waits for its raylet to stop it after asking the GCS to end its actor.
_EXIT_GRACE_S = 30.0


def exit_code(e: SystemExit) -> int:
    """The process exit status that `sys.exit(e.code)` gives: 0 for None, 1 for a non-integer."""
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


def exit_worker(core: Any, e: SystemExit) -> NoReturn:
    """End this worker as `sys.exit()` in user code asked."""
    code = exit_code(e)
    if code == 0 and core.actor_id:
        atexit._run_exitfuncs()  # a clean exit, as exit_actor's
        _flush()
        core.call(core.gcs_address, lambda rid: exit_messages.EndActor(rid, core.actor_id, exit_messages.SYS_EXIT))
        threading.Event().wait(_EXIT_GRACE_S)
    _flush()
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
