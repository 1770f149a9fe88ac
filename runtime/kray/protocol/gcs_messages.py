"""Messages to and from the GCS: nodes and their liveness, jobs, the KV store, actors and placement
groups. Registered with `wire` by the `message` decorator (see kray.protocol.records)."""

from __future__ import annotations

import dataclasses

from kray.protocol.records import (
    ActorInfo,
    NodeInfo,
    PlacementGroupInfo,
    TaskSpec,
    message,
)

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
