"""Typed messages of kray's wire protocol and the task specification they carry.

Pure data: dataclasses registered with a fixed type code in `wire`. Who sends what:

    driver/worker -> GCS      RegisterNode, GetNodes, RegisterJob, KvPut, KvGet, KvKeys, KvDel,
                              GetClusterState, SubmissionEnded, HoldPackages,
                              Shutdown
    worker -> raylet          RegisterWorker, WorkerBlocked, WorkerSetupFailed
    driver -> raylet          PrepareRuntimeEnv (eager install of the job's runtime_env)
    driver/worker -> GCS      KvExists (is a runtime_env package uploaded already?)
    owner -> raylet           RequestLease, CancelLeaseRequest, ReturnLease, KillWorker, ReportBacklog
    any -> raylet             ObjectSealed, DeleteObjects, MakeRoom, GetNodeStats
    raylet -> owner           LeaseGranted, LeaseInfeasible, ReleaseIdleLeases, RuntimeEnvSetupFailed
    owner -> leased worker    PushTasks, CancelTask
    worker -> owner           TaskDone, AddBorrower, RemoveBorrower, GetObject
    owner -> borrower         ObjectValue (reply to GetObject)
    any request               Reply (ok flag + value, or an error message)
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from kray.protocol import wire

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda f: f

_T = TypeVar("_T", bound=type)


@dataclass_transform()
def message(code: int) -> Callable[[_T], _T]:
    """Make `cls` a slotted dataclass sent on the wire under type code `code`."""

    def decorate(cls: _T) -> _T:
        made = cast("_T", dataclasses.dataclass(slots=True)(cls))
        wire.register(code, made)
        return made

    return decorate


def _fast_pickle(cls: type) -> type:
    """Pickle a record as (class, field tuple): several times faster than dataclass state dicts."""
    getter = operator.attrgetter(*[f.name for f in dataclasses.fields(cls)])

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return (cls, getter(self))

    cls.__reduce__ = __reduce__  # type: ignore[method-assign,assignment]
    return cls


# ---------------------------------------------------------------- generic


@message(1)
class Reply:
    req_id: int
    ok: bool
    value: Any = None  # the result, or an error message when not ok


# ---------------------------------------------------------------- shared records


@dataclasses.dataclass(slots=True)
class NodeInfo:
    node_id: bytes
    ip: str
    raylet_address: str
    log_address: str
    resources: dict[str, float]
    shm_dir: str
    spill_dir: str
    is_head: bool
    alive: bool = True
    hostname: str = ""
    object_store_memory: int = 0
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    # Why a dead node died, as Ray's NodeDeathInfo: 1 expected termination (it shut down), 2 unexpected.
    death_reason: int = 0
    death_message: str = ""
    pid: int = 0  # the raylet's process id (the GCS checks it before declaring a silent node dead)
    metrics_export_port: int = 0  # where the node serves Prometheus metrics (raylet/metrics_export.py)


@dataclasses.dataclass(slots=True)
class ArgValue:
    """A top-level ObjectRef argument, as resolved by the submitter.

    kind: "inline" (data is the serialized frames, pickled), "shm" (object file on node_id),
    "ref" (ask the owner), "error" (data is a pickled exception to raise instead of running).
    """

    kind: str
    object_id: bytes
    owner: str
    node_id: bytes = b""
    data: bytes = b""


@dataclasses.dataclass(slots=True)
class TaskSpec:
    task_id: bytes
    job_id: int
    name: str
    function_id: bytes
    args: bytes  # pickle of (args, kwargs) with top-level refs replaced by markers
    arg_values: list[ArgValue]
    num_returns: int  # < 0 for generators: kray.core.generators.STREAMING, DYNAMIC, or streaming with backpressure
    resources: dict[str, float]
    owner: str  # address of the submitting core worker (results go there)
    max_retries: int = 0
    retry_exceptions: Any = False
    attempt: int = 0
    function_blob: bytes | None = None  # the pickled function, sent once per worker
    args_object: ArgValue | None = None  # large arguments stored as an object instead of `args`
    parent_task_id: bytes = b""
    gpu_ids: list[int] = dataclasses.field(default_factory=list)  # set by the owner from its lease
    actor_id: bytes = b""  # for an actor's creation task and its method calls
    method: str = ""  # the method to call ("" for the creation task)
    actor_options: ActorOptions | None = None  # only on the creation task
    concurrency_group: str = ""
    runtime_env: str = ""  # canonical JSON of the (uploaded) runtime_env; "" for none
    capture_child_tasks: bool = False  # its children go into its placement group (placement_group_capture_child_tasks)
    task_events: bool = True  # recorded for the state API (enable_task_events); see kray.core.task_events


@dataclasses.dataclass(slots=True)
class ActorOptions:
    """How an actor runs: its concurrency, restarts and the metadata of its methods."""

    class_name: str
    name: str = ""
    namespace: str = ""
    detached: bool = False
    max_restarts: int = 0
    max_task_retries: int = 0
    max_concurrency: int = 1
    is_async: bool = False
    concurrency_groups: dict[str, int] = dataclasses.field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    get_if_exists: bool = False
    owner_node_id: bytes = b""
    strategy: tuple = ("DEFAULT",)
    max_pending_calls: int = -1  # per caller: more pending calls raise PendingCallsLimitExceeded
    enable_task_events: bool = True  # the default of its calls (and of its creation task)


@dataclasses.dataclass(slots=True)
class ActorInfo:
    """The GCS's view of one actor, sent to callers and to the state API."""

    actor_id: bytes
    state: str  # PENDING_CREATION, ALIVE, RESTARTING, DEAD
    options: ActorOptions
    job_id: int
    address: str = ""
    worker_id: bytes = b""
    node_id: bytes = b""
    pid: int = 0
    num_restarts: int = 0
    death_cause: str = ""
    pending_reason: str = ""  # why an actor waiting to be (re)created cannot be placed, e.g. infeasible
    runtime_env_failed: bool = False  # it died because its runtime_env could not be set up


