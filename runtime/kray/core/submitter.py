"""The owner side of tasks: dependency resolution, worker leases, pipelined pushes, results,
retries and cancellation.

Everything here runs on the core worker's I/O thread except `submit`, which the user's thread
calls to build the spec and the return refs and then hands over. Leases are requested per resource
shape from the local raylet, kept while tasks keep coming, returned when idle or when the raylet
asks for them back.
"""

from __future__ import annotations

import functools
import logging
import pickle
import sys
from typing import Any

from kray import config, exceptions, ids, serialization
from kray.core import actor_submitter, bounded_tables, fetch, object_table, oom_retry, refs, task_args
from kray.core.task_records import SHORT_TASK_SECONDS, KeyQueue, Lease, TaskRecord
from kray.protocol import debug_messages, messages
from kray.protocol import task_event_messages as tem

log = logging.getLogger(__name__)


class Submitter:
    def __init__(self, core: Any) -> None:
        self.core = core
        self.loop = core.loop
        self.objects: object_table.ObjectTable = core.objects
        self.tasks: dict[bytes, TaskRecord] = {}
        self.queues: dict[tuple, KeyQueue] = {}
        # By worker id: lease ids are numbered per raylet, so two nodes' leases can share one.
        self.leases: dict[bytes, Lease] = {}
        self.functions: dict[bytes, bytes] = {}  # function id -> pickled function
        self.depth = max(1, config.MAX_TASKS_IN_FLIGHT_PER_WORKER)
        self.actors = actor_submitter.ActorSubmitter(core, self)
        self._seq = 0
        loop = self.loop
        loop.on(messages.TaskDone, self._on_task_done)
        loop.on(messages.WorkerDied, self._on_worker_died)
        loop.on(messages.ReleaseIdleLeases, self._on_release_idle)
        loop.on(messages.ReturnTasks, self._on_return_tasks)
        loop.on(messages.NodeDied, self._on_node_died)

    # ------------------------------------------------------------ user thread

    def submit(
        self, function_id: bytes, function_blob: bytes, name: str, args: tuple, kwargs: dict,
        num_returns: int, resources: dict[str, float], max_retries: int, retry_exceptions: Any,
        actor_id: bytes = b"", method: str = "", concurrency_group: str = "", strategy: tuple = ("DEFAULT",),
        runtime_env: str = "", max_calls: int = 0, capture: bool = False, task_events: bool = True,
    ) -> list[refs.ObjectRef]:
        core = self.core
        core.node_watch.check()
        frames, contained, top = task_args.pack(args, kwargs, name)
        task_id = core.task_ids.next()
        spec = messages.TaskSpec(
            task_id, core.job_id, name, function_id, b"", [], num_returns, resources, core.address,
            max_retries, retry_exceptions, 0, None, None, core.current_task_id,
            actor_id=actor_id, method=method, concurrency_group=concurrency_group,
        )
        pins: list[Any] = [*top, *contained]
        if len(frames) == 1 and len(frames[0]) <= config.INLINE_THRESHOLD:
            spec.args = frames[0]
        else:
            args_ref = core.put_frames(frames, [])
            pins.append(args_ref)
            spec.args_object = messages.ArgValue("pending", args_ref.binary(), core.address)
        if function_blob:
            self.functions.setdefault(function_id, function_blob)
        # A generator task (num_returns < 0, kray.core.generators) has one return: its completion ref.
        return_ids = [ids.return_object_id(task_id, i + 1) for i in range(num_returns if num_returns >= 0 else 1)]
        for oid in return_ids:
            self.objects.new_owned(oid)
        out = [refs.ObjectRef(oid, core.address) for oid in return_ids]
        record = TaskRecord(spec, return_ids, pins)
        record.max_calls = max_calls
        spec.capture_child_tasks = capture
        spec.task_events = task_events and core.task_events.enabled
        if strategy != ("DEFAULT",):
            record.strategy = strategy
            record.key = (record.key[0], strategy)
        if runtime_env:
            spec.runtime_env = runtime_env
            record.key = (*record.key, runtime_env)  # workers of different envs are never shared
        record.pins.append(top)  # the top-level refs, by position, for resolution
        self.loop.call_soon_threadsafe(self._on_submit, record, top)
        return out

    # ------------------------------------------------------------ dependencies

    def _on_submit(self, record: TaskRecord, top: list[refs.ObjectRef]) -> None:
        self.tasks[record.spec.task_id] = record
        if record.spec.task_events:
            self.core.task_events.add_task(record.spec)
        lost = self.core.node_watch.lost
        if lost is not None:  # submitted while the node was being lost
            self._finish_with_error(record, lost)
            return
        if record.spec.actor_id:
            self._seq += 1
            record.seq = self._seq
            self.actors.submitted(record)
        waiting = [r.binary() for r in top if self._owned_pending(r.binary())]
        if record.spec.args_object is not None and self._owned_pending(record.spec.args_object.object_id):
            waiting.append(record.spec.args_object.object_id)
        record.deps_left = len(waiting)
        if waiting and record.spec.task_events and not record.spec.actor_id:
            self.core.task_events.state(record.spec, tem.PENDING_ARGS_AVAIL)
        if not waiting:
            self._resolve(record, top)
            return
        for oid in waiting:
            waiter = object_table.CallbackWaiter(functools.partial(self._dep_ready, record, top))
            if self.objects.add_waiter(oid, waiter):
                self._dep_ready(record, top)

    def _owned_pending(self, oid: bytes) -> bool:
        entry = self.objects.get(oid)
        return entry is not None and entry.owned and entry.state == object_table.PENDING

    def _dep_ready(self, record: TaskRecord, top: list[refs.ObjectRef], _oid: bytes = b"") -> None:
        record.deps_left -= 1
        if record.deps_left == 0:
            self._resolve(record, top)

    def _resolve(self, record: TaskRecord, top: list[refs.ObjectRef]) -> None:
        if record.cancelled:
            self._finish_with_error(record, exceptions.TaskCancelledError(record.spec.task_id.hex()))
            return
        spec = record.spec
        values = []
        for ref in top:
            value = task_args.arg_value(self.objects, ref.binary(), ref.owner_address())
            if value.kind == "error":
                if spec.task_events:
                    self.core.task_events.state(spec, tem.FAILED)  # an argument's task failed
                self._finish_with_frames(record, pickle.loads(value.data))
                return
            values.append(value)
        spec.arg_values = values
        if spec.args_object is not None:
            spec.args_object = task_args.arg_value(self.objects, spec.args_object.object_id, spec.args_object.owner)
        record.resolved = True
        if spec.actor_id:
            self.actors.pump(spec.actor_id)
        else:
            self._enqueue(record)

    # ------------------------------------------------------------ queues and leases

    def _enqueue(self, record: TaskRecord, front: bool = False) -> None:
        if record.spec.task_events:
            self.core.task_events.state(record.spec, tem.PENDING_NODE_ASSIGNMENT)
        queue = self.queues.get(record.key)
        if queue is None:
            bounded_tables.sweep_idle_queues(self)  # shapes come and go: idle queues do not pile up
            queue = self.queues[record.key] = KeyQueue(
                record.key, dict(record.spec.resources), record.strategy, record.spec.runtime_env
            )
        if front:
            queue.pending.appendleft(record)
        else:
            queue.pending.append(record)
        self._pump(queue)

    def _pump(self, queue: KeyQueue) -> None:
        spread = queue.strategy[0] == "SPREAD"
        # Pipeline several tasks per worker only for short tasks on a busy node: long tasks go one
        # per worker, so that every free CPU in the cluster gets one.
        deep = queue.saturated and not spread and queue.task_seconds < SHORT_TASK_SECONDS
        depth = self.depth if deep else 1
        batches: dict[bytes, list[TaskRecord]] = {}
        while queue.pending and queue.leases:
            usable = [le for le in queue.leases if not ((spread and le.used) or (le.limit and le.used >= le.limit))]
            if not usable:
                break
            lease = min(usable, key=lambda le: len(le.in_flight))
            if len(lease.in_flight) >= depth:
                break
            record = queue.pending.popleft()
            record.lease = lease
            lease.used += 1
            if record.max_calls and (not lease.limit or record.max_calls < lease.limit):
                lease.limit = record.max_calls
            lease.in_flight[record.spec.task_id] = record
            if lease.idle_timer is not None:
                self.loop.cancel_timer(lease.idle_timer)
                lease.idle_timer = None
            batches.setdefault(lease.worker_id, []).append(record)
        for worker_id, records in batches.items():
            lease = self.leases[worker_id]
            specs = []
            for record in records:
                spec = record.spec
                if spec.task_events:
                    self.core.task_events.pushed(spec, lease.node_id, lease.worker_id, lease.pid)
                spec.gpu_ids = lease.gpu_ids
                if spec.function_id not in lease.functions:
                    spec.function_blob = self.functions[spec.function_id]
                    lease.functions.add(spec.function_id)
                else:
                    spec.function_blob = None
                specs.append(spec)
            self.loop.connect(lease.address).send(messages.PushTasks(lease.lease_id, specs))
        wanted = min(len(queue.pending), 8) if spread else min(len(queue.pending), 1)
        while len(queue.requests) < wanted:
            self._request_lease(queue)
        queue.sync_demand(self.loop)
        for lease in list(queue.leases):
            if not lease.in_flight and lease.limit and lease.used >= lease.limit:
                self._return_lease(lease, kill=True)  # max_calls: the worker exits, as in Ray
            elif not lease.in_flight and (spread and lease.used):
                self._return_lease(lease)
            elif not lease.in_flight and not queue.pending and lease.idle_timer is None:
                lease.idle_timer = self.loop.call_later(config.IDLE_LEASE_SECONDS, self._return_lease, lease)

    def _request_lease(self, queue: KeyQueue, raylet: str | None = None, spilled: int = 0) -> None:
        label = queue.pending[0].spec.name if queue.pending else ""
        target = raylet or self.core.raylet_address

        def make(req_id: int) -> messages.RequestLease:
            return messages.RequestLease(
                req_id, self.core.job_id, queue.resources, self.core.address, label, queue.strategy, spilled,
                queue.runtime_env, bool(queue.pending and queue.pending[0].spec.max_retries),
            )

        req_id = self.loop.request(
            target, make, lambda msg, _p: self._on_lease_reply(queue, msg, target, spilled), timeout=10**9
        )
        queue.requests[req_id] = target

    def _on_lease_reply(self, queue: KeyQueue, msg: Any, raylet: str, spills: int = 0) -> None:
        if isinstance(msg, messages.LeaseSpillback):
            queue.requests.pop(msg.req_id, None)
            self.core.learn_node(msg.node_id, msg.raylet_address)
            node = self.core.nodes.get(msg.node_id)
            if node is not None and not node.alive:
                # The raylet's view predates the node's death (views refresh with heartbeats, the
                # death notice may come first): ask again once its view has caught up.
                self.loop.call_later(config.HEARTBEAT_PERIOD_S, self._pump, queue)
                return
            if queue.pending:
                self._request_lease(queue, msg.raylet_address, spilled=spills + 1)
            return
        if isinstance(msg, messages.LeaseQueued):
            queue.saturated = True
            self._pump(queue)
            return
        if isinstance(msg, messages.LeaseInfeasible):
            if not queue.warned and not any("_group_" in name for name in queue.resources):
                queue.warned = True
                print(f"Warning: {msg.text}", file=sys.stderr, flush=True)
            return
        queue.requests.pop(msg.req_id, None)
        if isinstance(msg, messages.RuntimeEnvSetupFailed):
            # As in Ray, a runtime_env that cannot be set up fails the tasks (no retry).
            while queue.pending:
                record = queue.pending.popleft()
                self._finish_with_error(record, exceptions.RuntimeEnvSetupError(msg.error))
            return
        if isinstance(msg, messages.Reply) and msg.value == debug_messages.LEASE_REQUEST_CANCELLED:
            return  # withdrawn by _sync_demand: nothing waits for it
        if not isinstance(msg, messages.LeaseGranted):
            log.error("lease request failed: %s", getattr(msg, "value", msg))
            if queue.pending:
                self.loop.call_later(0.5, self._pump, queue)
            return
        lease = Lease(msg, queue, raylet)
        self.leases[lease.worker_id] = lease
        queue.leases.append(lease)
        self._pump(queue)

    def _return_lease(self, lease: Lease, kill: bool = False) -> None:
        lease.idle_timer = None
        if lease.in_flight and not kill:
            return
        queue = lease.queue
        if lease in queue.leases:
            queue.leases.remove(lease)
        self.leases.pop(lease.worker_id, None)
        if not queue.leases and not queue.pending:
            queue.saturated = False
        self.loop.connect(lease.raylet).send(messages.ReturnLease(lease.lease_id, kill))
        bounded_tables.lease_returned(self, lease)

    def _on_release_idle(self, msg: messages.ReleaseIdleLeases, payload: list, peer: Any) -> None:
        for lease in list(self.leases.values()):
            if not lease.in_flight:
                if lease.idle_timer is not None:
                    self.loop.cancel_timer(lease.idle_timer)
                self._return_lease(lease)

    # ------------------------------------------------------------ results

    def _on_task_done(self, msg: messages.TaskDone, payload: list, peer: Any) -> None:
        record = self.tasks.get(msg.task_id)
        if record is None or record.done:
            self._discard_returns(msg.task_id, msg.returns)
            return
        if record.spec.actor_id:
            if msg.retryable_error and record.retries_left != 0 and not record.cancelled:
                self._discard_returns(msg.task_id, msg.returns)
                self.actors.retry(record)  # retry_exceptions of an actor method, within max_task_retries
                return
            self.actors.task_done(record)
            self._store_returns(record, msg.returns, payload)
            return
        lease = record.lease
        if lease is not None:
            lease.in_flight.pop(msg.task_id, None)
            queue = lease.queue
            queue.task_seconds = 0.8 * queue.task_seconds + 0.2 * msg.duration
        record.lease = None
        if msg.retryable_error and record.retries_left != 0 and not record.cancelled:
            if record.spec.task_events:
                self.core.task_events.state(record.spec, tem.FAILED)
            record.retries_left -= 1
            record.spec.attempt += 1
            self._discard_returns(msg.task_id, msg.returns)
            self._enqueue(record)
        else:
            self._store_returns(record, msg.returns, payload)
        if lease is not None:
            self._pump(lease.queue)

    def _store_returns(self, record: TaskRecord, returns: list[messages.ReturnValue], payload: list) -> None:
        if record.spec.task_events:  # the owner reports the end (a worker's own report dies with it)
            self.core.task_events.ended(record.spec, returns, payload)
        record.done = True
        self.tasks.pop(record.spec.task_id, None)
        # A value in some node's shared memory can be lost with its node; a retryable task keeps its
        # arguments pinned (its lineage) so that it can run again and re-create the value.
        keep_lineage = record.retries_left != 0 and not record.spec.actor_id and any(r.kind == "shm" for r in returns)
        pos = 0
        set_value = self.objects.set_value
        for oid, ret in zip(record.return_ids, returns):
            frames = payload[pos : pos + ret.nframes]
            pos += ret.nframes
            contained = [refs.ObjectRef(cid, owner, _register=False) for cid, owner in ret.contained]
            for cref, (cid, owner) in zip(contained, ret.contained):
                self.objects.add_local_ref(cid, owner, precounted=True)
                cref._core = self.core
            kind = object_table.SHM if ret.kind == "shm" else ret.kind
            if not set_value(oid, kind, frames, ret.node_id, ret.size, contained) and kind == object_table.SHM:
                self.core.delete_shm(ret.node_id, oid.hex())
            elif keep_lineage and kind == object_table.SHM:
                entry = self.objects.get(oid)
                if entry is not None:
                    entry.lineage = record
        if not keep_lineage:
            record.pins = []

    def _discard_returns(self, task_id: bytes, returns: list[messages.ReturnValue]) -> None:
        # Results nobody will read (a stale or retried attempt): free their shared memory.
        for index, ret in enumerate(returns):
            if ret.kind == "shm":
                self.core.delete_shm(ret.node_id, ids.return_object_id(task_id, index + 1).hex())

    def _finish_with_error(self, record: TaskRecord, error: BaseException) -> None:
        if record.spec.task_events:
            self.core.task_events.failed(record.spec, error)
        frames, _ = serialization.serialize(error)
        self._finish_with_frames(record, frames)

    def _finish_with_frames(self, record: TaskRecord, frames: list[Any]) -> None:
        record.done = True
        self.tasks.pop(record.spec.task_id, None)
        for oid in record.return_ids:
            self.objects.set_value(oid, object_table.ERROR, list(frames))
        record.pins = []
        if record.spec.actor_id:
            self.actors.task_done(record)
            self.actors.pump(record.spec.actor_id)

    def _on_worker_died(self, msg: messages.WorkerDied, payload: list, peer: Any) -> None:
        lease = self.leases.get(msg.worker_id)
        if lease is None or lease.lease_id != msg.lease_id:
            return
        del self.leases[msg.worker_id]
        queue = lease.queue
        if lease in queue.leases:
            queue.leases.remove(lease)
        if msg.oom:  # the raylet's memory monitor killed it
            oom_retry.worker_killed(self, lease, msg)
            return
        for record in list(lease.in_flight.values()):
            record.lease = None
            if record.spec.task_events:
                self.core.task_events.worker_died(record.spec, msg.reason)
            if record.cancelled:
                self._finish_with_error(record, exceptions.TaskCancelledError(record.spec.task_id.hex()))
            elif record.retries_left != 0:
                record.retries_left -= 1
                record.spec.attempt += 1
                fetch.refresh_stale_args(self.core, record.spec)  # its arguments may have died with a node
                queue.pending.appendleft(record)
            else:
                self._finish_with_error(
                    record,
                    exceptions.WorkerCrashedError(
                        f"The worker running task {record.spec.name} (pid={lease.pid}) died "
                        f"unexpectedly: {msg.reason}. The task was not retried "
                        f"(max_retries={record.spec.max_retries}, attempts made: {record.spec.attempt + 1})."
                    ),
                )
        lease.in_flight.clear()
        self._pump(queue)

    def _on_node_died(self, msg: messages.NodeDied, payload: list, peer: Any) -> None:
        """A node died: fail over its leases, re-request leases it held, re-create or lose its objects."""
        node = self.core.nodes.get(msg.node_id)
        if node is not None:
            node.alive = False
        if msg.node_id == self.core.node_id and self.core.is_driver:
            self.core.node_watch.node_lost(f"the GCS declared it dead ({msg.reason})")
            return
        for lease in list(self.leases.values()):
            if lease.node_id == msg.node_id:
                self._on_worker_died(messages.WorkerDied(lease.worker_id, lease.lease_id, f"its node died: {msg.reason}"), [], peer)
        dead_raylet = node.raylet_address if node is not None else None
        for queue in self.queues.values():
            for req_id, target in list(queue.requests.items()):
                if target == dead_raylet:
                    self.loop.forget(req_id)
                    del queue.requests[req_id]
                    self._pump(queue)
        for oid, entry in self.objects.on_node(msg.node_id):
            record = entry.lineage
            if record is not None and record.retries_left != 0 and not record.cancelled:
                self._reconstruct(record)
            else:
                self.objects.reset(oid)
                error = exceptions.ObjectLostError(
                    oid.hex(), f"its only copy was on node {msg.node_id.hex()}, which died ({msg.reason}), "
                    "and the task that made it cannot be retried")
                self.objects.set_value(oid, object_table.ERROR, serialization.serialize(error)[0])

    def _reconstruct(self, record: TaskRecord) -> None:
        if not record.done:
            return  # already being re-created
        record.done = False
        record.retries_left -= 1
        record.spec.attempt += 1
        fetch.refresh_stale_args(self.core, record.spec)
        for oid in record.return_ids:
            self.objects.reset(oid)
        self.tasks[record.spec.task_id] = record
        self._enqueue(record)

    def _on_return_tasks(self, msg: messages.ReturnTasks, payload: list, peer: Any) -> None:
        touched = set()
        for task_id in reversed(msg.task_ids):
            record = self.tasks.get(task_id)
            if record is None or record.lease is None:
                continue
            record.lease.in_flight.pop(task_id, None)
            touched.add(record.lease.queue.key)
            record.lease = None
            self.queues[record.key].pending.appendleft(record)
        for key in touched:
            self._pump(self.queues[key])

    # ------------------------------------------------------------ cancellation

    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> None:
        record = self.tasks.get(task_id)
        if record is None or record.done:
            return
        record.cancelled = True
        record.force = record.force or force
        if record.spec.actor_id:
            self.actors.cancel(record, force, recursive)
            return
        if record.lease is not None:
            self.loop.connect(record.lease.address).send(messages.CancelTask(task_id, force, recursive))
            return
        queue = self.queues.get(record.key)
        if queue is not None and record in queue.pending:
            queue.pending.remove(record)
            self._finish_with_error(record, exceptions.TaskCancelledError(task_id.hex()))
            queue.sync_demand(self.loop)
        # else it is still waiting for its arguments: _resolve finishes it as cancelled


    def cancel_children(self, parent_task_id: bytes, force: bool) -> None:
        for record in list(self.tasks.values()):
            if record.spec.parent_task_id == parent_task_id:
                self.cancel(record.spec.task_id, force, True)

    def shutdown(self) -> None:
        for lease in list(self.leases.values()):
            self._return_lease(lease, kill=False)
