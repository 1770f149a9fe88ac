"""The pod runner: the kubelet stand-in of the k8s test tier. Registers a Node, watches pods and
Services, starts a PodWorker per pod bound (or bindable) to its node, and keeps cluster DNS current.
Pods run as host processes (`pod_runtime="process"`) or as podman containers from their image
("container", podman.py).

Talks to the API server (pods, bindings, services, secrets, configmaps, node, lease, tokens), runs
watch and heartbeat threads, and owns the pod network; `stop()` removes everything it made.
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from . import dns, kubelet_api, network, podman, podspec, volumes
from .worker import TERMINAL, PodWorker

log = logging.getLogger(__name__)
WATCH_TIMEOUT_S = 5
HEARTBEAT_S = 10.0
LEASE_DURATION_S = 40
JOIN_TIMEOUT_S = 30.0
RUNTIME_LABEL = "kray.io/pod-runtime"


def default_base_env() -> dict[str, str]:
    """The "image" environment of every container: this Python's bin dir first on PATH, HOME, LANG."""
    path = os.pathsep.join([str(Path(sys.executable).parent),
                            os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    return {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 8 << 30


class PodRunner:
    """Runs the pods of one namespace (or all) on a Node of its own, as local processes or containers.

    The Node is labelled `kray.io/pod-runtime=<pod_runtime>`; a `dedicated` runner also taints it
    `kray.io/pod-runtime=<pod_runtime>:NoSchedule`, so only pods that tolerate that run there. Pending
    pods are bound only where their nodeSelector and tolerations fit. Use `start()` / `stop()` (or the
    `pod_runner` / `container_pod_runner` fixtures). Container logs stay under `workdir/pods`.
    """

    def __init__(self, kubeconfig: Path, workdir: Path, *, node_name: str | None = None,
                 namespace: str | None = None, network_mode: str = "auto",
                 base_env: Mapping[str, str] | None = None, pod_runtime: str = "process",
                 dedicated: bool = False) -> None:
        if pod_runtime not in ("process", "container"):
            raise ValueError(f"pod_runtime is 'process' or 'container', not {pod_runtime!r}")
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.net = network.make_network("netns" if pod_runtime == "container" else network_mode)
        self.pod_runtime = pod_runtime
        self.runtime_version = ""
        self.podman = podman.Podman(self.net.token) if isinstance(self.net, network.NetnsNetwork) \
            and pod_runtime == "container" else None
        self.node_labels = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                            "kray.io/pod-runner": "true", RUNTIME_LABEL: pod_runtime}
        self.node_taints = [{"key": RUNTIME_LABEL, "value": pod_runtime, "effect": "NoSchedule"}] if dedicated else []
        self.node_name = node_name or f"kray-node-{secrets.token_hex(3)}"
        self.namespace = namespace
        self.workdir = workdir
        self.pods_dir = workdir / "pods"
        if base_env is not None:
            self.base_env = dict(base_env)
        else:  # a container's PATH, HOME and LANG come from its image
            self.base_env = {} if self.podman is not None else default_base_env()
        self.node_cpu = os.cpu_count() or 1
        self.node_memory = _memory_bytes()
        self.stopping = threading.Event()
        self.mount_points = volumes.MountPoints(self.net.record_created)
        self.lookups = podspec.Lookups(secret=self._read_secret, config_map=self._read_config_map)
        self._workers: dict[str, PodWorker] = {}
        self._dirs: dict[tuple[str, str], Path] = {}
        self._services: dict[tuple[str, str], dns.ServiceView] = {}
        self._lock = threading.RLock()
        self._dns_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.kubelet_api: kubelet_api.KubeletApi | None = None

    @property
    def host_ip(self) -> str:
        """The node's address: the bridge IP (netns mode) or 127.0.0.1; pods reach the host on it."""
        return self.net.host_ip

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> PodRunner:
        """Sets up the pod network, registers the Node and starts watching; undoes it all on failure."""
        try:
            self.pods_dir.mkdir(parents=True, exist_ok=True)
            self.net.setup()
            if self.podman is not None:
                self.runtime_version = self.podman.setup(self.host_ip, self.api.configuration.host)
            self.kubelet_api = kubelet_api.KubeletApi(self.host_ip, self.workdir / "kubelet", self.log_path,
                                                      self.container_running).start()
            self._register_node()
            ns_kw = {"namespace": self.namespace} if self.namespace else {}
            pods = self.core.list_namespaced_pod if self.namespace else self.core.list_pod_for_all_namespaces
            svcs = (self.core.list_namespaced_service if self.namespace
                    else self.core.list_service_for_all_namespaces)
            self._spawn("pod watch", lambda: self._watch_loop(pods, ns_kw, self._on_pod, None))
            self._spawn("service watch", lambda: self._watch_loop(svcs, ns_kw, self._on_service,
                                                                   self._services.clear))
            self._spawn("node heartbeat", self._heartbeat)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kills every pod's processes, removes namespaces, veths, bridge, mount points, Node and Lease."""
        self.stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.wake()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in [w.thread for w in workers] + self._threads:
            if t.is_alive():
                t.join(max(0.1, deadline - time.monotonic()))
        if self.kubelet_api is not None:
            self.kubelet_api.stop()
        self.mount_points.remove_all()
        if self.podman is not None:
            self.podman.teardown()
        self.net.teardown()
        for delete in (lambda: self.core.delete_node(self.node_name, _request_timeout=5),
                       lambda: client.CoordinationV1Api(self.api).delete_namespaced_lease(
                           self.node_name, "kube-node-lease", _request_timeout=5)):
            try:
                delete()
            except Exception as e:  # noqa: BLE001 - the API server may already be gone at teardown
                log.debug("pod runner: cleanup call failed: %s", e)
        self.api.close()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=f"pod runner {name}", daemon=True)
        t.start()
        self._threads.append(t)

    # -- the node -------------------------------------------------------------------------------

    def _register_node(self) -> None:
        labels = {**self.node_labels, "kubernetes.io/hostname": self.node_name}
        node: Any = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels},
                     "spec": {"taints": self.node_taints}}
        self.core.create_node(node)
        capacity = {"cpu": str(self.node_cpu), "memory": str(self.node_memory), "pods": "250"}
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": kind, "status": "False", "reason": f"KubeletHasNo{kind}", "lastHeartbeatTime": now,
             "lastTransitionTime": now} for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kray pod runner",
              "lastHeartbeatTime": now, "lastTransitionTime": now}]
        self.core.patch_node_status(self.node_name, {"status": {
            "capacity": capacity, "allocatable": capacity, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self.host_ip},
                          {"type": "Hostname", "address": self.node_name}],
            # `kubectl logs` reaches the kubelet API here (the API server prefers InternalIP, see launcher).
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_api.port if self.kubelet_api else 0}},
            "nodeInfo": {"kubeletVersion": "v1.35.4-kray-pod-runner", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": self._runtime_name()},
        }})
        self._renew_lease(create=True)

    def _runtime_name(self) -> str:
        if self.podman is not None:
            return f"podman://{self.runtime_version}"
        return f"kray-pod-runner://{self.net.mode}"

    def _renew_lease(self, create: bool = False) -> None:
        renew = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        coord = client.CoordinationV1Api(self.api)
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": renew}
        if create:
            lease: Any = {"metadata": {"name": self.node_name}, "spec": spec}
            coord.create_namespaced_lease("kube-node-lease", lease)
        else:
            coord.patch_namespaced_lease(self.node_name, "kube-node-lease", {"spec": spec})

    def _heartbeat(self) -> None:
        # The node lifecycle controller taints (and evicts from) a node whose Lease is not renewed.
        while not self.stopping.wait(HEARTBEAT_S):
            try:
                self._renew_lease()
            except Exception as e:  # noqa: BLE001 - a heartbeat thread must outlive API hiccups
                log.warning("pod runner: lease renewal failed: %s", e)

    # -- watches --------------------------------------------------------------------------------

    def _watch_loop(self, list_fn: Callable[..., Any], kw: dict[str, Any],
                    handle: Callable[[str, Any], None], on_relist: Callable[[], None] | None) -> None:
        rv: str | None = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    listing = list_fn(**kw)
                    if on_relist:
                        on_relist()
                    for item in listing.items:
                        handle("ADDED", item)
                    rv = listing.metadata.resource_version
                for event in watch.Watch().stream(list_fn, resource_version=rv, timeout_seconds=WATCH_TIMEOUT_S,
                                                  allow_watch_bookmarks=True, **kw):
                    if self.stopping.is_set():
                        return
                    if event["type"] == "ERROR":
                        rv = None
                        break
                    # raw_object: BOOKMARK events are not deserialized into models.
                    rv = (event["raw_object"].get("metadata") or {}).get("resourceVersion") or rv
                    if event["type"] != "BOOKMARK":
                        handle(event["type"], event["object"])
            except ApiException as e:
                if e.status != 410:
                    log.warning("pod runner: watch failed: %s %s", e.status, e.reason)
                    self.stopping.wait(1.0)
                rv = None
            except Exception as e:  # noqa: BLE001 - connection resets while the API server stops, etc.
                if not self.stopping.is_set():
                    log.warning("pod runner: watch error: %s", e)
                    self.stopping.wait(1.0)

    def _on_pod(self, kind: str, pod: Any) -> None:
        with self._lock:
            worker = self._workers.get(pod.metadata.uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.gone()
                return
            if worker is not None:
                worker.update(pod)
                return
            node = pod.spec.node_name
            if self.stopping.is_set() or node not in (None, "", self.node_name):
                return
            if not node and not podspec.fits_node(pod, {**self.node_labels, "kubernetes.io/hostname":
                                                        self.node_name}, self.node_taints):
                return  # another runner's pod (nodeSelector, taints)
            if pod.metadata.deletion_timestamp is not None or (pod.status and pod.status.phase in TERMINAL):
                return  # nothing to run; a deleted pod of this node was finalized by its worker
            worker = PodWorker(self, pod)
            self._workers[pod.metadata.uid] = worker
            self._dirs[(worker.namespace, worker.name)] = worker.dir
            worker.thread.start()

    def _on_service(self, kind: str, svc: Any) -> None:
        key = (svc.metadata.namespace, svc.metadata.name)
        view = None if kind == "DELETED" else dns.ServiceView.from_api(svc)
        with self._lock:
            if view is None:
                self._services.pop(key, None)
            else:
                self._services[key] = view
        self.dns_changed()

    # -- what workers call ------------------------------------------------------------------------

    def forget(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    def facts(self, pod_ip: str) -> podspec.PodFacts:
        return podspec.PodFacts(pod_ip=pod_ip, host_ip=self.host_ip, node_cpu=self.node_cpu,
                                node_memory=self.node_memory)

    def dns_changed(self) -> None:
        """Rewrites every running pod's hosts file from the current Services and pods."""
        with self._lock:
            workers = list(self._workers.values())
            services = list(self._services.values())
        with self._dns_lock:
            views = {w.uid: w.view() for w in workers}
            known = [v for v in views.values() if v is not None]
            for w in workers:
                me, sandbox = views[w.uid], w.sandbox
                if me is None or sandbox is None:
                    continue
                try:
                    extra = self.podman.hosts_lines() if self.podman is not None else ""
                    self.net.write_etc(sandbox, "hosts", dns.hosts_file(me, services, known) + extra)
                    self.net.write_etc(sandbox, "resolv.conf", dns.resolv_conf(w.namespace))
                except OSError:
                    pass  # the sandbox went away meanwhile

    def service_account_token(self, pod: Any, projection: Any) -> str | None:
        """A bound token for a projected serviceAccountToken volume source (TokenRequest API)."""
        spec: dict[str, Any] = {"expirationSeconds": projection.expiration_seconds or 3600,
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                   "name": pod.metadata.name, "uid": pod.metadata.uid}}
        if projection.audience:
            spec["audiences"] = [projection.audience]
        request: Any = {"spec": spec}
        try:
            tr: Any = self.core.create_namespaced_service_account_token(
                pod.spec.service_account_name or "default", pod.metadata.namespace, request)
            return str(tr.status.token)
        except ApiException as e:
            log.warning("pod runner: no token for %s: %s", pod.metadata.name, e.reason)
            return None

    def _read_secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        try:
            return podspec.secret_data(self.core.read_namespaced_secret(name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _read_config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            return podspec.config_map_data(self.core.read_namespaced_config_map(name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # -- for tests ---------------------------------------------------------------------------------

    def pod_dir(self, namespace: str, name: str) -> Path:
        """The directory of the latest pod of that name this runner ran (logs/ and volumes/)."""
        try:
            return self._dirs[(namespace, name)]
        except KeyError:
            raise KeyError(f"pod {namespace}/{name} was never run by {self.node_name}") from None

    def container_running(self, namespace: str, name: str, container: str) -> bool:
        """Whether that container of the pod has a process now (it may still write to its log)."""
        with self._lock:
            workers = [w for w in self._workers.values() if (w.namespace, w.name) == (namespace, name)]
        return any(r.running for w in workers for r in w.main if r.name == container)

    def log_path(self, namespace: str, name: str, container: str | None = None) -> Path:
        """A container's log file (the first container's when `container` is None)."""
        logs = self.pod_dir(namespace, name) / "logs"
        if container is None:
            found = sorted(logs.glob("*.log"))
            return found[0] if found else logs / "missing.log"
        return logs / f"{container}.log"

    def read_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """A container's output so far ("" when it has not started)."""
        try:
            return self.log_path(namespace, name, container).read_text(errors="replace")
        except (OSError, KeyError):
            return ""

    def exec(self, namespace: str, name: str, argv: list[str], *, container: str | None = None,
             timeout: float = 120.0, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`kubectl exec`: run `argv` in a running container of pod namespace/name (the first container
        unless `container` is given) and return its exit code and output."""
        with self._lock:
            worker = next((w for w in self._workers.values() if (w.namespace, w.name) == (namespace, name)), None)
        if worker is None:
            raise LookupError(f"pod {namespace}/{name} does not run on {self.node_name}")
        return worker.exec(container, argv, timeout, env)

    def netns_of(self, namespace: str, name: str) -> str | None:
        """The network namespace of a running pod (None in loopback mode or when it does not run)."""
        with self._lock:
            for w in self._workers.values():
                if (w.namespace, w.name) == (namespace, name) and w.sandbox is not None:
                    return w.sandbox.netns or None
        return None

    def sandboxes(self) -> list[str]:
        """Names of the network namespaces of pods running now (netns mode)."""
        with self._lock:
            return [w.sandbox.netns for w in self._workers.values() if w.sandbox and w.sandbox.netns]

    def wait_for_pod(self, namespace: str, name: str, check: Callable[[Any], bool],
                     timeout: float = 60.0, what: str = "condition") -> Any:
        """Polls the pod until `check(pod)` is true; raises TimeoutError with its status and log."""
        deadline = time.monotonic() + timeout
        pod = None
        while time.monotonic() < deadline:
            try:
                pod = self.core.read_namespaced_pod(name, namespace)
                if check(pod):
                    return pod
            except ApiException as e:
                if e.status != 404:
                    raise
                pod = None
                if check(None):
                    return None
            time.sleep(0.2)
        phase = pod.status.phase if pod is not None and pod.status else "(no pod)"
        raise TimeoutError(f"pod {namespace}/{name}: {what} not reached in {timeout:.0f} s (phase {phase});"
                           f" log:\n{self.read_log(namespace, name)[-2000:]}")