@dataclasses.dataclass(slots=True)
class ReturnValue:
    """One return of a finished task. kind: "inline" (nframes payload frames), "shm", "error"."""

    kind: str
    nframes: int = 0
    node_id: bytes = b""
    size: int = 0
    contained: list[tuple[bytes, str]] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------- GCS


@message(10)
class RegisterNode:
    req_id: int
    node: NodeInfo


@message(11)
class GetNodes:
    req_id: int


@message(12)
class RegisterJob:
    req_id: int
    driver_pid: int
    namespace: str
    entrypoint: str
    submission_id: str = ""  # set when the driver is a submitted job's entrypoint


@message(13)
class KvPut:
    req_id: int
    key: str
    value: bytes
    overwrite: bool = True


@message(14)
class KvGet:
    req_id: int
    key: str


@message(80)
class KvKeys:
    req_id: int
    prefix: str


@message(81)
class KvDel:
    req_id: int
    key: str


@message(82)
class GetClusterState:
    """Nodes with free resources and pending demand, for the head's HTTP API (reply: a dict)."""

    req_id: int


@message(84)
class HoldPackages:
    """`holder` ("job:<id>", "submission:<id>") uses these runtime_env package URIs until it ends."""

    req_id: int
    holder: str
    uris: list[str]


@message(83)
class SubmissionEnded:
    """A submitted job's entrypoint exited: end every driver job it started (however it ended)."""

    req_id: int
    submission_id: str


@message(15)
class Shutdown:
    req_id: int


@message(16)
class UnregisterNode:
    node_id: bytes


@message(17)
class NodeHeartbeat:
    """raylet -> GCS, periodically: its free resources and pending demand; answered with a ClusterView."""

    node_id: bytes
    available: dict[str, float]
    pending: list[dict[str, float]]
    total: dict[str, float] = dataclasses.field(default_factory=dict)
    primary_objects: int = 0  # primary copies in the node's store (a node holding some is not idle)
    changed: bool = True  # False: a keep-alive; the fields above are empty and the last report stands
    view_version: int = 0  # the ClusterView the raylet has: the GCS answers with a newer one, or an ack


