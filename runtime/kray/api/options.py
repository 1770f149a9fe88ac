"""Validation of the options of `@kray.remote` and `.options()`, with Ray's names and defaults.

Pure: no I/O. Unknown or ill-typed options raise errors that say which option and what is allowed.
"""

from __future__ import annotations

import warnings
from typing import Any

from kray import serialization
from kray.core import generators
from kray.runtime_env import validation as runtime_env_validation
from kray.util import scheduling_strategies

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "memory", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "scheduling_strategy", "runtime_env", "max_calls", "accelerator_type", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "_metadata", "label_selector",
    "enable_task_events", "_labels", "object_store_memory", "_generator_backpressure_num_objects",
}

TASK_DEFAULTS: dict[str, Any] = {"num_returns": 1, "max_retries": 3, "retry_exceptions": False}


def validate_task_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - TASK_OPTIONS
    if unknown:
        raise ValueError(
            f"Invalid option keyword(s) {', '.join(sorted(unknown))} for remote functions. "
            f"Valid ones are: {', '.join(sorted(o for o in TASK_OPTIONS if not o.startswith('_')))}."
        )
    for key in ("num_cpus", "num_gpus", "memory"):
        value = options.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise ValueError(f"The option {key} must be a non-negative number, got {value!r}.")
    resources = options.get("resources")
    if resources is not None:
        if not isinstance(resources, dict):
            raise TypeError(f"The option resources must be a dict of name -> amount, got {resources!r}.")
        for name, amount in resources.items():
            if name in ("CPU", "GPU"):
                raise ValueError(f"Use the {'num_cpus' if name == 'CPU' else 'num_gpus'} option instead of resources={{'{name}': ...}}.")
            if not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"Resource {name!r} must be a non-negative number, got {amount!r}.")
    # num_returns ("streaming", "dynamic" or a count) and _generator_backpressure_num_objects: checked
    # together when the function is known (kray.core.generators.encode).
    generators.encode(options.get("num_returns"), options.get("_generator_backpressure_num_objects"), True)
    max_calls = options.get("max_calls")
    if max_calls is not None and (not isinstance(max_calls, int) or isinstance(max_calls, bool) or max_calls < 0):
        raise ValueError(f"max_calls must be a non-negative integer (0: no limit), got {max_calls!r}.")
    max_retries = options.get("max_retries")
    if max_retries is not None and (not isinstance(max_retries, int) or max_retries < -1):
        raise ValueError(f"max_retries must be an integer >= -1 (-1 retries forever), got {max_retries!r}.")
    retry = options.get("retry_exceptions")
    if retry is not None and not isinstance(retry, bool):
        if not isinstance(retry, (list, tuple)) or not all(isinstance(c, type) and issubclass(c, BaseException) for c in retry):
            raise TypeError("retry_exceptions must be a bool or a list of exception classes.")
        options["retry_exceptions"] = list(retry)
    check_kray_support(options)
    scheduling_strategies.as_wire(options.get("scheduling_strategy"))  # raises for what kray cannot do
    if options.get("runtime_env") is not None:
        options["runtime_env"] = runtime_env_validation.validate(options["runtime_env"])
    return options


def retry_exceptions_wire(value: Any, what: str = "retry_exceptions") -> bool | bytes:
    """How retry_exceptions travels in a task spec: a bool, or its exception classes pickled by value
    (a class of the driver's `__main__` cannot be imported by workers)."""
    if not isinstance(value, (list, tuple)):
        return bool(value)
    return serialization.dumps_by_value(tuple(value), what)


# Options of Ray's that have no meaning in kray: accepted, with one warning per option and process.
_NO_EFFECT = {
    "_metadata": (None, "kray keeps no per-task metadata for libraries; _metadata has no effect"),
    "_labels": (None, "kray keeps no task labels; _labels has no effect"),
    "object_store_memory": (None, ("kray does not reserve object store memory per task or actor (Ray deprecated "
                                   "this option); object_store_memory has no effect")),
}
_warned: set[str] = set()

ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"


def check_kray_support(options: dict[str, Any]) -> None:
    """Refuse what kray cannot do (naming the option) and warn once about options without effect here."""
    if options.get("label_selector"):
        raise ValueError("label_selector is not supported by kray (its nodes carry no labels); "
                         "ask for a custom resource instead, e.g. resources={'zone-a': 0.001}.")
    for name, (default, why) in _NO_EFFECT.items():
        value = options.get(name)
        if value is not None and value != default and value != {} and name not in _warned:
            _warned.add(name)
            warnings.warn(why, UserWarning, stacklevel=4)


def add_accelerator_request(options: dict[str, Any], request: dict[str, float]) -> dict[str, float]:
    """accelerator_type="A100" asks for a node with the resource "accelerator_type:A100", as in Ray
    (start such nodes with `kray start --resources '{"accelerator_type:A100": 1}'`)."""
    accelerator = options.get("accelerator_type")
    if accelerator:
        if not isinstance(accelerator, str):
            raise TypeError(f"accelerator_type must be a string such as 'A100', got {accelerator!r}.")
        request = {**request, f"{ACCELERATOR_RESOURCE_PREFIX}{accelerator}": 0.001}
    return request


def with_captured_group(options: dict[str, Any], captured_group: str) -> dict[str, Any]:
    """Options of a task or actor created inside a task whose placement group captures its children
    (placement_group_capture_child_tasks): without a strategy of their own, they go into that group."""
    if not captured_group or options.get("scheduling_strategy") is not None:
        return options
    if options.get("placement_group", "default") != "default":
        return options  # a group of its own, or placement_group=None: none
    # By its full name: kray.util's attribute `placement_group` becomes the function once asked for.
    from kray.util.placement_group import PlacementGroup

    group = PlacementGroup(bytes.fromhex(captured_group), [])
    strategy = scheduling_strategies.PlacementGroupSchedulingStrategy(group, -1, True)
    return {**options, "scheduling_strategy": strategy}


def captures_child_tasks(options: dict[str, Any]) -> bool:
    """Whether children of this task or actor go into its placement group by default, as in Ray."""
    strategy = options.get("scheduling_strategy")
    if isinstance(strategy, scheduling_strategies.PlacementGroupSchedulingStrategy):
        return bool(strategy.placement_group_capture_child_tasks)
    return options.get("placement_group") not in (None, "default") and bool(
        options.get("placement_group_capture_child_tasks"))
