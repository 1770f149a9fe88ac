"""Task events, the GCS side: every task attempt's state transitions, merged from the reports of its
owner and of the worker that ran it, kept for the state API (`kray list tasks`, /api/v0/tasks).

Bounded as Ray's GCS task manager: at most task_events_max_num_task_in_gcs attempts (100,000; -1 for
no bound), the oldest evicted first (finished ones before those still pending or running); evicted
attempts and the events processes dropped from their own full buffers are counted per job and
reported with every answer (`num_dropped`). Pure bookkeeping on the GCS's loop thread, no I/O
besides the replies.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from kray import config, ids
from kray.protocol import loop as loop_mod
from kray.protocol import task_event_messages as tem

log = logging.getLogger(__name__)

_STATE_NAMES = tem.STATE_NAMES
# Evicted attempts remembered to ignore their late events: a fixed number, not one per attempt kept (at
# Ray's default of 100,000 kept attempts that table alone held ~19 MB, growing ~1.9 MB per 10,000 tasks).
EVICTED_KEPT = 10_000
_CREATION, _NORMAL = "ACTOR_CREATION_TASK", "NORMAL_TASK"


class _Attempt:
    """One attempt of one task, merged from its events when asked: the first time of each state it
    reached, and where it ran."""

    __slots__ = ("error_message", "error_type", "node_id", "state", "times", "worker_id", "worker_pid")

    def __init__(self) -> None:
        self.state = -1
        self.times: dict[int, float] = {}
        self.node_id: bytes | None = None
        self.worker_id: bytes | None = None
        self.worker_pid: int | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None


class TaskEventStore:
    def __init__(self, loop: loop_mod.Loop, max_tasks: int | None = None) -> None:
        self.max_tasks = config.task_events_max_num_task_in_gcs() if max_tasks is None else max_tasks
        # (task id, attempt) -> its events as they came: merged only when a query reads them (a report
        # costs the GCS one append per event).
        self.attempts: collections.OrderedDict[tuple[bytes, int], list[tuple[Any, ...]]] = collections.OrderedDict()
        self.infos: dict[bytes, tuple[Any, ...]] = {}
        self.attempts_of: dict[bytes, int] = {}  # task id -> attempts kept (its info goes with the last)
        self.dropped: collections.Counter[int] = collections.Counter()  # job -> attempts or events lost
        self.job_of: dict[bytes, int] = {}
        # Attempts evicted lately: their late events (the owner's and the worker's arrive apart) are ignored,
        # so an attempt is evicted, and counted, once.
        self.evicted: collections.OrderedDict[tuple[bytes, int], None] = collections.OrderedDict()
        # Attempts that reported an end, oldest first: the first to evict (keys of attempts evicted or
        # ended twice may linger; they are skipped, and compacted away when they pile up).
        self.ended: collections.deque[tuple[bytes, int]] = collections.deque()
        loop.on(tem.TaskEventsReport, self._on_report)
        loop.on(tem.GetTaskEvents, self._on_query)

    # ------------------------------------------------------------ reports

    def _on_report(self, msg: tem.TaskEventsReport, payload: list, peer: loop_mod.Peer) -> None:
        if msg.dropped:
            self.dropped[msg.job_id] += msg.dropped
        attempts, evicted, attempts_of, ended = self.attempts, self.evicted, self.attempts_of, self.ended
        for info in msg.infos:
            task_id = info[0]
            if task_id not in attempts_of and (task_id, 0) in evicted:
                # Its worker's events came first and its attempts were evicted meanwhile: the info would
                # never be dropped (it goes with a task's last attempt), so it is not kept.
                continue
            self.infos[task_id] = info
            self.job_of[task_id] = info[1]
            if info[4] != _CREATION and task_id not in attempts_of:
                # A task is listed from its creation (PENDING_ARGS_AVAIL at the time in its description,
                # not sent as an event); an actor creation task's attempts are its worker's to report.
                attempts[(task_id, 0)] = []
                attempts_of[task_id] = 1
        bounded = self.max_tasks >= 0
        for event in msg.events:
            key = (event[0], event[1])
            events = attempts.get(key)
            if events is None:
                if key in evicted:
                    continue
                events = attempts[key] = []
                attempts_of[key[0]] = attempts_of.get(key[0], 0) + 1
            events.append(event)
            if bounded and event[2] >= tem.FINISHED:
                ended.append(key)
        if len(ended) > 2 * len(attempts) + 1000:
            self.ended = collections.deque(key for key in ended if key in attempts)
        self._evict()

    def _evict(self) -> None:
        if self.max_tasks < 0:
            return
        excess = len(self.attempts) - self.max_tasks
        if excess <= 0:
            return
        # Ended attempts go first, oldest first; then the oldest of the rest (each step O(1), not a scan).
        victims: list[tuple[bytes, int]] = []
        chosen: set[tuple[bytes, int]] = set()
        ended, attempts = self.ended, self.attempts
        while len(victims) < excess and ended:
            key = ended.popleft()
            if key in attempts and key not in chosen:
                victims.append(key)
                chosen.add(key)
        if len(victims) < excess:
            for key in attempts:
                if len(victims) == excess:
                    break
                if key not in chosen:
                    victims.append(key)
        for key in victims:
            self.attempts.pop(key, None)
            self.evicted[key] = None
            if len(self.evicted) > EVICTED_KEPT:
                self.evicted.popitem(last=False)
            task_id = key[0]
            self.dropped[self.job_of.get(task_id, 0)] += 1
            left = self.attempts_of.get(task_id, 1) - 1
            if left <= 0:
                self.attempts_of.pop(task_id, None)
                self.infos.pop(task_id, None)
                self.job_of.pop(task_id, None)
            else:
                self.attempts_of[task_id] = left

    # ------------------------------------------------------------ queries

    def _on_query(self, msg: tem.GetTaskEvents, payload: list, peer: loop_mod.Peer) -> None:
        filters = [(str(c).lower(), p, v) for c, p, v in msg.filters or []]
        limit = max(0, int(msg.limit))
        rows: list[dict[str, Any]] = []
        total = 0
        for (task_id, attempt), events in self.attempts.items():
            row = self.row(task_id, attempt, _merge(events))
            if all(_matches(row, f) for f in filters):
                total += 1
                if len(rows) < limit:
                    rows.append(row)
        peer.reply(msg.req_id, {"rows": rows, "total": total, "num_dropped": sum(self.dropped.values()),
                                "num_stored": len(self.attempts)})

    def row(self, task_id: bytes, attempt: int, record: _Attempt) -> dict[str, Any]:
        """One attempt in Ray's TaskState columns."""
        info = self.infos.get(task_id)
        times = record.times
        if info is None:
            job, name, func, kind, actor, parent, resources, env, created = (
                0, "", "", "NORMAL_TASK", b"", b"", {}, "", times.get(tem.PENDING_ARGS_AVAIL))
        else:
            job, name, func, kind, actor, parent, resources, env, created = info[1:10]
        if tem.PENDING_ARGS_AVAIL not in times and created and attempt == 0:
            # Not reported when its arguments were ready: a task then went to PENDING_NODE_ASSIGNMENT
            # at once (an actor call goes to its actor's queue).
            times = {**times, tem.PENDING_ARGS_AVAIL: created}
            reached = tem.PENDING_ARGS_AVAIL
            if kind == _NORMAL:
                times.setdefault(tem.PENDING_NODE_ASSIGNMENT, created)
                reached = tem.PENDING_NODE_ASSIGNMENT
            record.state = max(record.state, reached)
        group = next((k.rsplit("_", 1)[1] for k in resources if k.startswith("bundle_group_")), "")
        resources = {k: v for k, v in resources.items() if "_group_" not in k}
        start = times.get(tem.RUNNING)
        end = times.get(tem.FAILED, times.get(tem.FINISHED))
        return {
            "task_id": task_id.hex(),
            "attempt_number": attempt,
            "name": name,
            "state": _STATE_NAMES[record.state] if record.state >= 0 else "NIL",
            "job_id": ids.job_id_hex(job) if job else "",
            "actor_id": actor.hex() if actor else None,
            "type": kind,
            "func_or_class_name": func,
            "parent_task_id": parent.hex() if parent else "",
            "node_id": record.node_id.hex() if record.node_id else None,
            "worker_id": record.worker_id.hex() if record.worker_id else None,
            "worker_pid": record.worker_pid,
            "error_type": record.error_type,
            "language": "PYTHON",
            "required_resources": resources,
            "runtime_env_info": {"serialized_runtime_env": env or "{}"},
            "placement_group_id": group or None,
            "events": [{"state": _STATE_NAMES[s], "created_ms": int(t * 1000)} for s, t in sorted(times.items(), key=lambda kv: kv[1])],
            "profiling_data": None,
            "creation_time_ms": int(created * 1000) if created else None,
            "start_time_ms": int(start * 1000) if start else None,
            "end_time_ms": int(end * 1000) if end else None,
            "task_log_info": None,
            "error_message": record.error_message,
            "is_debugger_paused": None,
        }


def _merge(events: list[tuple[Any, ...]]) -> _Attempt:
    """An attempt's state from its events, whatever order they came in (a later state wins)."""
    record = _Attempt()
    times = record.times
    for event in events:
        state = event[2]
        if state not in times or event[3] < times[state]:
            times[state] = event[3]
        record.state = max(record.state, state)
        if len(event) > 4:
            if event[4] is not None:
                record.node_id, record.worker_id, record.worker_pid = event[4], event[5], event[6]
            elif event[6] is not None:
                record.worker_pid = event[6]
            if len(event) > 7 and record.error_type is None:
                record.error_type, record.error_message = event[7], event[8]
    return record


def _matches(row: dict[str, Any], flt: tuple[str, str, Any]) -> bool:
    column, predicate, value = flt
    actual = row.get(column)
    if isinstance(actual, str) or isinstance(value, str):
        equal = str(actual if actual is not None else "").lower() == str(value).lower()
    else:
        equal = actual == value
    return equal if predicate == "=" else not equal
