"""Task events, the recording side: each process notes its tasks' state transitions and sends them to
the GCS in batches (kray.gcs.task_events keeps them for the state API: `kray list tasks`).

On the task path a transition is one tuple appended to a list (no dicts, no locks, no messages);
the I/O thread sends what gathered at most once per report interval (Ray's
task_events_report_interval_ms, 1 s), as one TaskEventsReport. The buffer is bounded (Ray's
task_events_max_num_task_events_in_buffer, 10,000): events beyond it are dropped and counted, and the
count travels with the next report. An interval of 0 switches recording off for the process, and a
task or actor created with `enable_task_events=False` is never recorded.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from kray import config, exceptions, serialization
from kray.protocol import task_event_messages as tem

log = logging.getLogger(__name__)

NORMAL_TASK, ACTOR_CREATION_TASK, ACTOR_TASK = "NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK"

# Ray's ErrorType names for the failures kray reports (anything else a task raised: TASK_EXECUTION_EXCEPTION).
_ERROR_TYPES: tuple[tuple[type[BaseException], str], ...] = (
    (exceptions.TaskCancelledError, "TASK_CANCELLED"),
    (exceptions.WorkerCrashedError, "WORKER_DIED"),
    (exceptions.ActorDiedError, "ACTOR_DIED"),
    (exceptions.ActorUnavailableError, "ACTOR_UNAVAILABLE"),
    (exceptions.RuntimeEnvSetupError, "RUNTIME_ENV_SETUP_FAILED"),
    (exceptions.ObjectLostError, "OBJECT_LOST"),
    (exceptions.OutOfMemoryError, "OUT_OF_MEMORY"),
)


def error_type(error: BaseException) -> str:
    """Ray's ErrorType name for an error that failed a task."""
    for cls, name in _ERROR_TYPES:
        if isinstance(error, cls):
            return name
    return "TASK_EXECUTION_EXCEPTION"


def error_message(error: BaseException, limit: int = 4000) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


