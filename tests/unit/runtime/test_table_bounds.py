"""The bounds of issue 15 defect 9, one by one, on the real classes without processes: the GCS's owner
registry (live owners, their watchers, recent deaths), the dead-actor call queues a process keeps, the
idle per-shape task queues, and dead owners in the object table. Also defect 10's premise: the GCS
serves no HTTP and starts no thread (its tables are read only on its loop).
"""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import kray
from kray.core import bounded_tables, object_table
from kray.gcs import owners
from kray.protocol import loop as loop_mod
from kray.protocol import owner_messages


class _Peer:
    """Stands in for a ROUTER peer: records what the registry sends to it."""

    def __init__(self, identity: bytes) -> None:
        self.identity = identity
        self.sent: list[Any] = []

    def send(self, msg: Any, payload: Any = ()) -> None:
        self.sent.append(msg)


def _registry(kept: int = 3) -> owners.OwnerRegistry:
    return owners.OwnerRegistry(loop_mod.Loop(name="test"), recent_kept=kept)


def test_owner_registry_forgets_exited_owners_and_their_watches_and_keeps_few_deaths() -> None:
    registry = _registry(kept=3)
    borrower = _Peer(b"borrower")
    registry._on_announce(owner_messages.AnnounceOwner(b"w-borrower", "tcp://b:1", b"n1"), [], borrower)  # type: ignore[arg-type]
    for i in range(10):
        owner = _Peer(f"owner{i}".encode())
        registry._on_announce(owner_messages.AnnounceOwner(f"w{i}".encode(), f"tcp://o:{i}", b"n1"), [], owner)  # type: ignore[arg-type]
        registry._on_watch(owner_messages.WatchOwners([f"tcp://o:{i}"]), [], borrower)  # type: ignore[arg-type]
        registry.workers_exited([f"w{i}".encode()])
    assert [m.addresses for m in borrower.sent] == [[f"tcp://o:{i}"] for i in range(10)]
    sizes = registry.sizes()
    assert sizes == {"owners": 1, "owner_watchers": 0, "owner_watching": 0, "recent_owner_deaths": 3}, sizes
    # A watch that comes after the death is answered at once (while the death is remembered).
    late = _Peer(b"late")
    registry._on_watch(owner_messages.WatchOwners(["tcp://o:9"]), [], late)  # type: ignore[arg-type]
    assert [m.addresses for m in late.sent] == [["tcp://o:9"]]
    # An exited borrower's watches go with it.
    registry._on_announce(owner_messages.AnnounceOwner(b"w-owner", "tcp://o:live", b"n2"), [], _Peer(b"o"))  # type: ignore[arg-type]
    registry._on_watch(owner_messages.WatchOwners(["tcp://o:live"]), [], borrower)  # type: ignore[arg-type]
    registry.workers_exited([b"w-borrower"])
    assert registry.sizes()["owner_watchers"] == 0 and registry.sizes()["owner_watching"] == 0
    # A dead node takes its owners with it.
    registry._on_watch(owner_messages.WatchOwners(["tcp://o:live"]), [], late)  # type: ignore[arg-type]
    registry.node_died(b"n2", "heartbeats stopped")
    assert late.sent[-1].addresses == ["tcp://o:live"] and registry.sizes()["owners"] == 0


class _State:
    def __init__(self) -> None:
        self.info = type("Info", (), {"state": "DEAD"})()
        self.queue: list[Any] = []


def test_dead_actor_queues_are_kept_up_to_their_bound() -> None:
    submitter = type("Sub", (), {})()
    submitter.loop = loop_mod.Loop(name="test")
    submitter.actors = {}
    dead = bounded_tables.DeadActors(kept=4)
    for i in range(20):
        actor_id = bytes([i])
        submitter.actors[actor_id] = _State()
        dead.died(submitter, actor_id, "")
    assert sorted(submitter.actors) == [bytes([i]) for i in range(16, 20)]


class _Queue:
    def __init__(self, busy: bool) -> None:
        self.pending = [object()] if busy else []
        self.leases: list[Any] = []
        self.requests: dict[int, str] = {}
        self.backlog_timer = None


