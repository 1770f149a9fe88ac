"""Helpers shared by kray's server processes: exit when the process that started them is gone,
and turn SIGTERM/SIGINT into an orderly stop of their loop.

Touches signals and /proc only.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from kray.protocol import loop as loop_mod


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_on_signals(loop: loop_mod.Loop, stop: Callable[[], None]) -> None:
    """Run `stop` on the loop's thread when SIGTERM or SIGINT arrives."""

    def handler(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def exit_with_parent(loop: loop_mod.Loop, parent_pid: int | None, stop: Callable[[], None]) -> None:
    """Stop when `parent_pid` (the driver that started a local cluster) no longer exists."""
    if not parent_pid:
        return

    def check() -> None:
        if not pid_alive(parent_pid):
            stop()

    loop.call_every(0.5, check)
