"""`kray memory`: Ray's `ray memory`, the answer to "why is my object store full": every object reference
held in the cluster, by which process (driver or worker pid, node), how (LOCAL_REFERENCE,
PINNED_IN_MEMORY, USED_BY_PENDING_TASK, CAPTURED_IN_OBJECT, ACTOR_HANDLE), with its size, grouped by
node address (or call site), and the object stores' usage.

    kray memory
    kray memory --sort-by PID --units MB --num-entries 10
    kray memory --stats-only
    kray memory --format json

Ray's options: --group-by NODE_ADDRESS|STACK_TRACE, --sort-by PID|OBJECT_SIZE|REFERENCE_TYPE,
--units B|KB|MB|GB, --no-format (kray never wraps lines, so it changes nothing), --stats-only,
--num-entries/--n; plus --format table|json|yaml like the other state commands. kray records no call
sites, so the call site column says "disabled" (Ray's default too).
"""

from __future__ import annotations

import datetime
from typing import Any

import click

from kray.cli import state_commands
from kray.util import memory_state, state_sources

_SUMMARY_LABELS = ("Mem Used by Objects", "Local References", "Pinned", "Used by task", "Captured in Objects",
                   "Actor Handles")
_SUMMARY_KEYS = ("total_local_ref_count", "total_pinned_in_memory", "total_used_by_pending_task",
                 "total_captured_in_objects", "total_actor_handles")
_COLUMNS = ("IP Address", "PID", "Type", "Call Site", "Status", "Attempt", "Size", "Reference Type", "Object Ref")


def memory_summary(address: str | None = None, group_by: str = "NODE_ADDRESS", sort_by: str = "OBJECT_SIZE",
                   timeout: int = 30) -> dict[str, Any]:
    """The cluster's memory table (kray.util.memory_state.memory_table) for the cluster at `address`."""
    group_by, sort_by, _ = memory_state.check_options(group_by, sort_by, "B")
    return memory_state.summary(state_sources.resolve(address, timeout), group_by, sort_by)


def _size(value: int, units: str) -> str:
    if value < 0:
        return "?"
    scaled = value / memory_state.UNITS[units]
    return f"{value} B" if units == "B" else f"{scaled:.3f} {units}"


def store_line(store: dict[str, Any], units: str) -> str:
    used, capacity = store["used_bytes"], store["capacity_bytes"]
    full = 100.0 * used / capacity if capacity else 0.0
    return (f"Object store memory used: {_size(used, units)} of {_size(capacity, units)} ({full:.1f}% full), "
            f"{store['num_objects']} objects in shared memory, {store['spilled_objects']} spilled, "
            f"on {len(store['nodes'])} node(s)")


def render_text(table: dict[str, Any], group_by: str, sort_by: str, units: str, num_entries: int | None,
                stats_only: bool) -> str:
    """Ray's layout: a summary and a table of references per group, then the stores' usage."""
    lines = [f"======== Object references status: {datetime.datetime.now()} ========"]
    if not stats_only:
        group_name = "node address" if group_by == "NODE_ADDRESS" else "stack trace"
        shown_count = num_entries if num_entries is not None else "all"
        lines += [(f"Grouping by {group_name}...        Sorting by {sort_by.lower().replace('_', ' ')}...        "
                   f"Display {shown_count} entries per group..."), ""]
        for key, group in table["group"].items():
            summary = group["summary"]
            values = [_size(summary["total_object_size"], units)] + [
                f"{summary[k]}, ({_size(summary[k.replace('total_', 'total_bytes_', 1)], units)})" for k in _SUMMARY_KEYS]
            lines += [f"--- Summary for {group_name}: {key} ---",
                      _aligned([list(_SUMMARY_LABELS), values]), "",
                      f"--- Object references for {group_name}: {key} ---"]
            shown = group["entries"][:num_entries] if num_entries is not None else group["entries"]
            rows = [[e["node_ip_address"], str(e["pid"]), e["type"], e["call_site"], e["task_status"],
                     str(e["attempt_number"]), _size(e["object_size"], units), e["reference_type"], e["object_ref"]]
                    for e in shown]
            lines += [_aligned([list(_COLUMNS), *rows]), ""]
    lines += ["--- Aggregate object store stats across all nodes ---", store_line(table["object_store"], units)]
    lines += [f"Warning: {w}" for w in table["warnings"]]
    return "\n".join(lines)


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


@click.command(name="memory")
@click.option("--group-by", default="NODE_ADDRESS", show_default=True,
              type=click.Choice(memory_state.GROUP_BY, case_sensitive=False),
              help="Group object references by node address or call site.")
@click.option("--sort-by", default="OBJECT_SIZE", show_default=True,
              type=click.Choice(memory_state.SORT_BY, case_sensitive=False),
              help="Sort object references (ascending) by PID, object size or reference type.")
@click.option("--units", default="B", show_default=True, type=click.Choice(tuple(memory_state.UNITS), case_sensitive=False),
              help="Units of object sizes.")
@click.option("--no-format", is_flag=True, default=True, help="Unformatted results (kray never wraps lines).")
@click.option("--stats-only", is_flag=True, default=False, help="Show the object stores' usage only.")
@click.option("--num-entries", "--n", "num_entries", type=click.IntRange(min=0), default=None,
              help="The most entries shown per group.")
@state_commands._format
@state_commands._address
@state_commands._timeout
def memory_command(group_by: str, sort_by: str, units: str, no_format: bool, stats_only: bool,
                   num_entries: int | None, output_format: str, address: str | None, timeout: int) -> None:
    """Show the object references held in the cluster: who holds which object, how, and its size."""
    group_by, sort_by, units = memory_state.check_options(group_by, sort_by, units)
    table = state_commands._run(lambda: memory_summary(address, group_by, sort_by, timeout))
    fmt = output_format.lower()
    if fmt in ("json", "yaml"):
        if stats_only:
            table = {"object_store": table["object_store"], "warnings": table["warnings"]}
        elif num_entries is not None:
            for group in table["group"].values():
                group["entries"] = group["entries"][:num_entries]
        click.echo(state_commands.render(table, fmt))
        return
    click.echo(render_text(table, group_by, sort_by, units, num_entries, stats_only))


COMMANDS = (memory_command,)
