"""The owner's bookkeeping for normal tasks: a TaskRecord per submitted task, a Lease per worker leased
from a raylet, and a KeyQueue per resource shape (with the demand it reports to the raylets, which the
autoscaler reads). kray.core.submitter drives them."""

from __future__ import annotations

import collections
from typing import Any

from kray import config
from kray.protocol import messages

SHORT_TASK_SECONDS = 0.01


class TaskRecord:
    __slots__ = (
        "cancelled",
        "deps_left",
        "done",
        "force",
        "key",
        "lease",
        "max_calls",
        "pins",
        "resolved",
        "retries_left",
        "return_ids",
        "seq",
        "spec",
        "strategy",
    )

    def __init__(self, spec: messages.TaskSpec, return_ids: list[bytes], pins: list[Any]) -> None:
        self.spec = spec
        self.return_ids = return_ids
        self.pins = pins  # ObjectRefs the task needs alive until it finishes
        self.deps_left = 0
        self.retries_left = spec.max_retries
        self.lease: Lease | None = None
        self.max_calls = 0  # the worker is retired after this many calls (0: no limit)
        self.cancelled = False
        self.force = False
        self.strategy: tuple = ("DEFAULT",)
        self.key: tuple = (tuple(sorted(spec.resources.items())), self.strategy)
        self.done = False
        self.resolved = False
        self.seq = 0


class Lease:
    __slots__ = (
        "address",
        "functions",
        "gpu_ids",
        "idle_timer",
        "in_flight",
        "lease_id",
        "limit",
        "node_id",
        "pid",
        "queue",
        "raylet",
        "used",
        "worker_id",
    )

    def __init__(self, grant: messages.LeaseGranted, queue: KeyQueue, raylet: str) -> None:
        self.raylet = raylet
        self.used = 0
        self.lease_id = grant.lease_id
        self.worker_id = grant.worker_id
        self.address = grant.worker_address
        self.node_id = grant.node_id
        self.pid = grant.pid
        self.gpu_ids = grant.gpu_ids
        self.in_flight: dict[bytes, TaskRecord] = {}
        self.functions: set[bytes] = set()
        self.queue = queue
        self.idle_timer: list | None = None
        self.limit = 0  # the smallest max_calls of the tasks it ran: retired (killed) once used reaches it


class KeyQueue:
    """Tasks of one resource shape (and runtime_env) waiting for a worker, and the leases that serve them."""

    def __init__(self, key: tuple, resources: dict[str, float], strategy: tuple, runtime_env: str = "") -> None:
        self.key = key
        self.resources = resources
        self.strategy = strategy
        self.runtime_env = runtime_env
        self.pending: collections.deque[TaskRecord] = collections.deque()
        self.leases: list[Lease] = []
        self.requests: dict[int, str] = {}  # outstanding lease requests: id -> raylet address
        self.task_seconds = 1.0  # moving average of how long its tasks run (unknown: assume long)
        self.saturated = False  # the raylet said it has no free resources right now
        self.backlog_sent = (0, 0)  # (request id, backlog) last told to a raylet (ReportBacklog)
        self.backlog_timer: list | None = None  # the pending ReportBacklog (at most one per heartbeat period)
        self.warned = False

    def sync_demand(self, loop: Any) -> None:
        """Keep the raylets' view of this queue's demand (what the autoscaler reads) true: with no task left
        waiting, outstanding lease requests are withdrawn (a late grant is returned when idle); else the
        first request carries the number of tasks waiting behind the requests (sent within a heartbeat
        period, not once per submitted task)."""
        if not self.requests:
            return
        if not self.pending:
            for req_id, target in self.requests.items():
                loop.connect(target).send(messages.CancelLeaseRequest(req_id))
            self.requests.clear()
            return
        if self.backlog_timer is None:
            self.backlog_timer = loop.call_later(config.HEARTBEAT_PERIOD_S, self._report_backlog, loop)

    def _report_backlog(self, loop: Any) -> None:
        self.backlog_timer = None
        if not self.requests or not self.pending:
            return
        req_id, target = next(iter(self.requests.items()))
        backlog = max(0, len(self.pending) - len(self.requests))
        if self.backlog_sent != (req_id, backlog) and (backlog or self.backlog_sent[0] == req_id):
            self.backlog_sent = (req_id, backlog)
            loop.connect(target).send(messages.ReportBacklog(req_id, backlog))
