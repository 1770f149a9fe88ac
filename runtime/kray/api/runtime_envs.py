"""The driver's side of runtime_env: the job-level env of `kray.init(runtime_env=)` (or the job
server's KRAY_JOB_RUNTIME_ENV), uploads of local packages to the GCS KV, and the env each task or
actor runs in (the job's, or its parent's, merged with its own `runtime_env` option as Ray merges).

Zips local directories and talks to the GCS (KvExists, KvPut) and the local raylet (PrepareRuntimeEnv)
through the process's core worker.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from kray import config
from kray.protocol import messages
from kray.runtime_env import packaging, validation

# (GCS, parent env text, task env text) -> the merged, uploaded env text: a task's local
# directory is packaged once per driver, not at every `.remote()`.
_resolved: dict[tuple[str, str, str], str] = {}
_MAX_RESOLVED = 1024
_lock = threading.Lock()


def job_env(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The job-level runtime_env of `kray.init()`, validated before anything starts: the job
    server's KRAY_JOB_RUNTIME_ENV (already uploaded), with `runtime_env`'s fields over it."""
    given = validation.validate(runtime_env)
    from_job = config.job_runtime_env()
    if not from_job:
        return given
    try:
        submitted = json.loads(from_job)
    except ValueError:
        raise ValueError(
            f"KRAY_JOB_RUNTIME_ENV must hold a runtime_env as JSON, got {from_job[:200]!r}."
        ) from None
    return validation.merge(validation.validate(submitted), given)


def start_job(core: Any, env: dict[str, Any]) -> None:
    """Upload the job's local packages once, make `env` the default of every task and actor of this
    driver, and set it up on this node now unless config.eager_install is False."""
    if not env:
        core.runtime_env = ""
        return
    text = validation.serialize(upload(core, env))
    core.runtime_env = text
    hold(core, text)
    if validation.eager_install(env):
        core.send(core.raylet_address, messages.PrepareRuntimeEnv(text))


def upload(core: Any, env: dict[str, Any]) -> dict[str, Any]:
    """`env` with its local working_dir/py_modules uploaded to the GCS KV (skipped when the content
    hash is already there), as gcs:// URIs."""
    if not validation.local_paths(env):
        return env

    def exists(uri: str) -> bool:
        key = packaging.kv_key(uri)
        return bool(core.call(core.gcs_address, lambda rid: messages.KvExists(rid, key)))

    def put(uri: str, data: bytes) -> None:
        key = packaging.kv_key(uri)
        # Big packages take a while to travel: allow about a second per 10 MiB on top of the usual.
        timeout = config.REQUEST_TIMEOUT_S + len(data) / (10 * 2**20)
        core.call(core.gcs_address, lambda rid: messages.KvPut(rid, key, data), timeout=timeout)

    return packaging.upload_local(env, exists, put)


def hold(core: Any, text: str) -> None:
    """Tell the GCS this job uses the env's packages, so they stay until the job ends."""
    from kray.gcs import packages

    uris = packages.uris_of(text)
    if uris and core.job_id:
        core.call(core.gcs_address, lambda rid: messages.HoldPackages(rid, f"job:{core.job_id}", uris))


def resolve(core: Any, task_env: dict[str, Any] | None) -> str:
    """The canonical text of the env a task or actor submitted now runs in ("" for none)."""
    if not task_env:
        return core.runtime_env  # the fast path: nothing to merge or upload
    key = (core.gcs_address, core.runtime_env, validation.serialize(task_env))
    with _lock:
        text = _resolved.get(key)
    if text is None:
        merged = validation.merge(validation.deserialize(core.runtime_env), upload(core, task_env))
        text = validation.serialize(merged)
        hold(core, text)
        with _lock:
            if len(_resolved) >= _MAX_RESOLVED:
                _resolved.clear()  # many one-off envs (e.g. env_vars per task): start over, never grow without bound
            _resolved[key] = text
    return text


def forget() -> None:
    """Drop what was resolved against a cluster this process has left."""
    with _lock:
        _resolved.clear()
