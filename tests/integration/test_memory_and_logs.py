"""The debugging tools on a real local cluster: `kray memory` names who holds which object (a pinned
one, a borrowed one, one used by a pending task, an inline one in list_objects), `kray logs` lists the
nodes' files and prints an actor's output (also over Ray's /api/v0/logs paths), `--follow` prints a line
written later, and a get() blocked past the (lowered) threshold logs one warning naming the pending
resources. The commands run as a user runs them, in a subprocess given the cluster's address and token."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import kray
import numpy as np
import pytest
import yaml
from kray.protocol import wire
from kray.util import state

from . import helpers

cluster = helpers.module_cluster(num_cpus=2, include_dashboard=True)


@kray.remote
class Holder:
    """Holds a borrowed ref (passed inside a list, so it stays a ref) and prints on request."""

    def keep(self, refs: list[Any]) -> int:
        self.refs = refs
        return os.getpid()

    def say(self, text: str) -> None:
        print(text, flush=True)


@kray.remote
def chatty() -> int:
    print("printed by a task", flush=True)
    return os.getpid()


@kray.remote(num_cpus=64)
def needs_a_big_node(refs: list[Any]) -> int:
    return len(refs)


def _command(*args: str) -> list[str]:
    from kray.api import runtime

    gcs = runtime.current_core().gcs_address.removeprefix("tcp://")
    return [sys.executable, "-c", "from kray.cli.main import main; main()", *args, "--address", gcs]


def _env() -> dict[str, str]:
    return {**os.environ, "KRAY_CLUSTER_TOKEN": wire.get_token() or ""}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          check=False, env=_env())


@pytest.fixture(scope="module")
def holdings(cluster: helpers.LocalCluster) -> dict[str, Any]:
    pinned = kray.put(np.arange(1 << 18, dtype=np.int64))  # 2 MiB: in shared memory
    view = kray.get(pinned)  # a zero-copy view: the driver has it mapped
    borrowed = kray.put(np.ones(1 << 17, dtype=np.int64))
    small = kray.put("a small value")  # inline: lives in the driver's memory
    holder = Holder.remote()
    holder_pid = kray.get(holder.keep.remote([borrowed, small]))
    argument = kray.put(b"an argument of a task that cannot be scheduled")
    pending = needs_a_big_node.remote([argument])
    return {"pinned": pinned, "view": view, "borrowed": borrowed, "small": small, "holder": holder,
            "holder_pid": holder_pid, "argument": argument, "pending": pending}


def _entries(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for group in table["group"].values() for e in group["entries"]]


def test_kray_memory_names_the_holders(holdings: dict[str, Any]) -> None:
    me, holder_pid = os.getpid(), holdings["holder_pid"]
    shown = _cli("memory", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    table = json.loads(shown.stdout)
    by_ref: dict[str, list[dict[str, Any]]] = {}
    for entry in _entries(table):
        by_ref.setdefault(entry["object_ref"], []).append(entry)
    pinned = {(e["pid"], e["type"], e["reference_type"]) for e in by_ref[holdings["pinned"].hex()]}
    assert (me, "Driver", "PINNED_IN_MEMORY") in pinned
    assert by_ref[holdings["pinned"].hex()][0]["object_size"] >= 2 << 20
    borrowed = {(e["pid"], e["type"], e["reference_type"], e["owned"]) for e in by_ref[holdings["borrowed"].hex()]}
    assert (holder_pid, "Worker", "LOCAL_REFERENCE", False) in borrowed  # the actor borrows it
    assert (me, "Driver", "LOCAL_REFERENCE", True) in borrowed  # the driver owns it
    assert {e["reference_type"] for e in by_ref[holdings["argument"].hex()] if e["pid"] == me} == {"USED_BY_PENDING_TASK"}
    actor_handles = [e for e in _entries(table) if e["reference_type"] == "ACTOR_HANDLE" and e["pid"] == me]
    assert holdings["holder"]._actor_id.hex() in {e["object_ref"] for e in actor_handles}
    store = table["object_store"]
    assert store["capacity_bytes"] > 0 and store["used_bytes"] >= 3 << 20 and store["num_objects"] >= 2

    text = _cli("memory", "--units", "KB", "--sort-by", "PID")
    assert text.returncode == 0, text.stderr
    assert "--- Summary for node address: " in text.stdout and "PINNED_IN_MEMORY" in text.stdout
    assert f"{holdings['borrowed'].hex()}" in text.stdout and " KB" in text.stdout
    assert "Object store memory used: " in text.stdout
    stats = _cli("memory", "--stats-only")
    assert stats.returncode == 0 and "Object store memory used: " in stats.stdout and "PINNED" not in stats.stdout
    bad = _cli("memory", "--sort-by", "COLOR")
    assert bad.returncode != 0 and "COLOR" in bad.stderr


def test_list_objects_includes_inline_objects_and_their_holders(holdings: dict[str, Any]) -> None:
    rows = state.list_objects(filters=[("object_id", "=", holdings["small"].hex())], detail=True)
    holders = {(r["pid"], r["type"]) for r in rows}
    assert (os.getpid(), "DRIVER") in holders and (holdings["holder_pid"], "WORKER") in holders
    assert all(r["object_size"] > 0 for r in rows)


def test_kray_logs_lists_files_and_prints_an_actors_output(holdings: dict[str, Any]) -> None:
    holder = holdings["holder"]
    kray.get(holder.say.remote("printed by the holder actor"))
    actor_id = holder._actor_id.hex()
    shown = helpers.wait_until(
        lambda: (r := _cli("logs", "actor", "--id", actor_id)).returncode == 0
        and "printed by the holder actor" in r.stdout and r, what="the actor's line in `kray logs actor`")
    assert "--- Log has been truncated to last 1000 lines." in shown.stdout

    listed = _cli("logs", "cluster")
    assert listed.returncode == 0, listed.stderr
    assert "======== Logs on node: " in listed.stdout
    pid_file = f"-{holdings['holder_pid']}.out"
    files = yaml.safe_load(listed.stdout.split("========\n", 1)[1])
    assert any(name.endswith(pid_file) for name in files["worker_out"]) and "raylet.out" in files["raylet"]
    by_pid = _cli("logs", "worker", "--pid", str(holdings["holder_pid"]), "--tail", "100")
    assert by_pid.returncode == 0 and "printed by the holder actor" in by_pid.stdout, by_pid.stderr
    missing = _cli("logs", "no-such-file.log")
    assert missing.returncode == 0 and "No log file matches" in missing.stdout
    unknown = _cli("logs", "actor", "--id", "ff" * 16)
    assert unknown.returncode != 0 and "no actor with id" in unknown.stderr

    listing = state.list_logs(node_id=kray.get_runtime_context().get_node_id(), glob_filter="worker*")
    assert set(listing) <= {"worker_out", "worker_err"} and listing["worker_out"]
    text = "".join(state.get_log(actor_id=actor_id, tail=5))
    assert "printed by the holder actor" in text

    made = chatty.remote()
    kray.get(made)
    task_id = made.task_id().hex()
    helpers.wait_until(lambda: state.get_task(task_id) and state.get_task(task_id).worker_pid,
                       what="the task's worker pid in its events")
    helpers.wait_until(lambda: "printed by a task" in _cli("logs", "task", "--id", task_id).stdout,
                       what="the task's line in `kray logs task`")

    over_http = _http(f"/api/v0/logs/file?actor_id={actor_id}&lines=5").decode()
    assert "printed by the holder actor" in over_http
    http_listing = json.loads(_http("/api/v0/logs?glob=raylet*"))
    assert http_listing["result"] is True and "raylet.out" in http_listing["data"]["result"]["raylet"]
    url = "http://" + kray.init(ignore_reinit_error=True).dashboard_url + f"/api/v0/logs/file?actor_id={actor_id}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=60)  # no token
    assert refused.value.code == 401


def _http(path: str) -> bytes:
    url = "http://" + kray.init(ignore_reinit_error=True).dashboard_url + path
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {wire.get_token()}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return bytes(response.read())


def test_kray_logs_follow_prints_a_line_written_later(holdings: dict[str, Any]) -> None:
    holder = holdings["holder"]
    kray.get(holder.say.remote("before following"))
    proc = subprocess.Popen(_command("logs", "actor", "--id", holder._actor_id.hex(), "--follow", "--tail", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=_env())
    seen: list[str] = []

    def read() -> None:
        while line := proc.stdout.readline():  # type: ignore[union-attr]
            seen.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        helpers.wait_until(lambda: any("before following" in line for line in seen), what="the first line")
        kray.get(holder.say.remote("written after the follow began"))
        helpers.wait_until(lambda: any("written after the follow began" in line for line in seen),
                           what="the later line in `kray logs --follow`")
        assert proc.poll() is None  # still following
    finally:
        proc.kill()
        proc.wait(30)


def test_a_blocked_get_warns_once_with_the_pending_resources(
        holdings: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("KRAY_GET_BLOCKED_WARNING_S", "1")
    pending = holdings["pending"]
    with caplog.at_level(logging.WARNING, logger="kray.get"), pytest.raises(kray.exceptions.GetTimeoutError):
        kray.get(pending, timeout=4)
    warnings = [r.getMessage() for r in caplog.records if r.name == "kray.get"]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert pending.hex() in line and "needs_a_big_node" in line
    assert "pending on resources {CPU: 64}" in line and "PENDING_NODE_ASSIGNMENT" in line
    caplog.clear()
    assert kray.get(chatty.remote(), timeout=60) > 0  # a quick get: no warning
    assert not [r for r in caplog.records if r.name == "kray.get"]

    another = needs_a_big_node.remote([])
    with caplog.at_level(logging.WARNING, logger="kray.get"):
        waiting = threading.Thread(target=lambda: kray.wait([another]))  # no timeout: it warns too
        waiting.start()
        helpers.wait_until(lambda: [r for r in caplog.records if r.name == "kray.get"], what="wait()'s warning")
        kray.cancel(another)
        waiting.join(60)
    assert not waiting.is_alive()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "kray.get"]
    assert line.startswith("wait() has been blocked") and another.hex() in line


def test_memory_summary_names_a_put_object_and_its_size(holdings: dict[str, Any]) -> None:
    """ray._private.internal_api.memory_summary(): the text of `kray memory`, read by the driver itself."""
    from kray._private.internal_api import memory_summary

    ref = kray.put(np.zeros(3 << 17, dtype=np.int64))  # 3 MiB: in shared memory
    text = memory_summary()
    assert "--- Summary for node address: " in text and "Object store memory used: " in text
    (line,) = [row for row in text.splitlines() if ref.hex() in row]
    sizes = [int(word) for word, unit in zip(line.split(), line.split()[1:]) if unit == "B" and word.isdigit()]
    assert sizes and sizes[0] >= 3 << 20 and "LOCAL_REFERENCE" in line and str(os.getpid()) in line
    in_mb = memory_summary(units="MB", sort_by="PID", num_entries=1)
    assert in_mb.count("Object references for node address") >= 1 and " MB" in in_mb
    stats = memory_summary(stats_only=True)
    assert "Object store memory used: " in stats and ref.hex() not in stats
    with pytest.raises(ValueError, match="units must be one of B, KB, MB, GB, got 'TB'"):
        memory_summary(units="TB")
