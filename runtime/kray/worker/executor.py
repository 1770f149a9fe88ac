"""Runs tasks on the worker's main thread: loads functions, resolves arguments, packs returns,
reports results to the task's owner, and handles cancellation and blocking in `get`.

The I/O thread only enqueues tasks and cancellation requests; everything user-visible happens on
the main thread. Writes object files for large returns and marker lines to stdout/stderr.
"""

from __future__ import annotations

import inspect
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any

import cloudpickle

from kray import config, exceptions, ids, serialization
from kray.core import refs, task_args
from kray.protocol import messages
from kray.protocol import task_event_messages as tem
from kray.util import metrics as node_metrics
from kray.worker import actor_runtime, creation_args, generator_exec, system_exit

CANCELLED_KEPT = 10_000  # cancellations remembered for tasks not seen yet


class Executor:
    def __init__(self, core: Any) -> None:
        self.core = core
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.functions: dict[bytes, Any] = {}
        self.unloaded_functions: dict[bytes, bytes] = {}  # sent with a task that could not be decoded
        self.running: messages.TaskSpec | None = None
        # Cancelled before they started (they never run), oldest first; bounded, since a cancel can
        # arrive just after its task finished.
        self.cancelled: dict[bytes, None] = {}
        self.cancel_requested: set[bytes] = set()  # running actor calls that kray.cancel reached
        self._local = threading.local()  # the call running on each thread (threaded actors)
        self.interrupt_task: bytes | None = None
        self._marker: tuple[int, str] | None = None
        self._blocked = 0
        self._started = time.perf_counter()
        self._original_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.actor: actor_runtime.ActorRuntime | None = None
        self.actor_class = ""
        self.actor_options: messages.ActorOptions | None = None  # set once this worker hosts an actor
        self.actor_attempt = 0  # how many times the hosted actor was restarted before this creation
        self.generators = generator_exec.GeneratorRunner(self)  # tasks with num_returns < 0
        core.executor = self
        core.loop.on(messages.PushTasks, self._on_push)
        core.loop.on(messages.CancelTask, self._on_cancel)
        core.loop.on_undecodable(messages.PushTasks, self._on_undecodable_push)
        signal.signal(signal.SIGINT, self._on_sigint)

    # ------------------------------------------------------------ I/O thread

    def _on_push(self, msg: messages.PushTasks, payload: list, peer: Any) -> None:
        for spec in msg.specs:
            self.queue.put(spec)

    def _on_undecodable_push(self, msg: messages.PushTasks, text: str, peer: Any) -> None:
        # A task is answered or failed, never dropped: each one the message carried fails at its caller.
        for spec in msg.specs:
            if spec.function_blob is not None:  # its caller counts it as sent to this worker
                self.unloaded_functions[spec.function_id] = spec.function_blob
            error = exceptions.RaySystemError(
                f"The worker (pid={os.getpid()}) could not decode task {spec.name}: {text}. Values in a task's "
                "options must be importable by workers or pickled by value (cloudpickle)."
            )
            self._finish(spec, *self._error_returns(spec, error), False)

    def _on_cancel(self, msg: messages.CancelTask, payload: list, peer: Any) -> None:
        running = self.running
        if msg.recursive:
            self.core.submitter.cancel_children(msg.task_id, msg.force)
        if running is not None and running.task_id == msg.task_id:
            if running.actor_id:
                # As in Ray, a running actor call is not interrupted (the actor has state): it sees
                # get_runtime_context().is_canceled() and its caller gets TaskCancelledError.
                self.cancel_requested.add(msg.task_id)
                return
            if msg.force:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)  # the owner sees the worker die and reports TaskCancelledError
            self.interrupt_task = msg.task_id
            os.kill(os.getpid(), signal.SIGINT)
        elif self.actor is None or not self.actor.cancel(msg.task_id):
            self.cancelled[msg.task_id] = None
            if len(self.cancelled) > CANCELLED_KEPT:
                try:
                    self.cancelled.pop(next(iter(self.cancelled)), None)
                except (RuntimeError, StopIteration):  # the main thread changed it meanwhile: next time
                    pass

    def _on_sigint(self, signum: int, frame: Any) -> None:
        running = self.running
        if running is not None and self.interrupt_task == running.task_id:
            self.interrupt_task = None
            raise KeyboardInterrupt

    # ------------------------------------------------------------ main thread

    def run_forever(self) -> None:
        while True:
            spec = self.queue.get()
            if spec is None:
                return
            self.execute(spec)

    def execute(self, spec: messages.TaskSpec) -> None:
        if self._cancelled_before_start(spec):
            return
        if spec.actor_options is not None:
            self._create_actor(spec)
        elif spec.actor_id and self.actor is not None and self.actor.concurrent:
            self.actor.dispatch(spec)
        else:
            self.run_task(spec)

    def _cancelled_before_start(self, spec: messages.TaskSpec) -> bool:
        """A call cancelled while it waited (in this worker's queue or an actor's pool) never runs."""
        if not self.cancelled or spec.task_id not in self.cancelled:
            return False
        self.cancelled.pop(spec.task_id, None)
        self.report_cancelled(spec)
        return True

    def report_cancelled(self, spec: messages.TaskSpec) -> None:
        if spec.task_events:
            self.core.task_events.failed(spec, exceptions.TaskCancelledError(spec.task_id.hex()))
        self._finish(spec, *self._error_returns(spec, exceptions.TaskCancelledError(spec.task_id.hex())), False)

    def is_canceled(self) -> bool:
        """Whether kray.cancel was called on the actor call running on this thread."""
        task_id = getattr(self._local, "task_id", None)
        return task_id is not None and task_id in self.cancel_requested

    def _create_actor(self, spec: messages.TaskSpec) -> None:
        options = spec.actor_options
        assert options is not None
        self.core.actor_id = spec.actor_id
        self.actor_class = options.class_name
        self.actor_options = options
        self.actor_attempt = spec.attempt
        if spec.task_events:
            self.core.task_events.running(spec)
        try:
            cls = self._function(spec)
            self._enter(spec)
            args, kwargs = self._arguments(spec)
            self.actor = actor_runtime.construct(self, cls, args, kwargs, options)
            if creation_args.needed(spec):  # a detached actor's arguments must outlive its creator
                creation_args.hold(self.core, spec)
        except BaseException as e:  # noqa: BLE001 - user code: any error goes back to the caller
            self.complete_error(spec, e)
            return
        self.complete_ok(spec, None)

    def _enter(self, spec: messages.TaskSpec) -> None:
        core = self.core
        core.current_task_id = spec.task_id
        core.current_task_name = spec.name
        core.job_id = spec.job_id
        if not spec.actor_id or spec.actor_options is not None:
            core.assigned_resources = spec.resources
            core.captured_group = _group_of(spec.resources) if spec.capture_child_tasks else ""
            core.gpu_ids = spec.gpu_ids
            self._set_visible_gpus(spec)
        self._mark(spec)
        node_metrics.task_started(spec.name)  # ray_tasks on the node's metrics endpoint

    def run_task(self, spec: messages.TaskSpec) -> None:
        """Run one task or actor call to completion on the calling thread and report its result."""
        self._started = time.perf_counter()
        self._enter(spec)
        if spec.task_events:
            self.core.task_events.running(spec)
        main = threading.current_thread() is threading.main_thread()
        if not main and self._cancelled_before_start(spec):
            return  # a threaded actor's call, cancelled while it waited for a thread
        if spec.actor_id:
            self._local.task_id = spec.task_id  # for is_canceled() on this thread
        if main:
            self.running = spec
        try:
            try:
                function = self.actor.method(spec.method) if spec.actor_id and self.actor else self._function(spec)
                args, kwargs = self._arguments(spec)
                result = function(*args, **kwargs)
                if spec.num_returns < 0:  # a generator task: its items are reported as they come
                    result = self.generators.drive(spec, result)
            finally:
                if main:
                    self.running = None
        except BaseException as e:  # noqa: BLE001 - user code: any error goes back to the caller
            self.complete_error(spec, e)
            return
        self.complete_ok(spec, result)

    def prepare_or_fail(self, spec: messages.TaskSpec) -> tuple[Any, list, dict] | None:
        """Resolve an actor call's method and arguments; on failure report it and return None."""
        self._enter(spec)
        if spec.task_events:
            self.core.task_events.running(spec)
        try:
            if self.actor is None:
                raise RuntimeError(f"actor call {spec.method!r} reached a worker that holds no actor")
            function = self.actor.method(spec.method)
            args, kwargs = self._arguments(spec)
        except BaseException as e:  # noqa: BLE001 - user code: any error goes back to the caller
            self.complete_error(spec, e)
            return None
        return function, args, kwargs

    def complete_ok(self, spec: messages.TaskSpec, result: Any) -> None:
        if self.cancel_requested and spec.task_id in self.cancel_requested:
            self.cancel_requested.discard(spec.task_id)
            self.report_cancelled(spec)
            return
        try:
            returns, payload = self._pack_returns(spec, result)
        except BaseException as e:  # noqa: BLE001 - user code: any error goes back to the caller
            self.complete_error(spec, e)
            return
        if spec.task_events and spec.actor_options is not None:
            self.core.task_events.state(spec, tem.FINISHED)  # a creation task's owner is the GCS: report it here
        self._finish(spec, returns, payload, False)

    def complete_error(self, spec: messages.TaskSpec, e: BaseException) -> None:
        if isinstance(e, SystemExit):  # sys.exit() in user code ends the worker, as in Ray
            system_exit.exit_worker(self.core, e)
        cancel_requested = bool(self.cancel_requested) and spec.task_id in self.cancel_requested
        if cancel_requested:
            self.cancel_requested.discard(spec.task_id)
        if cancel_requested or actor_runtime.is_cancellation(e):
            error: BaseException = exceptions.TaskCancelledError(spec.task_id.hex())
            retryable = False
        elif isinstance(e, exceptions.RayTaskError):
            # A dependency failed or a nested get raised: propagate it unchanged, as Ray does.
            error, retryable = e, self._retryable(spec, e)
        else:
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            error = exceptions.RayTaskError(spec.name, tb, e, os.getpid(), self.core.node.ip)
            retryable = self._retryable(spec, e)
        if spec.task_events:
            self.core.task_events.failed(spec, error)
        self._finish(spec, *self._error_returns(spec, error), retryable)

    def _set_visible_gpus(self, spec: messages.TaskSpec) -> None:
        # As Ray does, a task that holds GPUs sees exactly those in CUDA_VISIBLE_DEVICES.
        if spec.gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.gpu_ids)
        elif self._original_cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self._original_cuda

    def _finish(self, spec: messages.TaskSpec, returns: list, payload: list, retryable: bool) -> None:
        node_metrics.task_finished(spec.name, any(r.kind == "error" for r in returns))
        done = messages.TaskDone(spec.task_id, self.core.worker_id, returns, retryable,
                                 time.perf_counter() - self._started)
        self.core.loop.call_soon_threadsafe(self._send_done, spec.owner, done, payload)

    def _send_done(self, owner: str, done: messages.TaskDone, payload: list) -> None:
        self.core.flush()  # borrower registrations travel before the result on the same connection
        self.core.loop.connect(owner).send(done, payload)

    def _mark(self, spec: messages.TaskSpec) -> None:
        marker = (spec.job_id, self.actor_class or spec.name)
        if marker != self._marker:
            self._marker = marker
            line = f"\x1ekray:{spec.job_id}:{marker[1]}\n"
            sys.stdout.write(line)
            sys.stdout.flush()
            sys.stderr.write(line)
            sys.stderr.flush()

    def _function(self, spec: messages.TaskSpec) -> Any:
        function = self.functions.get(spec.function_id)
        if function is None:
            blob = spec.function_blob or self.unloaded_functions.pop(spec.function_id, None)
            if blob is None:
                raise exceptions.RaySystemError(f"function {spec.name} was never sent to this worker")
            function = self.functions[spec.function_id] = cloudpickle.loads(blob)
        return function

    def _arguments(self, spec: messages.TaskSpec) -> tuple[list, dict]:
        if spec.args_object is not None:
            frames = self._arg_frames(spec.args_object)
        else:
            frames = [spec.args]
        values = spec.arg_values
        return task_args.unpack(frames, lambda i: self._arg(values[i]))

    def _arg_frames(self, value: messages.ArgValue) -> list[Any]:
        if value.kind == "inline":
            return pickle.loads(value.data)
        if value.kind == "shm":
            return self.core.map_shm(value.node_id, value.object_id.hex(), value.owner)
        raise exceptions.RaySystemError(f"unexpected argument kind {value.kind}")

    def _arg(self, value: messages.ArgValue) -> Any:
        if value.kind == "ref":
            return self.core.get_objects([refs.ObjectRef(value.object_id, value.owner)], None)[0]
        return serialization.deserialize(self._arg_frames(value))

    def _pack_returns(self, spec: messages.TaskSpec, result: Any) -> tuple[list, list]:
        n = spec.num_returns
        if spec.actor_options is not None:
            values = [None]  # an actor's creation task returns nothing
        elif n == 1:
            values = [result]
        elif n == 0:
            values = []
        elif n < 0:
            values = [result]  # a generator task's completion (its items went as GeneratorItems)
        else:
            if inspect.isgenerator(result):  # a generator with an integer num_returns yields its returns
                return self.generators.static_returns(spec, result)
            if not isinstance(result, (tuple, list)) or len(result) != n:
                raise ValueError(
                    f"Task {spec.name} was declared with num_returns={n} but returned "
                    f"{type(result).__name__}{'' if not hasattr(result, '__len__') else f' of length {len(result)}'}; "
                    f"return a tuple or list of exactly {n} values."
                )
            values = list(result)
        returns, payload = [], []
        core = self.core
        for index, value in enumerate(values):
            frames, contained = serialization.serialize(value, f"return value of {spec.name}")
            contained = [r for r in contained if isinstance(r, refs.ObjectRef)]
            size = sum(len(f) if isinstance(f, bytes) else memoryview(f).nbytes for f in frames)
            if size > config.INLINE_THRESHOLD:
                hex_id = ids.return_object_id(spec.task_id, index + 1).hex()
                written = core.write_shm(hex_id, frames)
                ret = messages.ReturnValue("shm", 0, core.node_id, written)
            else:
                ret = messages.ReturnValue("inline", len(frames))
                payload.extend(frames)
            if contained:
                ret.contained = [(r.binary(), r.owner_address()) for r in contained]
                self._count_caller_as_borrower(contained, spec.owner)
            returns.append(ret)
        return returns, payload

    def _count_caller_as_borrower(self, contained: list[refs.ObjectRef], caller: str) -> None:
        core = self.core
        mine = [r.binary() for r in contained if r.owner_address() == core.address]
        if mine and caller != core.address:  # a caller that owns the refs never sends a BorrowsRemoved
            core.borrower_watch.add(mine, caller)  # the caller's death releases them
        with core.objects.lock:
            for r in contained:
                owner = r.owner_address()
                if owner not in (core.address, caller):
                    core.objects.borrow_adds.append((owner, r.binary(), caller))

    def _error_returns(self, spec: messages.TaskSpec, error: BaseException) -> tuple[list, list]:
        try:
            frames, _ = serialization.serialize(error)
        except serialization.SerializationError:
            if isinstance(error, exceptions.RayTaskError):
                error.cause = exceptions.RayError(repr(error.cause))
            frames, _ = serialization.serialize(error)
        returns = [messages.ReturnValue("error", len(frames)) for _ in range(max(1, spec.num_returns))]
        return returns, [f for _ in returns for f in frames]

    def _retryable(self, spec: messages.TaskSpec, error: BaseException) -> bool:
        policy = spec.retry_exceptions
        if policy is True:
            return True
        if isinstance(policy, bytes):
            policy = serialization.loads_by_value(policy)
        if isinstance(policy, (list, tuple)):
            cause = error.cause if isinstance(error, exceptions.RayTaskError) else error
            return isinstance(cause, tuple(policy))
        return False

    # ------------------------------------------------------------ blocking in get

    def block_begin(self) -> bool:
        """A task on the main thread waits in get/wait: lend its CPU back and hand queued tasks back."""
        if self.running is None or threading.current_thread() is not threading.main_thread():
            return False
        core = self.core
        self._blocked += 1
        if self._blocked == 1:
            core.send(core.raylet_address, messages.WorkerBlocked(core.worker_id, True))
            queued: dict[str, list[bytes]] = {}
            keep: list[None] = []
            while True:
                try:
                    spec = self.queue.get_nowait()
                except queue.Empty:
                    break
                if spec is None:
                    keep.append(spec)
                    continue
                queued.setdefault(spec.owner, []).append(spec.task_id)
            for spec in keep:
                self.queue.put(spec)
            for owner, task_ids in queued.items():
                core.send(owner, messages.ReturnTasks(task_ids))
        return True

    def block_end(self) -> None:
        self._blocked -= 1
        if self._blocked == 0:
            core = self.core
            core.send(core.raylet_address, messages.WorkerBlocked(core.worker_id, False))


def _group_of(resources: dict[str, float]) -> str:
    """The hex id of the placement group a task's resources draw from ("" for none)."""
    for name in resources:
        if name.startswith("bundle_group_"):
            return name.rsplit("_", 1)[1]
    return ""
