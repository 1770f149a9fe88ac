"""`kray list`, `kray get` and `kray summary`: Ray's state CLI over kray.util.state.

    kray list tasks --filter state=FAILED --filter "name!=f" --limit 20 --detail --format json
    kray get actors ACTOR_ID
    kray summary tasks
    kray timeline --output trace.json

Output is a table by default (`--format table`), or JSON or YAML. The cluster is the one recorded on this
machine, else `--address HOST:PORT` or KRAY_ADDRESS (with KRAY_CLUSTER_TOKEN), as for `kray status`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import click
import yaml

from kray.protocol import client
from kray.util import state, state_timeline

# CLI names (Ray's, with dashes) -> the state API's resource names.
RESOURCES = {"actors": "actors", "tasks": "tasks", "nodes": "nodes", "objects": "objects", "jobs": "jobs",
             "placement-groups": "placement_groups", "workers": "workers"}
GETTERS = {"actors": state.get_actor, "tasks": state.get_task, "nodes": state.get_node, "jobs": state.get_job,
           "placement-groups": state.get_placement_group, "workers": state.get_worker, "objects": state.get_objects}
SUMMARIES = {"tasks": state.summarize_tasks, "actors": state.summarize_actors, "objects": state.summarize_objects}
FORMATS = ("default", "table", "json", "yaml")
MAX_CELL = 60

_address = click.option("--address", default=None, help="HOST:PORT of the GCS (default: this machine's cluster).")
_timeout = click.option("--timeout", default=state.DEFAULT_RPC_TIMEOUT, show_default=True, type=int,
                        help="Seconds to wait for the cluster's answer.")
_format = click.option("--format", "output_format", default="default", show_default=True,
                       type=click.Choice(FORMATS, case_sensitive=False), help="Output format.")


def parse_filter(text: str) -> tuple[str, str, str]:
    """"key=value" or "key!=value" as a (key, predicate, value) filter."""
    for predicate in ("!=", "="):
        key, sep, value = text.partition(predicate)
        if sep and key.strip():
            return key.strip(), predicate, value.strip()
    raise click.BadParameter(f"{text!r} is not a filter; write KEY=VALUE or KEY!=VALUE, e.g. state=RUNNING",
                             param_hint="--filter")


def render(data: Any, output_format: str) -> str:
    if output_format == "json":
        return json.dumps(data, indent=2, default=str)
    if output_format == "yaml":
        return yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False, indent=2).rstrip()
    if isinstance(data, list):
        return table(data)
    return yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False, indent=2).rstrip()


def table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table, columns in the rows' order, upper-case headers."""
    if not rows:
        return "No resource in the cluster matches."
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    header = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([header, *body])


def _cell(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _run(call: Any) -> Any:
    try:
        return call()
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e)) from None
    except (ConnectionError, client.NoReply, client.TokenRefused) as e:
        raise click.ClickException(str(e)) from None


@click.command(name="list")
@click.argument("resource", type=click.Choice(sorted(RESOURCES), case_sensitive=False))
@click.option("--filter", "-f", "filters", multiple=True, help="KEY=VALUE or KEY!=VALUE (repeatable; all must hold).")
@click.option("--limit", default=state.DEFAULT_LIMIT, show_default=True, type=click.IntRange(min=0),
              help="The most rows to show.")
@click.option("--detail", is_flag=True, help="Show every column (by default only Ray's short list).")
@_format
@_address
@_timeout
def list_command(resource: str, filters: tuple[str, ...], limit: int, detail: bool, output_format: str,
                 address: str | None, timeout: int) -> None:
    """List the cluster's RESOURCE (actors, tasks, nodes, objects, jobs, placement-groups, workers)."""
    parsed = [parse_filter(f) for f in filters]
    rows = _run(lambda: state.list_resource(RESOURCES[resource.lower()], address, parsed, limit, timeout, detail))
    click.echo(render([dict(r) for r in rows], output_format.lower()))


@click.command(name="get")
@click.argument("resource", type=click.Choice(sorted(GETTERS), case_sensitive=False))
@click.argument("id")
@_format
@_address
@_timeout
def get_command(resource: str, id: str, output_format: str, address: str | None, timeout: int) -> None:
    """Show one RESOURCE by its ID (every column)."""
    found = _run(lambda: GETTERS[resource.lower()](id, address=address, timeout=timeout))
    if not found:
        raise click.ClickException(f"No {resource} with id {id} in the cluster.")
    data = [dict(r) for r in found] if isinstance(found, list) else dict(found)
    fmt = output_format.lower()
    click.echo(render(data, "yaml" if fmt in ("default", "table") else fmt))


@click.command(name="summary")
@click.argument("resource", type=click.Choice(sorted(SUMMARIES), case_sensitive=False))
@_format
@_address
@_timeout
def summary_command(resource: str, output_format: str, address: str | None, timeout: int) -> None:
    """Summarize the cluster's tasks (by function and state), actors (by class and state) or objects."""
    summary = _run(lambda: SUMMARIES[resource.lower()](address=address, timeout=timeout))
    fmt = output_format.lower()
    if fmt in ("json", "yaml"):
        click.echo(render(summary, fmt))
        return
    cluster = summary["cluster"]
    totals = {k: v for k, v in cluster.items() if k.startswith("total")}
    click.echo(f"======== {resource.capitalize()} Summary ========")
    click.echo("  ".join(f"{k}: {v}" for k, v in totals.items()))
    rows = [{"name": name, **{k: v for k, v in entry.items() if k not in ("func_or_class_name", "class_name")}}
            for name, entry in cluster["summary"].items()]
    click.echo(table(rows))


@click.command(name="timeline")
@click.option("--output", default=None, help="Where to write the trace (default: a kray-timeline-*.json file in the "
                                             "temporary directory).")
@_address
@_timeout
def timeline_command(output: str | None, address: str | None, timeout: int) -> None:
    """Write the cluster's task attempts as a Chrome trace (open it in chrome://tracing or ui.perfetto.dev)."""
    events = _run(lambda: state_timeline.timeline(address, timeout))
    path = output or os.path.join(tempfile.gettempdir(), time.strftime("kray-timeline-%Y-%m-%d_%H-%M-%S.json"))
    with open(path, "w") as f:
        json.dump(events, f)
    click.echo(f"Trace file written to {path} ({len(events)} task attempts). Open it in chrome://tracing "
               "or https://ui.perfetto.dev.")


COMMANDS = (list_command, get_command, summary_command, timeline_command)
