"""Setting a runtime_env up on a node: fetch and unpack its packages into a per-node cache (keyed by
URI, reused), make its pip virtualenv, and say which variables, directory and interpreter a process
in that env gets.

Writes under the cache directory it is given and runs pip (through runtime_env.pip); fetches
package bytes only through the `fetch` function its caller passes (a GCS KV read in kray's workers).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from kray import exceptions
from kray.runtime_env import packaging, validation
from kray.runtime_env import pip as pip_mod
from kray.util import safe_names

Fetch = Callable[[str], "bytes | None"]  # a package's bytes by URI, or None when the cluster lacks it


@dataclasses.dataclass
class Prepared:
    """How to run a process in a runtime_env.

    env: variables to set over the current environment (env_vars, PYTHONPATH, VIRTUAL_ENV/PATH for pip);
    cwd: the working directory (the unpacked working_dir) or None; python: the interpreter to run
    (the pip virtualenv's, else this one); paths: directories to put first on sys.path, in order.
    """

    env: dict[str, str]
    cwd: str | None
    python: str
    paths: list[str] = dataclasses.field(default_factory=list)


def prepare(runtime_env: dict[str, Any], fetch: Fetch, cache_dir: str) -> Prepared:
    """Set `runtime_env` up under `cache_dir` and describe the process to run in it.

    Packages must already be uploaded (gcs:// URIs, see packaging.upload_local); fetch(uri) returns
    a package's bytes or None. Raises RuntimeEnvSetupError with the cause.
    """
    try:
        env = validation.validate(runtime_env)
    except (TypeError, ValueError) as e:
        raise exceptions.RuntimeEnvSetupError(f"invalid runtime_env: {e}") from None
    local = validation.local_paths(env)
    if local:
        raise exceptions.RuntimeEnvSetupError(
            f"runtime_env packages {local} are local paths: upload them first "
            "(kray.runtime_env.packaging.upload_local) and pass the gcs:// URIs it returns."
        )
    timeout = validation.setup_timeout(env)
    deadline = None if timeout is None else time.monotonic() + timeout
    os.makedirs(cache_dir, exist_ok=True)
    cwd = None
    paths: list[str] = []
    if "working_dir" in env:
        cwd = _package_dir(env["working_dir"], fetch, cache_dir, unwrap=True)
        paths.append(cwd)
    for uri in env.get("py_modules", []):
        paths.append(_package_dir(uri, fetch, cache_dir, unwrap=False))
    variables = _expand(env.get("env_vars", {}))
    python = sys.executable
    if "pip" in env:
        try:
            python = pip_mod.ensure_venv(env["pip"], cache_dir, deadline)
        except OSError as e:
            raise exceptions.RuntimeEnvSetupError(f"runtime_env pip setup failed: {e}") from e
        venv = os.path.dirname(os.path.dirname(python))
        variables["VIRTUAL_ENV"] = venv
        variables["PATH"] = os.path.join(venv, "bin") + os.pathsep + variables.get("PATH", os.environ.get("PATH", ""))
    if paths:
        existing = variables.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        variables["PYTHONPATH"] = os.pathsep.join(paths + ([existing] if existing else []))
    return Prepared(variables, cwd, python, paths)


def _package_dir(uri: str, fetch: Fetch, cache_dir: str, unwrap: bool) -> str:
    """The unpacked directory of package `uri` in the cache, fetched and unpacked on first use."""
    if not safe_names.is_package_uri(uri):
        raise exceptions.RuntimeEnvSetupError(f"{uri!r:.100} is not a runtime_env package URI ({validation.URI_PREFIX}<hash>.zip)")
    name = uri.removeprefix(validation.URI_PREFIX).removesuffix(".zip")
    dest = os.path.join(cache_dir, "packages", name)
    marker = dest + ".wrapped"
    if not os.path.isdir(dest):
        try:
            data = fetch(uri)
        except Exception as e:
            raise exceptions.RuntimeEnvSetupError(f"could not download runtime_env package {uri}: {e}") from e
        if data is None:
            raise exceptions.RuntimeEnvSetupError(
                f"runtime_env package {uri} is not in this cluster's GCS: it was uploaded to another "
                "cluster, or the cluster restarted since. Pass the local path again so it is uploaded."
            )
        tmp = f"{dest}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            packaging.unpack(data, tmp)
            if not packaging.made_by_kray(data):
                with open(marker, "w"):
                    pass  # written before the directory appears, so every reader sees both
            _publish(tmp, dest)
        except (OSError, ValueError) as e:
            raise exceptions.RuntimeEnvSetupError(f"could not unpack runtime_env package {uri}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if unwrap and os.path.exists(marker):
        return packaging.single_top_dir(dest)
    return dest


def _publish(tmp: str, dest: str) -> None:
    """Move an unpacked package into place at once; another process may have won the race."""
    try:
        os.rename(tmp, dest)
    except OSError:
        if not os.path.isdir(dest):
            raise


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(env_vars: dict[str, str]) -> dict[str, str]:
    """env_vars with `${NAME}` replaced by this process's value of NAME, as Ray does (to append to
    PATH-like variables)."""
    return {k: _VAR.sub(lambda m: os.environ.get(m.group(1), ""), v) for k, v in env_vars.items()}


def apply_in_process(prepared: Prepared) -> None:
    """Enter a prepared env in this process: variables, working directory, sys.path."""
    os.environ.update(prepared.env)
    if prepared.cwd:
        os.chdir(prepared.cwd)
    for path in reversed(prepared.paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def needs_exec(prepared: Prepared) -> bool:
    """Whether the process must re-execute itself under another interpreter (the pip virtualenv's)."""
    # Compared as paths, not resolved: a virtualenv's python links to the base interpreter, and
    # what makes it the virtualenv's is the path it is started by.
    return prepared.python != sys.executable
