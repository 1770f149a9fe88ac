"""`kray logs`: Ray's `ray logs`, the log files of the cluster's nodes, read through each node's raylet.

    kray logs cluster                          the log files of every node, grouped by kind
    kray logs cluster 'worker*' --node-id ID   the files of one node matching a glob
    kray logs raylet.out --tail 100            one file (of the head node unless --node-id/--node-ip)
    kray logs actor --id ACTOR_ID --follow     the stdout of an actor's worker, then what it prints next
    kray logs task --id TASK_ID --err          the stderr of the worker that ran a task
    kray logs worker --pid PID                 a worker process's stdout
    kray logs job --id SUBMISSION_ID           a submitted job's driver log

As in Ray, `kray logs GLOB` is `kray logs cluster GLOB`, a glob matching one file prints that file, and
--tail defaults to 1000 lines (-1: the whole file). A task's log is its worker's whole file (kray does not
record where in the file each task begins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import yaml

from kray.cli import state_commands
from kray.util import log_state


class _LogsGroup(click.Group):
    """`kray logs GLOB` means `kray logs cluster GLOB` (Ray's alias)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["cluster", *args]
        return super().resolve_command(ctx, args)


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--node-id", "-id", default=None, help="The node's id (default: the head node)."),
        click.option("--node-ip", "-ip", default=None, help="The node's IP address."),
        click.option("--follow", "-f", is_flag=True, help="Go on printing what is appended to the file."),
        click.option("--tail", default=log_state.DEFAULT_TAIL, show_default=True, type=int,
                     help="Print the last N lines (-1: the whole file)."),
        click.option("--interval", default=None, type=float, hidden=True, help="Seconds between reads with --follow."),
        click.option("--encoding", default="utf-8", show_default=True, help="The files' encoding."),
        click.option("--encoding-errors", default="strict", show_default=True,
                     help="How to handle undecodable bytes (strict, replace, ignore)."),
        state_commands._address,
        state_commands._timeout,
    )):
        func = option(func)
    return func


def _err_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--err", is_flag=True, help="The stderr file (default: stdout).")(func)


def _print_log(opts: dict[str, Any], **target: Any) -> None:
    chunks = log_state.get_log(
        address=opts["address"], node_id=opts["node_id"], node_ip=opts["node_ip"], follow=opts["follow"],
        tail=opts["tail"], timeout=opts["timeout"], encoding=opts["encoding"], errors=opts["encoding_errors"],
        _interval=opts["interval"], **target)
    try:
        first = _run(lambda: next(chunks, None))  # a file that is not there fails before the preamble
        if opts["tail"] > 0:
            click.echo(f"--- Log has been truncated to last {opts['tail']} lines. Use `--tail` flag to toggle. "
                       "Set to -1 for getting the entire file. ---\n")
        chunk = first
        while chunk is not None:
            click.echo(chunk, nl=False)
            chunk = _run(lambda: next(chunks, None))
    except KeyboardInterrupt:
        pass


def _run(call: Callable[[], Any]) -> Any:
    """A bad argument is a usage error; a node, file or id that is not there an error naming it."""
    try:
        return call()
    except TypeError as e:
        raise click.UsageError(str(e)) from None
    except (ValueError, ConnectionError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None


@click.group(name="logs", cls=_LogsGroup)
def logs() -> None:
    """Print or list the log files of the cluster's nodes, actors, tasks, workers and jobs."""


@logs.command(name="cluster")
@click.argument("glob_filter", required=False, default=None)
@_options
def log_cluster(glob_filter: str | None, **opts: Any) -> None:
    """List the log files matching GLOB_FILTER (all of every node by default); print the file if one matches."""
    node_id, node_ip = opts["node_id"], opts["node_ip"]
    if node_id or node_ip or glob_filter:
        found = _run(lambda: log_state.list_logs(opts["address"], node_id, node_ip, glob_filter,
                                                                 opts["timeout"]) if node_id or node_ip else
                                    _head_listing(opts["address"], glob_filter, opts["timeout"]))
        names = [name for files in found.values() for name in files]
        if len(names) == 1 and glob_filter:
            _print_log(opts, filename=names[0])
            return
        click.echo(f"Node ID: {node_id}" if node_id else f"Node IP: {node_ip}" if node_ip else "Head node")
        click.echo(yaml.safe_dump(found, sort_keys=False).rstrip() if found else "No log file matches.")
        return
    every = _run(lambda: log_state.list_cluster_logs(opts["address"], None, opts["timeout"]))
    for node, files in every.items():
        click.echo(f"======== Logs on node: {node} ========")
        click.echo(yaml.safe_dump(files, sort_keys=False).rstrip() if files else "(none)")


def _head_listing(address: str | None, glob_filter: str | None, timeout: int) -> dict[str, list[str]]:
    source = log_state._source(address, timeout)
    return log_state.categorized(log_state.node_files(source, log_state.pick_node(source, None, None)), glob_filter)


@logs.command(name="actor")
@click.option("--id", "-a", "actor_id", required=True, help="The actor's id.")
@_err_option
@_options
def log_actor(actor_id: str, err: bool, **opts: Any) -> None:
    """Print the log of an actor's worker process."""
    _print_log(opts, actor_id=actor_id, suffix="err" if err else "out")


@logs.command(name="task")
@click.option("--id", "-t", "task_id", required=True, help="The task's id.")
@click.option("--attempt-number", "-a", default=0, type=int, help="The attempt (default: the latest).")
@_err_option
@_options
def log_task(task_id: str, attempt_number: int, err: bool, **opts: Any) -> None:
    """Print the log of the worker process that ran a task."""
    _print_log(opts, task_id=task_id, attempt_number=attempt_number, suffix="err" if err else "out")


@logs.command(name="worker")
@click.option("--pid", "-pid", required=True, type=int, help="The worker's process id.")
@_err_option
@_options
def log_worker(pid: int, err: bool, **opts: Any) -> None:
    """Print the log of a worker process."""
    _print_log(opts, pid=pid, suffix="err" if err else "out")


@logs.command(name="job")
@click.option("--id", "submission_id", required=True, help="The job's submission id.")
@_options
def log_job(submission_id: str, **opts: Any) -> None:
    """Print the driver log of a submitted job."""
    _print_log(opts, submission_id=submission_id)


COMMANDS = (logs,)
