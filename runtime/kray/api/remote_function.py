"""`@kray.remote` functions: the RemoteFunction wrapper, `.options()` and `.remote()`.

Thin: validates options, pickles the function once, and hands calls to the core's submitter.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

from kray import serialization
from kray.api import options as options_mod
from kray.api import runtime, runtime_envs
from kray.core import generators, reference_table
from kray.scheduling import resources as res
from kray.util import scheduling_strategies


class RemoteFunction:
    """A function that runs as a task in the cluster: call `.remote(...)` to run it."""

    def __init__(self, function: Callable[..., Any], task_options: dict[str, Any]) -> None:
        self._function = function
        self._options = options_mod.validate_task_options(dict(task_options))
        self._retry = options_mod.retry_exceptions_wire(self._options.get("retry_exceptions", False))
        self._capture = options_mod.captures_child_tasks(self._options)
        self._num_returns = _wire_num_returns(function, self._options)
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "function"))
        self._shared = _Pickled(function, self._name)
        functools.update_wrapper(self, function, updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{self._name}()', "
            f"try '{self._name}.remote()'."
        )

    def options(self, **task_options: Any) -> RemoteFunction:
        """A copy of this remote function with some options overridden, as in Ray."""
        clone = object.__new__(RemoteFunction)
        clone.__dict__.update(self.__dict__)
        merged = dict(self._options)
        merged.update(task_options)
        clone._options = options_mod.validate_task_options(merged)
        clone._retry = options_mod.retry_exceptions_wire(clone._options.get("retry_exceptions", False))
        clone._capture = options_mod.captures_child_tasks(clone._options)
        clone._num_returns = _wire_num_returns(self._function, clone._options)
        return clone

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        core = runtime.current_core()
        opts, capture = self._options, self._capture
        if core.captured_group:
            opts = options_mod.with_captured_group(opts, core.captured_group)
            capture = options_mod.captures_child_tasks(opts)
        num_returns = self._num_returns
        request = res.task_request(opts.get("num_cpus"), opts.get("num_gpus"), opts.get("memory"), opts.get("resources"))
        request, strategy = scheduling_strategies.apply(opts, options_mod.add_accelerator_request(opts, request))
        function_id, blob = self._shared.get()
        out = core.submitter.submit(
            function_id, blob, opts.get("name") or self._name, args, kwargs, num_returns, request,
            opts.get("max_retries", 3), self._retry,
            strategy=strategy, runtime_env=runtime_envs.resolve(core, opts.get("runtime_env")),
            max_calls=opts.get("max_calls") or 0, capture=capture,
            task_events=opts.get("enable_task_events") is not False,
        )
        if core.call_sites is not None:  # RAY_record_ref_creation_sites=1: `kray memory` shows where
            reference_table.record(core, out, "task call")
        if num_returns == 1:
            return out[0]
        if num_returns == 0:
            return None
        if num_returns < 0:
            return generators.returned(core, out[0], num_returns)
        return out

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """A lazy call of this function for the DAG API (kray.dag); run it with `.execute()`."""
        from kray.dag import function_node

        return function_node.FunctionNode(self, args, kwargs)


def _wire_num_returns(function: Callable[..., Any], opts: dict[str, Any]) -> int:
    """num_returns as the task spec carries it; a generator function streams by default, as in Ray 2.x."""
    is_generator = inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)
    return generators.encode(opts.get("num_returns"), opts.get("_generator_backpressure_num_objects"), is_generator)


class _Pickled:
    """The function pickled once, shared by every `.options()` copy."""

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        self.function = function
        self.name = name
        self.function_id = os.urandom(16)
        self.blob: bytes | None = None

    def get(self) -> tuple[bytes, bytes]:
        if self.blob is None:
            self.blob = serialization.dumps_function(self.function, self.name)
        return self.function_id, self.blob


def remote(*args: Any, **task_options: Any) -> Any:
    """Turn a function into a remote function: `@kray.remote` or `@kray.remote(num_cpus=2, ...)`."""
    if len(args) == 1 and not task_options and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("The @kray.remote decorator takes either a function or keyword options only.")

    def decorate(target: Any) -> Any:
        return _make(target, task_options)

    return decorate


def _make(target: Any, task_options: dict[str, Any]) -> Any:
    if isinstance(target, type):
        from kray.api import actor

        return actor.ActorClass(target, task_options)
    if not callable(target):
        raise TypeError(f"@kray.remote must decorate a function, got {type(target).__name__}.")
    return RemoteFunction(target, task_options)
