"""The guard of a job's entrypoint: runs `/bin/sh -c ENTRYPOINT` in its own process group and takes the
whole group down when told to stop or when the supervisor that started it dies.

Run as a script (`python guard.py GRACE_S ENTRYPOINT`), not as a module, so it starts in milliseconds
without importing kray. Touches signals and processes only. Its exit code is the shell's, with a death
by signal N reported as 128 + N, as a shell reports it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1
_term_at: list[float] = []


def _on_term(signum: int, frame: object) -> None:
    """SIGTERM (from `stop`, or because the supervisor died): pass it to the whole group, once."""
    if not _term_at:
        _term_at.append(time.monotonic())
        try:
            os.killpg(0, signal.SIGTERM)
        except ProcessLookupError:
            pass


def main() -> int:
    grace_s, entrypoint = float(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGTERM, _on_term)
    try:
        # The supervisor's worker may die without a word (SIGKILL, a lost node): then we get SIGTERM.
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        return 143  # the supervisor died before the line above
    child = subprocess.Popen(["/bin/sh", "-c", entrypoint])
    while True:
        try:
            code = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if _term_at and time.monotonic() - _term_at[0] > grace_s:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                os.killpg(0, signal.SIGKILL)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
