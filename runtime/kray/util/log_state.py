"""The logs half of the state API (Ray's `ray.util.state.list_logs` / `get_log`, and `kray logs`): the
log files of each node, found and read through that node's raylet (a worker node's files are on that
node), and the file of an actor, a task, a worker pid or a submitted job.

Synchronous, like kray.util.state: works from a connected driver, the CLI (`address="auto"`,
"HOST:PORT"), and the head's HTTP server (which passes its own StateSource). Following a file reads
what was appended since the last read, every `interval` seconds, as `tail -f` does.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterator
from typing import Any

from kray.protocol import client, memory_messages, messages
from kray.util import state_sources

DEFAULT_TAIL = 1000  # Ray's DEFAULT_LOG_LIMIT
DEFAULT_INTERVAL_S = 0.5
READ_BYTES = 1 << 20
Address = str | state_sources.StateSource | None


def _source(address: Address, timeout: float) -> state_sources.StateSource:
    if isinstance(address, state_sources.StateSource):
        return address
    return state_sources.resolve(address, timeout)


def alive_nodes(source: state_sources.StateSource) -> list[messages.NodeInfo]:
    return [n for n in source._gcs(lambda rid: messages.GetNodes(rid)) if n.alive]


def pick_node(source: state_sources.StateSource, node_id: str | None, node_ip: str | None) -> messages.NodeInfo:
    """The live node with this id (hex) or IP; ValueError names what matched nothing (or too much)."""
    nodes = alive_nodes(source)
    if node_id:
        found = [n for n in nodes if n.node_id.hex() == node_id.lower()]
        if not found:
            raise ValueError(f"no live node with id {node_id!r} (see `kray list nodes`)")
        return found[0]
    if node_ip:
        found = [n for n in nodes if n.ip == node_ip]
        if not found:
            raise ValueError(f"no live node with IP {node_ip!r} (see `kray list nodes`)")
        if len(found) > 1:
            raise ValueError(f"{len(found)} nodes have IP {node_ip!r}; pass node_id instead")
        return found[0]
    head = [n for n in nodes if n.is_head]
    if not head:
        raise ValueError("no live head node; pass node_id")
    return head[0]


def node_files(source: state_sources.StateSource, node: messages.NodeInfo) -> list[dict[str, Any]]:
    """The node's log files (name, size, mtime, category, pid and worker id of worker files)."""
    rows: list[dict[str, Any]] = client.request(
        node.raylet_address, lambda rid: memory_messages.ListLogFiles(rid), timeout=source.timeout)
    return rows


def categorized(files: list[dict[str, Any]], glob_filter: str | None = None) -> dict[str, list[str]]:
    """Ray's list_logs shape: {category: [file names]} of the files matching the glob."""
    out: dict[str, list[str]] = {}
    for row in files:
        if fnmatch.fnmatch(row["filename"], glob_filter or "*"):
            out.setdefault(row["category"], []).append(row["filename"])
    return out


def list_logs(address: Address = None, node_id: str | None = None, node_ip: str | None = None,
              glob_filter: str | None = None, timeout: int = 30) -> dict[str, list[str]]:
    """Log files of one node, grouped as Ray groups them (worker_out, worker_err, raylet, gcs_server, ...)."""
    if node_id is None and node_ip is None:
        raise ValueError("At least one of node_ip and node_id is required")
    source = _source(address, timeout)
    return categorized(node_files(source, pick_node(source, node_id, node_ip)), glob_filter)


def list_cluster_logs(address: Address = None, glob_filter: str | None = None,
                      timeout: int = 30) -> dict[str, dict[str, list[str]]]:
    """Log files of every live node: {node id: {category: [file names]}}; an unreachable node is skipped."""
    source = _source(address, timeout)
    out = {}
    for node in alive_nodes(source):
        try:
            out[node.node_id.hex()] = categorized(node_files(source, node), glob_filter)
        except (client.NoReply, client.TokenRefused):
            continue
    return out