class TaskEventRecorder:
    """One per process (CoreWorker.task_events). `add` may be called from any thread."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.interval_s = config.task_events_report_interval_ms() / 1000.0
        self.enabled = self.interval_s > 0
        self.capacity = max(1, config.task_events_buffer_size())
        self.events: list[tuple[Any, ...]] = []
        # Task descriptions, made when a task is created: holding its spec until the flush instead would
        # keep every finished task's spec alive that long, and the garbage collector would scan them all.
        self.infos: list[tuple[Any, ...]] = []
        self.dropped = 0
        self._due = False
        self.pid = os.getpid()
        # Tasks that waited for their arguments: only their PENDING_NODE_ASSIGNMENT is an event (a task
        # that did not wait got there when it was created, and the GCS takes it from its description).
        self.waited: set[bytes] = set()

    # ------------------------------------------------------------ any thread (the task path)

    def add(self, event: tuple[Any, ...]) -> None:
        """Record one transition: (task_id, attempt, state, time[, node_id, worker_id, pid[, type, message]])."""
        if not self._due:
            self._wake()
        events = self.events
        if len(events) < self.capacity:
            events.append(event)
        else:
            self.dropped += 1

    def add_task(self, spec: Any) -> None:
        """A task was created here: note its description, whose creation time is also the time of its
        first state, PENDING_ARGS_AVAIL: the GCS lists the attempt from the description alone (an actor
        call may wait there for its actor), so that state is an event only when the task waits for
        arguments (`waiting`)."""
        if not self._due:
            self._wake()
        infos = self.infos
        if len(infos) < self.capacity:
            infos.append(_describe(spec, time.time()))

    def state(self, spec: Any, state: int) -> None:
        """The task's current attempt reached `state` (a kray.protocol.task_event_messages state)."""
        if state == tem.PENDING_NODE_ASSIGNMENT and spec.attempt == 0:
            waited = self.waited
            if not waited or spec.task_id not in waited:
                return
            waited.discard(spec.task_id)
        elif state == tem.PENDING_ARGS_AVAIL and len(self.waited) < self.capacity:
            self.waited.add(spec.task_id)
        elif state == tem.FAILED and self.waited:
            self.waited.discard(spec.task_id)
        self.add((spec.task_id, spec.attempt, state, time.time()))

    def pushed(self, spec: Any, node_id: bytes, worker_id: bytes, pid: int) -> None:
        """The owner sent the task to a worker (SUBMITTED_TO_WORKER)."""
        self.add((spec.task_id, spec.attempt, tem.SUBMITTED_TO_WORKER, time.time(), node_id, worker_id, pid))

    def worker_died(self, spec: Any, reason: str) -> None:
        """The worker running the task's current attempt died (the owner may retry it as a new attempt)."""
        self.add((spec.task_id, spec.attempt, tem.FAILED, time.time(), None, None, None, "WORKER_DIED",
                  f"The worker running the task died: {reason}"))

    def failed(self, spec: Any, error: BaseException, attempt: int | None = None) -> None:
        """The task's attempt failed with `error` (recorded where the error object is at hand)."""
        self.add((spec.task_id, spec.attempt if attempt is None else attempt, tem.FAILED, time.time(),
                  None, None, None, error_type(error), error_message(error)))

    def ended(self, spec: Any, returns: list[Any], payload: list[Any]) -> None:
        """The owner got the task's result: FINISHED, or FAILED with the error it carries (read here, on
        this rare path, so that the error is known even when the worker's own report died with it)."""
        if not returns or returns[0].kind != "error":
            self.add((spec.task_id, spec.attempt, tem.FINISHED, time.time()))
            return
        try:
            error = serialization.deserialize(payload[: returns[0].nframes])
        except Exception:  # noqa: BLE001 - an error class this process cannot load: the state still counts
            self.add((spec.task_id, spec.attempt, tem.FAILED, time.time()))
            return
        if isinstance(error, BaseException):
            self.failed(spec, error)

    def running(self, spec: Any) -> None:
        """A worker starts the task (worker side)."""
        if spec.actor_options is None:  # its owner reported the node and worker it sent it to
            self.add((spec.task_id, spec.attempt, tem.RUNNING, time.time(), None, None, self.pid))
            return
        core = self.core
        self.add((spec.task_id, spec.attempt, tem.RUNNING, time.time(), core.node_id, core.worker_id, self.pid))
        if len(self.infos) < self.capacity:
            self.infos.append(_describe(spec, time.time()))  # a creation task is sent by the GCS: its worker describes it
        # The worker becomes the actor's, which may be killed at any time: what it recorded as a task
        # worker goes now rather than being lost with it.
        core.loop.call_soon_threadsafe(self.flush)

    def _wake(self) -> None:
        if not self._due:
            self._due = True
            loop = self.core.loop
            loop.call_soon_threadsafe(loop.call_later, self.interval_s, self.flush)

    # ------------------------------------------------------------ I/O thread

    def flush(self) -> None:
        """Send what gathered since the last flush (one message), then forget it."""
        self._due = False
        events, infos = self.events, self.infos
        n, m = len(events), len(infos)
        batch = events[:n]
        del events[:n]  # appends made meanwhile by other threads stay, after index n
        described = infos[:m]
        del infos[:m]
        dropped, self.dropped = self.dropped, 0
        gcs = self.core.gcs_address
        if not gcs or not (batch or described or dropped):
            return
        try:
            self.core.loop.connect(gcs).send(tem.TaskEventsReport(described, batch, dropped, self.core.job_id))
        except Exception as e:  # noqa: BLE001 - events are for observability: never fail the process
            log.debug("task events not sent: %s", e)
        if self.events or self.infos:
            self._wake()


def _describe(spec: Any, created: float) -> tuple[Any, ...]:
    """A task's description tuple (see kray.protocol.task_event_messages) from its spec."""
    if spec.actor_options is not None:
        kind, func = ACTOR_CREATION_TASK, spec.actor_options.class_name
    elif spec.actor_id:
        kind, func = ACTOR_TASK, spec.name
    else:
        kind, func = NORMAL_TASK, spec.name
    # The resources go as they are (placement-group names included): the GCS reads them when asked.
    return (spec.task_id, spec.job_id, spec.name, func, kind, spec.actor_id, spec.parent_task_id,
            spec.resources, spec.runtime_env, created)
