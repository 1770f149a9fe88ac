"""The node CLI beyond what test_multinode covers: `kray start --block` (what a pod runs), start flags,
`kray status` with used resources and pending demand, `kray stop` of several nodes started on one
machine, and how drivers find a cluster (`KRAY_ADDRESS`, `address="auto"` on a worker node, a stale
address file).

Every `kray start` here gets a KRAY_TEMP_DIR of its own and a marker in its environment, so its
processes are found (and, if a test fails, killed) without touching any other kray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import kray
import psutil
import pytest
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import helpers, multinode, tasklib
from .multinode import MultiNodeCluster

START_TIMEOUT_S = 120.0


@kray.remote
def hold(gate: str, started: str) -> str:
    Path(started).touch()
    return "opened" if tasklib.wait_for_file(gate) else "gate never opened"


@kray.remote
def node_of_task() -> str:
    return kray.get_runtime_context().get_node_id()


def _env(temp_dir: Path, marker: str, token: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("KRAY_CLUSTER_TOKEN", "KRAY_ADDRESS", "RAY_ADDRESS", "KRAY_NODE_IP"):
        env.pop(name, None)
    env["KRAY_TEMP_DIR"] = str(temp_dir)
    env[multinode.MARKER_ENV] = marker
    env["PYTHONPATH"] = os.pathsep.join(p for p in (helpers.package_root(), env.get("PYTHONPATH")) if p)
    if token:
        env["KRAY_CLUSTER_TOKEN"] = token
    return env


def _record(temp_dir: Path) -> dict | None:
    try:
        return json.loads((temp_dir / multinode.ADDRESS_FILE_NAME).read_text())
    except (OSError, ValueError):
        return None


def _raylet_pid(record: dict) -> int:
    for pid in record["pids"]:
        try:
            if "kray.raylet" in " ".join(psutil.Process(pid).cmdline()):
                return int(pid)
        except psutil.Error:
            continue
    raise AssertionError(f"no raylet among the recorded processes {record['pids']}")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_marked(marker: str) -> None:
    for proc in multinode.marked_processes(marker):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


@contextlib.contextmanager
def blocking_head(tmp_path: Path, *flags: str) -> Iterator[tuple[subprocess.Popen, dict, Path, str]]:
    """`kray start --head --block ...` in the background; yields (process, address record, log, marker)."""
    temp_dir, log, marker = tmp_path / "temp", tmp_path / "start.log", f"cli-{uuid.uuid4().hex[:12]}"
    temp_dir.mkdir()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*multinode.kray_cli(), "start", "--head", f"--port={multinode.free_port()}", *flags, "--block"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=_env(temp_dir, marker),
        )
    try:
        helpers.wait_until(lambda: "kray stop" in log.read_text() or proc.poll() is not None, START_TIMEOUT_S,
                           "`kray start --block` to report the node started")
        assert proc.poll() is None, f"`kray start --block` returned (rc={proc.returncode}):\n{log.read_text()}"
        record = _record(temp_dir)
        assert record and record.get("token"), f"no address record in {temp_dir}"
        yield proc, record, log, marker
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _kill_marked(marker)


def _session_shm(record: dict) -> list[Path]:
    return sorted(helpers.SHM_ROOT.glob(f"{helpers.SHM_PREFIX}{os.path.basename(record['session_dir'])}*"))


def test_start_block_honours_its_flags_and_exits_non_zero_when_a_kray_process_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard_port = multinode.free_port()
    flags = ("--num-cpus=1", "--num-gpus=2", '--resources={"blocky": 3}', "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dashboard_port}", f"--object-store-memory={256 * helpers.MiB}")
    with blocking_head(tmp_path, *flags) as (proc, record, log, marker):
        monkeypatch.setenv("KRAY_CLUSTER_TOKEN", record["token"])
        monkeypatch.delenv("KRAY_ADDRESS", raising=False)
        kray.init(address=record["gcs_address"].removeprefix("tcp://"))
        try:
            total = kray.cluster_resources()
            assert (total["CPU"], total["GPU"], total["blocky"]) == (1, 2, 3), total
            assert kray.get(node_of_task.remote(), timeout=helpers.WAIT_S)
        finally:
            kray.shutdown()
        version = urllib.request.Request(f"http://127.0.0.1:{dashboard_port}/api/version",
                                         headers={"Authorization": f"Bearer {record['token']}"})
        with urllib.request.urlopen(version, timeout=30) as response:
            assert response.status == 200

        os.kill(_raylet_pid(record), signal.SIGKILL)
        rc = proc.wait(START_TIMEOUT_S)
        assert rc != 0, f"`kray start --block` exited 0 after its raylet died:\n{log.read_text()}"
        assert "exited" in log.read_text(), log.read_text()
        helpers.wait_until(lambda: not multinode.marked_processes(marker), what="the node's other processes to stop")
        helpers.wait_until(lambda: not _session_shm(record), what="the node's /dev/shm entries to go")


def test_start_block_stops_the_node_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    with blocking_head(tmp_path, "--num-cpus=1", f"--object-store-memory={256 * helpers.MiB}",
                       f"--dashboard-port={multinode.free_port()}") as (proc, record, log, marker):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(START_TIMEOUT_S) == 0, log.read_text()
        helpers.wait_until(lambda: not multinode.marked_processes(marker), what="the node's processes to stop")
        assert not _session_shm(record)


def test_kray_stop_stops_every_node_started_on_this_machine(tmp_path: Path) -> None:
    """Two nodes of one cluster started from one KRAY_TEMP_DIR (one machine): one `kray stop` ends both."""
    temp_dir, marker = tmp_path / "temp", f"cli-{uuid.uuid4().hex[:12]}"
    temp_dir.mkdir()
    port = multinode.free_port()
    common = ["--num-cpus=1", f"--object-store-memory={256 * helpers.MiB}"]

    def run(args: list[str], token: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*multinode.kray_cli(), *args], env=_env(temp_dir, marker, token), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)

    try:
        head = run(["start", "--head", f"--port={port}", f"--dashboard-port={multinode.free_port()}", *common])
        assert head.returncode == 0, head.stdout + head.stderr
        token = _record(temp_dir)["token"]  # type: ignore[index]
        worker = run(["start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.2", *common], token)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        pids = _record(temp_dir)["pids"]  # type: ignore[index]
        assert len(pids) == 4, pids  # the GCS, the HTTP server and both raylets
        stop = run(["stop"])
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not [pid for pid in pids if _running(pid)], (
            f"`kray stop` returned before the processes it stopped exited: {stop.stdout}"
        )
        helpers.wait_until(lambda: not multinode.marked_processes(marker), what="both nodes' processes to stop")
        assert _record(temp_dir) is None
    finally:
        _kill_marked(marker)


# --- one shared 2-node cluster -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    with multinode.running(tmp_path_factory.mktemp("cli"), num_cpus=1, num_nodes=2) as started:
        yield started


def test_kray_status_shows_used_resources_and_pending_demand(
    cluster: MultiNodeCluster, connect: Callable, tmp_path: Path
) -> None:
    connect(cluster)
    gate, started = tmp_path / "gate", tmp_path / "started"
    on_head = NodeAffinitySchedulingStrategy(kray.get_runtime_context().get_node_id(), soft=False)
    held = hold.options(num_cpus=1, scheduling_strategy=on_head).remote(str(gate), str(started))
    never = node_of_task.options(resources={"nowhere": 1}).remote()
    env = cluster.node_env(cluster.nodes[0], cluster.token)
    try:
        helpers.wait_until(started.exists, what="the holding task to start")

        def status_once_it_shows_both() -> str:
            result = cluster.run_cli(["status", f"--address={cluster.address}"], env, timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout if "nowhere" in result.stdout and "1/1 CPU" in result.stdout else ""

        out = helpers.wait_until(status_once_it_shows_both, what="`kray status` to show the held CPU and the waiting shape")
        assert "pending demand" in out, out
        assert "0/1 CPU" in out, f"the second node's CPU is free:\n{out}"
    finally:
        gate.touch()
        kray.cancel(never)
    assert kray.get(held, timeout=helpers.WAIT_S) == "opened"


DRIVER = """
    import kray

    kray.init({init_args})
    print("NODE", kray.get_runtime_context().get_node_id(), flush=True)
    print("NODES", len([n for n in kray.nodes() if n["Alive"]]), flush=True)
    print("TASK", kray.get(kray.remote(lambda: 6 * 7).remote(), timeout=60), flush=True)
    kray.shutdown()