def resolve_file(source: state_sources.StateSource, *, node_id: str | None = None, node_ip: str | None = None,
                 filename: str | None = None, actor_id: str | None = None, task_id: str | None = None,
                 pid: int | None = None, suffix: str = "out", submission_id: str | None = None,
                 attempt_number: int = 0) -> tuple[messages.NodeInfo, str]:
    """The node and file name of what the caller asks for; ValueError says what was not found."""
    if suffix not in ("out", "err"):
        raise ValueError(f"suffix must be 'out' or 'err', got {suffix!r}")
    given = [k for k, v in (("filename", filename), ("actor_id", actor_id), ("task_id", task_id), ("pid", pid),
                            ("submission_id", submission_id)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of filename, actor_id, task_id, pid, submission_id (got {given or 'none'})")
    if filename is not None:
        return pick_node(source, node_id, node_ip), filename
    if submission_id is not None:
        return pick_node(source, None, None), f"job-driver-{submission_id}.log"
    if actor_id is not None:
        actor = next((a for a in source.actors() if a["actor_id"] == actor_id.lower()), None)
        if actor is None:
            raise ValueError(f"no actor with id {actor_id!r} (see `kray list actors`)")
        if not actor["pid"]:
            raise ValueError(f"actor {actor_id} has no worker process yet (state {actor['state']})")
        node_id, pid = actor["node_id"], actor["pid"]
    elif task_id is not None:
        rows, _, _ = source.tasks([("task_id", "=", task_id.lower())], 1000)
        rows = [r for r in rows if not attempt_number or r["attempt_number"] == attempt_number]
        if not rows:
            raise ValueError(f"no task with id {task_id!r}{f' (attempt {attempt_number})' if attempt_number else ''} "
                             "in the task events (see `kray list tasks`)")
        row = max(rows, key=lambda r: r["attempt_number"])
        if not row.get("worker_pid") or not row.get("node_id"):
            raise ValueError(f"task {task_id} has not run on a worker yet (state {row['state']})")
        node_id, pid = row["node_id"], row["worker_pid"]
    return _worker_file(source, node_id, node_ip, int(pid), suffix)  # type: ignore[arg-type]


def _worker_file(source: state_sources.StateSource, node_id: str | None, node_ip: str | None, pid: int,
                 suffix: str) -> tuple[messages.NodeInfo, str]:
    nodes = [pick_node(source, node_id, node_ip)] if node_id or node_ip else alive_nodes(source)
    for node in nodes:
        for row in node_files(source, node):
            if row["pid"] == pid and row["filename"].endswith("." + suffix):
                return node, row["filename"]
    where = f"node {nodes[0].node_id.hex()}" if len(nodes) == 1 else "any live node"
    raise ValueError(f"no worker log file of pid {pid} ({suffix}) on {where}; it has written nothing to std{suffix} yet "
                     "or its node has gone")


def read_chunks(source: state_sources.StateSource, node: messages.NodeInfo, filename: str, tail: int = DEFAULT_TAIL,
                follow: bool = False, interval: float | None = None,
                stop: threading.Event | None = None) -> Iterator[bytes]:
    """The file's last `tail` lines (-1: all of it), then, with follow, what is appended, until `stop` is set."""
    stop = stop or threading.Event()

    def read(offset: int, tail_lines: int) -> dict[str, Any]:
        answer: dict[str, Any] = client.request(
            node.raylet_address, lambda rid: memory_messages.ReadLogFile(rid, filename, offset, tail_lines, READ_BYTES),
            timeout=source.timeout)
        return answer

    answer = read(0, tail) if tail >= 0 else read(0, -1)
    if answer["data"]:
        yield answer["data"]
    offset = answer["offset"]
    while tail < 0 and offset < answer["size"]:
        answer = read(offset, -1)
        if not answer["data"]:
            break
        yield answer["data"]
        offset = answer["offset"]
    while follow and not stop.is_set():
        answer = read(offset, -1)
        if answer["size"] < offset:  # the file was truncated: start again from its beginning
            offset = 0
            continue
        if answer["data"]:
            yield answer["data"]
            offset = answer["offset"]
            continue
        stop.wait(interval or DEFAULT_INTERVAL_S)


def get_log(address: Address = None, node_id: str | None = None, node_ip: str | None = None,
            filename: str | None = None, actor_id: str | None = None, task_id: str | None = None,
            pid: int | None = None, follow: bool = False, tail: int = -1, timeout: int = 30, suffix: str = "out",
            encoding: str | None = "utf-8", errors: str | None = "strict", submission_id: str | None = None,
            attempt_number: int = 0, _interval: float | None = None, filter_ansi_code: bool = False,
            ) -> Iterator[str]:
    """Ray's get_log: the text of a log file (by name on a node, or of an actor, task, worker pid or job),
    in chunks; with follow=True it goes on yielding what is appended."""
    source = _source(address, timeout)
    node, name = resolve_file(source, node_id=node_id, node_ip=node_ip, filename=filename, actor_id=actor_id,
                              task_id=task_id, pid=pid, suffix=suffix, submission_id=submission_id,
                              attempt_number=attempt_number)
    for chunk in read_chunks(source, node, name, tail, follow, _interval):
        text = chunk.decode(encoding or "utf-8", errors or "strict")
        if filter_ansi_code:
            import re

            text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
        yield text
