"""The driver's connection to a cluster: `init`, `shutdown`, `is_initialized`, and the printing of
worker output on the driver.

Starts a local cluster's processes or connects to a running one; owns this process's CoreWorker.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import time
from typing import Any

import psutil

from kray import config, ids
from kray.api import local_cluster, runtime_envs, system_config
from kray.core import core_worker, refs
from kray.protocol import client, messages, wire

log = logging.getLogger(__name__)


class _Driver:
    def __init__(self, core: core_worker.CoreWorker, local: local_cluster.LocalNode | None, namespace: str) -> None:
        self.core = core
        self.local = local
        self.namespace = namespace


_driver: _Driver | None = None
_lock = threading.RLock()


class RayContext(dict):
    """What `init` returns: the address information of the cluster (a dict, as in Ray)."""

    @property
    def address_info(self) -> dict[str, Any]:
        return dict(self)

    @property
    def dashboard_url(self) -> str:
        return self.get("webui_url", "")

    def __enter__(self) -> RayContext:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        shutdown()

    def disconnect(self) -> None:
        """Disconnect this driver from the cluster, as Ray's RayContext.disconnect: kray.shutdown()."""
        shutdown()


def is_initialized() -> bool:
    return _driver is not None


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    log_to_driver: bool = True,
    include_dashboard: bool | None = None,
    **kwargs: Any,
) -> RayContext:
    """Connect this process to a kray cluster, starting a local one when no address is given.

    address: None or "local" starts an embedded cluster; "auto" connects to the cluster started
    on this machine by `kray start`; "host:port" connects to that cluster's GCS.
    """
    global _driver
    with _lock:
        if _driver is not None:
            if ignore_reinit_error:
                return _context(_driver)
            raise RuntimeError(
                "Maybe you called kray.init twice by accident? This error can be suppressed by passing in "
                "'ignore_reinit_error=True' or by calling 'kray.shutdown()' prior to 'kray.init()'."
            )
        unknown = set(kwargs) - {"runtime_env", "logging_level", "configure_logging", "_temp_dir", "job_config",
                                 "_system_config", "_metrics_export_port"}
        if unknown:
            raise TypeError(f"kray.init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        _apply_logging_options(kwargs)
        if kwargs.get("_temp_dir") is not None:
            raise ValueError("kray.init(_temp_dir=...) is not supported; set the KRAY_TEMP_DIR environment variable "
                             "before starting the process instead.")
        job_config = kwargs.get("job_config")
        if job_config is not None:
            raise ValueError("kray.init(job_config=...) is not supported; pass runtime_env=... and namespace=... "
                             "to kray.init directly.")
        job_runtime_env = runtime_envs.job_env(kwargs.get("runtime_env"))  # bad fields fail before any start
        if address is None:
            address = config.ADDRESS
        namespace = namespace or os.urandom(8).hex()
        metrics_port = _metrics_port(kwargs.get("_metrics_export_port"))
        system_config.apply(kwargs.get("_system_config"), starts_cluster=address in (None, "", "local"))
        if address in (None, "", "local"):
            _driver = _start_local(num_cpus, num_gpus, resources, object_store_memory, namespace,
                                   bool(include_dashboard), metrics_port)
        else:
            if num_cpus is not None or num_gpus is not None or resources or object_store_memory or metrics_port:
                raise ValueError(
                    "When connecting to an existing cluster, num_cpus, num_gpus, resources, object_store_memory "
                    "and _metrics_export_port must not be provided; they are set when the cluster's nodes start."
                )
            _driver = _connect(*_resolve_address(address), namespace)
        try:
            _finish_connect(_driver, log_to_driver)
            runtime_envs.start_job(_driver.core, job_runtime_env)
            if _driver.local is not None:
                local_cluster.wait_for_dashboard(_driver.local, config.START_TIMEOUT_S)
        except BaseException:
            _teardown(_driver)
            _driver = None
            raise
        return _context(_driver)


def _apply_logging_options(kwargs: dict[str, Any]) -> None:
    """logging_level sets the level of kray's own loggers in this process, as Ray's does for ray's."""
    level = kwargs.get("logging_level")
    if level is None:
        return
    valid = isinstance(level, int) and not isinstance(level, bool) or (
        isinstance(level, str) and isinstance(logging.getLevelName(level.upper()), int))
    if not valid:
        raise ValueError(f"logging_level must be a logging level such as 'INFO' or logging.INFO, got {level!r}.")
    logging.getLogger("kray").setLevel(level.upper() if isinstance(level, str) else level)


def _metrics_port(value: Any) -> int:
    """Ray's private `_metrics_export_port`: where the local node serves Prometheus metrics (0: a free port)."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValueError(f"_metrics_export_port must be a port number (0-65535), got {value!r}.")
    return value


def _start_local(
    num_cpus: float | None, num_gpus: float | None, resources: dict[str, float] | None,
    object_store_memory: int | None, namespace: str, include_dashboard: bool, metrics_port: int = 0,
) -> _Driver:
    token = config.cluster_token() or (None if config.auth_disabled() else local_cluster.new_token())
    if token is None:
        log.warning("kray is running without authentication (%s=disabled): any local user who can reach "
                    "the cluster's ports can run code as you.", config.AUTH_MODE_VARIABLE)
    wire.set_token(token)
    # The HTTP server (job API) is a process of its own: an embedded cluster starts it only when asked,
    # which keeps `kray.init()` fast and small; `kray start --head` always starts it.
    local = local_cluster.start_node(
        num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
        object_store_memory=object_store_memory, parent_pid=os.getpid(), write_address_file=True,
        token=token, include_dashboard=include_dashboard, metrics_export_port=metrics_port,
    )
    core = core_worker.CoreWorker(
        node=local.node, gcs_address=local.gcs_address, job_id=0, worker_id=ids.random_id(),
        is_driver=True, namespace=namespace,
    )
    return _Driver(core, local, namespace)


def _resolve_address(address: str) -> tuple[str, str]:
    """The GCS endpoint for `address` and the IP of this machine's node of that cluster (if known);
    also sets this process's cluster token."""
    found = local_cluster.read_live_address()
    if address == "auto":
        if not found:
            raise ConnectionError(
                "Could not find any running kray cluster on this machine. Start one with "
                "`kray start --head`, pass its address as kray.init(address='HOST:PORT'), or call "
                "kray.init() with no address to start a local cluster."
            )
        wire.set_token(config.cluster_token() or found.get("token"))
        return str(found["gcs_address"]), str(found.get("node_ip") or "")
    endpoint = _endpoint(address)
    if found is None or not _recorded_here(endpoint, found):
        wire.set_token(config.cluster_token())
        return endpoint, ""
    wire.set_token(config.cluster_token() or found.get("token"))
    return str(found["gcs_address"]), str(found.get("node_ip") or "")


def _recorded_here(endpoint: str, found: dict[str, Any]) -> bool:
    """Whether `endpoint` reaches the cluster recorded on this machine: its GCS or Ray Client address, by
    name or IP, or that port on 127.0.0.1 where the GCS listens on loopback too (`ray://localhost:10001`)."""
    recorded = [str(a) for a in (found.get("gcs_address"), found.get("client_address")) if a]
    if endpoint in recorded:
        return True
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return False
    for address in recorded:
        recorded_host, _, recorded_port = address.removeprefix("tcp://").rpartition(":")
        if recorded_port == port and (ip == recorded_host or (ip == "127.0.0.1" and not recorded_host.startswith("127."))):
            return True
    return False


def _endpoint(address: str) -> str:
    """tcp://HOST:PORT of the GCS for `address`; Ray Client's `ray://HOST` means its port, 10001, where
    `kray start --head` has the GCS listen too (--ray-client-server-port)."""
    default_port = 10001 if address.startswith("ray://") else 6379
    address = address.removeprefix("kray://").removeprefix("ray://")
    if address.startswith("tcp://"):
        return address
    if ":" not in address:
        address = f"{address}:{default_port}"
    return f"tcp://{address}"


def _connect(gcs_address: str, node_ip: str, namespace: str) -> _Driver:
    try:
        nodes = client.request(gcs_address, lambda rid: messages.GetNodes(rid), timeout=5.0)
    except client.TokenRefused as e:
        raise ConnectionError(str(e)) from None
    except client.NoReply:
        raise ConnectionError(
            f"Could not connect to a kray cluster at {gcs_address}: nothing answered within 5s. "
            "Check that the cluster is running (`kray status`) and that the address is right."
        ) from None
    alive = [n for n in nodes if n.alive]
    deadline = time.monotonic() + 10.0
    while not alive and time.monotonic() < deadline:
        time.sleep(0.05)  # a head that just started registers its raylet within moments
        alive = [n for n in client.request(gcs_address, lambda rid: messages.GetNodes(rid), timeout=5.0) if n.alive]
    if not alive:
        raise ConnectionError(f"The kray cluster at {gcs_address} has no live node yet; try again shortly.")
    node = _local_node(alive, [os.environ.get("KRAY_NODE_IP", ""), node_ip, wire.host_of(gcs_address)])
    core = core_worker.CoreWorker(
        node=node, gcs_address=gcs_address, job_id=0, worker_id=ids.random_id(), is_driver=True,
        namespace=namespace,
    )
    return _Driver(core, None, namespace)


def _local_node(alive: list[messages.NodeInfo], preferred: list[str]) -> messages.NodeInfo:
    """The node of the cluster that runs on this machine: a driver uses its raylet and object store.

    `preferred`: IPs to try first, in order (KRAY_NODE_IP, the node `kray start` recorded here, the
    GCS's host).
    """
    mine = {addr.address for addrs in psutil.net_if_addrs().values() for addr in addrs}

    def local(node: messages.NodeInfo) -> bool:
        return node.ip in mine or node.ip.startswith("127.")

    for ip in preferred:
        node = next((n for n in alive if n.ip == ip and local(n)), None)
        if node is not None:
            return node
    node = next((n for n in alive if local(n)), None)
    if node is None:
        raise ConnectionError(
            "This machine is not a node of the kray cluster (its nodes are "
            f"{', '.join(n.ip for n in alive)}). A driver runs on a node: join this machine with "
            "`kray start --address=HEAD:PORT`, or run the program on one of the nodes (or submit it as a job)."
        )
    return node


def _finish_connect(driver: _Driver, log_to_driver: bool) -> None:
    core = driver.core
    core.loop.on(messages.LogLines, _print_worker_output(core.node.ip))
    core.start()
    timeout = config.START_TIMEOUT_S
    core.job_id = core.call(
        core.gcs_address,
        lambda rid: messages.RegisterJob(rid, os.getpid(), driver.namespace, " ".join(sys.argv),
                                         config.JOB_SUBMISSION_ID),
        timeout=timeout,
    )
    if log_to_driver:
        core.call(core.raylet_address, lambda rid: messages.SubscribeLogs(rid, core.job_id), timeout=timeout)
    # The raylet ends the job if this process dies without kray.shutdown() (SIGKILL), and this process
    # fails its calls if the raylet goes.
    core.send(core.raylet_address, messages.RegisterDriver(core.job_id, os.getpid(), core.worker_id))
    core.loop.call_soon_threadsafe(core.node_watch.watch_raylet)
    _wait_for_node(core, timeout)
    refs.set_core(core)
    atexit.register(shutdown)


def _wait_for_node(core: core_worker.CoreWorker, timeout: float) -> None:
    """Return once the GCS lists this driver's node (its raylet registers asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = core.call(core.gcs_address, lambda rid: messages.GetNodes(rid), timeout=timeout)
        if any(n.node_id == core.node_id and n.alive for n in nodes):
            return
        if time.monotonic() > deadline:
            raise ConnectionError(f"the node's raylet did not register with the GCS within {timeout:.0f}s")
        time.sleep(0.005)


def _print_worker_output(my_ip: str) -> Any:
    def show(msg: messages.LogLines, payload: list, peer: Any) -> None:
        where = f"{msg.name} pid={msg.pid}" + (f", ip={msg.ip}" if msg.ip != my_ip else "")
        stream = sys.stderr if msg.is_err else sys.stdout
        try:
            stream.write("".join(f"({where}) {line}\n" for line in msg.lines))
            stream.flush()
        except (ValueError, OSError):
            pass  # the driver's stream was closed

    return show


def _context(driver: _Driver) -> RayContext:
    core = driver.core
    return RayContext(
        address=wire.host_of(core.gcs_address) + ":" + core.gcs_address.rsplit(":", 1)[1],
        gcs_address=core.gcs_address,
        node_ip_address=core.node.ip,
        node_id=core.node_id.hex(),
        raylet_address=core.raylet_address,
        session_dir=driver.local.session_dir if driver.local else "",
        namespace=driver.namespace,
        job_id=ids.job_id_hex(core.job_id),
        webui_url=driver.local.dashboard_url if driver.local else "",
    )


def shutdown() -> None:
    """Disconnect from the cluster; stop the local cluster if this driver started it."""
    global _driver
    with _lock:
        driver = _driver
        _driver = None
        if driver is None:
            return
        _teardown(driver)


def _teardown(driver: _Driver) -> None:
    core = driver.core
    refs.set_core(None)
    runtime_envs.forget()
    if core.job_id:
        # Non-detached actors end with their job, as in Ray.
        core.send(core.gcs_address, messages.JobFinished(core.job_id))
    try:
        core.shutdown()
    finally:
        if driver.local is not None:
            driver.local.stop()
        wire.set_token(None)
        system_config.restore()  # a later kray.init() starts with the defaults again


def current_core() -> core_worker.CoreWorker:
    """The driver's or worker's core worker; starts a local cluster on first use, as Ray does."""
    core = refs.get_core()
    if core is None:
        init()
        core = refs.get_core()
    return core
