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
    """Stop when `parent_pid` (the driver that started a local cluster) no longer exists.

    Waits on a pidfd (no wake-ups while the parent lives); polls twice a second where there is none."""
    if not parent_pid:
        return
    on_exit(loop, parent_pid, stop)


def on_exit(loop: loop_mod.Loop, pid: int, callback: Callable[[], None]) -> None:
    """Run `callback` on the loop once process `pid` has exited (at once if it is gone already)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        loop.call_soon_threadsafe(callback)
        return
    except (OSError, AttributeError):
        def check() -> None:
            if not pid_alive(pid):
                callback()

        loop.call_every(0.5, check)
        return

    def exited() -> None:
        loop.remove_fd(fd)
        os.close(fd)
        callback()

    loop.add_fd(fd, exited)
