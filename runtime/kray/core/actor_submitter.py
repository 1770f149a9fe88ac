"""The caller side of actors: per-actor queues of method calls, sent in submission order straight
to the actor's worker, re-sent after a restart (max_task_retries) or failed with ActorDiedError.

Runs on the core worker's I/O thread, fed by the Submitter once a call's arguments are resolved.
Learns each actor's address and state from the GCS (SubscribeActor / ActorUpdate).
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from typing import Any

from kray import exceptions
from kray.core import bounded_tables, fetch
from kray.protocol import actor_exit_messages as exit_messages
from kray.protocol import messages

log = logging.getLogger(__name__)

ALIVE, DEAD, RESTARTING = "ALIVE", "DEAD", "RESTARTING"


class ActorQueue:
    __slots__ = ("actor_id", "in_flight", "info", "lent", "pins", "queue", "released", "subscribed", "warned")

    def __init__(self, actor_id: bytes) -> None:
        self.actor_id = actor_id
        self.info: messages.ActorInfo | None = None
        self.queue: collections.deque = collections.deque()  # TaskRecords in submission order
        self.in_flight: dict[bytes, Any] = {}
        self.subscribed = False
        self.pins: list[Any] = []  # creation arguments, kept while the actor may be (re)created
        self.released = False  # the creator dropped its handle: end the actor once its calls are done
        self.lent = 0  # copies of the handle inside pending tasks' arguments or stored objects
        self.warned = False  # the infeasibility warning was printed


class ActorSubmitter:
    def __init__(self, core: Any, submitter: Any) -> None:
        self.core = core
        self.submitter = submitter
        self.loop = core.loop
        self.actors: dict[bytes, ActorQueue] = {}
        self.dead_actors = bounded_tables.DeadActors()  # dead actors' queues are kept, up to a bound
        # Calls submitted and not finished, per actor with a max_pending_calls limit (counted on the
        # submitting thread, released on the I/O thread).
        self.pending_calls: dict[bytes, int] = {}
        self.pending_lock = threading.Lock()
        self.loop.on(messages.ActorUpdate, self._on_update)

    def admit(self, actor_id: bytes, limit: int) -> bool:
        """Count a new call against the actor's max_pending_calls (user thread); raises when it is reached."""
        if limit <= 0:
            return False
        with self.pending_lock:
            count = self.pending_calls.get(actor_id, 0)
            if count >= limit:
                raise exceptions.PendingCallsLimitExceeded(
                    f"The actor {actor_id.hex()} already has {count} pending call(s) from this process "
                    f"(max_pending_calls={limit}); wait for some of them (kray.get/kray.wait) before calling it again."
                )
            self.pending_calls[actor_id] = count + 1
        return True

    def unadmit(self, actor_id: bytes) -> None:
        with self.pending_lock:
            count = self.pending_calls.get(actor_id, 0) - 1
            if count > 0:
                self.pending_calls[actor_id] = count
            else:
                self.pending_calls.pop(actor_id, None)

    def queue_for(self, actor_id: bytes) -> ActorQueue:
        state = self.actors.get(actor_id)
        if state is None:
            state = self.actors[actor_id] = ActorQueue(actor_id)
        if not state.subscribed:
            state.subscribed = True
            self.loop.connect(self.core.gcs_address).send(messages.SubscribeActor(actor_id))
        return state

    def submitted(self, record: Any) -> None:
        """A call was submitted: it takes its place in the actor's order now, before its arguments resolve."""
        state = self.queue_for(record.spec.actor_id)
        if state.info is not None and state.info.state == DEAD:
            self._fail(record, state.info)
            return
        state.queue.append(record)

    def pump(self, actor_id: bytes) -> None:
        """Send the calls at the head of the queue whose arguments are ready, in order."""
        state = self.actors.get(actor_id)
        if state is None or state.info is None or state.info.state != ALIVE:
            return
        batch = []
        while state.queue:
            record = state.queue[0]
            if record.done:
                state.queue.popleft()
                continue
            if not record.resolved:
                break
            state.queue.popleft()
            state.in_flight[record.spec.task_id] = record
            if record.spec.arg_values:
                # An argument resolved to a copy on a node that died since (the call is retried after a
                # restart, or waited behind others) is passed by ref: the worker asks its owner where it
                # lives now, and waits while it is re-created, instead of asking the dead node.
                fetch.refresh_stale_args(self.core, record.spec)
            if record.spec.task_events:
                self.core.task_events.pushed(record.spec, state.info.node_id, state.info.worker_id, state.info.pid)
            batch.append(record.spec)
        if batch:
            self.loop.connect(state.info.address).send(messages.PushTasks(0, batch))

    def cancel(self, record: Any, force: bool, recursive: bool) -> None:
        state = self.actors.get(record.spec.actor_id)
        if state is not None and record.spec.task_id in state.in_flight and state.info is not None:
            # force never reaches an actor call (as in Ray, an actor's calls are not killed)
            self.loop.connect(state.info.address).send(messages.CancelTask(record.spec.task_id, False, recursive))
            return
        self.submitter._finish_with_error(record, exceptions.TaskCancelledError(record.spec.task_id.hex()))

    def task_done(self, record: Any) -> None:
        """A call finished (once per call: with its result, an error, or cancelled)."""
        if self.pending_calls and record.spec.actor_id in self.pending_calls:
            self.unadmit(record.spec.actor_id)
        state = self.actors.get(record.spec.actor_id)
        if state is not None:
            state.in_flight.pop(record.spec.task_id, None)
            self._end_if_released(state)

    def retry(self, record: Any) -> None:
        """Send a call that raised one of its retry_exceptions again, ahead of the calls queued behind it."""
        state = self.queue_for(record.spec.actor_id)
        state.in_flight.pop(record.spec.task_id, None)
        record.retries_left -= 1
        record.spec.attempt += 1
        state.queue.appendleft(record)
        self.pump(record.spec.actor_id)

    def release(self, actor_id: bytes) -> None:
        """The last handle in the creating process is gone (and none left it): end the actor."""
        state = self.queue_for(actor_id)
        state.released = True
        self._end_if_released(state)

    def lend(self, actor_id: bytes, delta: int) -> None:
        state = self.queue_for(actor_id)
        state.lent += delta
        self._end_if_released(state)

    def _end_if_released(self, state: ActorQueue) -> None:
        if state.released and not state.lent and not state.in_flight and not state.queue:
            state.released = False
            end = exit_messages.EndActor(0, state.actor_id, exit_messages.OUT_OF_SCOPE)
            self.loop.connect(self.core.gcs_address).send(end)

    def _on_update(self, msg: messages.ActorUpdate, payload: list, peer: Any) -> None:
        info = msg.info
        state = self.actors.get(info.actor_id)
        if state is None:
            return
        previous = state.info
        state.info = info
        if info.pending_reason and not state.warned and info.job_id == self.core.job_id:
            state.warned = True  # as for tasks, the creator's driver hears once that it cannot be placed
            print(f"Warning: {info.pending_reason}", file=sys.stderr, flush=True)
        if info.state == ALIVE:
            limit = info.options.max_restarts
            if limit != -1 and info.num_restarts >= limit:
                state.pins = []  # no restart left: the constructor's arguments are not needed again
            if previous is not None and previous.address and previous.address != info.address:
                self.loop.disconnect(previous.address)
            self.pump(info.actor_id)
        elif info.state == RESTARTING:
            self._requeue_or_fail(state, info)
        elif info.state == DEAD:
            state.pins = []
            for record in list(state.in_flight.values()) + list(state.queue):
                if not record.done:  # a call cancelled while queued here is finished already
                    self._fail(record, info)
            state.in_flight.clear()
            state.queue.clear()
            self.dead_actors.died(self, info.actor_id, previous.address if previous is not None else "")

    def _requeue_or_fail(self, state: ActorQueue, info: messages.ActorInfo) -> None:
        """Calls that were running when the actor died: retry them after the restart, or fail them."""
        retry = []
        for record in list(state.in_flight.values()):
            if record.cancelled:  # as in Ray, a cancelled call is never retried
                self.submitter._finish_with_error(record, exceptions.TaskCancelledError(record.spec.task_id.hex()))
            elif record.retries_left != 0:
                record.retries_left -= 1
                record.spec.attempt += 1
                retry.append(record)
            else:
                self._fail(record, info, restarting=True)
        state.in_flight.clear()
        retry.sort(key=lambda r: r.seq)
        state.queue.extendleft(reversed(retry))

    def _fail(self, record: Any, info: messages.ActorInfo, restarting: bool = False) -> None:
        if restarting:
            # As in Ray: the actor will come back, so the failed call reports it as unavailable.
            text = (f"The actor {info.options.class_name} is temporarily unavailable: it died while running "
                    f"{record.spec.name} and is restarting; the call is not retried "
                    f"(max_task_retries={info.options.max_task_retries}).")
            error: exceptions.RayError = exceptions.ActorUnavailableError(text)
        elif info.runtime_env_failed:
            error = exceptions.RuntimeEnvSetupError(info.death_cause)
        else:
            error = exceptions.ActorDiedError(info.death_cause or f"The actor {info.options.class_name} is dead.")
        self.submitter._finish_with_error(record, error)
