"""The GCS's actor manager: the directory of actors (named and detached ones included), their
creation on a leased worker, restarts after a death, kills, and state updates to subscribers.

Runs on the GCS loop. The GCS is the owner of every actor's lease and creation task: raylets tell
it when an actor's worker dies, and the worker reports the creation task's result to it.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from kray import config
from kray.gcs import packages
from kray.protocol import actor_exit_messages as exit_messages
from kray.protocol import loop as loop_mod
from kray.protocol import messages
from kray.scheduling import resources as res

log = logging.getLogger(__name__)

PENDING, ALIVE, RESTARTING, DEAD = "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"

# Death causes, in Ray's words, by who ended the actor.
KILLED_CAUSE = "The actor was killed by kray.kill()."
END_CAUSES = {
    exit_messages.EXIT_ACTOR: "The actor is dead because its worker process has died. Worker exit type: "
                              "INTENDED_USER_EXIT Worker exit detail: Worker exits by an user request. "
                              "exit_actor() is called.",
    exit_messages.SYS_EXIT: "The actor is dead because its worker process has died. Worker exit type: "
                            "INTENDED_USER_EXIT Worker exit detail: Worker exits by an user request. Worker "
                            "exits with an exit code 0.",
    exit_messages.OUT_OF_SCOPE: "The actor is dead because all references to the actor were removed.",
}


class ActorRecord:
    __slots__ = ("created_at", "creation", "creator", "info", "kill_cause", "killing", "lease_id", "no_restart",
                 "raylet", "request_id")

    def __init__(self, info: messages.ActorInfo, creation: messages.TaskSpec) -> None:
        self.info = info
        self.creation = creation
        self.lease_id = 0
        self.raylet = ""
        self.request_id: int | None = None
        self.killing = False
        self.no_restart = False
        self.kill_cause = KILLED_CAUSE  # the death cause once a kill (no_restart) ends it
        self.creator: bytes | None = None  # the creating process's connection (not for detached actors)
        self.created_at = time.time()


class ActorManager:
    def __init__(self, loop: loop_mod.Loop, address: str, nodes: dict[bytes, messages.NodeInfo],
                 package_refs: packages.PackageRefs) -> None:
        self.loop = loop
        self.package_refs = package_refs
        self.address = address
        self.nodes = nodes
        self.actors: dict[bytes, ActorRecord] = {}
        self.named: dict[tuple[str, str], bytes] = {}
        self.by_creation_task: dict[bytes, bytes] = {}
        self.subscribers: dict[bytes, dict[bytes | None, loop_mod.Peer]] = {}
        self.dead: collections.deque[bytes] = collections.deque()  # dead actors' ids, oldest first
        self.by_creator: dict[bytes | None, set[bytes]] = {}  # a creator's connection -> its live non-detached actors
        on = loop.on
        on(messages.RegisterActor, self._on_register)
        on(messages.GetActor, self._on_get)
        on(messages.SubscribeActor, self._on_subscribe)
        on(messages.KillActor, self._on_kill)
        on(exit_messages.EndActor, self._on_end)
        on(messages.ListActors, lambda m, p, peer: peer.reply(m.req_id, [r.info for r in self.actors.values()]))
        on(messages.TaskDone, self._on_creation_done)
        on(messages.WorkerDied, self._on_worker_died)

    # ------------------------------------------------------------ directory

    def _on_register(self, msg: messages.RegisterActor, payload: list, peer: loop_mod.Peer) -> None:
        spec = msg.creation
        opts = spec.actor_options
        assert opts is not None
        if opts.name:
            existing_id = self.named.get((opts.namespace, opts.name))
            existing = self.actors.get(existing_id) if existing_id else None
            if existing is not None and existing.info.state != DEAD:
                if opts.get_if_exists:
                    peer.reply(msg.req_id, existing.info)
                else:
                    peer.reply(
                        msg.req_id,
                        f"An actor named {opts.name!r} already exists in namespace {opts.namespace!r}. Use "
                        "kray.get_actor() to get a handle to it, or pass get_if_exists=True.",
                        ok=False,
                    )
                return
            self.named[(opts.namespace, opts.name)] = spec.actor_id
        # Its runtime_env's packages stay while it may (re)start, after its job too (a detached actor).
        self.package_refs.hold(f"actor:{spec.actor_id.hex()}", packages.uris_of(spec.runtime_env))
        info = messages.ActorInfo(spec.actor_id, PENDING, opts, spec.job_id)
        record = ActorRecord(info, spec)
        self.actors[spec.actor_id] = record
        if not opts.detached:  # it shares its creator's fate, as in Ray
            record.creator = peer.identity
            self.by_creator.setdefault(peer.identity, set()).add(spec.actor_id)
        self.by_creation_task[spec.task_id] = spec.actor_id
        peer.reply(msg.req_id, info)
        self._schedule(record)

    def _on_get(self, msg: messages.GetActor, payload: list, peer: loop_mod.Peer) -> None:
        actor_id = msg.actor_id or self.named.get((msg.namespace, msg.name), b"")
        record = self.actors.get(actor_id)
        if record is None or (not msg.actor_id and record.info.state == DEAD):
            peer.reply(msg.req_id, None)
        else:
            peer.reply(msg.req_id, record.info)

    def _on_subscribe(self, msg: messages.SubscribeActor, payload: list, peer: loop_mod.Peer) -> None:
        self.subscribers.setdefault(msg.actor_id, {})[peer.identity] = peer
        record = self.actors.get(msg.actor_id)
        if record is not None:
            peer.send(messages.ActorUpdate(record.info))

    def _publish(self, record: ActorRecord) -> None:
        for peer in self.subscribers.get(record.info.actor_id, {}).values():
            peer.send(messages.ActorUpdate(record.info))

    # ------------------------------------------------------------ creation

    def _pick_node(self, record: ActorRecord) -> messages.NodeInfo | None:
        request = record.creation.resources
        alive = [n for n in self.nodes.values() if n.alive]
        fitting = [n for n in alive if res.feasible(n.resources, request)]
        owner_node = record.info.options.owner_node_id
        for node in fitting:
            if node.node_id == owner_node:
                return node
        if fitting:
            return fitting[0]
        return next((n for n in alive if n.node_id == owner_node), alive[0] if alive else None)

    def _schedule(self, record: ActorRecord, raylet: str = "", spilled: int = 0) -> None:
        if raylet and not any(n.alive and n.raylet_address == raylet for n in self.nodes.values()):
            raylet = ""  # spilled back to a node that died meanwhile (its raylet's view was older): pick again
        if not raylet:
            node = self._pick_node(record)
            if node is None:
                self.loop.call_later(0.5, self._schedule, record)
                return
            raylet = node.raylet_address
        record.raylet = raylet
        spec = record.creation
        opts = record.info.options

        def make(req_id: int) -> messages.RequestLease:
            return messages.RequestLease(
                req_id, spec.job_id, spec.resources, self.address, opts.class_name, opts.strategy, spilled,
                spec.runtime_env, opts.max_restarts != 0,
            )

        record.request_id = self.loop.request(
            raylet, make, lambda m, p: self._on_lease(record, m, spilled), timeout=10**9
        )

    def _on_lease(self, record: ActorRecord, msg: Any, spilled: int = 0) -> None:
        if isinstance(msg, messages.LeaseInfeasible):
            if record.info.pending_reason != msg.text:
                record.info.pending_reason = msg.text  # the creator's driver warns, as for tasks
                self._publish(record)
            return
        if isinstance(msg, messages.LeaseQueued):
            return
        record.request_id = None
        if isinstance(msg, messages.LeaseSpillback):
            if record.info.state != DEAD:
                self._schedule(record, msg.raylet_address, spilled=spilled + 1)
            return
        if isinstance(msg, messages.RuntimeEnvSetupFailed):
            if record.info.state != DEAD:
                record.info.runtime_env_failed = True
                self._mark_dead(record, f"The actor {record.info.options.class_name} died because its "
                                f"runtime_env could not be set up:\n{msg.error}")
            return
        if not isinstance(msg, messages.LeaseGranted):
            log.error("lease for actor %s failed: %s", record.info.actor_id.hex(), getattr(msg, "value", msg))
            self.loop.call_later(0.5, self._schedule, record)
            return
        if record.info.state == DEAD:
            self.loop.connect(record.raylet).send(messages.ReturnLease(msg.lease_id, kill_worker=True))
            return
        info = record.info
        record.lease_id = msg.lease_id
        info.worker_id = msg.worker_id
        info.address = msg.worker_address
        info.node_id = msg.node_id
        info.pid = msg.pid
        spec = record.creation
        spec.gpu_ids = msg.gpu_ids
        spec.attempt = info.num_restarts
        self.loop.connect(msg.worker_address).send(messages.PushTasks(msg.lease_id, [spec]))

    def _on_creation_done(self, msg: messages.TaskDone, payload: list, peer: loop_mod.Peer) -> None:
        actor_id = self.by_creation_task.get(msg.task_id)
        record = self.actors.get(actor_id) if actor_id else None
        if record is None or record.info.state == DEAD:
            return
        # The creation task has arrived: the GCS's connection to the worker is no longer needed (one
        # per actor ever created would be a table, and sockets, that only grow).
        self.loop.disconnect(record.info.address)
        ret = msg.returns[0] if msg.returns else None
        if ret is not None and ret.kind == "error":
            try:
                from kray import serialization  # cloudpickle: only for a failed creation

                error = serialization.deserialize(payload[: ret.nframes])
                cause = str(error)
            except Exception as e:  # noqa: BLE001 - the error itself could not be rebuilt here
                cause = f"the actor's __init__ raised an error that could not be read: {e!r}"
            self._mark_dead(record, f"The actor {record.info.options.class_name} died because its __init__ "
                            f"raised an exception:\n{cause}")
            self.loop.connect(record.raylet).send(messages.ReturnLease(record.lease_id, kill_worker=True))
            return
        if record.killing:
            return
        record.info.state = ALIVE
        record.info.pending_reason = ""
        self._publish(record)

    # ------------------------------------------------------------ death, restarts, kills

    def _on_worker_died(self, msg: messages.WorkerDied, payload: list, peer: loop_mod.Peer) -> None:
        record = next((r for r in self.actors.values() if r.lease_id == msg.lease_id and r.info.worker_id == msg.worker_id), None)
        if record is None or record.info.state == DEAD:
            return
        record.lease_id = 0
        info = record.info
        limit = info.options.max_restarts
        if record.killing and record.no_restart:
            self._mark_dead(record, record.kill_cause)
            return
        if limit != -1 and info.num_restarts >= limit:
            if record.killing:
                self._mark_dead(record, record.kill_cause)
            else:
                self._mark_dead(
                    record,
                    f"The actor {info.options.class_name} died unexpectedly ({msg.reason}) and was restarted "
                    f"{info.num_restarts} time(s) already (max_restarts={limit}).",
                )
            return
        record.killing = False
        info.state = RESTARTING
        info.num_restarts += 1
        self.loop.disconnect(info.address)
        info.address = ""
        self._publish(record)
        self._schedule(record)

    def node_died(self, node_id: bytes, reason: str) -> None:
        """Actors on a dead node are restarted elsewhere (within max_restarts) or marked dead; creations
        waiting for a lease from its raylet ask another node (that raylet will never answer)."""
        node = self.nodes.get(node_id)
        dead_raylet = node.raylet_address if node is not None else None
        for record in list(self.actors.values()):
            if record.info.state == DEAD:
                continue
            if record.info.node_id == node_id and record.lease_id:
                died = messages.WorkerDied(record.info.worker_id, record.lease_id, f"its node died ({reason})")
                self._on_worker_died(died, [], None)  # type: ignore[arg-type]
            elif record.request_id is not None and record.raylet == dead_raylet:
                self.loop.forget(record.request_id)
                record.request_id = None
                self._schedule(record)

    def _on_kill(self, msg: messages.KillActor, payload: list, peer: loop_mod.Peer) -> None:
        record = self.actors.get(msg.actor_id)
        if record is None:
            peer.reply(msg.req_id, False)
            return
        self._kill(record, msg.no_restart)
        peer.reply(msg.req_id, True)

    def _on_end(self, msg: exit_messages.EndActor, payload: list, peer: loop_mod.Peer) -> None:
        record = self.actors.get(msg.actor_id)
        if record is None or msg.reason not in END_CAUSES:
            if msg.req_id:
                peer.reply(msg.req_id, f"cannot end actor {msg.actor_id.hex()} for reason {msg.reason!r}", ok=False)
            return
        self._kill(record, True, END_CAUSES[msg.reason])
        if msg.req_id:
            peer.reply(msg.req_id, True)

    def _kill(self, record: ActorRecord, no_restart: bool, cause: str = KILLED_CAUSE) -> None:
        if record.info.state == DEAD:
            return
        record.no_restart = no_restart
        if no_restart:
            record.kill_cause = cause
        if record.lease_id and record.info.worker_id:
            record.killing = True
            self.loop.connect(record.raylet).send(messages.KillWorker(record.info.worker_id, "kray.kill"))
        elif no_restart:
            if record.request_id is not None:
                self.loop.connect(record.raylet).send(messages.CancelLeaseRequest(record.request_id))
                self.loop.forget(record.request_id)
            self._mark_dead(record, "The actor was killed by kray.kill() before it was created."
                            if cause == KILLED_CAUSE else cause)

    def creators_exited(self, creators: dict[bytes | None, str]) -> None:
        """Processes ended (connection identity -> address): the non-detached actors they created die."""
        for identity, address in creators.items():
            for actor_id in self.by_creator.pop(identity, set()):
                record = self.actors.get(actor_id)
                if record is not None:
                    self._kill(record, True, f"The actor is dead because its owner has died. Owner address: {address} "
                                             "(the process that created it exited).")

    def end_job(self, job_id: int) -> None:
        for record in list(self.actors.values()):
            if record.info.job_id == job_id and not record.info.options.detached:
                self._kill(record, no_restart=True)

    def _mark_dead(self, record: ActorRecord, cause: str) -> None:
        info = record.info
        if info.state != DEAD:
            self._keep_dead(info.actor_id)
        created = self.by_creator.get(record.creator)
        if created is not None:
            created.discard(info.actor_id)
            if not created:
                del self.by_creator[record.creator]
        self.by_creation_task.pop(record.creation.task_id, None)
        # A dead actor is never created again: its class and arguments go (the dead are kept by the
        # thousand, issue 15 defect 9), its id, options and death cause stay for callers and the state API.
        creation = record.creation
        creation.function_blob = None
        creation.args = b""
        creation.arg_values = []
        creation.args_object = None
        info.state = DEAD
        info.death_cause = cause
        self.package_refs.release(f"actor:{info.actor_id.hex()}")
        self.loop.disconnect(info.address)
        info.address = ""
        opts = info.options
        if opts.name and self.named.get((opts.namespace, opts.name)) == info.actor_id:
            del self.named[(opts.namespace, opts.name)]
        self._publish(record)

    def _keep_dead(self, actor_id: bytes) -> None:
        """Remember a dead actor (its callers and the state API ask for it), forgetting the oldest
        beyond the bound, with their subscribers."""
        self.dead.append(actor_id)
        while len(self.dead) > max(0, config.DESTROYED_ACTORS_KEPT):
            old = self.dead.popleft()
            record = self.actors.get(old)
            if record is not None and record.info.state == DEAD:
                del self.actors[old]
                self.subscribers.pop(old, None)
