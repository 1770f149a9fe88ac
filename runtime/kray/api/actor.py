"""Actors: `@kray.remote` classes (ActorClass), their handles and methods, `kray.method`,
`kray.get_actor`, `kray.kill`.

Thin: builds the actor's creation task and options, registers it with the GCS, and hands method
calls to the core's submitter, which sends them straight to the actor's worker in order.
"""

from __future__ import annotations

import inspect
import os
import pickle
from collections.abc import Callable
from typing import Any

from kray import config, exceptions, serialization
from kray.api import options as options_mod
from kray.api import runtime, runtime_envs
from kray.core import generators, reference_table, refs, task_args
from kray.protocol import messages
from kray.runtime_env import validation as runtime_env_validation
from kray.scheduling import resources as res
from kray.util import scheduling_strategies
from kray.worker import actor_runtime

ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "memory", "resources", "name", "namespace", "lifetime", "max_restarts",
    "max_task_retries", "max_concurrency", "concurrency_groups", "get_if_exists", "scheduling_strategy",
    "runtime_env", "max_pending_calls", "accelerator_type", "placement_group", "placement_group_bundle_index",
    "placement_group_capture_child_tasks", "_metadata", "label_selector", "enable_task_events",
    "object_store_memory",
}
_METHOD_OPTIONS_ATTR = "__kray_method_options__"


METHOD_OPTIONS = {"num_returns", "concurrency_group", "max_task_retries", "retry_exceptions", "enable_task_events",
                  "tensor_transport", "_generator_backpressure_num_objects"}
_BACKPRESSURE = "_generator_backpressure_num_objects"


def method(*args: Any, **options: Any) -> Any:
    """Set options of an actor method, as in Ray: `@kray.method(num_returns=2, concurrency_group="io",
    max_task_retries=3, retry_exceptions=[IOError])` (the method's own values win over the actor's)."""
    unknown = set(options) - METHOD_OPTIONS
    if unknown or args:
        raise ValueError(
            f"@kray.method takes the keyword options {', '.join(sorted(METHOD_OPTIONS))}; got {sorted(unknown) or args}."
        )
    options = _validate_method_options(options)

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, _METHOD_OPTIONS_ATTR, options)
        return function

    return decorate


