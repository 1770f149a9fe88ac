"""`ray._private.utils` under kray: the node's memory figures that Ray's out-of-memory docs use to size an
allocation against the memory monitor's threshold (`get_system_memory`, `get_used_memory`).

Both read memory as kray's memory monitor does (raylet/memory_monitor.py): the process's cgroup while it
has a memory limit below the host's memory, as in a container or pod, else the host's /proc/meminfo (used
= MemTotal - MemAvailable). So `get_used_memory() / get_system_memory()` is the fraction the monitor
compares with KRAY_memory_usage_threshold.
"""

from __future__ import annotations

__all__ = ["get_system_memory", "get_used_memory"]


def get_system_memory() -> int:
    """The memory in bytes of this machine, or of its container (its cgroup's limit) where that is lower."""
    from kray.raylet import memory_monitor

    return memory_monitor.MemoryReader().read().total


def get_used_memory() -> int:
    """The memory in bytes in use on this machine, or in its container (without reclaimable file cache)."""
    from kray.raylet import memory_monitor

    return memory_monitor.MemoryReader().read().used
