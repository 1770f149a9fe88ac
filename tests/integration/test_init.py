"""kray.init / kray.shutdown: local clusters as real processes, reinit, address="auto", init's arguments.

Each test starts (and leak-checks) its own cluster; the address="auto" tests run a second driver
in a subprocess that holds the cluster they connect to.
"""

from __future__ import annotations

import re
from pathlib import Path

import cloudpickle
import kray
import numpy as np
import psutil
import pytest

from . import helpers
from .helpers import MiB


@kray.remote
def square(x: int) -> int:
    return x * x


@kray.remote
def nbytes(array: np.ndarray) -> int:
    return int(array.nbytes)


def _is_gcs(proc: psutil.Process) -> bool:
    try:
        return helpers.GCS_MARKER in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def test_init_starts_processes_and_shutdown_leaves_nothing_behind() -> None:
    assert not kray.is_initialized()
    cluster = helpers.LocalCluster(num_cpus=1)
    try:
        cluster.start()
        assert kray.is_initialized()
        assert cluster.processes, "kray.init() started no process with 'kray' in its command line"
        # A stored object and a worker, so that shutdown has shared memory and a worker to clean up.
        big = kray.put(np.zeros(MiB, dtype=np.uint8))
        assert kray.get(nbytes.remote(big), timeout=helpers.WAIT_S) == MiB
        assert cluster.session_shm_entries(), "a 1 MiB object left no entry under /dev/shm/kray-*"
        del big
    finally:
        cluster.shutdown()  # asserts that no process and no /dev/shm entry of the session is left
    assert not kray.is_initialized()


def test_init_again_after_shutdown(cluster_factory) -> None:
    first = cluster_factory(num_cpus=1)
    assert kray.get(square.remote(3), timeout=helpers.WAIT_S) == 9
    first.shutdown()
    cluster_factory(num_cpus=2)
    assert kray.cluster_resources()["CPU"] == 2
    assert kray.get(square.remote(4), timeout=helpers.WAIT_S) == 16


def test_shutdown_without_init_is_harmless() -> None:
    assert not kray.is_initialized()
    kray.shutdown()
    assert not kray.is_initialized()


def test_second_init_raises_and_ignore_reinit_error_keeps_the_cluster(cluster_factory) -> None:
    cluster_factory(num_cpus=1, resources={"first": 1})
    gcs_before = [p.pid for p in helpers.kray_processes() if _is_gcs(p)]
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        kray.init(num_cpus=1)
    kray.init(num_cpus=2, ignore_reinit_error=True)
    assert kray.is_initialized()
    # Still the first cluster: nothing new was started, its resources are unchanged.
    assert kray.cluster_resources().get("first") == 1
    assert kray.cluster_resources()["CPU"] == 1
    gcs_after = [p.pid for p in helpers.kray_processes() if _is_gcs(p)]
    assert gcs_after == gcs_before
    assert kray.get(square.remote(5), timeout=helpers.WAIT_S) == 25


def test_init_arguments_are_honoured(cluster_factory) -> None:
    cluster_factory(
        num_cpus=3,
        num_gpus=2,
        resources={"widget": 5},
        object_store_memory=300 * MiB,
        namespace="team-a",
    )
    total = kray.cluster_resources()
    assert total["CPU"] == 3
    assert total["GPU"] == 2
    assert total["widget"] == 5
    assert total["object_store_memory"] == pytest.approx(300 * MiB, rel=0.05)
    assert total.get("memory", 0) > 0
    assert kray.get_runtime_context().namespace == "team-a"
    helpers.wait_until(lambda: kray.available_resources().get("CPU") == 3, what="all 3 CPUs to be available")
    available = kray.available_resources()
    assert available["GPU"] == 2
    assert available["widget"] == 5


def test_init_without_arguments_uses_this_machine(cluster_factory) -> None:
    cluster_factory()
    total = kray.cluster_resources()
    assert 1 <= total["CPU"] <= (psutil.cpu_count() or 1)
    assert total.get("GPU", 0) >= 0
    assert kray.get(square.remote(6), timeout=helpers.WAIT_S) == 36


def test_calling_a_remote_function_directly_raises_type_error() -> None:
    @kray.remote
    def f() -> int:
        return 1

    with pytest.raises(TypeError, match=r"\.remote\("):
        f()
    with pytest.raises(TypeError):
        f.options(num_cpus=1)()


@pytest.fixture
def private_address_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """address='auto' finds a cluster through the address file under KRAY_TEMP_DIR: this process and the
    drivers it starts use a private one, so that other clusters on the machine (another test's, a user's)
    stay out of sight."""
    from kray.api import local_cluster

    root = tmp_path / "kray-temp"
    root.mkdir()
    monkeypatch.setenv("KRAY_TEMP_DIR", str(root))
    monkeypatch.setattr(local_cluster, "ADDRESS_FILE", str(root / "kray_current_cluster"))
    return root


def test_address_auto_without_a_cluster_raises_connection_error(private_address_file: Path, monkeypatch) -> None:
    monkeypatch.delenv("KRAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConnectionError) as info:
        kray.init(address="auto")
    assert re.search(r"(?i)cluster|address|running", str(info.value)), str(info.value)
    assert not kray.is_initialized()
    assert not helpers.alive(helpers.kray_processes())


HOLDER = """
    import sys

    import cloudpickle
    import kray

    kray.init(num_cpus=1, resources={"auto_probe": 3})
    ref = kray.put("owned by the holder")
    with open(sys.argv[1], "wb") as f:
        cloudpickle.dump(ref, f)
    print("READY", flush=True)
    sys.stdin.read()  # hold the cluster until the test closes stdin
    kray.shutdown()
    print("HOLDER DONE", flush=True)
"""


def test_address_auto_connects_to_the_running_cluster(tmp_path: Path, private_address_file: Path,
                                                       monkeypatch) -> None:
    monkeypatch.delenv("KRAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ref_file = tmp_path / "ref.pkl"
    with helpers.DriverProcess(HOLDER, tmp_path, "holder", args=[str(ref_file)]) as holder:
        holder.wait_for("READY", timeout=120)
        holder_gcs = [p for p in helpers.kray_processes(psutil.Process(holder.proc.pid)) if _is_gcs(p)]
        assert holder_gcs, f"the holder's kray.init() started no process running {helpers.GCS_MARKER}"

        kray.init(address="auto")
        try:
            assert kray.cluster_resources().get("auto_probe") == 3, "connected to some other cluster"
            assert kray.get(square.remote(7), timeout=helpers.WAIT_S) == 49
            # An ObjectRef pickled by another driver of the same cluster can be fetched here.
            borrowed = cloudpickle.loads(ref_file.read_bytes())
            assert kray.get(borrowed, timeout=helpers.WAIT_S) == "owned by the holder"
            del borrowed
        finally:
            kray.shutdown()
        assert not kray.is_initialized()
        # Disconnecting a driver that joined with address="auto" leaves the holder's cluster running.
        assert holder.proc.poll() is None
        assert helpers.alive(holder_gcs) == holder_gcs, "shutdown() of a connected driver stopped the GCS"
        rc = holder.finish()
    assert rc == 0, holder.output()
    holder.wait_for("HOLDER DONE")
