"""Spilling on a thread of its own (issue 15, defect 8): the raylet's loop only accounts; the copy to the
spill dir runs elsewhere, a writer that asked for room is answered once the room exists, and an object
freed while it is being copied leaves no file behind."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kray import serialization
from kray.object_store import shm, store

SIZE = 1200


class LoopStandIn:
    """What the raylet's loop does for the store: run what other threads hand it, on this thread."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.Queue()

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        self.calls.put((fn, args))

    def run_one(self) -> None:
        fn, args = self.calls.get(timeout=30)
        fn(*args)


def _object_id(n: int) -> str:
    return f"{n:040x}"


def _seal(ledger: store.ObjectStore, n: int) -> str:
    oid = _object_id(n)
    frames, _ = serialization.serialize(os.urandom(SIZE))
    ledger.sealed(oid, shm.write_object(os.path.join(ledger.shm_dir, oid), frames))
    return oid


def test_a_spill_is_copied_off_the_loop_and_accounted_when_done(tmp_path: Path) -> None:
    loop = LoopStandIn()
    ledger = store.ObjectStore(str(tmp_path / "shm"), str(tmp_path / "spill"), capacity=3000, call_soon=loop.call_soon)
    first, _, _ = (_seal(ledger, n) for n in (1, 2, 3))
    assert ledger.used > 3000 and ledger.contains(first), "counted until its copy is done"
    loop.run_one()
    assert ledger.used <= 3000
    assert os.path.exists(tmp_path / "spill" / first) and not os.path.exists(tmp_path / "shm" / first)
    assert ledger.stats()["num_spilled"] == 1
    ledger.destroy()


def test_a_writer_asking_for_room_is_answered_once_the_spill_made_it(tmp_path: Path) -> None:
    loop = LoopStandIn()
    ledger = store.ObjectStore(str(tmp_path / "shm"), str(tmp_path / "spill"), capacity=3000, call_soon=loop.call_soon)
    _seal(ledger, 1)
    _seal(ledger, 2)
    answers: list[bool] = []
    ledger.make_room(2000, answers.append)
    assert answers == [], "no room yet: the answer waits for the spills"
    loop.run_one()  # both older objects must go for 2000 bytes to fit
    assert answers == [], "one spill done is not room enough"
    loop.run_one()
    assert answers == [True] and ledger.used + 2000 <= 3000
    ledger.make_room(4000, answers.append)
    assert answers == [True, False], "larger than the store: refused at once"
    ledger.destroy()


def test_an_object_freed_while_being_spilled_leaves_no_file(tmp_path: Path) -> None:
    loop = LoopStandIn()
    ledger = store.ObjectStore(str(tmp_path / "shm"), str(tmp_path / "spill"), capacity=3000, call_soon=loop.call_soon)
    first = _seal(ledger, 1)
    _seal(ledger, 2)
    _seal(ledger, 3)
    ledger.delete([first])
    assert ledger.contains(first), "its copy is still running"
    loop.run_one()
    assert not ledger.contains(first)
    assert not os.listdir(tmp_path / "spill") and not os.path.exists(tmp_path / "shm" / first)
    assert ledger.stats()["num_objects"] == 2 and ledger.used <= 3000
    ledger.destroy()
