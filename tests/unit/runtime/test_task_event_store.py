"""Task events without processes: what a core worker's recorder (kray.core.task_events) reports, read
back through the GCS's store (kray.gcs.task_events). A task is listed from its description alone (its
first state, PENDING_ARGS_AVAIL, is its creation time, and a task that did not wait for arguments went
to PENDING_NODE_ASSIGNMENT then: neither is an event); later events of its owner and worker fold in; an
actor creation task is listed only from its worker's events; the bound evicts and counts each attempt once."""

from __future__ import annotations

from typing import Any

from kray.core import task_events as recorder_mod
from kray.gcs import task_events
from kray.protocol import task_event_messages as tem


class _Loop:
    def on(self, *args: Any) -> None:
        pass


class _Peer:
    def __init__(self) -> None:
        self.answer: dict[str, Any] = {}

    def reply(self, req_id: int, value: dict[str, Any]) -> None:
        self.answer = value


def _info(task_id: bytes, kind: str = "ACTOR_TASK", created: float = 100.0) -> tuple[Any, ...]:
    return (task_id, 1, "A.f", "A.f", kind, b"a" * 16, b"", {}, "", created)


class _Connection:
    def __init__(self, sent: list[Any]) -> None:
        self.sent = sent

    def send(self, msg: Any) -> None:
        self.sent.append(msg)


class _CoreLoop:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def call_soon_threadsafe(self, *args: Any) -> None:
        pass

    def call_later(self, *args: Any) -> None:
        pass

    def connect(self, address: str) -> _Connection:
        return _Connection(self.sent)


class _Core:
    def __init__(self) -> None:
        self.loop = _CoreLoop()
        self.gcs_address = "tcp://gcs"
        self.job_id = 1
        self.node_id, self.worker_id = b"n" * 16, b"w" * 16


class _Spec:
    def __init__(self, task_id: bytes, actor_id: bytes = b"") -> None:
        self.task_id, self.attempt, self.actor_id, self.actor_options = task_id, 0, actor_id, None
        self.job_id, self.name, self.parent_task_id, self.resources, self.runtime_env = 1, "f", b"", {"CPU": 1.0}, ""


class _Return:
    kind = "inline"


def _query(store: task_events.TaskEventStore) -> dict[str, Any]:
    peer = _Peer()
    store._on_query(tem.GetTaskEvents(1, [], 100), [], peer)  # type: ignore[arg-type]
    return peer.answer


def test_a_task_is_listed_from_its_description_and_its_events_fold_in() -> None:
    store = task_events.TaskEventStore(_Loop(), max_tasks=100)  # type: ignore[arg-type]
    store._on_report(tem.TaskEventsReport([_info(b"t" * 16)], [], 0, 1), [], None)  # type: ignore[arg-type]
    (row,) = _query(store)["rows"]
    assert row["state"] == "PENDING_ARGS_AVAIL" and row["creation_time_ms"] == 100_000
    assert [e["state"] for e in row["events"]] == ["PENDING_ARGS_AVAIL"]

    pushed = (b"t" * 16, 0, tem.SUBMITTED_TO_WORKER, 101.0, b"n" * 16, b"w" * 16, 42)
    running = (b"t" * 16, 0, tem.RUNNING, 101.5, None, None, 42)
    done = (b"t" * 16, 0, tem.FINISHED, 102.0)
    store._on_report(tem.TaskEventsReport([], [running], 0, 1), [], None)  # type: ignore[arg-type]
    store._on_report(tem.TaskEventsReport([], [pushed, done], 0, 1), [], None)  # type: ignore[arg-type]
    answer = _query(store)
    (row,) = answer["rows"]
    assert answer["total"] == 1 and answer["num_dropped"] == 0
    assert row["state"] == "FINISHED" and row["worker_pid"] == 42 and row["node_id"] == (b"n" * 16).hex()
    assert [e["state"] for e in row["events"]] == ["PENDING_ARGS_AVAIL", "SUBMITTED_TO_WORKER", "RUNNING", "FINISHED"]
    assert (row["start_time_ms"], row["end_time_ms"]) == (101_500, 102_000)


def test_an_actor_creation_task_is_listed_from_its_workers_events_only() -> None:
    store = task_events.TaskEventStore(_Loop(), max_tasks=100)  # type: ignore[arg-type]
    info = _info(b"c" * 16, kind="ACTOR_CREATION_TASK")
    store._on_report(tem.TaskEventsReport([info], [], 0, 1), [], None)  # type: ignore[arg-type]
    assert _query(store)["rows"] == []
    restarted = (b"c" * 16, 1, tem.RUNNING, 103.0, b"n" * 16, b"w" * 16, 7)
    store._on_report(tem.TaskEventsReport([info], [restarted], 0, 1), [], None)  # type: ignore[arg-type]
    (row,) = _query(store)["rows"]
    assert (row["attempt_number"], row["state"], row["type"]) == (1, "RUNNING", "ACTOR_CREATION_TASK")


def test_the_bound_evicts_and_counts_each_attempt_once_and_ignores_its_late_events() -> None:
    store = task_events.TaskEventStore(_Loop(), max_tasks=2)  # type: ignore[arg-type]
    ids = [bytes([i]) * 16 for i in range(5)]
    store._on_report(tem.TaskEventsReport([_info(t, "NORMAL_TASK") for t in ids], [], 0, 1), [], None)  # type: ignore[arg-type]
    late = [(t, 0, tem.FINISHED, 110.0) for t in ids]
    store._on_report(tem.TaskEventsReport([], late, 0, 1), [], None)  # type: ignore[arg-type]
    answer = _query(store)
    assert answer["total"] == 2 and answer["num_dropped"] == 3
    assert {r["task_id"] for r in answer["rows"]} == {ids[3].hex(), ids[4].hex()}
    assert all(r["state"] == "FINISHED" for r in answer["rows"])


def test_what_an_owner_records_reads_back_with_every_state_of_a_task() -> None:
    core = _Core()
    recorder = recorder_mod.TaskEventRecorder(core)
    ready, waiting, call = _Spec(b"r" * 16), _Spec(b"w" * 16), _Spec(b"c" * 16, actor_id=b"a" * 16)
    for spec in (ready, waiting, call):
        recorder.add_task(spec)
    recorder.state(waiting, tem.PENDING_ARGS_AVAIL)  # it waits for an argument...
    recorder.state(ready, tem.PENDING_NODE_ASSIGNMENT)  # ...this one does not: no event
    recorder.state(waiting, tem.PENDING_NODE_ASSIGNMENT)  # ...until its argument is ready: an event
    for spec in (ready, waiting, call):
        recorder.pushed(spec, b"n" * 16, b"w" * 16, 42)
        recorder.ended(spec, [_Return()], [])
    recorder.flush()
    (report,) = core.loop.sent
    assert len(report.events) == 2 * 3 + 2 and not recorder.waited
    store = task_events.TaskEventStore(_Loop(), max_tasks=100)  # type: ignore[arg-type]
    store._on_report(report, [], None)
    rows = {r["task_id"]: r for r in _query(store)["rows"]}
    states = {task_id: [e["state"] for e in r["events"]] for task_id, r in rows.items()}
    every = ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "FINISHED"]
    assert states[ready.task_id.hex()] == every and states[waiting.task_id.hex()] == every
    assert states[call.task_id.hex()] == ["PENDING_ARGS_AVAIL", "SUBMITTED_TO_WORKER", "FINISHED"]
    assert rows[call.task_id.hex()]["type"] == "ACTOR_TASK"
    assert all(r["state"] == "FINISHED" and r["worker_pid"] == 42 for r in rows.values())
