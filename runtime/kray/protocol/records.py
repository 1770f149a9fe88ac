"""The building blocks of kray's wire protocol: the `message` decorator that registers a dataclass with
a fixed type code in `wire`, the generic Reply, and the records that several messages carry (NodeInfo,
TaskSpec with its ArgValues, ActorOptions, ActorInfo, ReturnValue, PlacementGroupInfo).

The messages themselves live in gcs_messages, raylet_messages and worker_messages; kray.protocol.messages
gathers them all under one name."""
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


for _record in (NodeInfo, ArgValue, TaskSpec, ReturnValue, ActorOptions, ActorInfo, PlacementGroupInfo):
    _fast_pickle(_record)
