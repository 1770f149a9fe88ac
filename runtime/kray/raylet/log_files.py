"""A node's log files, for `kray logs` (Ray's `ray logs`): the raylet writes each worker's stdout and
stderr to files in the session's log directory, and serves the directory's listing and contents.

Files, as Ray names them: `<session>/logs/worker-<worker id>-ffffffff-<pid>.out` and `.err` (one pair
per worker process; the job id is unknown when a worker starts, as Ray's prestarted workers' `ffffffff`),
next to the processes' own logs (`gcs.out`, `raylet.err`, `dashboard.out`, `job-driver-<id>.log`).

Several local nodes may share one session directory: a raylet lists only the worker files of its own
workers (it remembers the ids of the last MAX_KNOWN_WORKERS it started) and the other processes' files.

Served on the raylet's loop (ListLogFiles, ReadLogFile); file reads are bounded (max_bytes), and a file
name must be a plain name in the log directory (no path). No I/O besides the files and the replies.
"""

from __future__ import annotations

import collections
import logging
import os
from typing import Any, BinaryIO

from kray.protocol import memory_messages

log = logging.getLogger(__name__)

# Worker ids remembered per raylet, to tell its own worker files from other local nodes' ones.
MAX_KNOWN_WORKERS = 10_000
# The most bytes one ReadLogFile answers with.
MAX_READ_BYTES = 4 << 20
WORKER_PREFIX = "worker-"
NO_JOB = "ffffffff"


def log_dir_of(runtime_env_dir: str) -> str:
    """The session's log directory (runtime_env_dir is <session>/runtime_resources)."""
    return os.path.join(os.path.dirname(runtime_env_dir.rstrip(os.sep)), "logs") if runtime_env_dir else ""


def worker_file(worker_id: bytes, pid: int, is_err: bool) -> str:
    return f"{WORKER_PREFIX}{worker_id.hex()}-{NO_JOB}-{pid}.{'err' if is_err else 'out'}"


def category(filename: str) -> str:
    """Ray's log groups (worker_out, worker_err, raylet, gcs_server, dashboard, driver, internal)."""
    if filename.startswith(WORKER_PREFIX):
        return "worker_err" if filename.endswith(".err") else "worker_out"
    for prefix, group in (("raylet", "raylet"), ("gcs", "gcs_server"), ("dashboard", "dashboard"),
                          ("job-driver", "driver")):
        if filename.startswith(prefix):
            return group
    return "internal"


def parse_worker_file(filename: str) -> tuple[str, int] | None:
    """(worker id hex, pid) of a worker file name, or None."""
    if not filename.startswith(WORKER_PREFIX):
        return None
    parts = filename[len(WORKER_PREFIX):].rsplit(".", 1)[0].split("-")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], int(parts[2])


