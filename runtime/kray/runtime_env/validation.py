"""Checking and normalising a runtime_env dict, merging a parent's with a child's, and its canonical text.

Pure apart from reading the local files a runtime_env names (paths are made absolute, a pip
requirements file is read): no network, no processes.
"""

from __future__ import annotations

import json
import os
import types
from typing import Any

from kray.runtime_env import setup_hook
from kray.util import safe_names

SUPPORTED = ("working_dir", "py_modules", "excludes", "env_vars", "pip", "config", "worker_process_setup_hook")
# Ray's fields that kray refuses by name, so that a port from Ray fails loudly instead of silently.
REFUSED = (
    "conda", "container", "image_uri", "uv", "nsight", "java_jars", "mpi", "py_executable",
    "rocprof_sys", "docker",
)
CONFIG_KEYS = ("setup_timeout_seconds", "eager_install")
DEFAULT_SETUP_TIMEOUT_S = 600  # Ray's default for RuntimeEnvConfig.setup_timeout_seconds
URI_PREFIX = "gcs://_ray_pkg_"


class RuntimeEnvFieldError(ValueError, TypeError):
    """A runtime_env field with a bad value: a ValueError, and a TypeError where Ray raises one for
    a value of the wrong type, so callers written for either catch it."""


def validate(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """A normalised copy of `runtime_env` (local paths absolute, pip in Ray's dict form).

    Raises ValueError naming the field for bad values and for fields kray does not support.
    """
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise RuntimeEnvFieldError(f"runtime_env must be a dict (or None), got {type(runtime_env).__name__}.")
    out: dict[str, Any] = {}
    for field, value in runtime_env.items():
        if not isinstance(field, str):
            raise RuntimeEnvFieldError(f"runtime_env field names must be strings, got {field!r}.")
        if value is None:
            continue  # Ray treats a None field as absent
        if field not in SUPPORTED:
            hint = "" if field not in REFUSED else " (it is one of Ray's fields that kray does not implement)"
            raise RuntimeEnvFieldError(
                f"runtime_env field {field!r} is not supported by kray{hint}; the supported fields are "
                f"{', '.join(SUPPORTED)}. Install such dependencies in the nodes' image instead."
            )
        out[field] = _CHECKS[field](value)
    return out


def _path_or_uri(field: str, value: Any, allow_dir: bool = True) -> str:
    if isinstance(value, types.ModuleType):
        value = _module_dir(field, value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise RuntimeEnvFieldError(f"runtime_env {field} must be a path or a gcs:// URI (a non-empty string), got {value!r}.")
    if "://" in value:
        if not safe_names.is_package_uri(value):
            raise RuntimeEnvFieldError(
                f"runtime_env {field} URI {value!r} is not supported by kray: only packages uploaded to the "
                f"cluster ({URI_PREFIX}<hash>.zip) are. Download it and pass the local directory or .zip instead."
            )
        return value
    if value.endswith(".whl"):
        raise RuntimeEnvFieldError(
            f"runtime_env {field} entry {value!r} is a wheel, which kray does not take here; "
            "list it under runtime_env 'pip' instead."
        )
    path = os.path.abspath(os.path.expanduser(value))
    if os.path.isdir(path) and allow_dir:
        return path
    if os.path.isfile(path) and path.endswith(".zip"):
        return path
    if not os.path.exists(path):
        raise RuntimeEnvFieldError(f"runtime_env {field} {value!r} does not exist (resolved to {path}).")
    raise RuntimeEnvFieldError(f"runtime_env {field} {value!r} must be a directory or a .zip file.")


def _module_dir(field: str, module: types.ModuleType) -> str:
    paths = list(getattr(module, "__path__", []) or [])
    if len(paths) == 1:
        return str(paths[0])
    raise RuntimeEnvFieldError(
        f"runtime_env {field}: module {module.__name__!r} is not a package with one directory; "
        "pass the path of its directory instead."
    )


def _working_dir(value: Any) -> str:
    return _path_or_uri("working_dir", value)


def _py_modules(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise RuntimeEnvFieldError(f"runtime_env py_modules must be a list of paths or gcs:// URIs, got {value!r}.")
    return [_path_or_uri("py_modules", v) for v in value]


def _excludes(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RuntimeEnvFieldError(f"runtime_env excludes must be a list of gitignore-style patterns (strings), got {value!r}.")
    return list(value)


def _env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise RuntimeEnvFieldError(f"runtime_env env_vars must be a dict of str -> str, got {type(value).__name__}.")
    for key, val in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise RuntimeEnvFieldError(f"runtime_env env_vars: {key!r} is not a valid environment variable name.")
        if not isinstance(val, str):
            raise RuntimeEnvFieldError(
                f"runtime_env env_vars[{key!r}] must be a string, got {type(val).__name__} {val!r}; "
                f"write it as a string, e.g. {str(val)!r}."
            )
    return dict(value)


def _config(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RuntimeEnvFieldError(f"runtime_env config must be a dict with {', '.join(CONFIG_KEYS)}, got {value!r}.")
    unknown = set(value) - set(CONFIG_KEYS)
    if unknown:
        raise RuntimeEnvFieldError(
            f"runtime_env config key(s) {', '.join(sorted(map(str, unknown)))} are not supported by kray; "
            f"the supported keys are {', '.join(CONFIG_KEYS)}."
        )
    out: dict[str, Any] = {}
    timeout = value.get("setup_timeout_seconds")
    if timeout is not None:
        if not isinstance(timeout, int) or isinstance(timeout, bool) or (timeout <= 0 and timeout != -1):
            raise RuntimeEnvFieldError(
                f"runtime_env config setup_timeout_seconds must be a positive integer or -1 (no timeout), "
                f"got {timeout!r}."
            )
        out["setup_timeout_seconds"] = timeout
    eager = value.get("eager_install")
    if eager is not None:
        if not isinstance(eager, bool):
            raise RuntimeEnvFieldError(f"runtime_env config eager_install must be a bool, got {eager!r}.")
        out["eager_install"] = eager
    return out


PIP_KEYS = ("packages", "pip_check", "pip_version", "pip_install_options")


def normalize_pip(value: Any) -> dict[str, Any]:
    """Ray's three forms of `pip` (a list of requirements, a requirements.txt path, or a dict with
    packages / pip_check / pip_version / pip_install_options) as one dict."""
    if isinstance(value, (list, tuple)):
        return {"packages": _packages(value), "pip_check": False}
    if isinstance(value, (str, os.PathLike)):
        return {"packages": _requirements_file(os.fspath(value)), "pip_check": False}
    if not isinstance(value, dict):
        raise RuntimeEnvFieldError(
            "runtime_env pip must be a list of requirements, the path of a requirements.txt file, or a dict "
            f"with 'packages' (and optionally 'pip_check', 'pip_version', 'pip_install_options'); got {value!r}."
        )
    unknown = set(value) - set(PIP_KEYS)
    if unknown:
        raise RuntimeEnvFieldError(
            f"runtime_env pip key(s) {', '.join(sorted(map(str, unknown)))} are not supported; "
            f"the supported keys are {', '.join(PIP_KEYS)}."
        )
    if "packages" not in value:
        raise RuntimeEnvFieldError("runtime_env pip as a dict needs 'packages' (a list of requirements or a requirements.txt path).")
    packages = value["packages"]
    if isinstance(packages, (str, os.PathLike)):
        out: dict[str, Any] = {"packages": _requirements_file(os.fspath(packages))}
    else:
        out = {"packages": _packages(packages)}
    check = value.get("pip_check", False)
    if not isinstance(check, bool):
        raise RuntimeEnvFieldError(f"runtime_env pip['pip_check'] must be a bool, got {check!r}.")
    out["pip_check"] = check
    version = value.get("pip_version")
    if version is not None:
        if not isinstance(version, str) or not version.strip():
            raise RuntimeEnvFieldError(f"runtime_env pip['pip_version'] must be a version specifier such as '==23.3.1', got {version!r}.")
        out["pip_version"] = version.strip()
    options = value.get("pip_install_options")
    if options is not None:
        if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
            raise RuntimeEnvFieldError(
                "runtime_env pip['pip_install_options'] must be a list of strings, e.g. "
                f"['--no-index', '--find-links', '/wheels']; got {options!r}."
            )
        out["pip_install_options"] = list(options)
    return out


def _packages(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in value):
        raise RuntimeEnvFieldError(f"runtime_env pip packages must be a list of requirement strings, got {value!r}.")
    return [p.strip() for p in value]


def _requirements_file(path: str) -> list[str]:
    full = os.path.abspath(os.path.expanduser(path))
    try:
        with open(full, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise RuntimeEnvFieldError(f"runtime_env pip requirements file {path!r} could not be read: {e.strerror}.") from None
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


_CHECKS: dict[str, Any] = {
    "working_dir": _working_dir,
    "py_modules": _py_modules,
    "excludes": _excludes,
    "env_vars": _env_vars,
    "pip": normalize_pip,
    "config": _config,
    "worker_process_setup_hook": setup_hook.normalize,
}


def merge(parent: dict[str, Any] | None, child: dict[str, Any] | None) -> dict[str, Any]:
    """The runtime_env a child runs with, as Ray merges them: the child's fields replace the
    parent's (job's) fields, except env_vars, which are merged key by key (the child's win)."""
    if not child:
        return dict(parent or {})
    if not parent:
        return dict(child)
    merged = dict(parent)
    for field, value in child.items():
        if field == "env_vars" and isinstance(parent.get("env_vars"), dict):
            merged["env_vars"] = {**parent["env_vars"], **value}
        else:
            merged[field] = value
    return merged


def serialize(runtime_env: dict[str, Any] | None) -> str:
    """The canonical text of a runtime_env ("" for none): equal envs give equal text, so the text
    keys worker processes and caches."""
    if not runtime_env:
        return ""
    return json.dumps(runtime_env, sort_keys=True, separators=(",", ":"))


def deserialize(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def setup_timeout(runtime_env: dict[str, Any]) -> float | None:
    """Seconds the setup may take (None: no limit), from config.setup_timeout_seconds."""
    seconds = (runtime_env.get("config") or {}).get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
    return None if seconds == -1 else float(seconds)


def eager_install(runtime_env: dict[str, Any]) -> bool:
    return bool((runtime_env.get("config") or {}).get("eager_install", True))


def local_paths(runtime_env: dict[str, Any]) -> list[str]:
    """The working_dir and py_modules entries that are local paths (not yet uploaded)."""
    entries = [runtime_env["working_dir"]] if "working_dir" in runtime_env else []
    entries += list(runtime_env.get("py_modules") or [])
    return [e for e in entries if "://" not in e]


class RuntimeEnvConfig(dict):
    """Ray's `RuntimeEnvConfig`: the `config` field of a runtime_env, checked when made."""

    def __init__(self, setup_timeout_seconds: int = DEFAULT_SETUP_TIMEOUT_S, eager_install: bool = True) -> None:
        super().__init__(_config({"setup_timeout_seconds": setup_timeout_seconds, "eager_install": eager_install}))


class RuntimeEnv(dict):
    """Ray's `RuntimeEnv`: a runtime_env dict checked and normalised when made, e.g.
    `RuntimeEnv(working_dir=".", env_vars={"A": "1"})`; usable wherever a runtime_env dict is."""

    def __init__(self, **fields: Any) -> None:
        super().__init__(validate(fields))
