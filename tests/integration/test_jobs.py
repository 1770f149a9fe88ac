"""Submitted jobs on a real two-node cluster started by `kray start`: Ray's job API through kray's SDK and
over raw HTTP (status codes, bad input), entrypoint resources and placement, stop, a driver killed
mid-run leaving nothing behind, logs while the job runs, working_dir uploads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from kray.job_submission import JobStatus, JobSubmissionClient

from . import helpers, multinode, test_runtime_env_pip

UPLOAD_LIMIT = 4 * helpers.MiB


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[multinode.MultiNodeCluster]:
    """A head with 2 CPUs and a node with 2 CPUs and one `entry_slot`."""
    with multinode.running(
        tmp_path_factory.mktemp("jobs"), num_cpus=2, num_nodes=2, resources=[None, {"entry_slot": 1}],
        extra_env={"KRAY_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "KRAY_JOB_STOP_WAIT_TIME_S": "2",
                   # Packages nobody holds go within about a second.
                   "KRAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S": "1", "KRAY_PACKAGE_GC_PERIOD_S": "0.2"},
    ) as started:
        yield started


def _url(cluster: multinode.MultiNodeCluster) -> str:
    record = cluster.nodes[0].address_file()
    assert record and record.get("dashboard_url"), record
    return "http://" + record["dashboard_url"]


@pytest.fixture
def client(cluster: multinode.MultiNodeCluster) -> JobSubmissionClient:
    return JobSubmissionClient(_url(cluster), headers={"Authorization": f"Bearer {cluster.token}"})


def _http(cluster: multinode.MultiNodeCluster, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(_url(cluster) + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {cluster.token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _wait_terminal(client: JobSubmissionClient, job_id: str) -> Any:
    helpers.wait_until(lambda: client.get_job_status(job_id).is_terminal(), what=f"job {job_id} to end")
    return client.get_job_info(job_id)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "driver.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def _free_cpus(cluster: multinode.MultiNodeCluster) -> float:
    _, text = _http(cluster, "GET", "/api/nodes")
    return sum(n["resources_available"].get("CPU", 0) for n in json.loads(text)["nodes"] if n["alive"])


def test_a_driver_job_runs_tasks_and_reports_its_output(client: JobSubmissionClient, tmp_path: Path) -> None:
    script = _script(tmp_path, """
        import kray
        kray.init()
        @kray.remote
        def square(x):
            return x * x
        print("squares", sum(kray.get([square.remote(i) for i in range(10)])))
    """)
    job_id = client.submit_job(entrypoint=f"python {script}", metadata={"owner": "ci"})
    assert job_id.startswith("raysubmit_")
    info = _wait_terminal(client, job_id)
    assert info.status == JobStatus.SUCCEEDED, info.message
    assert info.driver_exit_code == 0 and info.message == "Job finished successfully."
    assert info.metadata == {"owner": "ci"} and info.end_time >= info.start_time
    assert info.job_id and info.driver_info and info.driver_info["id"] == info.job_id
    assert "squares 285" in client.get_job_logs(job_id)
    assert job_id in [j.submission_id for j in client.list_jobs()]
    assert client.delete_job(job_id)
    with pytest.raises(RuntimeError, match="404"):
        client.get_job_info(job_id)


def test_a_failing_entrypoint_fails_the_job_with_its_exit_code_and_last_output(client: JobSubmissionClient) -> None:
    job_id = client.submit_job(entrypoint="echo about to fail; exit 7", submission_id="fails-with-7")
    info = _wait_terminal(client, job_id)
    assert info.status == JobStatus.FAILED and info.driver_exit_code == 7
    assert "exit code 7" in info.message and "about to fail" in info.message
    with pytest.raises(RuntimeError, match="already exists"):
        client.submit_job(entrypoint="true", submission_id="fails-with-7")


def test_logs_stream_while_the_job_runs(client: JobSubmissionClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job_id = client.submit_job(entrypoint=f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second")

    async def follow() -> list[str]:
        chunks = []
        async for chunk in client.tail_job_logs(job_id):
            chunks.append(chunk)
            if "first" in chunk:
                # The job is still running: it waits for the gate, which opens only now.
                assert client.get_job_status(job_id) == JobStatus.RUNNING
                gate.touch()
        return chunks

    chunks = asyncio.run(asyncio.wait_for(follow(), helpers.WAIT_S))
    assert "".join(chunks) == "first\nsecond\n"
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED


def test_entrypoint_resources_place_the_driver_and_stay_reserved_while_it_runs(
    client: JobSubmissionClient, cluster: multinode.MultiNodeCluster, tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    script = _script(tmp_path, f"""
        import os, time, kray
        kray.init()
        print("driver node", kray.get_runtime_context().get_node_id(), flush=True)
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
    """)
    before = _free_cpus(cluster)
    job_id = client.submit_job(entrypoint=f"python {script}", entrypoint_num_cpus=1,
                               entrypoint_resources={"entry_slot": 1})
    helpers.wait_until(lambda: "driver node" in client.get_job_logs(job_id), what="the driver to start")
    info = helpers.wait_until(lambda: (i := client.get_job_info(job_id)).driver_info and i, what="the driver's info")
    assert info.driver_info["node_ip_address"] == cluster.ip_of(1), info
    helpers.wait_until(lambda: _free_cpus(cluster) == before - 1, what="the entrypoint to hold a CPU")
    gate.touch()
    assert _wait_terminal(client, job_id).status == JobStatus.SUCCEEDED
    helpers.wait_until(lambda: _free_cpus(cluster) == before, what="the entrypoint's CPU to be returned")


def test_an_infeasible_entrypoint_stays_pending_until_stopped(client: JobSubmissionClient) -> None:
    job_id = client.submit_job(entrypoint="echo never", entrypoint_resources={"no_such_thing": 1})
    assert client.get_job_status(job_id) == JobStatus.PENDING
    assert client.stop_job(job_id)
    assert _wait_terminal(client, job_id).status == JobStatus.STOPPED


def test_stop_ends_the_entrypoint_and_its_actors(
    client: JobSubmissionClient, cluster: multinode.MultiNodeCluster, tmp_path: Path,
) -> None:
    script = _script(tmp_path, """
        import time, kray
        kray.init()
        @kray.remote(num_cpus=1)
        class Holder:
            def ready(self):
                return True
        holder = Holder.remote()
        kray.get(holder.ready.remote())
        print("holding", flush=True)
        time.sleep(600)
    """)
    before = _free_cpus(cluster)
    job_id = client.submit_job(entrypoint=f"python {script}")
    helpers.wait_until(lambda: "holding" in client.get_job_logs(job_id), what="the actor to start")
    helpers.wait_until(lambda: _free_cpus(cluster) == before - 1, what="the actor to hold a CPU")
    assert client.stop_job(job_id)
    info = _wait_terminal(client, job_id)
    assert info.status == JobStatus.STOPPED and info.message == "Job was intentionally stopped."
    helpers.wait_until(lambda: _free_cpus(cluster) == before, what="the stopped job's actor to end")
    assert not client.stop_job(job_id)


def test_a_driver_killed_mid_run_leaves_no_actor_or_task_behind(
    client: JobSubmissionClient, cluster: multinode.MultiNodeCluster, tmp_path: Path,
) -> None:
    script = _script(tmp_path, """
        import time, kray
        kray.init()
        @kray.remote(num_cpus=1)
        class Holder:
            def ready(self):
                return True
        @kray.remote(num_cpus=1)
        def busy():
            time.sleep(600)
        holder = Holder.remote()
        kray.get(holder.ready.remote())
        running = busy.remote()
        print("holding", flush=True)
        time.sleep(600)
    """)
    before = _free_cpus(cluster)
    job_id = client.submit_job(entrypoint=f"python {script}")
    helpers.wait_until(lambda: "holding" in client.get_job_logs(job_id), what="the driver to start its work")
    helpers.wait_until(lambda: _free_cpus(cluster) == before - 2, what="the actor and the task to hold 2 CPUs")
    info = helpers.wait_until(lambda: (i := client.get_job_info(job_id)).driver_info and i, what="the driver's pid")
    os.kill(int(info.driver_info["pid"]), signal.SIGKILL)
    info = _wait_terminal(client, job_id)
    # The shell running the entrypoint reports the killed driver as 128 + 9 (or, had it exec'd, -9).
    assert info.status == JobStatus.FAILED and info.driver_exit_code in (128 + signal.SIGKILL, -signal.SIGKILL), info
    helpers.wait_until(lambda: _free_cpus(cluster) == before, what="the killed driver's actor and task to end")


def test_bad_requests_get_clear_4xx_answers_and_the_server_keeps_serving(
    cluster: multinode.MultiNodeCluster, client: JobSubmissionClient,
) -> None:
    status, text = _http(cluster, "POST", "/api/jobs/", b"{not json")
    assert status == 400 and "not valid JSON" in text
    status, text = _http(cluster, "POST", "/api/jobs/", json.dumps({"entrypoint": "true", "colour": 1}).encode())
    assert status == 400 and "colour" in text
    status, text = _http(cluster, "POST", "/api/jobs/", json.dumps({"entrypoint": ""}).encode())
    assert status == 400 and "entrypoint" in text
    body = {"entrypoint": "true", "runtime_env": {"conda": "env.yaml"}}
    status, text = _http(cluster, "POST", "/api/jobs/", json.dumps(body).encode())
    assert status == 400 and "conda" in text
    body = {"entrypoint": "true", "runtime_env": {"working_dir": "/some/local/dir"}}
    status, text = _http(cluster, "POST", "/api/jobs/", json.dumps(body).encode())
    assert status == 400 and "upload it first" in text
    assert _http(cluster, "GET", "/api/jobs/no-such-job")[0] == 404
    assert _http(cluster, "POST", "/api/jobs/no-such-job/stop")[0] == 404
    status, text = _http(cluster, "PUT", "/api/packages/gcs/_ray_pkg_big.zip", b"x" * (UPLOAD_LIMIT + 1))
    assert status == 413, text
    assert _http(cluster, "GET", "/api/packages/gcs/_ray_pkg_big.zip")[0] == 404
    assert _http(cluster, "GET", "/api/packages/s3/_ray_pkg_big.zip")[0] == 400
    job_id = client.submit_job(entrypoint="sleep 600")
    status, text = _http(cluster, "DELETE", f"/api/jobs/{job_id}")
    assert status == 400 and "non-terminal" in text
    client.stop_job(job_id)
    assert _wait_terminal(client, job_id).status == JobStatus.STOPPED
    assert client.delete_job(job_id)


def test_working_dir_is_uploaded_once_and_is_the_drivers_cwd(
    client: JobSubmissionClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.py").write_text("GREETING = 'from the working dir'\n")
    (project / "main.py").write_text("import settings\nprint(settings.GREETING)\n")
    uploads: list[str] = []
    real_upload = client._upload_package
    monkeypatch.setattr(client, "_upload_package", lambda uri, data: (uploads.append(uri), real_upload(uri, data)))
    first = client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(project)})
    second = client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(project)})
    for job_id in (first, second):
        info = _wait_terminal(client, job_id)
        assert info.status == JobStatus.SUCCEEDED, info.message
        assert "from the working dir" in client.get_job_logs(job_id)
        assert info.runtime_env["working_dir"].startswith("gcs://_ray_pkg_")
    assert len(uploads) == 1, "the same content was uploaded twice"


def test_env_vars_reach_the_entrypoint(client: JobSubmissionClient) -> None:
    job_id = client.submit_job(entrypoint="echo value=$JOB_SETTING",
                               runtime_env={"env_vars": {"JOB_SETTING": "forty-two"}})
    assert _wait_terminal(client, job_id).status == JobStatus.SUCCEEDED
    assert "value=forty-two" in client.get_job_logs(job_id)


def test_a_dead_supervisor_fails_the_job_and_takes_its_driver_along(
    client: JobSubmissionClient, tmp_path: Path,
) -> None:
    script = _script(tmp_path, """
        import time, kray
        kray.init()
        print("started", flush=True)
        time.sleep(600)
    """)
    job_id = client.submit_job(entrypoint=f"python {script}")
    info = helpers.wait_until(lambda: (i := client.get_job_info(job_id)).driver_info and i, what="the driver's info")
    driver = psutil.Process(int(info.driver_info["pid"]))
    worker = next(p for p in driver.parents() if "kray.worker" in " ".join(p.cmdline()))
    worker.kill()  # the supervisor's worker process dies as in a crash
    info = _wait_terminal(client, job_id)
    assert info.status == JobStatus.FAILED and "supervisor" in info.message, info
    driver.wait(helpers.WAIT_S)  # raises if the driver outlives its supervisor


def test_drivers_that_connect_by_themselves_are_listed_as_driver_jobs(
    client: JobSubmissionClient, cluster: multinode.MultiNodeCluster, tmp_path: Path,
) -> None:
    script = _script(tmp_path, """
        import sys, kray
        kray.init(address=sys.argv[1])
        print(kray.get_runtime_context().get_job_id(), flush=True)
        sys.stdin.readline()
    """)
    env = cluster.node_env(cluster.nodes[0], cluster.token)
    with subprocess.Popen([sys.executable, script, cluster.address], env=env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as driver:
        assert driver.stdout is not None
        job_id = driver.stdout.readline().strip()
        listed = {j.job_id: j for j in client.list_jobs()}
        assert listed[job_id].type.value == "DRIVER" and listed[job_id].status == JobStatus.RUNNING
        assert client.get_job_info(job_id).type.value == "DRIVER"
        with pytest.raises(RuntimeError, match="400"):
            client.stop_job(job_id)
        driver.communicate("\n", timeout=helpers.WAIT_S)
    assert client.get_job_info(job_id).status == JobStatus.SUCCEEDED


def test_a_runtime_env_that_cannot_be_set_up_fails_the_job_with_the_reason(client: JobSubmissionClient) -> None:
    pip = {"packages": ["kray-no-such-package-anywhere==1.0"], "pip_install_options": ["--no-index"]}
    job_id = client.submit_job(entrypoint="echo never runs", runtime_env={"pip": pip})
    info = _wait_terminal(client, job_id)
    assert info.status == JobStatus.FAILED and info.error_type == "RUNTIME_ENV_SETUP_FAILURE", info
    assert "kray-no-such-package-anywhere" in info.message
    assert "never runs" not in client.get_job_logs(job_id)


def test_a_pip_runtime_env_is_the_entrypoints_python_and_its_tasks(client: JobSubmissionClient,
                                                                   tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    test_runtime_env_pip.build_wheel(wheels, "2.5")
    script = _script(tmp_path, f"""
        import kray, {test_runtime_env_pip.PACKAGE} as pkg
        kray.init()
        @kray.remote
        def version_in_a_task():
            import {test_runtime_env_pip.PACKAGE} as pkg
            return pkg.VERSION
        print("driver", pkg.VERSION, "task", kray.get(version_in_a_task.remote()))
    """)
    env = test_runtime_env_pip.pip_env(wheels, f"{test_runtime_env_pip.PACKAGE}==2.5")
    job_id = client.submit_job(entrypoint=f"python {script}", runtime_env=env)
    info = _wait_terminal(client, job_id)
    assert info.status == JobStatus.SUCCEEDED, info.message
    assert "driver 2.5 task 2.5" in client.get_job_logs(job_id)


def test_a_package_stays_while_a_job_or_an_actor_uses_it_and_goes_after(
    client: JobSubmissionClient, cluster: multinode.MultiNodeCluster, tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "tool.py").write_text("NAME = 'tool'\n")
    gate = tmp_path / "gate"
    (project / "main.py").write_text(textwrap.dedent(f"""
        import os, time, kray, tool
        kray.init(namespace="packages")
        @kray.remote
        class Keeper:
            def name(self):
                import tool
                return tool.NAME
        keeper = Keeper.options(name="package-keeper", lifetime="detached").remote()
        print("keeper", kray.get(keeper.name.remote()), flush=True)
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
    """))
    job_id = client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(project)})
    helpers.wait_until(lambda: "keeper tool" in client.get_job_logs(job_id), what="the detached actor")
    uri = client.get_job_info(job_id).runtime_env["working_dir"]
    package = "/api/packages/gcs/" + uri.removeprefix("gcs://")
    time.sleep(2)  # past the temporary pin: the running job and the actor hold the package
    assert _http(cluster, "GET", package)[0] == 200
    gate.touch()
    assert _wait_terminal(client, job_id).status == JobStatus.SUCCEEDED
    time.sleep(2)
    assert _http(cluster, "GET", package)[0] == 200, "the detached actor still uses the package"
    script = _script(tmp_path, """
        import kray
        kray.init(namespace="packages")
        kray.kill(kray.get_actor("package-keeper"))
    """)
    killer = client.submit_job(entrypoint=f"python {script}")
    assert _wait_terminal(client, killer).status == JobStatus.SUCCEEDED, client.get_job_logs(killer)
    helpers.wait_until(lambda: _http(cluster, "GET", package)[0] == 404, what="the unused package to be deleted")