@message(18)
class ClusterView:
    nodes: list[tuple[bytes, str, dict[str, float], dict[str, float], bool]]  # id, raylet, total, free, alive
    version: int = 0


@message(19)
class SubscribeNodes:
    worker_id: bytes = b""  # the subscriber (its raylet says when it exits: WorkersExited)


@message(58)
class NodeRejected:
    """GCS -> raylet, in answer to a heartbeat: this node is not (or no longer) part of the cluster,
    e.g. it was declared dead, or the head restarted and its GCS never knew the node."""

    node_id: bytes
    reason: str


@message(57)
class NodeDied:
    node_id: bytes
    reason: str


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


# ---------------------------------------------------------------- actors (GCS)


@message(50)
class RegisterActor:
    req_id: int
    creation: TaskSpec  # actor_id and actor_options set; its owner is the GCS


@message(51)
class GetActor:
    """Look an actor up by id, or by name and namespace; the reply's value is an ActorInfo or None."""

    req_id: int
    actor_id: bytes = b""
    name: str = ""
    namespace: str = ""


@message(52)
class SubscribeActor:
    actor_id: bytes


@message(53)
class ActorUpdate:
    info: ActorInfo


@message(54)
class KillActor:
    req_id: int
    actor_id: bytes
    no_restart: bool


@message(55)
class ListActors:
    req_id: int


@message(56)
class JobFinished:
    job_id: int


# ---------------------------------------------------------------- placement groups


@dataclasses.dataclass(slots=True)
class PlacementGroupInfo:
    pg_id: bytes
    bundles: list[dict[str, float]]
    strategy: str
    name: str = ""
    namespace: str = ""
    state: str = "PENDING"  # PENDING, CREATED, REMOVED
    nodes: list[bytes] = dataclasses.field(default_factory=list)
    job_id: int = 0
    detached: bool = False


@message(60)
class CreatePlacementGroup:
    req_id: int
    info: PlacementGroupInfo


@message(61)
class WaitPlacementGroup:
    """Answered (Reply value: the info) once the group is created, or with an error once removed."""

    req_id: int
    pg_id: bytes


@message(62)
class RemovePlacementGroup:
    req_id: int
    pg_id: bytes


@message(63)
class GetPlacementGroup:
    req_id: int
    pg_id: bytes = b""
    name: str = ""
    namespace: str = ""
    all: bool = False


@message(64)
class ReserveBundle:
    """GCS -> raylet: set aside a bundle's resources (Reply value: True, or False if they are not free)."""

    req_id: int
    pg_hex: str
    index: int
    resources: dict[str, float]


@message(65)
class ReturnBundle:
    pg_hex: str
    index: int


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


@message(45)
class AddBorrower:
    object_ids: list[bytes]


@message(46)
class RemoveBorrower:
    object_ids: list[bytes]


@message(47)
class Exit:
    reason: str


# ---------------------------------------------------------------- liveness (issue 20)


@message(100)
class HeartbeatAck:
    """GCS -> raylet, in answer to a heartbeat when the raylet's ClusterView is current."""

    view_version: int


@message(101)
class NodePing:
    """GCS -> raylet's heartbeat thread: the node has been silent; answer with a heartbeat now."""

    node_id: bytes


@message(102)
class RegisterDriver:
    """driver -> its node's raylet: watch this process; when it dies, its job ends (JobFinished)."""

    job_id: int
    pid: int
    worker_id: bytes = b""


@message(103)
class WorkersExited:
    """raylet -> GCS: these workers (or drivers) of the node are gone; the GCS forgets their subscriptions."""

    worker_ids: list[bytes]


# ---------------------------------------------------------------- autoscaler demand (issue 13)


@message(120)
class ReportBacklog:
    """owner -> raylet: `backlog` more tasks of a pending lease request's shape wait at the owner, so the
    raylet reports the shape 1 + backlog times as demand (sent when the number changes)."""

    req_id: int
    backlog: int


for _record in (NodeInfo, ArgValue, TaskSpec, ReturnValue, ActorOptions, ActorInfo, PlacementGroupInfo):
    _fast_pickle(_record)
