"""The state API on a known workload: kray.util.state's list/get/summarize with Ray's columns, filters,
limit and detail; the same over HTTP (Ray's /api/v0/ paths, token required); and the `kray list|get|summary`
commands run as a user runs them, in a subprocess given the cluster's address and token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import kray
import pytest
import yaml
from kray.protocol import wire
from kray.util import placement_group, state

from . import helpers

cluster = helpers.module_cluster(num_cpus=2, include_dashboard=True)


@kray.remote
def ok(i: int) -> int:
    return i


@kray.remote(max_retries=0)
def broken() -> None:
    raise KeyError("no such key in the known workload")


@kray.remote
class Keeper:
    def ping(self) -> int:
        return os.getpid()


@pytest.fixture(scope="module")
def workload(cluster: helpers.LocalCluster) -> dict[str, Any]:
    assert kray.get([ok.remote(i) for i in range(4)]) == [0, 1, 2, 3]
    with pytest.raises(KeyError):
        kray.get(broken.remote())
    alive, doomed = Keeper.remote(), Keeper.options(name="doomed").remote()
    alive_pid = kray.get(alive.ping.remote())
    kray.get(doomed.ping.remote())
    kray.kill(doomed)
    group = placement_group([{"CPU": 0.5}], strategy="PACK")
    kray.get(group.ready(), timeout=60)
    big = kray.put(b"x" * (1 << 20))
    helpers.wait_until(lambda: len(state.list_tasks(filters=[("name", "=", "ok"), ("state", "=", "FINISHED")])) == 4
                       and state.list_tasks(filters=[("name", "=", "broken"), ("state", "=", "FAILED")]),
                       what="the workload's task events")
    helpers.wait_until(lambda: state.list_actors(filters=[("state", "=", "DEAD")]), what="the killed actor DEAD")
    return {"alive": alive, "alive_pid": alive_pid, "doomed": doomed, "group": group, "big": big}


def test_list_tasks_filters_limit_and_detail(workload: dict[str, Any]) -> None:
    failed = state.list_tasks(filters=[("state", "=", "FAILED")])
    assert [t.name for t in failed] == ["broken"] and failed[0].error_type == "TASK_EXECUTION_EXCEPTION"
    assert "error_message" not in failed[0]  # a detail column
    detailed = state.list_tasks(filters=[("name", "=", "broken")], detail=True)
    assert "no such key in the known workload" in detailed[0].error_message
    assert [e["state"] for e in detailed[0].events][-1] == "FAILED"
    not_ok = state.list_tasks(filters=[("func_or_class_name", "!=", "ok"), ("type", "=", "NORMAL_TASK")])
    assert {t.name for t in not_ok} == {"broken"}
    assert len(state.list_tasks(filters=[("name", "=", "ok")], limit=2)) == 2
    assert len(state.list_tasks(filters=[("name", "=", "ok")], limit=100)) == 4
    with pytest.raises(ValueError, match="not_a_column"):
        state.list_tasks(filters=[("not_a_column", "=", "x")])
    with pytest.raises(ValueError, match="predicate"):
        state.list_tasks(filters=[("state", ">", "x")])
    task = state.get_task(failed[0].task_id)
    assert task is not None and task.state == "FAILED" and task.func_or_class_name == "broken"


def test_actors_nodes_groups_workers_objects_and_jobs(workload: dict[str, Any]) -> None:
    dead = state.list_actors(filters=[("state", "=", "DEAD")])
    assert [a.name for a in dead] == ["doomed"]
    alive = state.get_actor(workload["alive"]._actor_id.hex())
    assert alive is not None and alive.state == "ALIVE" and alive.pid == workload["alive_pid"]
    assert alive.num_restarts == 0 and "death_cause" in alive

    nodes = state.list_nodes()
    assert len(nodes) == 1 and nodes[0].state == "ALIVE" and nodes[0].is_head_node
    assert nodes[0].node_id == kray.get_runtime_context().get_node_id()
    assert state.get_node(nodes[0].node_id).resources_total["CPU"] == 2.0

    groups = state.list_placement_groups(filters=[("state", "=", "CREATED")], detail=True)
    assert [g.placement_group_id for g in groups] == [workload["group"].id.hex()]
    assert groups[0].bundles[0]["unit_resources"] == {"CPU": 0.5}

    workers = state.list_workers(filters=[("pid", "=", str(workload["alive_pid"]))])
    assert len(workers) == 1 and workers[0].is_alive and workers[0].node_id == nodes[0].node_id

    objects = state.list_objects(filters=[("object_id", "=", workload["big"].hex())])
    assert len(objects) == 1 and objects[0].object_size >= 1 << 20
    summary = state.summarize_objects()["cluster"]
    assert summary["total_objects"] >= 1 and summary["total_size_mb"] >= 1.0

    jobs = state.list_jobs(filters=[("job_id", "=", kray.get_runtime_context().get_job_id())])
    assert len(jobs) == 1 and jobs[0].type == "DRIVER" and jobs[0].status == "RUNNING"


def test_summaries_count_by_function_and_class(workload: dict[str, Any]) -> None:
    tasks = state.summarize_tasks()["cluster"]
    assert tasks["summary"]["ok"]["state_counts"] == {"FINISHED": 4}
    assert tasks["summary"]["broken"]["state_counts"] == {"FAILED": 1}
    assert tasks["total_tasks"] == 5 and tasks["total_actor_tasks"] >= 2
    actors = state.summarize_actors()["cluster"]
    assert actors["summary"]["Keeper"]["state_counts"] == {"ALIVE": 1, "DEAD": 1}


def _http(path: str, token: str | None = "") -> Any:
    url = "http://" + kray.init(ignore_reinit_error=True).dashboard_url + path
    token = wire.get_token() if token == "" else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        return json.loads(response.read())


def test_the_same_over_http_with_rays_paths_and_envelope(workload: dict[str, Any]) -> None:
    query = urllib.parse.urlencode({"filter_keys": "state", "filter_predicates": "=", "filter_values": "FAILED",
                                    "detail": "true"})
    answer = _http("/api/v0/tasks?" + query)
    assert answer["result"] is True
    result = answer["data"]["result"]
    assert result["total"] == 1 and [t["name"] for t in result["result"]] == ["broken"]
    assert "no such key" in result["result"][0]["error_message"]
    assert len(_http("/api/v0/tasks?limit=2")["data"]["result"]["result"]) == 2
    actors = _http("/api/v0/actors?filter_keys=state&filter_predicates=%3D&filter_values=DEAD")
    assert [a["name"] for a in actors["data"]["result"]["result"]] == ["doomed"]
    for resource in ("nodes", "workers", "objects", "jobs", "placement_groups"):
        assert _http(f"/api/v0/{resource}")["data"]["result"]["result"], resource
    summary = _http("/api/v0/tasks/summarize")["data"]["result"]["result"]
    assert summary["cluster"]["summary"]["ok"]["state_counts"] == {"FINISHED": 4}
    with pytest.raises(urllib.error.HTTPError) as refused:
        _http("/api/v0/tasks", token=None)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as bad:
        _http("/api/v0/tasks?filter_keys=nope&filter_predicates=%3D&filter_values=1")
    assert bad.value.code == 400 and "nope" in json.loads(bad.value.read())["msg"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`kray ARGS --address GCS` with the cluster token in KRAY_CLUSTER_TOKEN, as from another machine (other
    clusters may be recorded on this one by tests running beside this one)."""
    from kray.api import runtime

    gcs = runtime.current_core().gcs_address.removeprefix("tcp://")
    env = {**os.environ, "KRAY_CLUSTER_TOKEN": wire.get_token() or ""}
    return subprocess.run([sys.executable, "-c", "from kray.cli.main import main; main()", *args, "--address", gcs],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False, env=env)


