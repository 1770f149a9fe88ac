"""The creator's record of actors whose handle was pickled out of band (issue 15 defect 9, `escaped_actors`):
it keeps the actor alive past its original handle, and is cleaned when that handle goes, so it holds
only the actors of live original handles. On the real ActorHandle class, with a stand-in core (no processes).
"""

from __future__ import annotations

import gc
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from kray.api import actor
from kray.core import refs
from kray.protocol import messages


class _Loop:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> None:
        self.calls.append((getattr(fn, "__name__", fn), *args))


class _Core:
    """What ActorHandle touches on the core worker: the escaped set and the I/O loop (calls recorded)."""

    def __init__(self) -> None:
        self.escaped_actors: set[bytes] = set()
        self.loop = _Loop()
        self.submitter = self  # `core.submitter.actors.release` resolves to self.release
        self.actors = self

    def release(self, actor_id: bytes) -> None:  # pragma: no cover - only its name is recorded
        pass

    def lend(self, actor_id: bytes, delta: int) -> None:  # pragma: no cover - only its name is recorded
        pass


@pytest.fixture
def core() -> Iterator[_Core]:
    previous = refs.get_core()
    fake = _Core()
    refs.set_core(fake)
    yield fake
    refs.set_core(previous)


def _original_handle(core: _Core, actor_id: bytes) -> actor.ActorHandle:
    handle = actor.ActorHandle(actor_id, messages.ActorOptions(class_name="Counter"))
    handle._core = core
    return handle


def test_escaped_actors_hold_only_live_original_handles(core: _Core) -> None:
    for i in range(1000):
        handle = _original_handle(core, i.to_bytes(16, "big"))
        pickle.dumps(handle)  # out of band: the actor must outlive this handle
        assert handle._actor_id in core.escaped_actors
        del handle  # CPython collects it here (no cycle)
    gc.collect()
    assert core.escaped_actors == set()
    released = [call for call in core.loop.calls if call[0] == "release"]
    assert released == []  # no escaped actor was ended with its original handle


def test_an_original_handle_that_never_escaped_ends_its_actor(core: _Core) -> None:
    handle = _original_handle(core, b"a" * 16)
    del handle
    gc.collect()
    assert [call for call in core.loop.calls if call[0] == "release"] == [("release", b"a" * 16)]
    assert core.escaped_actors == set()
