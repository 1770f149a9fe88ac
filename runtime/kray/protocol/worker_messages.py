"""Messages between core workers (drivers and workers): tasks pushed to a leased worker and their
results, cancellation, object values and locations, and the borrower protocol. Registered with `wire`
by the `message` decorator (see kray.protocol.records)."""

from __future__ import annotations

from kray.protocol.records import (
    ReturnValue,
    TaskSpec,
    message,
)

# ---------------------------------------------------------------- core workers


@message(40)
class PushTasks:
    lease_id: int
    specs: list[TaskSpec]


@message(41)
class TaskDone:
    task_id: bytes
    worker_id: bytes
    returns: list[ReturnValue]
    retryable_error: bool = False  # an application error that retry_exceptions allows to retry
    duration: float = 0.0  # seconds the worker spent running it (the owner tunes pipelining with it)


@message(42)
class CancelTask:
    task_id: bytes
    force: bool
    recursive: bool


@message(43)
class GetObject:
    req_id: int
    object_id: bytes


@message(44)
class ObjectValue:
    req_id: int
    object_id: bytes
    value: ReturnValue


@message(48)
class AddObjectLocation:
    """borrower -> owner: a copy of the object now also lives on this node."""

    object_id: bytes
    node_id: bytes


@message(47)
class Exit:
    reason: str
