"""runtime_env pip on real local clusters: a wheel built here, installed by a real `pip install
--no-index --find-links` into a cached virtualenv that tasks and actors run in; a failing install
fails tasks and actors with RuntimeEnvSetupError carrying pip's text. No network is used.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kray
import pytest

from . import helpers

PACKAGE = "kray_rtenv_tinypkg"


def build_wheel(directory: Path, version: str = "1.0") -> Path:
    """A pure-Python wheel of PACKAGE, written by hand (a wheel is a zip with a dist-info folder)."""
    directory.mkdir(parents=True, exist_ok=True)
    dist_info = f"{PACKAGE}-{version}.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: kray-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{PACKAGE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def pip_env(wheels: Path, *packages: str) -> dict[str, Any]:
    return {"pip": {"packages": list(packages), "pip_install_options": ["--no-index", "--find-links", str(wheels)]}}


@kray.remote
def where_installed() -> dict[str, Any]:
    import importlib

    module = importlib.import_module(PACKAGE)
    return {"version": module.VERSION, "file": module.__file__, "prefix": sys.prefix,
            "executable": sys.executable, "kray": kray.__file__, "pid": os.getpid()}


@kray.remote
class PipActor:
    def version(self) -> str:
        import importlib

        return str(importlib.import_module(PACKAGE).VERSION)


def test_pip_installs_a_local_wheel_into_a_virtualenv_for_tasks_and_actors(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    build_wheel(tmp_path / "wheels")
    with pytest.raises(ImportError):
        __import__(PACKAGE)  # not in the base environment
    cluster_factory(num_cpus=1)
    env = pip_env(tmp_path / "wheels", f"{PACKAGE}==1.0")
    out = kray.get(where_installed.options(runtime_env=env).remote(), timeout=240)
    assert out["version"] == "1.0"
    venv = out["prefix"]
    assert "runtime_resources" in venv and venv != sys.prefix
    assert out["file"].startswith(venv + os.sep)
    assert out["executable"].startswith(venv + os.sep)
    assert out["kray"] == kray.__file__  # kray comes from the base environment, layered under the venv
    # An actor with the same requirements reuses the cached virtualenv.
    actor = PipActor.options(runtime_env=env).remote()
    assert kray.get(actor.version.remote(), timeout=240) == "1.0"
    # Tasks without the env still run in the base environment, without the package.
    with pytest.raises(kray.exceptions.RayTaskError, match=PACKAGE):
        kray.get(where_installed.remote(), timeout=120)


def test_a_failing_pip_install_fails_tasks_and_actors_with_runtime_env_setup_error(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    build_wheel(tmp_path / "wheels")
    cluster_factory(num_cpus=1)
    env = pip_env(tmp_path / "wheels", f"{PACKAGE}==9.9")  # no such version among the wheels
    refs = [where_installed.options(runtime_env=env).remote() for _ in range(2)]
    for ref in refs:
        with pytest.raises(kray.exceptions.RuntimeEnvSetupError, match="No matching distribution found") as info:
            kray.get(ref, timeout=240)
        assert f"{PACKAGE}==9.9" in str(info.value)
    actor = PipActor.options(runtime_env=env).remote()
    with pytest.raises(kray.exceptions.RuntimeEnvSetupError, match="No matching distribution found"):
        kray.get(actor.version.remote(), timeout=240)
    # The cluster is fine afterwards: the same env with a version that exists works.
    good = pip_env(tmp_path / "wheels", PACKAGE)
    assert kray.get(where_installed.options(runtime_env=good).remote(), timeout=240)["version"] == "1.0"


def test_a_pip_install_past_setup_timeout_seconds_fails_instead_of_hanging(
    cluster_factory: Callable[..., helpers.LocalCluster]
) -> None:
    # An index that accepts connections and never answers: pip would wait for it for minutes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        index = f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
        cluster_factory(num_cpus=1)
        env = {"pip": {"packages": [PACKAGE], "pip_install_options": ["--index-url", index, "--timeout", "120"]},
               "config": {"setup_timeout_seconds": 3}}
        started = time.monotonic()
        with pytest.raises(kray.exceptions.RuntimeEnvSetupError, match="timed out during pip install"):
            kray.get(where_installed.options(runtime_env=env).remote(), timeout=120)
        assert time.monotonic() - started < 60


def test_eager_install_sets_the_job_env_up_at_init(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    build_wheel(tmp_path / "wheels")
    cluster_factory(num_cpus=1, runtime_env=pip_env(tmp_path / "wheels", PACKAGE))
    session = Path(kray.init(ignore_reinit_error=True)["session_dir"])
    # No task was submitted: the driver's node installs the job's requirements on its own.
    ready = helpers.wait_until(lambda: list(session.glob("runtime_resources/pip/*/.kray-ready")), timeout=120,
                               what="the job's virtualenv to be made at init")
    assert len(ready) == 1
    out = kray.get(where_installed.remote(), timeout=120)  # tasks inherit the job's env
    assert out["prefix"] == str(ready[0].parent) and out["version"] == "1.0"
