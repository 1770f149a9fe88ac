"""The pure parts of `kray memory` and `kray logs`: Ray's reference-type precedence, the memory table's
grouping, sorting and summaries, the log files' names and groups, and reading a file's last lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kray.raylet import log_files
from kray.util import memory_state


def _row(object_id: str, **fields: Any) -> dict[str, Any]:
    row = {"object_id": object_id, "owned": True, "owner_address": "tcp://o", "ready": True, "kind": "inline",
           "object_size": 10, "node_id": None, "local_ref_count": 0, "borrowers": 0, "pinned_in_memory": False,
           "submitted_task_ref_count": 0, "contained_in_owned": [], "call_site": ""}
    row.update(fields)
    return row


def _table(pid: int, ip: str, rows: list[dict[str, Any]], is_driver: bool = False, **extra: Any) -> dict[str, Any]:
    return {"pid": pid, "ip": ip, "node_id": ip, "is_driver": is_driver, "worker_id": str(pid), "objects": rows,
            "actor_handles": [], **extra}


def test_reference_types_follow_rays_precedence() -> None:
    assert memory_state.reference_type(_row("a", pinned_in_memory=True, local_ref_count=2)) == "PINNED_IN_MEMORY"
    assert memory_state.reference_type(_row("a", submitted_task_ref_count=1, local_ref_count=1)) == "USED_BY_PENDING_TASK"
    assert memory_state.reference_type(_row("a", local_ref_count=1, contained_in_owned=["b"])) == "LOCAL_REFERENCE"
    assert memory_state.reference_type(_row("a", contained_in_owned=["b"])) == "CAPTURED_IN_OBJECT"
    assert memory_state.reference_type(_row("a")) is None  # holds nothing: not listed


def test_memory_table_groups_sorts_and_sums() -> None:
    tables = [
        _table(1, "10.0.0.1", [_row("a" * 40, local_ref_count=1, object_size=300),
                               _row("b" * 40, pinned_in_memory=True, kind="shm", object_size=5000)], is_driver=True),
        _table(2, "10.0.0.2", [_row("a" * 40, owned=False, local_ref_count=1, kind=None, object_size=-1,
                                    ready=False)], actor_handles=["c" * 32]),
    ]
    stores = [{"node_id": "n1", "ip": "10.0.0.1", "used": 5000, "capacity": 10_000, "num_objects": 1, "num_spilled": 0}]
    table = memory_state.memory_table(tables, stores, "NODE_ADDRESS", "OBJECT_SIZE")
    first = table["group"]["10.0.0.1"]
    assert [e["object_size"] for e in first["entries"]] == [300, 5000]  # ascending, as Ray
    assert first["summary"]["total_object_size"] == 5300 and first["summary"]["total_pinned_in_memory"] == 1
    assert first["summary"]["total_bytes_pinned_in_memory"] == 5000
    second = table["group"]["10.0.0.2"]["entries"]
    assert {(e["reference_type"], e["task_status"]) for e in second} == {("LOCAL_REFERENCE", "-"), ("ACTOR_HANDLE", "-")}
    assert all(e["call_site"] == "disabled" for e in second)
    assert table["object_store"]["used_bytes"] == 5000 and table["summary"]["total_actor_handles"] == 1
    by_pid = memory_state.memory_table(tables, stores, "STACK_TRACE", "PID")
    assert list(by_pid["group"]) == ["disabled"] and [e["pid"] for e in by_pid["group"]["disabled"]["entries"]] == [1, 1, 2, 2]
    rows = memory_state.inline_object_rows(tables)  # the borrower is listed for the owner's inline object
    assert sorted((r["pid"], r["object_size"]) for r in rows) == [(1, 300), (2, 300)]


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="sort_by .* got 'COLOR'"):
        memory_state.check_options("NODE_ADDRESS", "COLOR", "B")
    assert memory_state.check_options("node_address", "pid", "kb") == ("NODE_ADDRESS", "PID", "KB")


def test_log_file_names_and_groups() -> None:
    name = log_files.worker_file(bytes.fromhex("ab" * 16), 4321, is_err=True)
    assert name == "worker-" + "ab" * 16 + "-ffffffff-4321.err"
    assert log_files.parse_worker_file(name) == ("ab" * 16, 4321)
    assert log_files.parse_worker_file("raylet.out") is None
    assert [log_files.category(n) for n in (name, "raylet.err", "gcs.out", "dashboard.out", "job-driver-x.log", "x")] == [
        "worker_err", "raylet", "gcs_server", "dashboard", "driver", "internal"]
    assert log_files.log_dir_of("/s/session_1/runtime_resources") == "/s/session_1/logs"


class _Loop:
    def on(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("text", "lines", "expected"), [
    (b"a\nb\nc\n", 2, b"b\nc\n"),
    (b"a\nb\nc", 2, b"b\nc"),
    (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
    (b"a\nb\nc\n", 0, b""),
    (b"only\n", 1, b"only\n"),
    (b"", 3, b""),
    (b"x" * 20000 + b"\n" + b"y" * 9000 + b"\nlast\n", 2, b"y" * 9000 + b"\nlast\n"),
])
def test_reading_the_last_lines(tmp_path: Path, text: bytes, lines: int, expected: bytes) -> None:
    (tmp_path / "raylet.out").write_bytes(text)
    logs = log_files.WorkerLogs(_Loop(), str(tmp_path))
    answer = logs.read("raylet.out", tail_lines=lines)
    assert answer["data"] == expected and answer["offset"] == len(text) == answer["size"]
    assert logs.read("raylet.out", offset=1)["data"] == text[1:]


def test_reading_refuses_paths_and_other_nodes_workers(tmp_path: Path) -> None:
    (tmp_path / log_files.worker_file(b"\x01" * 16, 7, False)).write_bytes(b"x\n")
    logs = log_files.WorkerLogs(_Loop(), str(tmp_path))
    with pytest.raises(ValueError, match="not a log file name"):
        logs.read("../etc/passwd")
    with pytest.raises(ValueError, match="no log file"):
        logs.read(log_files.worker_file(b"\x01" * 16, 7, False))  # not a worker this raylet started
    assert logs.listing() == []
    logs.started(b"\x01" * 16)
    assert [r["pid"] for r in logs.listing()] == [7]