class WorkerLogs:
    """The worker files this raylet writes, and the handlers that serve its log directory."""

    def __init__(self, loop: Any, log_dir: str) -> None:
        self.log_dir = log_dir
        self.files: dict[tuple[bytes, bool], BinaryIO | None] = {}  # (worker id, is_err) -> open file (None: failed)
        self.known: collections.OrderedDict[str, None] = collections.OrderedDict()  # worker ids (hex)
        self.failed = False  # the directory could not be made: no worker files on this node
        if log_dir:
            try:
                os.makedirs(log_dir, exist_ok=True)
            except OSError as e:
                log.warning("worker output is not written to files: cannot make %s: %s", log_dir, e)
                self.failed = True
        loop.on(memory_messages.ListLogFiles, lambda msg, payload, peer: peer.reply(msg.req_id, self.listing()))
        loop.on(memory_messages.ReadLogFile, self._on_read)

    # ------------------------------------------------------------ writing (the worker pool's output path)

    def started(self, worker_id: bytes) -> None:
        self.known[worker_id.hex()] = None
        while len(self.known) > MAX_KNOWN_WORKERS:
            self.known.popitem(last=False)

    def write(self, worker_id: bytes, pid: int, is_err: bool, lines: list[str]) -> None:
        if not self.log_dir or self.failed:
            return
        key = (worker_id, is_err)
        if key in self.files and self.files[key] is None:
            return  # this file could not be written: said once already
        f = self.files.get(key)
        try:
            if f is None:
                f = self.files[key] = open(os.path.join(self.log_dir, worker_file(worker_id, pid, is_err)), "ab")  # noqa: SIM115
            f.write(("\n".join(lines) + "\n").encode(errors="replace"))
            f.flush()
        except OSError as e:
            log.warning("cannot write worker pid %d's output to its log file: %s", pid, e)
            if f is not None:
                f.close()
            self.files[key] = None

    def close(self, worker_id: bytes) -> None:
        for is_err in (False, True):
            f = self.files.pop((worker_id, is_err), None)
            if f is not None:
                f.close()

    # ------------------------------------------------------------ serving

    def listing(self) -> list[dict[str, Any]]:
        """The node's log files: name, size, modification time, and the pid/worker id of worker files."""
        rows: list[dict[str, Any]] = []
        if not self.log_dir or not os.path.isdir(self.log_dir):
            return rows
        with os.scandir(self.log_dir) as entries:
            for entry in entries:
                if not entry.is_file():
                    continue
                worker = parse_worker_file(entry.name)
                if worker is not None and worker[0] not in self.known:
                    continue  # another local node's worker
                stat = entry.stat()
                rows.append({"filename": entry.name, "size": stat.st_size, "mtime": stat.st_mtime,
                             "category": category(entry.name), "worker_id": worker[0] if worker else None,
                             "pid": worker[1] if worker else None})
        rows.sort(key=lambda r: r["filename"])
        return rows

    def _on_read(self, msg: memory_messages.ReadLogFile, payload: list, peer: Any) -> None:
        try:
            peer.reply(msg.req_id, self.read(msg.filename, msg.offset, msg.tail_lines, msg.max_bytes))
        except (ValueError, OSError) as e:
            peer.reply(msg.req_id, str(e), ok=False)

    def read(self, filename: str, offset: int = 0, tail_lines: int = -1, max_bytes: int = 1 << 20) -> dict[str, Any]:
        """{"data" (bytes), "offset" (where the next read starts), "size"}: the last `tail_lines` lines
        (tail_lines >= 0), else the bytes from `offset` on; at most max_bytes either way."""
        if not isinstance(filename, str) or not filename or os.sep in filename or filename in (".", ".."):
            raise ValueError(f"{filename!r} is not a log file name (give a name from the node's listing)")
        path = os.path.join(self.log_dir, filename)
        worker = parse_worker_file(filename)
        if not os.path.isfile(path) or (worker is not None and worker[0] not in self.known):
            raise ValueError(f"no log file {filename!r} on this node")
        limit = max(1, min(int(max_bytes), MAX_READ_BYTES))
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if tail_lines >= 0:
                start = _tail_start(f, size, tail_lines, limit)
            else:
                start = min(max(0, int(offset)), size)
            f.seek(start)
            data = f.read(min(limit, size - start))
        return {"data": data, "offset": start + len(data), "size": size}


def _tail_start(f: BinaryIO, size: int, lines: int, limit: int) -> int:
    """Where the last `lines` lines of the file begin (no earlier than `limit` bytes from the end)."""
    if lines == 0:
        return size
    floor = max(0, size - limit)
    position, found = size, 0
    # A final newline ends the last line; it does not start another one.
    if size:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            position -= 1
    while position > floor:
        step = min(8192, position - floor)
        position -= step
        f.seek(position)
        chunk = f.read(step)
        index = len(chunk)
        while True:
            index = chunk.rfind(b"\n", 0, index)
            if index < 0:
                break
            found += 1
            if found == lines:
                return position + index + 1
    return floor
