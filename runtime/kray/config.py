"""The one place that reads kray's environment variables and holds their defaults.

Pure: reads os.environ, touches nothing else.
"""

from __future__ import annotations

import os
import tempfile


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be a number") from None


# Objects whose serialized size is at most this many bytes travel inline in messages and live in
# their owner's memory; larger ones go to the node's shared-memory store (Ray: 100 KiB).
INLINE_THRESHOLD = _int("KRAY_INLINE_THRESHOLD", 100 * 1024)

# Where object files live: a directory per session under this root (a tmpfs in practice).
SHM_ROOT = os.environ.get("KRAY_SHM_ROOT", "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())

# Session directories (logs, spill files, the address file of the latest cluster).
TEMP_ROOT = os.environ.get("KRAY_TEMP_DIR", os.path.join(tempfile.gettempdir(), "kray-sessions"))

# Default share of the machine's shared-memory file system given to one node's object store.
OBJECT_STORE_FRACTION = _float("KRAY_OBJECT_STORE_FRACTION", 0.3)

# How many tasks one owner keeps queued on one leased worker (pipelining).
MAX_TASKS_IN_FLIGHT_PER_WORKER = _int("KRAY_MAX_TASKS_IN_FLIGHT_PER_WORKER", 4)

# An owner keeps an idle lease this long before returning it, unless the raylet asks for it back.
IDLE_LEASE_SECONDS = _float("KRAY_IDLE_LEASE_SECONDS", 0.1)

# Upper bound on worker processes a raylet keeps, as a multiple of its CPUs (blocked workers do not count).
MAX_IDLE_WORKERS_PER_CPU = _int("KRAY_MAX_IDLE_WORKERS_PER_CPU", 2)

# Every request that expects a reply gives up after this many seconds.
REQUEST_TIMEOUT_S = _float("KRAY_REQUEST_TIMEOUT_S", 30.0)

# A node that sends no heartbeat for this long is declared dead (Ray's default is 30 s).
NODE_TIMEOUT_S = _float("KRAY_NODE_TIMEOUT_S", 10.0)

# A raylet whose GCS has not answered for this long leaves the cluster (exits), as Ray's raylet does
# after gcs_rpc_server_reconnect_timeout_s; under `kray start --block` in a pod, the container restarts
# and the node joins the head again.
GCS_RECONNECT_TIMEOUT_S = _float("KRAY_GCS_RECONNECT_TIMEOUT_S", 60.0)

# How often raylets report their free resources to the GCS (when they changed; see below).
HEARTBEAT_PERIOD_S = _float("KRAY_HEARTBEAT_PERIOD_S", 0.2)

# A raylet whose resources did not change still sends a small keep-alive this often (its liveness).
HEARTBEAT_KEEPALIVE_S = _float("KRAY_HEARTBEAT_KEEPALIVE_S", 1.0)

# At most this many worker processes start at once on a node (Ray's RAY_worker_maximum_startup_concurrency;
# 0: the node's CPU count, at least 1).
MAXIMUM_STARTUP_CONCURRENCY = _int(
    "KRAY_WORKER_MAXIMUM_STARTUP_CONCURRENCY", _int("RAY_worker_maximum_startup_concurrency", 0))

# The GCS keeps this many records of dead actors and of removed placement groups (for get_actor by id and
# the state API; Ray's maximum_gcs_destroyed_actor_cached_count); older ones are forgotten, so that
# churn leaves its tables bounded.
DESTROYED_ACTORS_KEPT = _int(
    "KRAY_MAXIMUM_GCS_DESTROYED_ACTOR_CACHED_COUNT", _int("RAY_maximum_gcs_destroyed_actor_cached_count", 100_000))
REMOVED_PLACEMENT_GROUPS_KEPT = _int("KRAY_MAXIMUM_GCS_REMOVED_PLACEMENT_GROUP_CACHED_COUNT", 1000)
# Finished drivers' job records the GCS keeps (`kray list jobs`); older ones are forgotten. Ray keeps every
# one today; its proposed maximum_gcs_dead_job_cached_count (ray-project/ray#65693) is 10,000, as here.
FINISHED_JOBS_KEPT = _int("KRAY_MAXIMUM_GCS_DEAD_JOB_CACHED_COUNT", _int("RAY_maximum_gcs_dead_job_cached_count", 10_000))

# Workers run at this niceness, below the GCS and the raylet, as Ray's (RAY_worker_niceness, 15).
WORKER_NICENESS = _int("KRAY_WORKER_NICENESS", _int("RAY_worker_niceness", 15))

# The raylet's memory monitor, under Ray's names (RAY_* accepted too): how often it reads the node's memory
# use (ms; 0 switches it off) and the fraction of the node's memory (its cgroup's limit in a container) above
# which it kills a worker; a task killed so is retried task_oom_retries times (-1: without limit, as Ray)
# after an exponential backoff from task_oom_retry_delay_base_ms. Read when asked (raylet start, a kill).
def _set_name(name: str) -> str:
    """KRAY_<name>, or RAY_<name> where only that is set (for error messages)."""
    return f"RAY_{name}" if os.environ.get(f"RAY_{name}") and not os.environ.get(f"KRAY_{name}") else f"KRAY_{name}"


def memory_monitor_refresh_ms() -> int:
    value = _int("KRAY_memory_monitor_refresh_ms", _int("RAY_memory_monitor_refresh_ms", 250))
    if value < 0:
        name = _set_name("memory_monitor_refresh_ms")
        raise ValueError(f"{name}={value} must be >= 0 (0 switches the memory monitor off)")
    return value


def memory_usage_threshold() -> float:
    value = _float("KRAY_memory_usage_threshold", _float("RAY_memory_usage_threshold", 0.95))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{_set_name('memory_usage_threshold')}={value} must be a fraction between 0 and 1")
    return value


def min_memory_free_bytes() -> int:
    """Bytes the memory monitor keeps free: it kills above max(threshold * total, total - this), as Ray's
    min_memory_free_bytes; -1 (the default) leaves only the threshold."""
    value = _int("KRAY_min_memory_free_bytes", _int("RAY_min_memory_free_bytes", -1))
    if value < -1:
        raise ValueError(f"{_set_name('min_memory_free_bytes')}={value} must be >= 0, or -1 to leave it unset")
    return value


# A bad value fails at import, so in the driver too (not only in a raylet that would not start).
memory_monitor_refresh_ms()
memory_usage_threshold()
min_memory_free_bytes()


def task_oom_retries() -> int:
    return _int("KRAY_task_oom_retries", _int("RAY_task_oom_retries", -1))


def task_oom_retry_delay_base_ms() -> int:
    return max(0, _int("KRAY_task_oom_retry_delay_base_ms", _int("RAY_task_oom_retry_delay_base_ms", 1000)))


# Seconds a local cluster may take to come up before init fails.
START_TIMEOUT_S = _float("KRAY_START_TIMEOUT_S", 30.0)

# Address and token given to drivers and nodes that join an existing cluster.
ADDRESS = os.environ.get("KRAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
def cluster_token() -> str | None:
    """The cluster token given to this process (KRAY_CLUSTER_TOKEN), read when asked."""
    return os.environ.get("KRAY_CLUSTER_TOKEN") or None


# Authentication is on unless switched off explicitly (`kray start --no-auth`, or KRAY_AUTH_MODE=disabled):
# without a token anyone who reaches a port can run code in the cluster. Ray's RAY_AUTH_MODE=disabled is
# its default and does not switch kray's token off (KubeRay manifests set it, see the README).
AUTH_MODE_VARIABLE = "KRAY_AUTH_MODE"


def auth_disabled() -> bool:
    """True when this process was told to run without a cluster token; read when asked."""
    return (os.environ.get(AUTH_MODE_VARIABLE) or "token").strip().lower() == "disabled"


def server_token(component: str) -> str | None:
    """The token a kray server process (GCS, raylet, worker, HTTP server) requires of its peers.

    Exits with a message saying what to do when there is none and authentication was not switched off,
    so a server never listens unauthenticated by accident.
    """
    token = cluster_token()
    if token or auth_disabled():
        return token
    raise SystemExit(
        f"kray {component}: no cluster token (KRAY_CLUSTER_TOKEN) is set, and kray servers require one. "
        "Start nodes with `kray start`, which makes and passes the token; to run without authentication "
        f"(anyone who reaches the ports can run code here) pass --no-auth or set {AUTH_MODE_VARIABLE}=disabled."
    )

# Labels a node reports (NodeInfo.labels): its worker group and Pod, from the environment the operator
# gives its Pods, so that the autoscaler maps nodes to groups and Pods.
NODE_GROUP_LABEL = "ray.io/node-group"
POD_NAME_LABEL = "kray.io/pod-name"


def node_labels() -> dict[str, str]:
    """This node's labels: ray.io/node-group from KRAY_NODE_GROUP, kray.io/pod-name from KRAY_POD_NAME."""
    found = {NODE_GROUP_LABEL: os.environ.get("KRAY_NODE_GROUP", ""), POD_NAME_LABEL: os.environ.get("KRAY_POD_NAME", "")}
    return {k: v for k, v in found.items() if v}


# Debug logging of kray's own processes.
LOG_LEVEL = os.environ.get("KRAY_LOG_LEVEL", "WARNING")

# Jobs: the variable through which the job server gives a job's driver its (uploaded) runtime_env, and
# the submission id of the job a driver belongs to (set by the job server for the entrypoint).
JOB_RUNTIME_ENV_VAR = "KRAY_JOB_RUNTIME_ENV"
JOB_SUBMISSION_ID = os.environ.get("KRAY_JOB_SUBMISSION_ID", "")

# A submitted job may wait this long for resources for its entrypoint before it fails (Ray: 15 min).
JOB_START_TIMEOUT_S = _float("KRAY_JOB_START_TIMEOUT_S", 900.0)

# `kray job stop` sends SIGTERM, then SIGKILL after this many seconds (Ray: RAY_JOB_STOP_WAIT_TIME_S).
JOB_STOP_WAIT_S = _float("KRAY_JOB_STOP_WAIT_TIME_S", 3.0)

# Largest request body the job server takes (a runtime_env package upload); larger ones get a 413.
# Ray's dashboard takes 100 MiB.
MAX_UPLOAD_BYTES = _int("KRAY_MAX_UPLOAD_BYTES", 100 << 20)

# runtime_env: the largest package (zipped working_dir or py_module) kept in the GCS, as Ray's
# GCS_STORAGE_MAX_SIZE (500 MiB, its max_grpc_message_size).
RUNTIME_ENV_MAX_PACKAGE_BYTES = _int("KRAY_RUNTIME_ENV_MAX_PACKAGE_BYTES", 500 * 1024 * 1024)

# runtime_env: leave .gitignore files out of account when packaging a directory (Ray's
# RAY_RUNTIME_ENV_IGNORE_GITIGNORE); `excludes` still apply.
RUNTIME_ENV_IGNORE_GITIGNORE = (
    os.environ.get("KRAY_RUNTIME_ENV_IGNORE_GITIGNORE") or os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE") or ""
) not in ("", "0", "false", "False")


def job_runtime_env() -> str | None:
    """The job-level runtime_env (JSON, packages already uploaded) the job server gives a job's driver
    in KRAY_JOB_RUNTIME_ENV; read when kray.init() asks."""
    return os.environ.get("KRAY_JOB_RUNTIME_ENV") or None

# runtime_env packages in the GCS: a fresh upload (or existence check) keeps a package this long even
# when no job or actor holds it yet (Ray's RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S, 10 min);
# unheld packages are looked for this often.
PACKAGE_PIN_S = _float("KRAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S", 600.0)
PACKAGE_GC_PERIOD_S = _float("KRAY_PACKAGE_GC_PERIOD_S", 30.0)


# Task events (kray.core.task_events, kray.gcs.task_events), under Ray's names: how often each process
# reports its tasks' state transitions to the GCS (0 switches recording off), how many events a process
# buffers between reports, and how many task attempts the GCS keeps (-1: no bound). Read when asked, so
# that kray.init(_system_config=...) can set them for the cluster it starts.
def task_events_report_interval_ms() -> int:
    return _int("KRAY_TASK_EVENTS_REPORT_INTERVAL_MS", _int("RAY_task_events_report_interval_ms", 1000))


def task_events_buffer_size() -> int:
    return _int("KRAY_TASK_EVENTS_MAX_NUM_TASK_EVENTS_IN_BUFFER", _int("RAY_task_events_max_num_task_events_in_buffer", 10_000))


def task_events_max_num_task_in_gcs() -> int:
    return _int("KRAY_TASK_EVENTS_MAX_NUM_TASK_IN_GCS", _int("RAY_task_events_max_num_task_in_gcs", 100_000))


# A get() (or a wait() without a timeout) blocked longer than this logs one warning saying what it waits
# for (kray.core.blocked_get); 0 switches the warning off. Read at each get, so a test can lower it.
def blocked_get_warning_s() -> float:
    return _float("KRAY_GET_BLOCKED_WARNING_S", 10.0)


# Record where each ObjectRef was made (a put, a task call, an actor call) for `kray memory`'s call site
# column, as Ray's RAY_record_ref_creation_sites=1 (off by default: it walks the caller's stack).
def record_ref_creation_sites() -> bool:
    return _int("KRAY_RECORD_REF_CREATION_SITES", _int("RAY_record_ref_creation_sites", 0)) > 0
