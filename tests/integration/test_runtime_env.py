"""runtime_env on real local clusters: working_dir (excludes, .gitignore), env_vars, py_modules, job-level
envs and their merge with task-level ones, workers never shared between envs, content-hash upload hits.

Each test starts its own cluster with `kray.init()`; the modules the tasks import exist only in the
test's tmp_path, so only a working_dir or py_modules can make them importable.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kray
import pytest
from kray.protocol import client, messages
from kray.runtime_env import packaging

from . import helpers


def _project(root: Path, value: int = 42) -> Path:
    """A working directory: a module, a .gitignore'd folder, an excluded file, a nested .gitignore."""
    (root / "rtenv_mod.py").parent.mkdir(parents=True, exist_ok=True)
    (root / "rtenv_mod.py").write_text(f"VALUE = {value}\n")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "kept.txt").write_text("kept\n")
    (root / "data" / "skip.log").write_text("left out by the nested .gitignore\n")
    (root / "data" / ".gitignore").write_text("*.log\n")
    (root / "build").mkdir(exist_ok=True)
    (root / "build" / "artifact.bin").write_bytes(b"\0" * 64)
    (root / ".gitignore").write_text("build/\n")
    (root / "secret.txt").write_text("left out by excludes\n")
    return root


@kray.remote
def inspect_env() -> dict[str, Any]:
    import rtenv_mod  # only importable from the working_dir

    listing = sorted(str(p.relative_to(Path.cwd())) for p in Path.cwd().rglob("*"))
    return {"value": rtenv_mod.VALUE, "cwd": os.getcwd(), "files": listing, "foo": os.environ.get("RTENV_FOO"),
            "bar": os.environ.get("RTENV_BAR"), "context": kray.get_runtime_context().runtime_env}


@kray.remote
class EnvActor:
    def read(self) -> tuple[int, str | None, str]:
        import rtenv_mod

        return rtenv_mod.VALUE, os.environ.get("RTENV_FOO"), os.getcwd()


def test_working_dir_with_excludes_and_gitignore_reaches_tasks_and_actors(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    project = _project(tmp_path / "project")
    cluster_factory(num_cpus=2, runtime_env={
        "working_dir": str(project), "excludes": ["/secret.txt"], "env_vars": {"RTENV_FOO": "foo"},
    })
    out = kray.get(inspect_env.remote(), timeout=120)
    assert out["value"] == 42
    assert out["foo"] == "foo"
    assert "runtime_resources" in out["cwd"] and out["cwd"] != str(project)
    assert out["files"] == [".gitignore", "data", "data/.gitignore", "data/kept.txt", "rtenv_mod.py"]
    assert out["context"]["working_dir"].startswith("gcs://_ray_pkg_")
    assert out["context"]["env_vars"] == {"RTENV_FOO": "foo"}
    # The driver itself is not moved into the env.
    assert os.getcwd() != out["cwd"] and "RTENV_FOO" not in os.environ
    actor = EnvActor.remote()
    assert kray.get(actor.read.remote(), timeout=120) == (42, "foo", out["cwd"])
    # A task-level env merges into the job's: its env_vars add to the job's, its working_dir replaces it.
    other = _project(tmp_path / "other", value=7)
    merged = kray.get(inspect_env.options(runtime_env={"working_dir": str(other), "env_vars": {"RTENV_BAR": "bar"}})
                      .remote(), timeout=120)
    assert (merged["value"], merged["foo"], merged["bar"]) == (7, "foo", "bar")


@kray.remote
def env_and_pid(name: str) -> tuple[str | None, int]:
    return os.environ.get(name), os.getpid()


@kray.remote
def nested_env(name: str) -> tuple[str | None, str | None]:
    inner = kray.get(env_and_pid.remote(name), timeout=60)[0]
    overridden = kray.get(env_and_pid.options(runtime_env={"env_vars": {name: "child"}}).remote(name), timeout=60)[0]
    return inner, overridden


def test_different_envs_never_share_a_worker_and_children_inherit(
    cluster_factory: Callable[..., helpers.LocalCluster]
) -> None:
    cluster_factory(num_cpus=2)
    pids: dict[str, set[int]] = {"none": set(), "one": set(), "two": set()}
    for _ in range(4):
        refs = {
            "none": env_and_pid.remote("RTENV_X"),
            "one": env_and_pid.options(runtime_env={"env_vars": {"RTENV_X": "one"}}).remote("RTENV_X"),
            "two": env_and_pid.options(runtime_env={"env_vars": {"RTENV_X": "two"}}).remote("RTENV_X"),
        }
        for key, ref in refs.items():
            value, pid = kray.get(ref, timeout=120)
            assert value == (None if key == "none" else key)
            pids[key].add(pid)
    assert not pids["none"] & pids["one"] and not pids["none"] & pids["two"] and not pids["one"] & pids["two"]
    # A child task runs in its parent's env unless it names its own (then env_vars merge, its own win).
    parent = nested_env.options(runtime_env={"env_vars": {"RTENV_Y": "parent"}})
    assert kray.get(parent.remote("RTENV_Y"), timeout=120) == ("parent", "child")


def _module_dir(root: Path, name: str, value: int) -> Path:
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"VALUE = {value}\n")
    return package


