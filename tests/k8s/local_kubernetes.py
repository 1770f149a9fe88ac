"""A whole local Kubernetes for kray, as one object: the control plane (crds/ applied), one pod runner
(process or container mode) and the operator installed from helm/kray-operator with the chart's RBAC.

Starts and stops processes (by PID), a pod network and containers through launcher.ControlPlane and
PodRunner; renders the chart with helm and applies it with the kubernetes client. tools/local_k8s.py
keeps one of these running in the background for `make k8s-up` / `make k8s-down`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

import yaml
from controlplane import launcher
from kubernetes import client, config, utils
from podrunner import PodRunner, network

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "kray-operator"
RELEASE = "kray-operator"
OPERATOR_NAMESPACE = "kray-system"
OPERATOR_IMAGE = "localhost/kray-operator:latest"  # images/build.sh tags the tree's image :latest too
MODES = ("process", "container")
TOKEN_LIFETIME_S = 30 * 24 * 3600
OPERATOR_READY_TIMEOUT_S = {"process": 60.0, "container": 240.0}
STOP_TIMEOUT_S = 15.0


class LocalKubernetesError(RuntimeError):
    """A part of the local Kubernetes failed to start; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Started:
    """What is running, for the state file and for cleaning up after a crash: PIDs with start times,
    the pod network's token (netns names, bridge, podman labels) and the operator's whereabouts."""

    kubeconfig: str
    server: str
    node: str
    network: str
    token: str
    operator: str
    processes: dict[str, list[Any]]


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (tells a PID apart from a later one that reused it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def running(pid: int, start_time: str | None) -> bool:
    """Whether the process that had this PID and start time still runs (a zombie does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and (start_time is None or fields[19] == start_time)


def pod_processes(token: str) -> dict[int, str | None]:
    """PIDs (with start times) of everything running in the network namespaces of the pod runner whose
    network token this is (netns mode)."""
    if not token or shutil.which("ip") is None:
        return {}
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    found: dict[int, str | None] = {}
    for name in (line.split()[0] for line in listing.splitlines() if line.startswith(f"{network.PREFIX}{token}-")):
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
        found.update({int(p): process_start_time(int(p)) for p in pids.split()})
    return found


def render_chart(helm: str, mode: str) -> list[dict[str, Any]]:
    """`helm template` of helm/kray-operator into kray-system: the operator image of this tree in
    container mode (never pulled), the chart's defaults otherwise."""
    values = ["--set", f"image.repository={OPERATOR_IMAGE.rsplit(':', 1)[0]}", "--set", "image.tag=latest",
              "--set", "image.pullPolicy=Never"] if mode == "container" else []
    done = subprocess.run([helm, "template", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE, *values],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise LocalKubernetesError(f"helm template {CHART} failed ({done.returncode}): {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


class HostOperator:
    """The chart's operator container run as a host process: its command, args and env as rendered,
    with the ServiceAccount's token as its only credentials (so it has exactly the chart's RBAC)."""

    def __init__(self, deployment: dict[str, Any], kubeconfig: Path, log_path: Path) -> None:
        (self.container,) = deployment["spec"]["template"]["spec"]["containers"]
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.urls: dict[str, str] = {}  # --liveness, --metrics, ...: on loopback, on ports free here
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def argv(self) -> list[str]:
        command = list(self.container.get("command") or [])
        if command[:1] != ["python"]:
            raise LocalKubernetesError(f"the chart's operator command {command} does not start with python")
        args = [self._on_loopback(a) for a in self.container.get("args") or []]
        if "--liveness" not in self.urls:
            raise LocalKubernetesError("the chart's operator has no --liveness URL to wait for")
        return [sys.executable, *command[1:], *args]

    def _on_loopback(self, arg: str) -> str:
        """`--flag=http://0.0.0.0:PORT/path` (a port of the pod) becomes a free port on 127.0.0.1."""
        flag, sep, value = arg.partition("=")
        url = urllib.parse.urlsplit(value) if sep else None
        if url is None or url.scheme != "http" or url.hostname != "0.0.0.0":
            return arg
        self.urls[flag] = url._replace(netloc=f"127.0.0.1:{launcher.free_port()}").geturl()
        return f"{flag}={self.urls[flag]}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        for item in self.container.get("env") or []:
            field = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif field == "metadata.namespace":
                env[item["name"]] = OPERATOR_NAMESPACE
            else:
                raise LocalKubernetesError(f"operator env {item['name']!r}: only values and the namespace "
                                           "fieldRef can be given to a host process")
        return env

    def start(self, timeout: float) -> HostOperator:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # pdeathsig: the operator dies with the process that runs it, even a SIGKILLed one.
        prefix = ["setpriv", "--pdeathsig", "SIGKILL", "--"] if shutil.which("setpriv") else []
        self.popen = subprocess.Popen([*prefix, *self.argv()], env=self.env(), stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while not self._alive():
            if self.popen.poll() is not None:
                raise LocalKubernetesError(f"the operator exited with {self.popen.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise LocalKubernetesError(f"the operator did not answer /healthz in {timeout:.0f} s; "
                                           f"see {self.log_path}")
            time.sleep(0.2)
        return self

    def _alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.urls["--liveness"], timeout=2) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalKubernetes:
    """Control plane + pod runner + operator under `workdir`. `start()` returns once all are ready (the
    operator answers its health check, or its pod is Ready in container mode); `stop()` undoes all."""

    def __init__(self, workdir: Path, mode: str, helm: str) -> None:
        if mode not in MODES:
            raise LocalKubernetesError(f"K8S_PODS is 'process' or 'container', not {mode!r}")
        self.workdir = workdir
        self.mode = mode
        self.helm = helm
        self.log_dir = workdir / "logs"
        self.control_plane: launcher.ControlPlane | None = None
        self.runner: PodRunner | None = None
        self.operator: HostOperator | None = None
        self.operator_where = ""

    def start(self) -> Started:
        try:
            return self._start()
        except BaseException:
            self.stop(keep_logs=True)  # the control plane's logs say why
            raise

    def _start(self) -> Started:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        docs = render_chart(self.helm, self.mode)  # before anything runs: a broken chart fails fast
        log.info("starting the control plane (Kubernetes %s)", launcher.kubernetes_version())
        cp = self.control_plane = launcher.ControlPlane(crd_dir=REPO_ROOT / "crds", workdir=self.workdir / "cp")
        cp.start()
        log.info("control plane at %s; starting the pod runner (%s mode)", cp.server, self.mode)
        self.runner = PodRunner(cp.kubeconfig, self.workdir / "pod-runner", pod_runtime=self.mode).start()
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))
        try:
            self._install_operator(api, docs, cp.kubeconfig)
        finally:
            api.close()
        net = self.runner.net
        return Started(
            kubeconfig=str(cp.kubeconfig), server=cp.server, node=self.runner.node_name, network=net.mode,
            token=net.token if isinstance(net, network.NetnsNetwork) else "", operator=self.operator_where,
            processes={name: [pid, process_start_time(pid)] for name, pid in self.pids().items()})

    def _install_operator(self, api: client.ApiClient, docs: list[dict[str, Any]], admin_kubeconfig: Path) -> None:
        core: Any = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
        deployments = [d for d in docs if d.get("kind") == "Deployment"]
        if len(deployments) != 1:
            raise LocalKubernetesError(f"the chart renders {len(deployments)} Deployments, expected one")
        for doc in docs:
            if doc.get("kind") != "Deployment" or self.mode == "container":
                utils.create_from_dict(api, doc, namespace=OPERATOR_NAMESPACE)
        deployment = deployments[0]
        spec = deployment["spec"]["template"]["spec"]
        timeout = OPERATOR_READY_TIMEOUT_S[self.mode]
        if self.mode == "container":
            pod = self._wait_for_operator_pod(core, deployment, timeout)
            self.operator_where = f"pod {OPERATOR_NAMESPACE}/{pod} from {OPERATOR_IMAGE}"
            return
        service_account = spec["serviceAccountName"]
        token = core.create_namespaced_service_account_token(
            service_account, OPERATOR_NAMESPACE, {"spec": {"expirationSeconds": TOKEN_LIFETIME_S}}).status.token
        kubeconfig = self.workdir / "operator.kubeconfig"
        write_token_kubeconfig(admin_kubeconfig, kubeconfig, token, service_account)
        self.operator = HostOperator(deployment, kubeconfig, self.log_dir / "operator.log").start(timeout)
        pid = self.operator.popen.pid if self.operator.popen else "?"
        metrics = f", metrics {self.operator.urls['--metrics']}" if "--metrics" in self.operator.urls else ""
        self.operator_where = f"host process pid {pid} as ServiceAccount {OPERATOR_NAMESPACE}/{service_account}{metrics}"

    def _wait_for_operator_pod(self, core: Any, deployment: dict[str, Any], timeout: float) -> str:
        labels = deployment["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        deadline = time.monotonic() + timeout
        names: list[str] = []
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=selector).items
            names = [str(p.metadata.name) for p in pods]
            for pod in pods:
                conditions = (pod.status.conditions if pod.status else None) or []
                if any(c.type == "Ready" and c.status == "True" for c in conditions):
                    return str(pod.metadata.name)
            time.sleep(0.5)
        logs = "".join(f"\n--- {n}:\n{self.runner.read_log(OPERATOR_NAMESPACE, n)[-3000:]}"
                       for n in names if self.runner is not None)
        raise LocalKubernetesError(f"no Ready operator pod in {OPERATOR_NAMESPACE} within {timeout:.0f} s{logs}")

    def pids(self) -> dict[str, int]:
        """PIDs of the host processes: control plane and (process mode) the operator."""
        pids = dict(self.control_plane.pids) if self.control_plane is not None else {}
        if self.operator is not None and self.operator.popen is not None:
            pids["operator"] = self.operator.popen.pid
        return pids

    def stop(self, keep_logs: bool = False) -> None:
        """Stops the operator, then every pod (the runner), then the control plane; removes the workdir
        but for logs/ when keep_logs."""
        if self.operator is not None:
            self.operator.stop()
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        if self.control_plane is not None:
            self.control_plane.stop(keep_logs=keep_logs)
            self.control_plane = None


def write_token_kubeconfig(admin_kubeconfig: Path, path: Path, token: str, user: str) -> None:
    """A kubeconfig with the admin one's cluster (server, CA) and a bearer token as its user."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
    path.chmod(0o600)
