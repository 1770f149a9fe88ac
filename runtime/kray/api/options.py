"""Validation of the options of `@kray.remote` and `.options()`, with Ray's names and defaults.

Pure: no I/O. Unknown or ill-typed options raise errors that say which option and what is allowed.
"""

from __future__ import annotations

from typing import Any

from kray.runtime_env import validation as runtime_env_validation
from kray.util import scheduling_strategies

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "memory", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "scheduling_strategy", "runtime_env", "max_calls", "accelerator_type", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "_metadata", "label_selector",
    "enable_task_events", "_labels", "object_store_memory",
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
    num_returns = options.get("num_returns")
    if num_returns is not None and (not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 0):
        raise ValueError(
            f"num_returns must be a non-negative integer, got {num_returns!r} "
            "(streaming generators, num_returns='streaming', are not supported yet)."
        )
    max_retries = options.get("max_retries")
    if max_retries is not None and (not isinstance(max_retries, int) or max_retries < -1):
        raise ValueError(f"max_retries must be an integer >= -1 (-1 retries forever), got {max_retries!r}.")
    retry = options.get("retry_exceptions")
    if retry is not None and not isinstance(retry, bool):
        if not isinstance(retry, (list, tuple)) or not all(isinstance(c, type) and issubclass(c, BaseException) for c in retry):
            raise TypeError("retry_exceptions must be a bool or a list of exception classes.")
        options["retry_exceptions"] = list(retry)
    scheduling_strategies.as_wire(options.get("scheduling_strategy"))  # raises for what kray cannot do
    if options.get("runtime_env") is not None:
        options["runtime_env"] = runtime_env_validation.validate(options["runtime_env"])
    return options
