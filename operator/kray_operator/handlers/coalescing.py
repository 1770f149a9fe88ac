"""Serializes reconcile passes per RayCluster and coalesces bursts of requests (pod events) into one pass.

Threads only (kopf runs sync handlers in a thread pool); no I/O of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 120.0


class BusyError(RuntimeError):
    """Another pass of the same cluster ran for longer than the wait allowed; try again later."""


@dataclasses.dataclass
class _State:
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    dirty: bool = False


class Coalescer:
    """Runs at most one pass per key at a time.

    `request(key, fn)` never blocks: if a pass of `key` is running, it only marks the key dirty and the
    running caller does one more pass when it finishes. `run(key, fn)` waits for its turn (with a
    timeout) and lets `fn`'s exceptions through, for handlers that must report the outcome.
    """

    def __init__(self, lock_timeout: float = LOCK_TIMEOUT_S) -> None:
        self._guard = threading.Lock()
        self._states: dict[Hashable, _State] = {}
        self._lock_timeout = lock_timeout

    def _state(self, key: Hashable) -> _State:
        with self._guard:
            return self._states.setdefault(key, _State())

    def forget(self, key: Hashable) -> None:
        """Drop the bookkeeping of a key whose object was deleted."""
        with self._guard:
            self._states.pop(key, None)

    def run(self, key: Hashable, fn: Callable[[], None]) -> None:
        """One pass of `fn` for `key` now (after a running one finishes); raises what `fn` raises."""
        state = self._state(key)
        if not state.lock.acquire(timeout=self._lock_timeout):
            raise BusyError(f"a reconcile of {key} has been running for over {self._lock_timeout:.0f} s")
        try:
            with self._guard:
                state.dirty = False
            fn()
        finally:
            state.lock.release()
            self._drain(key, state, fn)

    def request(self, key: Hashable, fn: Callable[[], None]) -> None:
        """Ask for a pass of `fn` for `key`; errors of passes run here are logged, not raised."""
        state = self._state(key)
        with self._guard:
            state.dirty = True
        self._drain(key, state, fn)

    def _drain(self, key: Hashable, state: _State, fn: Callable[[], None]) -> None:
        while True:
            if not state.lock.acquire(blocking=False):
                return  # the holder sees `dirty` before it lets go
            try:
                while True:
                    with self._guard:
                        if not state.dirty:
                            break
                        state.dirty = False
                    try:
                        fn()
                    except Exception as e:  # noqa: BLE001 - a background pass must not kill the caller
                        log.warning("reconcile of %s failed: %s", key, e)
            finally:
                state.lock.release()
            with self._guard:
                if not state.dirty:
                    return
