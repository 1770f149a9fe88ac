"""`ray._private.internal_api` under kray: `free` (kept in kray.internal) and `memory_summary`, the text
that `kray memory` (Ray's `ray memory`) prints, for programs and notebooks that call it directly."""

from __future__ import annotations

from kray.internal import free

__all__ = ["free", "memory_summary"]


def memory_summary(address: str | None = None, group_by: str = "NODE_ADDRESS", sort_by: str = "OBJECT_SIZE",
                   units: str = "B", line_wrap: bool = True, stats_only: bool = False,
                   num_entries: int | None = None) -> str:
    """The object references held in the cluster and the object stores' usage, as `kray memory` prints them.

    address: the connected driver's cluster when None or "auto" (else this machine's), or a GCS HOST:PORT.
    group_by NODE_ADDRESS|STACK_TRACE, sort_by PID|OBJECT_SIZE|REFERENCE_TYPE, units B|KB|MB|GB (a bad one
    raises ValueError naming it); stats_only: the stores' usage only; num_entries: the most rows per group.
    line_wrap is accepted as in Ray and changes nothing: kray never wraps lines.
    """
    # The CLI module owns the layout; imported here so that `import kray` stays light.
    from kray.cli import memory_command
    from kray.util import memory_state

    group_by, sort_by, units = memory_state.check_options(group_by, sort_by, units)
    if num_entries is not None and (isinstance(num_entries, bool) or not isinstance(num_entries, int)
                                    or num_entries < 0):
        raise ValueError(f"num_entries must be a non-negative integer or None, got {num_entries!r}")
    table = memory_command.memory_summary(address, group_by, sort_by)
    return memory_command.render_text(table, group_by, sort_by, units, num_entries, stats_only)