def test_idle_shape_queues_are_swept_once_there_are_too_many() -> None:
    submitter = type("Sub", (), {})()
    submitter.queues = {("shape", i): _Queue(busy=i % 10 == 0) for i in range(300)}
    assert bounded_tables.sweep_idle_queues(submitter, kept=256) == 270
    assert sorted(submitter.queues) == [("shape", i) for i in range(0, 300, 10)], "a busy queue was dropped"
    assert bounded_tables.sweep_idle_queues(submitter, kept=256) == 0


def test_no_borrower_message_goes_to_a_dead_owner() -> None:
    table = object_table.ObjectTable("tcp://me:1")
    table.add_local_ref(b"a" * 20, "tcp://dead:1")
    table.add_local_ref(b"b" * 20, "tcp://alive:1")
    table.dead_owners["tcp://dead:1"] = None
    adds, _, _ = table.take_outbox()
    assert adds == [("tcp://alive:1", b"b" * 20, "tcp://me:1")]
    table.released.extend([b"a" * 20, b"b" * 20])
    table.process_released()
    _, removes, _ = table.take_outbox()
    assert removes == [("tcp://alive:1", b"b" * 20, "tcp://me:1")]


def test_the_gcs_starts_no_thread_and_serves_no_http() -> None:
    gcs_dir = pathlib.Path(kray.__file__).parent / "gcs"
    for path in sorted(gcs_dir.glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"threading", "http", "aiohttp", "concurrent", "socketserver"}, (
            f"{path.name} imports {imported & {'threading', 'http', 'aiohttp', 'concurrent', 'socketserver'}}: "
            "the GCS's tables are read on its loop only (the dashboard asks over the GCS's socket)")


def test_task_events_remember_a_fixed_number_of_evicted_attempts() -> None:
    """The evicted attempts (kept to ignore their late events) are bounded by a fixed number, not by how many
    attempts the GCS keeps: at Ray's default of 100,000 that table alone grew ~1.9 MB per 10,000 tasks."""
    from kray.gcs import task_events
    from kray.protocol import task_event_messages as tem

    store = task_events.TaskEventStore(loop_mod.Loop(name="test"), max_tasks=2 * task_events.EVICTED_KEPT)
    for start in range(0, 5 * task_events.EVICTED_KEPT, 1000):
        events = [(i.to_bytes(16, "big"), 0, tem.FINISHED, 1.0) for i in range(start, start + 1000)]
        store._on_report(tem.TaskEventsReport([], events), [], None)  # type: ignore[arg-type]
    assert len(store.attempts) == 2 * task_events.EVICTED_KEPT
    assert len(store.evicted) == task_events.EVICTED_KEPT
    # A late event of an attempt evicted lately is still ignored.
    late = next(reversed(store.evicted))[0]
    store._on_report(tem.TaskEventsReport([], [(late, 0, tem.FINISHED, 2.0)]), [], None)  # type: ignore[arg-type]
    assert (late, 0) not in store.attempts


def test_a_task_info_that_arrives_after_its_attempts_were_evicted_is_not_kept() -> None:
    """A worker's events can reach the GCS before the owner's report with the task's info; with a small
    cap the attempt is evicted in between, and its late info used to stay for ever (~2,700 infos, ~2 MB,
    per 10,000 tasks with 1,000 attempts kept)."""
    from kray.gcs import task_events
    from kray.protocol import task_event_messages as tem

    store = task_events.TaskEventStore(loop_mod.Loop(name="test"), max_tasks=100)
    ids = [i.to_bytes(16, "big") for i in range(1000)]
    store._on_report(tem.TaskEventsReport([], [(t, 0, tem.FINISHED, 1.0) for t in ids]), [], None)  # type: ignore[arg-type]
    infos = [(t, 1, "f", b"", "NORMAL_TASK", b"", b"", {}, "", 1.0) for t in ids]
    store._on_report(tem.TaskEventsReport(infos, []), [], None)  # type: ignore[arg-type]
    assert len(store.attempts) == 100
    assert len(store.infos) <= len(store.attempts) and len(store.job_of) <= len(store.attempts)