def _validate_method_options(options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    generators.encode(options.get("num_returns"), options.get(_BACKPRESSURE), True)  # raises for bad values
    retries = options.get("max_task_retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < -1):
        raise ValueError(f"max_task_retries must be an integer >= -1 (-1 retries forever), got {retries!r}.")
    if "retry_exceptions" in options and not isinstance(options["retry_exceptions"], bytes):
        checked = options_mod.validate_task_options({"retry_exceptions": options["retry_exceptions"]})
        options["retry_exceptions"] = options_mod.retry_exceptions_wire(checked["retry_exceptions"])
    transport = options.get("tensor_transport")
    if transport is not None and str(transport).lower() != "object_store":
        raise ValueError(f"tensor_transport={transport!r} is not supported by kray: only 'object_store' is.")
    return options


def _method_table(cls: type) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name, member in inspect.getmembers(cls, predicate=inspect.isfunction):
        opts = dict(getattr(member, _METHOD_OPTIONS_ATTR, {}))
        # As in Ray 2.x, a generator method streams by default; the table holds the wire form (generators.encode).
        is_generator = inspect.isgeneratorfunction(member) or inspect.isasyncgenfunction(member)
        opts["num_returns"] = generators.encode(opts.get("num_returns"), opts.pop(_BACKPRESSURE, None), is_generator)
        table[name] = opts
    return table


# Ray's built-in method of every actor: `kray.get(actor.__ray_ready__.remote())` returns True once the actor
# is created (its constructor has run), raising its creation error otherwise.
READY_METHOD = "__ray_ready__"


class ActorClass:
    """A class turned into an actor class by `@kray.remote`: create actors with `.remote(...)`."""

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = _validate(dict(options))
        self._class_id = os.urandom(16)
        self._blob: bytes | None = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use "
            f"'{self.__name__}.remote()'."
        )

    def options(self, **options: Any) -> ActorClass:
        clone = object.__new__(ActorClass)
        clone.__dict__.update(self.__dict__)
        merged = dict(self._options)
        merged.update(options)
        clone._options = _validate(merged)
        return clone

    def get_or_create(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """The live actor of this name (its arguments ignored), or a new one: `.options(name=...).get_or_create(...)`."""
        if not self._options.get("name"):
            raise ValueError("get_or_create() needs the actor's name: use ActorClass.options(name=...).get_or_create(...).")
        return self.options(get_if_exists=True).remote(*args, **kwargs)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy creation of this actor for the DAG API (kray.dag); bind its methods on the node."""
        from kray.dag import class_node

        return class_node.ClassNode(self, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        core = runtime.current_core()
        opts = self._options
        if core.captured_group:
            opts = options_mod.with_captured_group(opts, core.captured_group)
        if self._blob is None:
            self._blob = serialization.dumps_function(self._cls, self.__name__)
        methods = _method_table(self._cls)
        is_async = actor_runtime.is_async_class(self._cls)
        lifetime = opts.get("lifetime")
        namespace = opts.get("namespace") or core.namespace
        actor_options = messages.ActorOptions(
            class_name=self.__name__, name=opts.get("name") or "", namespace=namespace,
            detached=lifetime == "detached", max_restarts=opts.get("max_restarts", 0),
            max_task_retries=opts.get("max_task_retries", 0),
            max_concurrency=opts.get("max_concurrency") or (1000 if is_async else 1), is_async=is_async,
            concurrency_groups=dict(opts.get("concurrency_groups") or {}), methods=methods,
            get_if_exists=bool(opts.get("get_if_exists")), owner_node_id=core.node_id,
            max_pending_calls=opts.get("max_pending_calls", -1),
            enable_task_events=opts.get("enable_task_events") is not False,
        )
        request = res.task_request(opts.get("num_cpus"), opts.get("num_gpus"), opts.get("memory"),
                                   opts.get("resources"), default_cpus=0.0)
        request, actor_options.strategy = scheduling_strategies.apply(opts, options_mod.add_accelerator_request(opts, request))
        frames, contained, top = task_args.pack(args, kwargs, f"{self.__name__}.__init__")
        actor_id = os.urandom(16)
        spec = messages.TaskSpec(
            core.task_ids.next(), core.job_id, f"{self.__name__}.__init__", self._class_id, b"",
            [messages.ArgValue("ref", r.binary(), r.owner_address()) for r in top], 1, request,
            core.gcs_address, 0, False, 0, self._blob, None, core.current_task_id,
            actor_id=actor_id, actor_options=actor_options,
            runtime_env=runtime_envs.resolve(core, opts.get("runtime_env")),
            capture_child_tasks=options_mod.captures_child_tasks(opts),
            task_events=actor_options.enable_task_events and core.task_events.enabled,
        )
        pins: list[Any] = [*top, *contained]
        spec.args, spec.args_object = _creation_arguments(core, frames, pins)
        core.node_watch.check()  # the driver's node is gone: no actor can be created through it
        try:
            info = core.call(core.gcs_address, lambda rid: messages.RegisterActor(rid, spec))
        except exceptions.RaySystemError as e:
            raise ValueError(str(e).split("failed: ", 1)[-1]) from None
        handle = ActorHandle(info.actor_id, info.options)
        if info.actor_id == actor_id:
            core.loop.call_soon_threadsafe(_keep_until_created, core, actor_id, pins)
            if not actor_options.detached:
                handle._core = core  # the original handle: the actor ends when it is dropped
        return handle


def _creation_arguments(core: Any, frames: list[Any], pins: list[Any]) -> tuple[bytes, messages.ArgValue | None]:
    """Where the constructor's packed arguments travel: in the spec itself when small (out-of-band buffers
    included), else in this node's shared memory (pinned by `pins` while the actor may be (re)created)."""
    size = sum(len(f) if isinstance(f, bytes) else memoryview(f).nbytes for f in frames)
    if len(frames) == 1 and size <= config.INLINE_THRESHOLD:
        return frames[0], None
    if size <= config.INLINE_THRESHOLD:
        blob = pickle.dumps([bytes(f) for f in frames], protocol=5)
        return b"", messages.ArgValue("inline", b"", core.address, b"", blob)
    args_ref = core.put_frames(frames, [])
    pins.append(args_ref)
    return b"", messages.ArgValue("shm", args_ref.binary(), core.address, core.node_id)


def _keep_until_created(core: Any, actor_id: bytes, pins: list[Any]) -> None:
    core.submitter.actors.queue_for(actor_id).pins = pins


def _validate(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - ACTOR_OPTIONS
    if unknown:
        raise ValueError(f"Invalid option keyword(s) {', '.join(sorted(unknown))} for actors.")
    lifetime = options.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError("lifetime must be None, 'detached' or 'non_detached'.")
    if lifetime == "detached" and not options.get("name"):
        raise ValueError("A detached actor must have a name (pass name=...).")
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError("The actor name must be specified to use `get_if_exists` (pass name=...).")
    for key in ("max_restarts", "max_task_retries"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or value < -1):
            raise ValueError(f"{key} must be an integer >= -1 (-1 means forever), got {value!r}.")
    pending = options.get("max_pending_calls")
    if pending is not None and (not isinstance(pending, int) or isinstance(pending, bool) or pending < -1 or pending == 0):
        raise ValueError(f"max_pending_calls must be a positive integer or -1 (no limit), got {pending!r}.")
    concurrency = options.get("max_concurrency")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"max_concurrency must be a positive integer, got {concurrency!r}.")
    if options.get("runtime_env") is not None:
        options["runtime_env"] = runtime_env_validation.validate(options["runtime_env"])
    options_mod.check_kray_support(options)
    return options


class ActorMethod:
    """`handle.method`: call it with `.remote(...)`."""

    def __init__(self, handle: ActorHandle, name: str, options: dict[str, Any]) -> None:
        self._handle = handle
        self._name = name
        self._options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', try "
            f"'object.{self._name}.remote()'."
        )

    def options(self, **options: Any) -> ActorMethod:
        unknown = set(options) - METHOD_OPTIONS - {"name"}
        if unknown:
            raise ValueError(f"Invalid option keyword(s) {', '.join(sorted(unknown))} for actor methods.")
        merged = dict(self._options)
        merged.update(_validate_method_options(options))
        if "num_returns" in options or _BACKPRESSURE in options:
            wanted = options.get("num_returns", generators.decode(self._options.get("num_returns", 1)))
            merged["num_returns"] = generators.encode(wanted, merged.pop(_BACKPRESSURE, None), False)
        return ActorMethod(self._handle, self._name, merged)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy call of this method for the DAG API (kray.dag); run it with `.execute()`."""
        from kray.dag import class_node

        return class_node.ClassMethodNode(self, self._name, args, kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._handle
        core = runtime.current_core()
        opts = self._options
        num_returns = opts.get("num_returns", 1)
        retries = opts.get("max_task_retries")
        if retries is None:
            retries = handle._max_task_retries
        admitted = core.submitter.actors.admit(handle._actor_id, handle._options.max_pending_calls)
        try:
            out = core.submitter.submit(
                b"", b"", opts.get("name") or f"{handle._class_name}.{self._name}", args, kwargs, num_returns, {},
                retries, opts.get("retry_exceptions", False), actor_id=handle._actor_id, method=self._name,
                concurrency_group=opts.get("concurrency_group", ""),
                task_events=opts.get("enable_task_events", handle._options.enable_task_events) is not False,
            )
        except BaseException:
            if admitted:
                core.submitter.actors.unadmit(handle._actor_id)
            raise
        if core.call_sites is not None:  # RAY_record_ref_creation_sites=1: `kray memory` shows where
            reference_table.record(core, out, "actor call")
        if num_returns == 1:
            return out[0]
        if num_returns == 0:
            return None
        if num_returns < 0:
            return generators.returned(core, out[0], num_returns)
        return out


class ActorHandle:
    """A handle to an actor: call methods with `handle.method.remote(...)`; pass it to tasks freely."""

    def __init__(self, actor_id: bytes, options: messages.ActorOptions) -> None:
        self._actor_id = actor_id
        self._class_name = options.class_name
        self._methods = options.methods
        self._max_task_retries = options.max_task_retries
        self._options = options
        self._core: Any = None  # set on the creator's original handle

    def __del__(self) -> None:
        # As in Ray, an actor that nobody can call any more exits: its creator dropped the original
        # handle and no copy of it ever left this process (copies elsewhere keep it alive).
        core = self.__dict__.get("_core")
        if core is None or core is not refs.get_core():
            return
        if self._actor_id in core.escaped_actors:
            # Only this (the original) handle reads the mark, so it goes with it: the set holds the actors
            # of live original handles, not of every actor whose handle ever escaped.
            core.escaped_actors.discard(self._actor_id)
            return
        try:
            core.loop.call_soon_threadsafe(core.submitter.actors.release, self._actor_id)
        except Exception:  # noqa: BLE001, S110 - __del__ at interpreter exit: the loop may be gone
            pass

    def __getattr__(self, name: str) -> ActorMethod:
        methods = self.__dict__.get("_methods", {})
        if name == READY_METHOD and name not in methods:
            return ActorMethod(self, name, {})
        if name not in methods:
            raise AttributeError(f"'{self.__dict__.get('_class_name', 'Actor')}' actor has no method {name!r}")
        return ActorMethod(self, name, methods[name])

    def __reduce__(self) -> tuple[Any, ...]:
        core = self.__dict__.get("_core")
        if core is not None and not serialization.record_contained_ref(_Lent(core, self._actor_id)):
            # Pickled out of band: nobody can tell when that copy is dropped, so the actor stays.
            core.escaped_actors.add(self._actor_id)
        return (ActorHandle, (self._actor_id, self._options))

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)


class _Lent:
    """A copy of the creator's handle inside a task's arguments or a stored object: it keeps the
    actor alive until that task finishes (or that object is freed)."""

    __slots__ = ("actor_id", "core")

    def __init__(self, core: Any, actor_id: bytes) -> None:
        self.core = core
        self.actor_id = actor_id
        core.loop.call_soon_threadsafe(core.submitter.actors.lend, actor_id, 1)

    def __del__(self) -> None:
        try:
            self.core.loop.call_soon_threadsafe(self.core.submitter.actors.lend, self.actor_id, -1)
        except Exception:  # noqa: BLE001, S110 - __del__ at interpreter exit: the loop may be gone
            pass


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """A handle to the live actor named `name` in `namespace` (default: this job's namespace)."""
    if not isinstance(name, str) or not name:
        raise ValueError("get_actor() needs the actor's name as a non-empty string.")
    core = runtime.current_core()
    ns = namespace if namespace is not None else core.namespace
    info = core.call(core.gcs_address, lambda rid: messages.GetActor(rid, b"", name, ns))
    if info is None:
        raise ValueError(f"Failed to look up actor with name '{name}' in namespace '{ns}'. It may not exist or be dead.")
    return ActorHandle(info.actor_id, info.options)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Kill an actor at once (running calls fail with ActorDiedError); restart it if no_restart=False."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kray.kill() only supports actor handles, got {type(actor).__name__}; use kray.cancel() for tasks.")  # noqa: TRY004 - Ray raises ValueError
    core = runtime.current_core()
    core.call(core.gcs_address, lambda rid: messages.KillActor(rid, actor._actor_id, no_restart))


def list_actor_records() -> list[dict[str, Any]]:
    """Every actor the GCS knows, as plain dicts (used by kray.util.state)."""
    from kray import ids

    core = runtime.current_core()
    infos = core.call(core.gcs_address, lambda rid: messages.ListActors(rid))
    return [
        {
            "actor_id": i.actor_id.hex(), "class_name": i.options.class_name, "state": i.state,
            "name": i.options.name, "namespace": i.options.namespace, "pid": i.pid,
            "node_id": i.node_id.hex(), "job_id": ids.job_id_hex(i.job_id), "num_restarts": i.num_restarts,
            "death_cause": i.death_cause or None, "is_detached": i.options.detached,
        }
        for i in infos
    ]