@kray.remote
def import_modules(names: list[str]) -> list[int]:
    import importlib

    return [importlib.import_module(n).VALUE for n in names]


def test_py_modules_from_a_directory_and_a_zip(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    as_dir = _module_dir(tmp_path / "a", "rtenv_pkg_dir", 1)
    zipped = tmp_path / "rtenv_pkg_zip.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("rtenv_pkg_zip/__init__.py", "VALUE = 2\n")
    cluster_factory(num_cpus=1)
    env = {"py_modules": [str(as_dir), str(zipped)]}
    assert kray.get(import_modules.options(runtime_env=env).remote(["rtenv_pkg_dir", "rtenv_pkg_zip"]),
                    timeout=120) == [1, 2]
    with pytest.raises(kray.exceptions.RayTaskError, match="rtenv_pkg_dir"):
        kray.get(import_modules.remote(["rtenv_pkg_dir"]), timeout=120)


def _gcs_kv(address: str) -> tuple[Callable[[str], bool], Callable[[str, bytes], None]]:
    def exists(uri: str) -> bool:
        return bool(client.request(address, lambda rid: messages.KvExists(rid, packaging.kv_key(uri))))

    def upload(uri: str, data: bytes) -> None:
        client.request(address, lambda rid: messages.KvPut(rid, packaging.kv_key(uri), data))

    return exists, upload


def test_an_uploaded_package_is_not_uploaded_again(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    project = _project(tmp_path / "project")
    cluster_factory(num_cpus=1, runtime_env={"working_dir": str(project)})
    address = kray.get_runtime_context()._core.gcs_address
    exists, put = _gcs_kv(address)
    uploads: list[str] = []

    def recording_upload(uri: str, data: bytes) -> None:
        uploads.append(uri)
        put(uri, data)

    # init uploaded the directory already: the same content hashes to the same URI, found in the GCS.
    env = packaging.upload_local({"working_dir": str(project)}, exists, recording_upload)
    assert uploads == [] and env["working_dir"] == kray.get_runtime_context().runtime_env["working_dir"]
    # A copy elsewhere with the same content is the same package; a change makes a new one.
    copy = _project(tmp_path / "copy")
    assert packaging.upload_local({"working_dir": str(copy)}, exists, recording_upload) == env
    assert uploads == []
    (copy / "rtenv_mod.py").write_text("VALUE = 43\n")
    changed = packaging.upload_local({"working_dir": str(copy)}, exists, recording_upload)
    assert uploads == [changed["working_dir"]] != [env["working_dir"]]
    assert exists(changed["working_dir"])


def test_job_runtime_env_from_the_job_server_variable(
    cluster_factory: Callable[..., helpers.LocalCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRAY_JOB_RUNTIME_ENV", json.dumps({"env_vars": {"RTENV_JOB": "job", "RTENV_X": "job"}}))
    cluster_factory(num_cpus=1, runtime_env={"env_vars": {"RTENV_X": "init"}})
    assert kray.get_runtime_context().runtime_env == {"env_vars": {"RTENV_JOB": "job", "RTENV_X": "init"}}
    assert kray.get(env_and_pid.remote("RTENV_JOB"), timeout=120)[0] == "job"
    assert kray.get(env_and_pid.remote("RTENV_X"), timeout=120)[0] == "init"


def test_unsupported_and_bad_fields_fail_at_the_call_site(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="runtime_env field 'conda' is not supported by kray"):
        kray.init(runtime_env={"conda": {"dependencies": ["numpy"]}})
    assert not kray.is_initialized()
    cluster_factory(num_cpus=1)
    with pytest.raises(ValueError, match="runtime_env field 'image_uri' is not supported by kray"):
        env_and_pid.options(runtime_env={"image_uri": "python:3.11"})
    with pytest.raises(ValueError, match="runtime_env field 'uv' is not supported by kray"):
        EnvActor.options(runtime_env={"uv": ["requests"]})
    with pytest.raises(ValueError, match=r"env_vars\['N'\] must be a string"):
        env_and_pid.options(runtime_env={"env_vars": {"N": 1}})
    with pytest.raises(ValueError, match="does not exist"):
        env_and_pid.options(runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="s3://bucket/pkg.zip.*not supported"):
        env_and_pid.options(runtime_env={"working_dir": "s3://bucket/pkg.zip"})


def test_a_package_missing_from_the_gcs_fails_the_task_and_the_actor(
    cluster_factory: Callable[..., helpers.LocalCluster]
) -> None:
    cluster_factory(num_cpus=1)
    missing = {"working_dir": packaging.package_uri(b"never uploaded to this cluster")}
    with pytest.raises(kray.exceptions.RuntimeEnvSetupError, match="is not in this cluster's GCS"):
        kray.get(env_and_pid.options(runtime_env=missing).remote("X"), timeout=120)
    actor = EnvActor.options(runtime_env=missing).remote()
    with pytest.raises(kray.exceptions.RuntimeEnvSetupError, match="died because its runtime_env could not be set up"):
        kray.get(actor.read.remote(), timeout=120)
    assert kray.get(env_and_pid.remote("X"), timeout=120)[0] is None  # plain workers are unaffected


def _count_setup() -> None:
    """A worker_process_setup_hook: counts its runs in this worker process (an env var the tasks read) and
    configures logging, as Ray's documentation does with it."""
    os.environ["RTENV_HOOK_RUNS"] = str(int(os.environ.get("RTENV_HOOK_RUNS", "0")) + 1)
    logging.basicConfig(level=logging.INFO)


def _failing_setup() -> None:
    raise RuntimeError("the setup hook broke on purpose")


@kray.remote
def hook_runs_and_pid() -> tuple[str | None, int]:
    return os.environ.get("RTENV_HOOK_RUNS"), os.getpid()


@kray.remote
def root_log_level() -> int:
    return logging.getLogger().level


def test_worker_process_setup_hook_runs_once_in_every_worker_before_its_tasks(
    cluster_factory: Callable[..., helpers.LocalCluster], tmp_path: Path
) -> None:
    cluster_factory(num_cpus=2, runtime_env={"worker_process_setup_hook": _count_setup})
    runs = kray.get([hook_runs_and_pid.remote() for _ in range(20)], timeout=120)
    assert {count for count, _ in runs} == {"1"}, runs  # every worker ran it exactly once, before any task
    assert kray.get(root_log_level.remote(), timeout=120) == logging.INFO  # the hook's logging set-up stands
    # A dotted path works too (a module of the task's working_dir), and a task's env keeps the job's hook.
    (tmp_path / "rtenv_hooks.py").write_text("import os\n\ndef mark():\n    os.environ['RTENV_HOOK_RUNS'] = 'by path'\n")
    by_path = {"working_dir": str(tmp_path), "worker_process_setup_hook": "rtenv_hooks.mark"}
    assert kray.get(hook_runs_and_pid.options(runtime_env=by_path).remote(), timeout=120)[0] == "by path"
    with_vars = hook_runs_and_pid.options(runtime_env={"env_vars": {"RTENV_OTHER": "1"}})
    assert kray.get(with_vars.remote(), timeout=120)[0] == "1"
    # A hook that raises fails the env with its traceback; workers without it are unaffected.
    broken = hook_runs_and_pid.options(runtime_env={"worker_process_setup_hook": _failing_setup})
    with pytest.raises(kray.exceptions.RuntimeEnvSetupError, match="the setup hook broke on purpose"):
        kray.get(broken.remote(), timeout=120)
    with pytest.raises(ValueError, match="worker_process_setup_hook 'not a path' is not a 'module.function' path"):
        hook_runs_and_pid.options(runtime_env={"worker_process_setup_hook": "not a path"})
