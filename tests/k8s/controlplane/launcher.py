"""Starts and stops a real Kubernetes control plane for tests: etcd, kube-apiserver, the CRDs, and
kube-controller-manager, on loopback ports, from the binaries `make k8s-env` builds.

Starts child processes (stopped by PID), writes only inside its own temp dir, reads crds/*.yaml,
and talks to the API server over HTTPS. Figures and flags: shared/notes/k8s-test-env.md.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

import yaml

from . import pki

HERE = Path(__file__).resolve().parent
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
WORKDIR_PREFIX = "kray-k8s-"


class MissingBinariesError(RuntimeError):
    """The control plane's binaries are not built; `make k8s-env` builds them."""


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or to become ready."""


def kubernetes_version() -> str:
    """The Kubernetes version pinned in this directory's go.mod (the one build.sh builds)."""
    for line in (HERE / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes" and parts[1].startswith("v"):
            return parts[1]
    raise ControlPlaneError(f"no k8s.io/kubernetes version in {HERE / 'go.mod'}")


def binaries_dir() -> Path:
    """Where the binaries are: $KUBEBUILDER_ASSETS if set, else the per-version cache build.sh fills."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        return Path(assets)
    cache = os.environ.get("KRAY_K8S_ENV_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kray", "k8s-env")
    return Path(cache) / kubernetes_version() / "bin"


def find_binaries() -> dict[str, Path]:
    """Paths of etcd, kube-apiserver and kube-controller-manager; raises if any is missing."""
    d = binaries_dir()
    found = {name: d / name for name in BINARIES}
    missing = [name for name, p in found.items() if not os.access(p, os.X_OK)]
    if missing:
        raise MissingBinariesError(
            f"{', '.join(missing)} not found in {d}: run `make k8s-env` first (builds the pinned "
            f"Kubernetes {kubernetes_version()} control plane, ~9 min once, cached outside the clone)"
            + (" or fix KUBEBUILDER_ASSETS" if os.environ.get("KUBEBUILDER_ASSETS") else ""))
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_file: IO[bytes]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager with the kray CRDs applied.

    `start()` returns once pods can be created (the default ServiceAccount exists); `stop()` ends
    every process by PID and removes the temp dir (keeping `logs/` when `keep_logs`).
    """

    def __init__(self, crd_dir: Path | None = None, workdir: Path | None = None) -> None:
        self.binaries = find_binaries()
        self.crd_dir = crd_dir
        if workdir is None:
            reap_stale_workdirs()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        self.log_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.server = ""
        self.etcd_url = ""
        self.applied_crds: list[str] = []
        self._processes: list[_Process] = []
        self._pki: pki.PKI | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Starts everything; on any failure stops what was started and raises ControlPlaneError."""
        try:
            self._start()
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        self._pki = p = pki.make_pki(self.workdir / "pki")
        self._start_etcd()
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki.write_kubeconfig(self.kubeconfig, self.server, p.ca, "kray-admin", p.admin)
        self._spawn("kube-apiserver", [
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={p.apiserver.cert}", f"--tls-private-key-file={p.apiserver.key}",
            f"--client-ca-file={p.ca.cert}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.service_account_pub}",
            f"--service-account-signing-key-file={p.service_account_key}",
            f"--service-cluster-ip-range={pki.SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true", "--endpoint-reconciler-type=none", "--profiling=false",
            # `kubectl logs` goes to a node's InternalIP (the pod runner's Node has no resolvable hostname).
            "--kubelet-preferred-address-types=InternalIP",
        ])
        self._wait_until("kube-apiserver /readyz", lambda: self._get("/readyz") == 200)
        self.apply_crds()
        kcm_config = pki.write_kubeconfig(self.workdir / "controller-manager.kubeconfig", self.server,
                                          p.ca, "system:kube-controller-manager", p.controller_manager)
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={kcm_config}", "--controllers=*", "--use-service-account-credentials=true",
            "--leader-elect=false", "--kube-api-qps=100", "--kube-api-burst=200", "--secure-port=0",
            f"--service-account-private-key-file={p.service_account_key}",
            f"--root-ca-file={p.ca.cert}",
            f"--cluster-signing-cert-file={p.ca.cert}", f"--cluster-signing-key-file={p.ca.key}",
        ])
        # Pods can be created once the service-account controller made the default ServiceAccount.
        self._wait_until("default ServiceAccount",
                         lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") == 200)

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            "--name=kray-test", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=kray-test=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])

    def stop(self, keep_logs: bool = False) -> None:
        """Stops the processes (controller-manager, apiserver, then etcd) and removes the temp dir."""
        for group in (("kube-controller-manager", "kube-apiserver"), ("etcd",)):
            procs = [pr for pr in self._processes if pr.name in group]
            for pr in procs:
                _signal(pr.popen, signal.SIGTERM)
            for pr in procs:
                try:
                    pr.popen.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    _signal(pr.popen, signal.SIGKILL)
                    pr.popen.wait(timeout=STOP_TIMEOUT_S)
                pr.log_file.close()
        self._processes.clear()
        if not self.workdir.exists():
            return
        if keep_logs:
            for child in self.workdir.iterdir():
                if child != self.log_dir:
                    _remove(child)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- CRDs -------------------------------------------------------------------------------

    def apply_crds(self) -> list[str]:
        """Creates every CustomResourceDefinition in crd_dir/*.yaml and waits until each is Established."""
        if self.crd_dir is None or not self.crd_dir.is_dir():
            return []
        from kubernetes import client, config

        api = client.ApiextensionsV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))
        names: list[str] = []
        try:
            for path in sorted(self.crd_dir.glob("*.yaml")):
                for doc in yaml.safe_load_all(path.read_text()):
                    if not doc or doc.get("kind") != "CustomResourceDefinition":
                        continue
                    try:
                        api.create_custom_resource_definition(body=doc)
                    except client.ApiException as e:
                        raise ControlPlaneError(f"applying {path.name}: {e.status} {e.body}") from e
                    names.append(doc["metadata"]["name"])
            for name in names:
                self._wait_until(f"CRD {name} Established", lambda n=name: _established(api, n))
        finally:
            api.api_client.close()
        self.applied_crds = names
        return names

    # -- helpers ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log = self.log_dir / f"{name}.log"
        log_file = open(log, "ab")  # noqa: SIM115 - open for the process's lifetime, closed in stop()
        # setpriv makes the process die with the test session even if pytest itself is killed.
        prefix = ["setpriv", "--pdeathsig", "SIGKILL", "--"] if shutil.which("setpriv") else []
        popen = subprocess.Popen([*prefix, str(self.binaries[name]), *args], stdin=subprocess.DEVNULL,
                                 stdout=log_file, stderr=subprocess.STDOUT, cwd=self.workdir,
                                 start_new_session=True)
        proc = _Process(name, popen, log, log_file)
        self._processes.append(proc)
        return proc

    def _ssl_context(self) -> ssl.SSLContext:
        if self._pki is None:
            raise ControlPlaneError("start() first")
        ctx = ssl.create_default_context(cafile=str(self._pki.ca.cert))
        ctx.load_cert_chain(str(self._pki.admin.cert), str(self._pki.admin.key))
        return ctx

    def _get(self, path: str) -> int:
        """Status code of an authenticated GET against the API server (0 when unreachable)."""
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl_context(), timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except (OSError, ssl.SSLError):
            return 0

    def _wait_until(self, what: str, check: Any, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for pr in self._processes:
                if pr.popen.poll() is not None:
                    raise ControlPlaneError(
                        f"{pr.name} exited with {pr.popen.returncode} while waiting for {what}; "
                        f"last lines of {pr.log}:\n{pr.log_tail()}")
            if check():
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {pr.name}:\n{pr.log_tail(10)}" for pr in self._processes)
                raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
            time.sleep(0.1)

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running control-plane processes, by binary name."""
        return {pr.name: pr.popen.pid for pr in self._processes}


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def reap_stale_workdirs() -> None:
    """Removes temp dirs of control planes whose test process was killed (stop() never ran).

    Dirs whose logs were kept on purpose have no `owner` file any more and stay.
    """
    for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            pid, start = (d / "owner").read_text().split()
        except (OSError, ValueError):
            continue
        if _start_time(int(pid)) != start:
            shutil.rmtree(d, ignore_errors=True)


def _established(api: Any, name: str) -> bool:
    crd = api.read_custom_resource_definition(name)
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _signal(popen: subprocess.Popen[bytes], sig: int) -> None:
    if popen.poll() is None:
        try:
            os.kill(popen.pid, sig)
        except ProcessLookupError:
            pass


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
