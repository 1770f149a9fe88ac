"""runtime_env validation, merging and canonical text: pure functions over dicts and local paths."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from kray import runtime_env
from kray.runtime_env import validation


def test_validate_normalises_paths_and_pip_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wd").mkdir()
    (tmp_path / "reqs.txt").write_text("# a comment\nrequests==2.0\n\n--no-index\n")
    monkeypatch.chdir(tmp_path)
    env = runtime_env.validate({
        "working_dir": "wd", "py_modules": [str(tmp_path / "wd")], "excludes": ["*.log"],
        "env_vars": {"A": "1"}, "pip": "reqs.txt", "config": {"setup_timeout_seconds": 30, "eager_install": False},
        "conda": None,  # a None field counts as absent, as in Ray
    })
    assert env == {
        "working_dir": str(tmp_path / "wd"), "py_modules": [str(tmp_path / "wd")], "excludes": ["*.log"],
        "env_vars": {"A": "1"}, "pip": {"packages": ["requests==2.0", "--no-index"], "pip_check": False},
        "config": {"setup_timeout_seconds": 30, "eager_install": False},
    }
    assert runtime_env.validate({"pip": ["x", " y "]})["pip"] == {"packages": ["x", "y"], "pip_check": False}
    full = {"packages": ["x"], "pip_check": True, "pip_version": "==23.0", "pip_install_options": ["--no-index"]}
    assert runtime_env.validate({"pip": full})["pip"] == full
    assert runtime_env.validate(runtime_env.validate({"pip": full})) == {"pip": full}  # idempotent
    assert runtime_env.validate(None) == {}


def test_validate_takes_a_package_module_and_gcs_uris(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    module = types.ModuleType("pkg")
    module.__path__ = [str(package)]
    uri = "gcs://_ray_pkg_" + "0" * 40 + ".zip"
    assert runtime_env.validate({"py_modules": [module, uri], "working_dir": uri}) == {
        "py_modules": [str(package), uri], "working_dir": uri,
    }


@pytest.mark.parametrize("field", ["conda", "container", "image_uri", "uv", "nsight", "java_jars", "made_up"])
def test_unsupported_fields_are_refused_by_name(field: str) -> None:
    with pytest.raises(ValueError, match=f"runtime_env field '{field}' is not supported by kray"):
        runtime_env.validate({field: {}})


@pytest.mark.parametrize(("env", "message"), [
    ({"env_vars": {"A": 1}}, r"env_vars\['A'\] must be a string"),
    ({"env_vars": ["A=1"]}, "env_vars must be a dict"),
    ({"env_vars": {"A=B": "1"}}, "not a valid environment variable name"),
    ({"working_dir": "s3://bucket/x.zip"}, "only packages uploaded to the cluster"),
    ({"working_dir": "/no/such/dir/anywhere"}, "does not exist"),
    ({"py_modules": "notalist"}, "py_modules must be a list"),
    ({"py_modules": ["/x/mod-1.0-py3-none-any.whl"]}, "is a wheel"),
    ({"excludes": "*.log"}, "excludes must be a list"),
    ({"pip": 3}, "runtime_env pip must be"),
    ({"pip": {"pkgs": []}}, "pip key\\(s\\) pkgs are not supported"),
    ({"pip": {"pip_check": True}}, "needs 'packages'"),
    ({"pip": {"packages": ["x"], "pip_install_options": "--no-index"}}, "pip_install_options'\\] must be a list"),
    ({"pip": "/no/such/requirements.txt"}, "could not be read"),
    ({"config": {"setup_timeout_seconds": 0}}, "positive integer or -1"),
    ({"config": {"eager_install": "yes"}}, "eager_install must be a bool"),
    ({"config": {"retries": 3}}, "config key\\(s\\) retries are not supported"),
])
def test_bad_values_name_the_field(env: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runtime_env.validate(env)


def test_a_wrong_type_is_also_a_type_error() -> None:
    with pytest.raises(TypeError, match="runtime_env must be a dict"):
        runtime_env.validate(["working_dir"])  # type: ignore[arg-type]


def test_merge_as_ray_does_child_fields_win_env_vars_merge() -> None:
    job = {"working_dir": "gcs://_ray_pkg_a.zip", "env_vars": {"A": "job", "B": "job"}, "pip": {"packages": ["x"]}}
    task = {"working_dir": "gcs://_ray_pkg_b.zip", "env_vars": {"B": "task", "C": "task"}}
    assert validation.merge(job, task) == {
        "working_dir": "gcs://_ray_pkg_b.zip", "env_vars": {"A": "job", "B": "task", "C": "task"},
        "pip": {"packages": ["x"]},
    }
    assert validation.merge(job, None) == job and validation.merge(None, task) == task
    assert job["env_vars"] == {"A": "job", "B": "job"}  # inputs untouched


def test_canonical_text_is_order_independent() -> None:
    assert validation.serialize({}) == "" and validation.deserialize("") == {}
    one = validation.serialize({"env_vars": {"A": "1", "B": "2"}, "pip": {"packages": []}})
    two = validation.serialize({"pip": {"packages": []}, "env_vars": {"B": "2", "A": "1"}})
    assert one == two and validation.deserialize(one)["env_vars"] == {"A": "1", "B": "2"}


def test_setup_timeout_and_eager_install_defaults() -> None:
    assert validation.setup_timeout({}) == 600.0
    assert validation.setup_timeout({"config": {"setup_timeout_seconds": -1}}) is None
    assert validation.eager_install({}) is True
    assert validation.eager_install({"config": {"eager_install": False}}) is False


def test_ray_style_runtime_env_classes() -> None:
    env = runtime_env.RuntimeEnv(env_vars={"A": "1"}, config=runtime_env.RuntimeEnvConfig(setup_timeout_seconds=5))
    assert env == {"env_vars": {"A": "1"}, "config": {"setup_timeout_seconds": 5, "eager_install": True}}
    assert runtime_env.validate(env) == env
    with pytest.raises(ValueError, match="runtime_env field 'conda' is not supported by kray"):
        runtime_env.RuntimeEnv(conda="env.yaml")
