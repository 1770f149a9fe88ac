"""runtime_env `pip`: a real `pip install` into a cached virtualenv per requirement set (the dict
form validation.normalize_pip makes), layered over the base environment so kray stays importable.

Creates directories under the cache, takes a file lock and runs `python -m venv` and `pip` as
subprocesses with a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil

from kray import exceptions

READY = ".kray-ready"


def env_key(spec: dict[str, Any]) -> str:
    """The cache key of a requirement set (equal specs share one virtualenv)."""
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode(), usedforsecurity=False).hexdigest()


def ensure_venv(spec: dict[str, Any], cache_dir: str, deadline: float | None) -> str:
    """The python of a virtualenv under `cache_dir` with `spec` installed, created on first use.

    Raises RuntimeEnvSetupError with pip's output when the install fails or the deadline passes.
    """
    root = os.path.join(cache_dir, "pip", env_key(spec))
    python = os.path.join(root, "bin", "python")
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with _locked(root + ".lock", deadline):
        if os.path.exists(os.path.join(root, READY)):
            return python
        shutil.rmtree(root, ignore_errors=True)  # a half-made one from a crashed or timed-out setup
        _run([sys.executable, "-m", "venv", "--without-pip", root], deadline, "creating the virtualenv")
        _layer_over_base(root)
        options = ["--disable-pip-version-check", "--no-input", *spec.get("pip_install_options", [])]
        if spec.get("pip_version"):
            _run([python, "-m", "pip", "install", *options, "pip" + spec["pip_version"]], deadline,
                 "pip install of pip" + spec["pip_version"])
        requirements = os.path.join(root, "requirements.txt")
        with open(requirements, "w", encoding="utf-8") as f:
            f.write("\n".join(spec.get("packages", [])) + "\n")
        if spec.get("packages"):
            _run([python, "-m", "pip", "install", *options, "-r", requirements], deadline, "pip install")
        if spec.get("pip_check"):
            _run([python, "-m", "pip", "check", "--disable-pip-version-check"], deadline, "pip check")
        with open(os.path.join(root, READY), "w") as f:
            f.write(json.dumps(spec, sort_keys=True))
    return python


def _layer_over_base(root: str) -> None:
    """Make the base environment's packages (kray among them) importable in the new virtualenv,
    after its own: a .pth file that adds the base site directories (their .pth files included)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_dir = os.path.join(root, "lib", version, "site-packages")
    os.makedirs(site_dir, exist_ok=True)
    base = [p for p in site.getsitepackages() if os.path.isdir(p)]
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if isinstance(user, str) and os.path.isdir(user):
        base.append(user)
    lines = [f"import site; site.addsitedir({p!r})" for p in base]
    with open(os.path.join(site_dir, "_kray_base_env.pth"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def _locked(path: str, deadline: float | None) -> Iterator[None]:
    """Hold an exclusive lock on `path`: workers of one env on one node install it once."""
    with open(path, "a+") as f:
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise exceptions.RuntimeEnvSetupError(
                        f"runtime_env setup timed out waiting for another worker's pip install ({path})."
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _run(cmd: list[str], deadline: float | None, what: str) -> None:
    timeout = None if deadline is None else max(0.1, deadline - time.monotonic())
    # In the worker's process group (no session of its own): a worker killed mid-install takes pip along.
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, _ = proc.communicate()
        raise exceptions.RuntimeEnvSetupError(
            f"runtime_env setup timed out during {what} (raise runtime_env config.setup_timeout_seconds, "
            f"or -1 for no limit). Output so far:\n{_tail(out)}"
        ) from None
    if proc.returncode != 0:
        raise exceptions.RuntimeEnvSetupError(
            f"runtime_env setup failed: {what} exited with code {proc.returncode}:\n{_tail(out)}"
        )


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _tail(out: bytes | None, limit: int = 8000) -> str:
    text = (out or b"").decode(errors="replace").strip()
    return text if len(text) <= limit else "...\n" + text[-limit:]
