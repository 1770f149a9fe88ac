"""Messages to and from a raylet: worker registration, leases and their spillback, objects in the node's
store, worker deaths, log streaming and the autoscaler's demand backlog. Registered with `wire` by the
`message` decorator (see kray.protocol.records)."""

from __future__ import annotations

import dataclasses

from kray.protocol.records import (
    message,
)

# ---------------------------------------------------------------- raylet


@message(20)
class RegisterWorker:
    req_id: int
    worker_id: bytes
    pid: int
    address: str


@message(21)
class RequestLease:
    req_id: int
    job_id: int
    resources: dict[str, float]
    owner: str
    label: str  # a task name, for infeasibility warnings
    strategy: tuple = ("DEFAULT",)  # ("DEFAULT",), ("SPREAD",) or ("NODE_AFFINITY", node_id, soft)
    spilled: int = 0  # how many raylets already sent this request on
    runtime_env: str = ""  # the worker must run in this runtime_env (TaskSpec.runtime_env); "" for none
    retriable: bool = False  # its first task may run again (max_retries/max_restarts != 0): killed first on OOM


@message(90)
class RuntimeEnvSetupFailed:
    """raylet -> owner, answering a RequestLease: a worker for its runtime_env could not be set up."""

    req_id: int
    error: str


@message(91)
class WorkerSetupFailed:
    """worker -> raylet, instead of RegisterWorker: its runtime_env setup failed (it exits once answered)."""

    req_id: int
    worker_id: bytes
    error: str


@message(93)
class KvExists:
    """Whether the GCS KV holds `key` (Reply value: bool), without sending the value back."""

    req_id: int
    key: str


@message(92)
class PrepareRuntimeEnv:
    """driver -> raylet: start a worker in this runtime_env now (runtime_env config.eager_install)."""

    runtime_env: str


@message(22)
class LeaseGranted:
    req_id: int
    lease_id: int
    worker_id: bytes
    worker_address: str
    node_id: bytes
    pid: int
    gpu_ids: list[int] = dataclasses.field(default_factory=list)


@message(23)
class LeaseInfeasible:
    req_id: int
    text: str


@message(34)
class LeaseQueued:
    """raylet -> owner: the request waits for busy resources (the owner may pipeline deeper)."""

    req_id: int


@message(35)
class ReturnTasks:
    """worker -> owner: queued tasks it has not started (it blocked), to run elsewhere."""

    task_ids: list[bytes]


@message(38)
class LeaseSpillback:
    """raylet -> owner: ask that raylet instead (it has or may get the resources)."""

    req_id: int
    raylet_address: str
    node_id: bytes


@message(39)
class ReadObject:
    """A chunk of an object file on this node (reply: Reply with value=file size, payload=[chunk])."""

    req_id: int
    object_hex: str
    offset: int
    length: int


@message(24)
class CancelLeaseRequest:
    req_id: int


@message(25)
class ReturnLease:
    lease_id: int
    kill_worker: bool = False


@message(26)
class ReleaseIdleLeases:
    pass


@message(27)
class WorkerBlocked:
    worker_id: bytes
    blocked: bool


@message(28)
class KillWorker:
    worker_id: bytes
    reason: str


@message(29)
class ObjectSealed:
    object_hex: str
    size: int
    primary: bool = True  # False for a copy fetched from another node (the autoscaler's idle signal)
    job_id: int = 0  # the job of the process that created it: its primary copy stops counting when the job ends


@message(30)
class DeleteObjects:
    object_hexes: list[str]


@message(31)
class MakeRoom:
    req_id: int
    size: int


@message(32)
class GetNodeStats:
    req_id: int


@message(33)
class WorkerDied:
    """raylet -> owner: a worker it leased died (the owner fails or retries its tasks)."""

    worker_id: bytes
    lease_id: int
    reason: str
    oom: bool = False  # the memory monitor killed it: `reason` is the OutOfMemoryError text
    oom_retry: bool = False  # and its policy lets the task run again (raylet/memory_monitor.py)


@message(36)
class SubscribeLogs:
    """driver -> raylet: send me the output of this job's workers (or stop)."""

    req_id: int
    job_id: int
    subscribe: bool = True


@message(37)
class LogLines:
    """raylet -> driver: lines a worker printed while running a task of the driver's job."""

    name: str
    pid: int
    ip: str
    is_err: bool
    lines: list[str]


# ---------------------------------------------------------------- autoscaler demand (issue 13)


@message(120)
class ReportBacklog:
    """owner -> raylet: `backlog` more tasks of a pending lease request's shape wait at the owner, so the
    raylet reports the shape 1 + backlog times as demand (sent when the number changes)."""

    req_id: int
    backlog: int
