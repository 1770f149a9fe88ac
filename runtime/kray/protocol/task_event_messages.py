"""Messages of the task-event channel: every process reports its tasks' state transitions to the GCS,
and the state API reads them back.

Pure data, registered with `wire` like kray.protocol.messages (codes 160-169). Who sends what:

    any core worker -> GCS     TaskEventsReport (one-way, at most once per report interval)
    state API -> GCS           GetTaskEvents (Reply value: {"rows": [...], "total": n, "num_dropped": n})

A report carries plain tuples, built on the task path without dicts (see kray.core.task_events):

    infos   (task_id, job_id, name, func_or_class_name, type, actor_id, parent_task_id,
             resources (placement-group resource names included), runtime_env, creation_time_s)
    events  (task_id, attempt, state, time_s[, node_id, worker_id, worker_pid[, error_type, error_message]])
"""

from __future__ import annotations

from typing import Any

from kray.protocol.messages import message

# Task states (Ray's TaskStatus names), ordered: a later state of an attempt wins over an earlier one,
# whatever order their reports arrive in (the owner and the worker report independently).
PENDING_ARGS_AVAIL = 0
PENDING_NODE_ASSIGNMENT = 1
SUBMITTED_TO_WORKER = 2
RUNNING = 3
FINISHED = 4
FAILED = 5
STATE_NAMES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING", "FINISHED", "FAILED")


@message(160)
class TaskEventsReport:
    """core worker -> GCS: task infos and state transitions since the last report, and how many
    events this process dropped because its buffer was full."""

    infos: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    dropped: int = 0
    job_id: int = 0


@message(161)
class GetTaskEvents:
    """state API -> GCS: task attempts matching every filter ((column, "=" or "!=", value)), at most `limit`."""

    req_id: int
    filters: list[tuple[str, str, Any]]
    limit: int = 100
