"""The owner's side of a worker killed by a raylet's memory monitor (raylet/memory_monitor.py): the task it
ran fails with OutOfMemoryError, or runs again after a backoff when the monitor's policy allows it.

As in Ray, retries after such a kill are counted apart from max_retries: a task with max_retries != 0
gets task_oom_retries of them (-1 by default: without limit), each after task_oom_retry_delay_base_ms *
2^attempt (at most a minute). The monitor itself ends the loop: it lets the last running task of a caller
fail instead of retrying it. Runs on the core worker's I/O thread.
"""

from __future__ import annotations

import logging
from typing import Any

from kray import config, exceptions
from kray.protocol import messages

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


def worker_killed(submitter: Any, lease: Any, msg: messages.WorkerDied) -> None:
    """Fail or retry the task the killed worker ran; tasks queued behind it on that worker never started,
    so they wait for another worker without spending a retry."""
    queue = lease.queue
    records = list(lease.in_flight.values())
    lease.in_flight.clear()
    for record in records:
        record.lease = None
    waiting = [r for r in records[1:] if not _finish_if_cancelled(submitter, r)]
    queue.pending.extendleft(reversed(waiting))
    if records and not _finish_if_cancelled(submitter, records[0]):
        _running_task_killed(submitter, records[0], msg)
    submitter._pump(queue)


def oom_retries_left(record: Any) -> int:
    """How many more times a task may run again after memory-monitor kills (-1: without limit)."""
    if record.spec.max_retries == 0:
        return 0
    limit = config.task_oom_retries()
    if limit < 0:
        return -1
    # Every attempt not paid for from max_retries was an out-of-memory retry.
    used = record.spec.attempt - (record.spec.max_retries - record.retries_left)
    return max(0, limit - used)


def backoff_s(attempt: int) -> float:
    return min(MAX_BACKOFF_S, config.task_oom_retry_delay_base_ms() / 1000.0 * (2 ** min(attempt, 16)))


def _running_task_killed(submitter: Any, record: Any, msg: messages.WorkerDied) -> None:
    left = oom_retries_left(record)
    if not msg.oom_retry or left == 0:
        submitter._finish_with_error(record, exceptions.OutOfMemoryError(_named(msg.reason, record.spec)))
        return
    delay = backoff_s(record.spec.attempt)
    log.warning("Task %s failed. There are %s retries remaining, so the task will be retried in %.1fs. Error: %s",
                record.spec.name, "infinite" if left < 0 else left - 1, delay, msg.reason)
    record.spec.attempt += 1
    submitter.loop.call_later(delay, _retry, submitter, record)


def _named(reason: str, spec: messages.TaskSpec) -> str:
    """The raylet's text, with the task's id and name (the raylet knows the name only once the worker said it)."""
    return reason.replace("(name=(unnamed),", f"(name={spec.name},", 1).replace(
        "where the task (", f"where the task (task ID: {spec.task_id.hex()}, ", 1)


def _retry(submitter: Any, record: Any) -> None:
    if record.done or _finish_if_cancelled(submitter, record):
        return
    submitter._enqueue(record, front=True)


def _finish_if_cancelled(submitter: Any, record: Any) -> bool:
    if record.cancelled:
        submitter._finish_with_error(record, exceptions.TaskCancelledError(record.spec.task_id.hex()))
    return bool(record.cancelled)
