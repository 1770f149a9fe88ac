"""`kray.init(_system_config={...})`: Ray's cluster-wide settings that kray honours, for the cluster
that `kray.init()` starts.

Only the task-event and memory-monitor settings are taken (under Ray's names); they reach every process
of the new cluster (its raylets included) as environment variables (read by kray.config). Any other key is refused with its name, and
so is a _system_config given when connecting to a running cluster (its processes already run with
theirs), as Ray refuses it.
"""

from __future__ import annotations

import os
from typing import Any

# Ray's name -> the environment variable kray.config reads.
SUPPORTED = {
    "task_events_report_interval_ms": "KRAY_TASK_EVENTS_REPORT_INTERVAL_MS",
    "task_events_max_num_task_in_gcs": "KRAY_TASK_EVENTS_MAX_NUM_TASK_IN_GCS",
    "task_events_max_num_task_events_in_buffer": "KRAY_TASK_EVENTS_MAX_NUM_TASK_EVENTS_IN_BUFFER",
    "memory_usage_threshold": "KRAY_memory_usage_threshold",
    "memory_monitor_refresh_ms": "KRAY_memory_monitor_refresh_ms",
    "min_memory_free_bytes": "KRAY_min_memory_free_bytes",
    "task_oom_retries": "KRAY_task_oom_retries",
    "task_oom_retry_delay_base_ms": "KRAY_task_oom_retry_delay_base_ms",
}
# The settings that take a fraction rather than an integer, and the integers' lowest values.
FRACTIONS = {"memory_usage_threshold"}
MINIMUM = {"memory_monitor_refresh_ms": 0, "min_memory_free_bytes": -1, "task_oom_retries": -1,
           "task_oom_retry_delay_base_ms": 0}


# The environment values that apply() replaced, for restore() at kray.shutdown().
_replaced: dict[str, str | None] = {}


def apply(system_config: Any, starts_cluster: bool) -> None:
    """Check `system_config` and set its values for this process and the cluster it is about to start."""
    if not system_config:
        return
    if not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got {type(system_config).__name__}")
    if not starts_cluster:
        raise ValueError("When connecting to an existing cluster, _system_config must not be provided; "
                         "set it when the cluster starts (e.g. RAY_task_events_report_interval_ms for `kray start`).")
    unknown = sorted(set(system_config) - set(SUPPORTED))
    if unknown:
        raise ValueError(f"_system_config key(s) not supported by kray: {', '.join(unknown)}; "
                         f"supported: {', '.join(sorted(SUPPORTED))}")
    for key, value in system_config.items():
        _check(key, value)
    for key, value in system_config.items():
        _replaced.setdefault(SUPPORTED[key], os.environ.get(SUPPORTED[key]))
        os.environ[SUPPORTED[key]] = str(value)


def _check(key: str, value: Any) -> None:
    if key in FRACTIONS:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError(f"_system_config[{key!r}] must be a fraction between 0 and 1, got {value!r}")
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"_system_config[{key!r}] must be an integer, got {value!r}")
    if value < MINIMUM.get(key, 0):
        raise ValueError(f"_system_config[{key!r}] must be >= {MINIMUM.get(key, 0)}, got {value!r}")


def restore() -> None:
    """Undo apply(): the cluster it was for has stopped."""
    for name, value in _replaced.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _replaced.clear()