"""


def _node_ids(cluster: MultiNodeCluster, connect: Callable) -> dict[str, str]:
    connect(cluster)
    ids = {n["NodeManagerAddress"]: n["NodeID"] for n in kray.nodes() if n["Alive"]}
    kray.shutdown()
    return ids


def test_kray_address_environment_variable_is_used_by_init(
    cluster: MultiNodeCluster, connect: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _node_ids(cluster, connect)
    monkeypatch.setenv("KRAY_ADDRESS", cluster.address)
    monkeypatch.setenv("KRAY_CLUSTER_TOKEN", cluster.token)
    monkeypatch.setenv("KRAY_TEMP_DIR", str(tmp_path / "no-cluster-here"))
    with helpers.DriverProcess(DRIVER.format(init_args=""), tmp_path, "env_driver") as driver:
        assert driver.wait_for(r"^NODE (\w+)$", timeout=120).group(1) == ids["127.0.0.1"]
        driver.wait_for(r"^NODES 2$")
        driver.wait_for(r"^TASK 42$")
        assert driver.finish() == 0, driver.output()


def test_address_auto_on_a_worker_node_uses_that_node(
    cluster: MultiNodeCluster, connect: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with Ray, a driver on a worker node finds the cluster (and its token) from what `kray start`
    recorded there, and uses that node's raylet and object store."""
    ids = _node_ids(cluster, connect)
    for name in ("KRAY_ADDRESS", "RAY_ADDRESS", "KRAY_CLUSTER_TOKEN", "KRAY_NODE_IP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KRAY_TEMP_DIR", str(cluster.nodes[1].temp_dir))
    with helpers.DriverProcess(DRIVER.format(init_args="address='auto'"), tmp_path, "auto_driver") as driver:
        assert driver.wait_for(r"^NODE (\w+)$", timeout=120).group(1) == ids["127.0.0.2"]
        driver.wait_for(r"^NODES 2$")
        driver.wait_for(r"^TASK 42$")
        assert driver.finish() == 0, driver.output()


