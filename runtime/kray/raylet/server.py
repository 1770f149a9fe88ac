"""The raylet server: the node's resource ledger, lease grants, blocked-worker CPU lending, the
object store ledger and node statistics, served on one ROUTER socket (object chunks for other
nodes are read by object_reads).

Runs single-threaded on its protocol.loop.Loop; starts and kills worker processes through the
worker pool and touches the node's object directories through the object store.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from typing import Any

import zmq

from kray import config
from kray.object_store import store as store_mod
from kray.protocol import debug_messages, messages, wire
from kray.protocol import loop as loop_mod
from kray.raylet import liveness, memory_monitor, object_reads, state_rows, worker_pool
from kray.runtime_env import validation
from kray.scheduling import placement, policy
from kray.scheduling import resources as res

log = logging.getLogger(__name__)


class LeaseRequest:
    __slots__ = ("backlog", "hops", "infeasible_sent", "msg", "peer", "queued_sent", "since", "spread_slot", "stays")

    def __init__(self, msg: messages.RequestLease, peer: loop_mod.Peer) -> None:
        self.msg = msg
        self.peer = peer
        self.hops = msg.spilled
        self.backlog = 0  # tasks of its shape waiting at the owner behind it (ReportBacklog)
        self.queued_sent = False
        self.infeasible_sent = False
        self.since = time.monotonic()
        self.spread_slot = -1  # its turn in the SPREAD rotation, fixed on arrival
        self.stays = False  # a SPREAD request this node took: it waits here for a worker or resources


class Raylet:
    def __init__(
        self, *, node: messages.NodeInfo, gcs_address: str, port: int,
        prestart: int, worker_env: dict[str, str],
    ) -> None:
        self.node = node
        self.gcs_address = gcs_address
        self.loop = loop_mod.Loop(name="raylet")
        ctx = self.loop.ctx
        self.router = wire.make_socket(ctx, zmq.ROUTER)
        self.router.bind(wire.tcp(node.ip, port))
        self.loop.serve(self.router)
        self.total = dict(node.resources)
        self.available = dict(node.resources)
        self.gpu_free = {i: 1.0 for i in range(int(node.resources.get("GPU", 0)))}
        self.store = store_mod.ObjectStore(node.shm_dir, node.spill_dir, node.object_store_memory,
                                           call_soon=self.loop.call_soon_threadsafe)
        self.object_reader = object_reads.ObjectReader(self.loop, node)
        self.pool = worker_pool.WorkerPool(
            self.loop, node.raylet_address, node.ip, self._publish_logs, self._on_worker_death, worker_env,
            gcs_address=gcs_address, runtime_env_dir=runtime_env_dir(node),
        )
        self.pending: list[LeaseRequest] = []
        self.leases: dict[int, worker_pool.Worker] = {}
        self._lease_ids = itertools.count(1)
        self._last_release_broadcast = 0.0
        self.prestart = prestart
        self.log_subscribers: dict[int, list[loop_mod.Peer]] = {}
        self.cluster: list[policy.NodeView] = []
        self.bundles: dict[tuple[str, int], dict[str, float]] = {}
        self._spread_index = 0
        on = self.loop.on
        on(messages.RegisterWorker, self._on_register_worker)
        on(messages.WorkerSetupFailed, self._on_worker_setup_failed)
        on(messages.PrepareRuntimeEnv, self._on_prepare_runtime_env)
        on(messages.RequestLease, self._on_request_lease)
        on(messages.CancelLeaseRequest, self._on_cancel_request)
        on(messages.ReportBacklog, self._on_report_backlog)
        on(messages.ReturnLease, self._on_return_lease)
        on(messages.WorkerBlocked, self._on_worker_blocked)
        on(messages.KillWorker, self._on_kill_worker)
        on(messages.ObjectSealed, lambda m, p, peer: self.store.sealed(m.object_hex, m.size, m.primary, m.job_id))
        on(messages.DeleteObjects, lambda m, p, peer: self.store.delete(m.object_hexes))
        on(messages.MakeRoom, lambda m, p, peer: self.store.make_room(m.size, lambda ok: peer.reply(m.req_id, ok)))
        on(messages.GetNodeStats, self._on_stats)
        on(messages.SubscribeLogs, self._on_subscribe_logs)
        on(messages.ClusterView, self._on_cluster_view)
        on(messages.ReadObject, self.object_reader.on_read_object)
        on(messages.ReserveBundle, self._on_reserve_bundle)
        on(messages.ReturnBundle, self._on_return_bundle)
        on(messages.JobFinished, self._on_job_finished)
        on(messages.NodeRejected, lambda m, p, peer: self.leave(m.reason))
        on(messages.RegisterDriver, lambda m, p, peer: self.drivers.watch(m.job_id, m.pid, m.worker_id))
        self.exit_reason = ""  # set when the node must leave the cluster; the process then exits non-zero
        self.last_gcs_answer = time.monotonic()
        self.view_version = 0
        self.node.pid = os.getpid()
        cpus = int(self.total.get("CPU", 1))
        self.max_starting = config.MAXIMUM_STARTUP_CONCURRENCY or max(1, min(os.cpu_count() or 1, cpus))
        self.heartbeat = liveness.Heartbeat(self)
        self.drivers = liveness.DriverWatch(self.loop, self._on_driver_gone)
        self.memory_monitor = memory_monitor.MemoryMonitor(self)
        self.pool.on_exit = lambda worker: self._exited([worker.worker_id])
        self.loop.call_every(5.0, self._trim_workers)
        self.loop.call_every(1.0, lambda: self.store.drain_pool(older_than=2.0))

    def start(self) -> None:
        self.loop.request(self.gcs_address, lambda rid: messages.RegisterNode(rid, self.node), self._on_registered)
        for _ in range(min(self.prestart, self.max_starting)):
            self.pool.start_worker()
        self.memory_monitor.start()

    def _on_registered(self, msg: Any, payload: list) -> None:
        if isinstance(msg, messages.Reply) and not msg.ok:
            log.error("the GCS refused this node: %s", msg.value)
        # Heartbeats travel on a connection of their own: only once the GCS knows the node (a heartbeat
        # that overtook the registration would be refused). A refused or unanswered registration
        # starts them too, so that the node leaves (NodeRejected, or the GCS's silence).
        self.heartbeat.start()

    def report(self) -> liveness.Report:
        """What the heartbeat thread sends (called on that thread: copies only, no iteration of live tables)."""
        pending = [dict(r.msg.resources) for r in list(self.pending) for _ in range(1 + r.backlog)]
        free = {k: max(0.0, v) for k, v in list(self.available.items())}
        return free, pending, dict(self.total), self.store.primary_count

    def _on_driver_gone(self, job_id: int, worker_id: bytes) -> None:
        """A driver attached here exited; if without ending its job (SIGKILL), the GCS ends it now, as
        JobFinished (a second JobFinished after kray.shutdown() changes nothing)."""
        self.loop.connect(self.gcs_address).send(messages.JobFinished(job_id))
        if worker_id:
            self._exited([worker_id])

    def _exited(self, worker_ids: list[bytes]) -> None:
        self.loop.connect(self.gcs_address).send(messages.WorkersExited(worker_ids))

    def leave(self, reason: str) -> None:
        """Stop this raylet (its workers die with it): the node is no longer part of a cluster."""
        if not self.exit_reason:
            log.error("leaving the cluster: %s", reason)
            self.exit_reason = reason
            self.loop.stop()

    def _on_cluster_view(self, msg: messages.ClusterView, payload: list, peer: loop_mod.Peer) -> None:
        self.apply_view(msg)

    def apply_view(self, msg: messages.ClusterView) -> None:
        self.last_gcs_answer = time.monotonic()
        if msg.version and msg.version < self.view_version:
            return  # an older view that arrived late
        self.view_version = msg.version
        self.cluster = [policy.NodeView(*fields) for fields in msg.nodes]
        if self.pending:
            for req in self.pending:
                req.hops = 0  # fresh numbers: a queued request may move to a node that is free now
            self._schedule()

    def _on_job_finished(self, msg: messages.JobFinished, payload: list, peer: loop_mod.Peer) -> None:
        """The job's driver is gone: nobody will use or return its leases, so end that work here."""
        self.log_subscribers.pop(msg.job_id, None)
        self.store.job_finished(msg.job_id)
        self.pending = [r for r in self.pending if r.msg.job_id != msg.job_id or r.msg.owner == self.gcs_address]
        for worker in list(self.leases.values()):
            if worker.lease_job == msg.job_id:
                self.pool.kill(worker)  # its death frees the lease; task workers hold job state

    def _on_reserve_bundle(self, msg: messages.ReserveBundle, payload: list, peer: loop_mod.Peer) -> None:
        """Set a placement-group bundle aside: its resources become group resources on this node."""
        key = (msg.pg_hex, msg.index)
        if key in self.bundles:
            peer.reply(msg.req_id, True)
            return
        if not res.fits(self.available, msg.resources):
            peer.reply(msg.req_id, False)
            return
        res.subtract(self.available, msg.resources)
        added = placement.bundle_resources(msg.resources, msg.pg_hex, msg.index)
        res.add(self.total, added)
        res.add(self.available, added)
        self.bundles[key] = dict(msg.resources)
        peer.reply(msg.req_id, True)
        self._schedule()

    def _on_return_bundle(self, msg: messages.ReturnBundle, payload: list, peer: loop_mod.Peer) -> None:
        bundle = self.bundles.pop((msg.pg_hex, msg.index), None)
        if bundle is None:
            return
        added = placement.bundle_resources(bundle, msg.pg_hex, msg.index)
        res.subtract(self.total, added)
        res.subtract(self.available, added)
        for name in added:
            if self.total.get(name, 0.0) <= 1e-9:
                self.total.pop(name, None)
                self.available.pop(name, None)
        res.add(self.available, bundle)
        self._schedule()

    def _debit(self, node: policy.NodeView, request: dict[str, float]) -> None:
        """Until the next heartbeat, count what was just sent to `node` as taken there."""
        available = dict(node.available)
        res.subtract(available, request)
        self.cluster = [
            dataclasses.replace(n, available=available) if n.node_id == node.node_id else n for n in self.cluster
        ]

    def _local_view(self) -> policy.NodeView:
        return policy.NodeView(self.node.node_id, self.node.raylet_address, self.total, self.available)

    def shutdown(self) -> None:
        self.object_reader.shutdown()
        self.heartbeat.stop()
        self.memory_monitor.stop()
        self.drivers.close()
        self.loop.stop()
        self.pool.kill_all()
        self.store.destroy()

    # ------------------------------------------------------------ workers

    def _on_register_worker(self, msg: messages.RegisterWorker, payload: list, peer: loop_mod.Peer) -> None:
        worker = self.pool.registered(msg.worker_id, msg.address)
        if worker is None:
            peer.reply(msg.req_id, "unknown worker id: this raylet did not start you", ok=False)
            return
        peer.reply(msg.req_id, {"node": self.node, "gcs_address": self.gcs_address})
        self._schedule()

    def _on_worker_death(self, worker: worker_pool.Worker, reason: str) -> None:
        if worker.runtime_env and not worker.address:
            self._fail_runtime_env(worker.runtime_env, f"the worker setting the runtime_env up died: {reason}")
        if worker.lease_id:
            self._free_lease_resources(worker)
            self.leases.pop(worker.lease_id, None)
            if worker.owner_peer is not None:
                worker.owner_peer.send(self.memory_monitor.death_notice(worker, reason))
        self._schedule()

    def _on_kill_worker(self, msg: messages.KillWorker, payload: list, peer: loop_mod.Peer) -> None:
        worker = self.pool.workers.get(msg.worker_id)
        if worker is not None:
            self.pool.kill(worker)

    def _trim_workers(self) -> None:
        keep = max(int(self.total.get("CPU", 1)), self.prestart)
        self.pool.trim_idle(keep, idle_seconds=10.0)
        for worker in self.pool.setup_overdue(_setup_limit):
            worker.state = worker_pool.DEAD  # an expected death: the failure is reported here
            self.pool.kill(worker)
            self._fail_runtime_env(worker.runtime_env, (
                f"the worker (pid={worker.pid}) was still setting the runtime_env up after its "
                "config.setup_timeout_seconds and a minute of grace, and was killed"))

    # ------------------------------------------------------------ runtime_env

    def _on_worker_setup_failed(self, msg: messages.WorkerSetupFailed, payload: list, peer: loop_mod.Peer) -> None:
        peer.reply(msg.req_id, True)
        worker = self.pool.workers.get(msg.worker_id)
        if worker is None or worker.state == worker_pool.DEAD:
            return
        worker.state = worker_pool.DEAD  # it exits by itself; its death is expected
        self._fail_runtime_env(worker.runtime_env, msg.error)

    def _fail_runtime_env(self, runtime_env: str, error: str) -> None:
        """Fail the lease requests that wait for a worker in `runtime_env`, unless another worker for
        that env is still being set up (it may yet succeed)."""
        if not runtime_env or self.pool.starting_for(runtime_env):
            return
        still = []
        for req in self.pending:
            if req.msg.runtime_env == runtime_env:
                req.peer.send(messages.RuntimeEnvSetupFailed(req.msg.req_id, error))
            else:
                still.append(req)
        self.pending = still

    def _on_prepare_runtime_env(self, msg: messages.PrepareRuntimeEnv, payload: list, peer: loop_mod.Peer) -> None:
        env = msg.runtime_env
        if env and not self.pool.starting_for(env) and not self.pool.idle_env.get(env):
            self.pool.start_worker(env)

    # ------------------------------------------------------------ leases

    def _on_request_lease(self, msg: messages.RequestLease, payload: list, peer: loop_mod.Peer) -> None:
        self.pending.append(LeaseRequest(msg, peer))
        self._schedule()

    def _on_cancel_request(self, msg: messages.CancelLeaseRequest, payload: list, peer: loop_mod.Peer) -> None:
        kept = [r for r in self.pending if not (r.msg.req_id == msg.req_id and r.peer.identity == peer.identity)]
        if len(kept) < len(self.pending):  # answered, so that the owner stops waiting (issue 15 defect 9)
            peer.reply(msg.req_id, debug_messages.LEASE_REQUEST_CANCELLED, ok=False)
        self.pending = kept

    def _on_report_backlog(self, msg: messages.ReportBacklog, payload: list, peer: loop_mod.Peer) -> None:
        for req in self.pending:
            if req.msg.req_id == msg.req_id and req.peer.identity == peer.identity:
                req.backlog = max(0, msg.backlog)

    def _schedule(self) -> None:
        """Grant every pending lease that fits here, spill back the ones another node should run,
        and start workers as needed."""
        need_workers = 0
        need_env: dict[str, int] = {}
        busy = False
        still: list[LeaseRequest] = []
        local = self._local_view()
        # Free here once the requests that wait for a worker get one: SPREAD must not count those as free.
        unclaimed = dict(self.available)
        for req in self.pending:
            request = req.msg.resources
            strategy = tuple(req.msg.strategy)
            if strategy[0] == policy.SPREAD:
                if req.spread_slot < 0:
                    req.spread_slot = self._spread_index
                    self._spread_index += 1
                if req.stays:
                    decision = policy.local_or_queue(local, request)
                else:
                    spread_local = dataclasses.replace(local, available=dict(unclaimed))
                    decision = policy.decide(spread_local, request, self.cluster, strategy, req.hops,
                                             req.spread_slot)
                    req.stays = decision.action in (policy.GRANT, policy.QUEUE)
            else:
                decision = policy.decide(local, request, self.cluster, strategy, req.hops)
            log.debug("lease %s %s spilled=%s -> %s %s (view: %s)", req.msg.label, request, req.msg.spilled,
                      decision.action, decision.node.raylet_address if decision.node else "",
                      [(n.raylet_address, n.available.get("CPU")) for n in self.cluster])
            if decision.action == policy.SPILL and decision.node is not None:
                req.peer.send(messages.LeaseSpillback(req.msg.req_id, decision.node.raylet_address, decision.node.node_id))
                self._debit(decision.node, request)
                continue
            if decision.action != policy.GRANT:
                still.append(req)
                if decision.action == policy.INFEASIBLE:
                    if not req.infeasible_sent:
                        req.infeasible_sent = True
                        req.peer.send(messages.LeaseInfeasible(req.msg.req_id, self._infeasible_text(req.msg)))
                else:
                    busy = True
                    if not req.queued_sent:
                        req.queued_sent = True
                        req.peer.send(messages.LeaseQueued(req.msg.req_id))
                continue
            env = req.msg.runtime_env
            worker = self.pool.pop_idle(env)
            if worker is None:
                if env:
                    need_env[env] = need_env.get(env, 0) + 1
                else:
                    need_workers += 1
                still.append(req)
                res.subtract(unclaimed, request)
                continue
            self._grant(req, worker)
            res.subtract(unclaimed, request)
        self.pending = still
        # At most max_starting plain workers start at once (Ray's maximum_startup_concurrency): the
        # rest wait, in order, for those to register. A runtime_env's workers are not counted, as in Ray,
        # where the env is set up before its worker process starts.
        starting = self.pool.starting
        for _ in range(max(0, min(need_workers, self.max_starting) - starting)):
            self.pool.start_worker()
        for env, count in need_env.items():
            for _ in range(max(0, count - self.pool.starting_for(env))):
                self.pool.start_worker(env)
        if busy and self.leases:
            self._ask_for_idle_leases()

    def _grant(self, req: LeaseRequest, worker: worker_pool.Worker) -> None:
        lease_id = next(self._lease_ids)
        res.subtract(self.available, req.msg.resources)
        worker.state = worker_pool.LEASED
        worker.lease_id = lease_id
        worker.resources = dict(req.msg.resources)
        worker.owner_peer = req.peer
        worker.gpus = res.take_gpus(self.gpu_free, req.msg.resources.get("GPU", 0.0))
        worker.lease_job = req.msg.job_id if req.msg.owner != self.gcs_address else 0
        self.leases[lease_id] = worker
        self.memory_monitor.on_grant(worker, req.msg)
        req.peer.send(
            messages.LeaseGranted(
                req.msg.req_id, lease_id, worker.worker_id, worker.address, self.node.node_id, worker.pid,
                sorted(worker.gpus),
            )
        )

    def _ask_for_idle_leases(self) -> None:
        now = time.monotonic()
        if now - self._last_release_broadcast < 0.02:
            return
        self._last_release_broadcast = now
        seen: set[bytes | None] = set()
        for worker in self.leases.values():
            peer = worker.owner_peer
            if peer is not None and peer.identity not in seen:
                seen.add(peer.identity)
                peer.send(messages.ReleaseIdleLeases())

    def _on_return_lease(self, msg: messages.ReturnLease, payload: list, peer: loop_mod.Peer) -> None:
        worker = self.leases.pop(msg.lease_id, None)
        if worker is None:
            return
        self._free_lease_resources(worker)
        if msg.kill_worker:
            worker.state = worker_pool.DEAD
            self.pool.kill(worker)
        else:
            self.pool.release(worker)
        self._schedule()

    def _free_lease_resources(self, worker: worker_pool.Worker) -> None:
        returned = dict(worker.resources)
        if worker.blocked:
            returned.pop("CPU", None)  # already lent back while it was blocked
        # Resources of a placement group removed meanwhile are not given back to the node.
        res.add(self.available, {k: v for k, v in returned.items() if k in self.total})
        worker.resources = {}
        for index, share in worker.gpus.items():
            self.gpu_free[index] = self.gpu_free.get(index, 0.0) + share
        worker.gpus = {}

    def _on_worker_blocked(self, msg: messages.WorkerBlocked, payload: list, peer: loop_mod.Peer) -> None:
        worker = self.pool.workers.get(msg.worker_id)
        if worker is None or worker.state != worker_pool.LEASED or worker.blocked == msg.blocked:
            return
        cpu = {"CPU": worker.resources.get("CPU", 0.0)}
        worker.blocked = msg.blocked
        if msg.blocked:
            res.add(self.available, cpu)
            self._schedule()
        else:
            res.subtract(self.available, cpu)  # may go negative for a moment, as in Ray

    def _infeasible_text(self, msg: messages.RequestLease) -> str:
        if msg.strategy and msg.strategy[0] == "NODE_AFFINITY":
            return (f"The task or actor {msg.label or '(unnamed)'} is pinned to node {msg.strategy[1].hex()} "
                    "(soft=False), which is not alive or cannot fit it; it cannot be scheduled right now.")
        return (
            f"The task or actor {msg.label or '(unnamed)'} is infeasible and cannot be scheduled right now: "
            f"it needs {{{res.describe(msg.resources)}}}, which no node in the cluster can provide (this node "
            f"has {{{res.describe(self.total)}}}). It stays pending until a node that fits it joins the cluster."
        )

    # ------------------------------------------------------------ worker output

    def _on_subscribe_logs(self, msg: messages.SubscribeLogs, payload: list, peer: loop_mod.Peer) -> None:
        subscribers = self.log_subscribers.setdefault(msg.job_id, [])
        if msg.subscribe:
            subscribers.append(peer)
        else:
            subscribers[:] = [p for p in subscribers if p.identity != peer.identity]
        peer.reply(msg.req_id, True)

    def _publish_logs(self, job_id: int, record: tuple) -> None:
        for peer in self.log_subscribers.get(job_id, ()):
            peer.send(messages.LogLines(*record))

    # ------------------------------------------------------------ statistics

    def _on_stats(self, msg: messages.GetNodeStats, payload: list, peer: loop_mod.Peer) -> None:
        peer.reply(
            msg.req_id,
            {
                "node_id": self.node.node_id,
                "total": dict(self.total),
                "available": {k: max(0.0, v) for k, v in self.available.items()},
                "store": self.store.stats(),
                "workers": self.pool.summary(),
                "pending_leases": [dict(r.msg.resources) for r in self.pending],
                "pid": os.getpid(),
                "worker_list": state_rows.worker_rows(self.pool),  # for the state API
                "object_list": state_rows.object_rows(self.store),
                "host": state_rows.host_usage(),  # the machine's CPU and memory, for the dashboard's node view
            },
        )


def runtime_env_dir(node: messages.NodeInfo) -> str:
    """The node's runtime_env cache (unpacked packages, pip virtualenvs), in its session directory
    (the spill directory is <session>/spill/<node>)."""
    session = os.path.dirname(os.path.dirname(node.spill_dir.rstrip(os.sep)))
    return os.path.join(session, "runtime_resources")


def _setup_limit(runtime_env: str) -> float | None:
    """How long the raylet lets a worker set `runtime_env` up before it kills it: the env's own
    setup_timeout_seconds (which the worker enforces on pip) and a minute of grace."""
    seconds = validation.setup_timeout(validation.deserialize(runtime_env))
    return None if seconds is None else seconds + 60.0