def test_cli_list_get_summary_in_every_format(workload: dict[str, Any]) -> None:
    listed = _cli("list", "tasks", "--filter", "state=FAILED", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["broken"]

    as_yaml = _cli("list", "actors", "-f", "state!=DEAD", "--format", "yaml", "--detail")
    assert as_yaml.returncode == 0, as_yaml.stderr
    actors = yaml.safe_load(as_yaml.stdout)
    assert [a["class_name"] for a in actors] == ["Keeper"] and actors[0]["num_restarts"] == 0

    table = _cli("list", "tasks", "--filter", "name=ok", "--limit", "3")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["TASK_ID", "ATTEMPT_NUMBER", "NAME", "STATE"] and len(lines) == 1 + 3

    got = _cli("get", "actors", workload["alive"]._actor_id.hex())
    assert got.returncode == 0, got.stderr
    assert yaml.safe_load(got.stdout)["state"] == "ALIVE"
    assert "No actors with id" in _cli("get", "actors", "ff" * 16).stderr

    summary = _cli("summary", "tasks")
    assert summary.returncode == 0, summary.stderr
    assert "total_tasks: 5" in summary.stdout and "broken" in summary.stdout and "FAILED" in summary.stdout
    for resource in ("nodes", "workers", "objects", "jobs", "placement-groups"):
        shown = _cli("list", resource, "--format", "json")
        assert shown.returncode == 0 and json.loads(shown.stdout), (resource, shown.stderr)

    bad = _cli("list", "tasks", "--filter", "nonsense")
    assert bad.returncode != 0 and "KEY=VALUE" in bad.stderr
    unknown = _cli("list", "tasks", "--filter", "color=red")
    assert unknown.returncode != 0 and "color" in unknown.stderr


def test_cli_timeline_writes_a_chrome_trace_of_the_tasks(workload: dict[str, Any], tmp_path) -> None:
    out = tmp_path / "trace.json"
    written = _cli("timeline", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert str(out) in written.stdout
    events = json.loads(out.read_text())
    ok_events = [e for e in events if e["name"] == "ok"]
    assert len(ok_events) == 4 and all(e["ph"] == "X" and e["dur"] >= 0 for e in ok_events)
    assert {e["tid"] for e in ok_events} == {f"worker {t.worker_pid}" for t in state.list_tasks(filters=[("name", "=", "ok")])}
    broken_event = next(e for e in events if e["name"] == "broken")
    assert broken_event["args"]["state"] == "FAILED" and broken_event["args"]["error_type"] == "TASK_EXECUTION_EXCEPTION"