STALE = """
    import kray

    try:
        kray.init(address="auto")
    except ConnectionError as e:
        print("REFUSED", e, flush=True)
    else:
        print("CONNECTED", flush=True)
"""


def test_address_auto_with_only_a_stale_address_file_says_no_cluster_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster that was killed leaves its address file behind: auto must not wait on it."""
    temp_dir = tmp_path / "temp"
    temp_dir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (temp_dir / multinode.ADDRESS_FILE_NAME).write_text(json.dumps({
        "gcs_address": f"tcp://127.0.0.1:{multinode.free_port()}", "session_dir": str(tmp_path), "pids": [gone.pid],
        "token": "t", "dashboard_url": "",
    }))
    for name in ("KRAY_ADDRESS", "RAY_ADDRESS", "KRAY_CLUSTER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KRAY_TEMP_DIR", str(temp_dir))
    with helpers.DriverProcess(STALE, tmp_path, "stale_driver") as driver:
        line = driver.wait_for(r"^(REFUSED|CONNECTED)", timeout=120).string
        assert driver.finish() == 0, driver.output()
    assert line.startswith("REFUSED") and "Could not find any running kray cluster" in line, line


def test_health_check_says_whether_a_node_is_alive_in_its_cluster(cluster: MultiNodeCluster) -> None:
    env = cluster.node_env(cluster.nodes[1], cluster.token)
    healthy = cluster.run_cli(["health-check", f"--address={cluster.address}", "--node-ip-address=127.0.0.2"], env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "127.0.0.2 is alive" in healthy.stdout
    stranger = cluster.run_cli(["health-check", f"--address={cluster.address}", "--node-ip-address=127.0.0.9"], env)
    assert stranger.returncode == 1 and "no live node at 127.0.0.9" in stranger.stderr
    env["KRAY_CLUSTER_TOKEN"] = "not-the-token"
    refused = cluster.run_cli(["health-check", f"--address={cluster.address}"], env)
    assert refused.returncode == 1 and "unhealthy" in refused.stderr and "token" in refused.stderr
    silent = cluster.run_cli(["health-check", f"--address=127.0.0.1:{multinode.free_port()}", "--timeout=1"],
                             cluster.node_env(cluster.nodes[1], cluster.token))
    assert silent.returncode == 1 and "did not answer" in silent.stderr
