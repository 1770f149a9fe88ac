"""The pod runner's container mode: a pod's containers run from their image with podman, inside the
pod's network namespace, with its volumes, env, command/args, security context and limits.

Runs podman (root) as subprocesses: image inspect/pull, run, stop, exec, rm. Every container carries
the runner's label, so teardown and a later run remove all of them (no leaked containers).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import apiserver, network, podspec, status, volumes

if TYPE_CHECKING:
    from .worker import PodWorker

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[3]
LABEL = "io.kray.podrunner"
POD_LABEL = "io.kray.pod"
CONTAINER_LABEL = "io.kray.container"
PULL_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 60.0


class ImageError(podspec.ConfigError):
    """The container's image is not there and may not (or could not) be pulled."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def engine_env() -> dict[str, str]:
    """podman's environment: without systemd it needs the project's containers.conf (images/)."""
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and not Path("/run/systemd/system").is_dir():
        env["CONTAINERS_CONF"] = str(REPO_ROOT / "images" / "containers.conf")
    return env


def podman(*args: str, timeout: float = CALL_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs one podman command and returns its output; raises RuntimeError when check fails."""
    binary = shutil.which("podman") or "podman"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env=engine_env(), stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {shlex.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """What the runner needs from an image's config: the entrypoint and cmd Kubernetes falls back to."""

    ref: str
    entrypoint: list[str]
    cmd: list[str]

    @classmethod
    def inspect(cls, ref: str) -> ImageConfig:
        config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", ref).stdout or "{}")
        return cls(ref, list(config.get("Entrypoint") or []), list(config.get("Cmd") or []))


def image_argv(container: Any, env: Mapping[str, str], image: ImageConfig) -> list[str]:
    """The process Kubernetes starts: command replaces the entrypoint (and drops cmd), args replace cmd;
    $(VAR) references in both expand from the container's env."""
    command = [podspec.expand(a, env) for a in container.command or []]
    args = [podspec.expand(a, env) for a in container.args or []]
    if command:
        argv = command + args
    else:
        argv = image.entrypoint + (args if container.args else image.cmd)
    if not argv:
        raise podspec.ConfigError(f"container {container.name!r}: no command, and image {image.ref} has none")
    return argv


def limit_args(container: Any) -> list[str]:
    """Resource limits as cgroup limits: memory, CPU quota, and CPU shares from the request."""
    resources = container.resources
    limits, requests = (resources.limits or {}, resources.requests or {}) if resources else ({}, {})
    out: list[str] = []
    if "memory" in limits:  # and no swap above it, as the kubelet does
        memory = int(podspec.parse_quantity(limits["memory"]))
        out += [f"--memory={memory}", f"--memory-swap={memory}"]
    if "cpu" in limits:
        out.append(f"--cpus={podspec.parse_quantity(limits['cpu']).normalize():f}")
    cpu_request = requests.get("cpu", limits.get("cpu"))
    if cpu_request is not None:  # the kubelet's cpu.shares: 1024 per CPU, at least 2
        out.append(f"--cpu-shares={max(2, int(podspec.parse_quantity(cpu_request) * Decimal(1024)))}")
    return out


def security_args(pod: Any, container: Any) -> list[str]:
    """runAsUser/runAsGroup (container over pod), fsGroup and supplementalGroups, readOnlyRootFilesystem."""
    pod_ctx, ctx = pod.spec.security_context, container.security_context
    user = ctx.run_as_user if ctx and ctx.run_as_user is not None else (pod_ctx.run_as_user if pod_ctx else None)
    group = (ctx.run_as_group if ctx and ctx.run_as_group is not None
             else (pod_ctx.run_as_group if pod_ctx else None))
    out: list[str] = []
    if user is not None:
        out.append(f"--user={user}" + (f":{group}" if group is not None else ""))
    if pod_ctx is not None:
        for gid in [pod_ctx.fs_group, *(pod_ctx.supplemental_groups or [])]:
            if gid is not None:
                out.append(f"--group-add={gid}")
    if ctx is not None:
        if ctx.read_only_root_filesystem:
            out.append("--read-only")
        if ctx.allow_privilege_escalation is False:
            out.append("--security-opt=no-new-privileges")
        caps = ctx.capabilities
        out += [f"--cap-drop={c}" for c in (caps.drop or [])] if caps else []
        out += [f"--cap-add={c}" for c in (caps.add or [])] if caps else []
    return out


def own_volumes(pod: Any, container: Any, vols: Mapping[str, volumes.Volume]) -> None:
    """File ownership as the kubelet sets it: fsGroup owns the pod's volumes (group-readable), and a
    projected ServiceAccount token belongs to the runAsUser, so a non-root process can read its 0600 file."""
    pod_ctx, ctx = pod.spec.security_context, container.security_context
    user = ctx.run_as_user if ctx and ctx.run_as_user is not None else (pod_ctx.run_as_user if pod_ctx else None)
    fs_group = pod_ctx.fs_group if pod_ctx else None
    kinds = {v.name: v for v in pod.spec.volumes or []}
    for vm in container.volume_mounts or []:
        vol, spec = vols.get(vm.name), kinds.get(vm.name)
        if vol is None or vol.host_path is None or spec is None or spec.host_path is not None:
            continue
        has_token = spec.projected is not None and any(
            src.service_account_token is not None for src in spec.projected.sources or [])
        for path in [vol.host_path, *vol.host_path.rglob("*")]:
            if fs_group is not None:
                os.chown(path, -1, fs_group, follow_symlinks=False)
                path.chmod(path.stat().st_mode | (0o2070 if path.is_dir() else 0o040))
            if has_token and user is not None:
                os.chown(path, user, -1, follow_symlinks=False)


def mount_args(pod: Any, container: Any, vols: Mapping[str, volumes.Volume], sandbox: network.Sandbox) -> list[str]:
    """The pod's volumes at the container's mountPaths, and the pod's hosts/resolv.conf (cluster DNS)."""
    out: list[str] = []
    if sandbox.netns:
        etc = network.NETNS_ETC / sandbox.netns
        for name in ("hosts", "resolv.conf"):
            if (etc / name).exists():
                out.append(f"--mount=type=bind,source={etc / name},destination=/etc/{name},ro=true")
    disk_dirs = {v.name for v in pod.spec.volumes or [] if v.empty_dir is not None and v.empty_dir.medium != "Memory"}
    for vm in container.volume_mounts or []:
        vol = vols.get(vm.name)
        if vol is None:
            raise podspec.ConfigError(f"volumeMount {vm.name!r} names no volume of the pod")
        if vol.tmpfs_bytes is not None:  # memory-backed emptyDir: a tmpfs of its sizeLimit (e.g. /dev/shm)
            out.append(f"--mount=type=tmpfs,destination={vm.mount_path},tmpfs-size={vol.tmpfs_bytes},"
                       "tmpfs-mode=1777")
            continue
        if vol.host_path is None:
            raise podspec.ConfigError(f"volume {vm.name!r} has nothing to mount")
        if vm.name in disk_dirs:
            vol.host_path.chmod(0o777)  # as the kubelet makes emptyDirs: writable by any user of the image
        source = vol.host_path / vm.sub_path if vm.sub_path else vol.host_path
        if vm.sub_path and not source.exists():
            source.mkdir(parents=True)
            source.chmod(0o777)
        ro = ",ro=true" if vm.read_only else ""
        out.append(f"--mount=type=bind,source={source},destination={vm.mount_path}{ro}")
    return out


class PodmanContainer:
    """One run of a container: the foreground `podman run` whose exit status is the container's.

    The same face as container.ContainerProcess: pid, poll(), stop(), exec_argv().
    """

    def __init__(self, name: str, argv: list[str], log_path: Path, shown: list[str]) -> None:
        self.name = name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed once the run exits
        self._log.write(f"--- kray pod runner: podman run {name}: {shlex.join(shown)} at {status.now()}\n".encode())
        self._log.flush()
        # pdeathsig: the podman client dies with the runner; the container itself is removed by label.
        prefix = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "SIGKILL", "--"] if shutil.which(
            "setpriv") else []
        try:
            self.popen = subprocess.Popen([*prefix, *argv], env=engine_env(), stdin=subprocess.DEVNULL,
                                          stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError:
            self._log.close()
            raise
        self.pid = self.popen.pid

    def poll(self) -> int | None:
        """The container's exit code once it has exited, else None."""
        rc = self.popen.poll()
        if rc is None:
            return None
        self._log.close()
        return status.exit_code_of(rc)

    def stop(self, grace_s: float) -> int:
        """`podman stop` (SIGTERM, SIGKILL after grace_s), then `podman rm -f`; returns the exit code."""
        if self.popen.poll() is None:
            try:
                podman("stop", f"--time={max(0, round(grace_s))}", self.name, check=False,
                       timeout=grace_s + CALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("pod runner: podman stop %s timed out", self.name)
        try:
            self.popen.wait(timeout=CALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        podman("rm", "--force", "--ignore", self.name, check=False)
        rc = self.poll()
        return rc if rc is not None else 137

    def exec_argv(self, argv: list[str], env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """`podman exec` of argv in this container (its env, user and workingDir, plus `env`)."""
        extra = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return [shutil.which("podman") or "podman", "exec", *extra, self.name, *argv], engine_env()


class Podman:
    """The container engine of one pod runner: images, runs, and removal of its containers."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.node_ip = ""
        self._images: dict[str, ImageConfig] = {}
        self._lock = threading.Lock()
        self._relay: apiserver.ApiRelay | None = None

    def setup(self, node_ip: str, api_server: str) -> str:
        """Checks podman works, removes containers that dead runs left, and serves the `kubernetes`
        Service on node_ip (a relay to the API server at URL api_server); returns podman's version."""
        if shutil.which("podman") is None:
            raise RuntimeError("container mode needs podman: apt-get install podman (see .ci/run)")
        version = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
        self.reap_stale()
        self.node_ip = node_ip
        self._relay = apiserver.ApiRelay(node_ip, apiserver.upstream_of(api_server)).start()
        return version

    def hosts_lines(self) -> str:
        """What every pod's hosts file adds in container mode: the `kubernetes` Service's names."""
        return apiserver.hosts_lines(self.node_ip) if self.node_ip else ""

    def reap_stale(self) -> None:
        """Removes containers of pod runners whose registry entry is gone (killed test sessions)."""
        listing = podman("ps", "--all", "--filter", f"label={LABEL}", "--format",
                         f'{{{{.ID}}}} {{{{index .Labels "{LABEL}"}}}}', check=False).stdout
        for line in listing.splitlines():
            cid, _, token = line.partition(" ")
            if token and token != self.token and not (network.STATE_ROOT / token).is_dir():
                podman("rm", "--force", "--ignore", cid, check=False)
                log.warning("pod runner: removed container %s left by a dead run (%s)", cid[:12], token)

    def teardown(self) -> None:
        """Removes every container this runner started and stops the API server relay."""
        podman("rm", "--force", "--ignore", "--filter", f"label={LABEL}={self.token}", check=False)
        if self._relay is not None:
            self._relay.stop()

    def image(self, ref: str, policy: str | None) -> ImageConfig:
        """The image's config, pulled first as imagePullPolicy asks (Never, IfNotPresent, Always)."""
        policy = policy or ("Always" if ref.endswith(":latest") or ":" not in ref.rsplit("/", 1)[-1]
                            else "IfNotPresent")
        with self._lock:
            present = podman("image", "exists", ref, check=False).returncode == 0
            if policy == "Never" and not present:
                raise ImageError("ErrImageNeverPull", f"image {ref!r} is not present with pull policy of Never")
            if policy == "Always" or not present:
                pulled = podman("pull", "--quiet", ref, check=False, timeout=PULL_TIMEOUT_S)
                if pulled.returncode != 0:
                    raise ImageError("ErrImagePull", f"pulling {ref!r} failed: {pulled.stderr.strip()[-300:]}")
                self._images.pop(ref, None)
            if ref not in self._images:
                self._images[ref] = ImageConfig.inspect(ref)
            return self._images[ref]

    def start(self, worker: PodWorker, spec: Any, rec: status.ContainerRecord, env: Mapping[str, str]) -> PodmanContainer:
        """Starts one run of container `spec` of the worker's pod; raises podspec.ConfigError (or
        ImageError) when it cannot be configured yet."""
        sandbox, pod = worker.sandbox, worker.pod
        if sandbox is None or not sandbox.netns:
            raise network.NetworkError("container mode needs the pod's network namespace (netns mode, root)")
        image = self.image(spec.image or "", spec.image_pull_policy)
        argv = image_argv(spec, env, image)
        name = f"kray-{self.token}-{worker.uid[:8]}-{spec.name}"[:250]
        podman("rm", "--force", "--ignore", name, check=False)  # a previous run of the same container
        run = ["podman", "run", "--rm", "--pull=never", f"--name={name}",
               f"--label={LABEL}={self.token}", f"--label={POD_LABEL}={worker.namespace}/{worker.name}",
               f"--label={CONTAINER_LABEL}={spec.name}", f"--network=ns:/run/netns/{sandbox.netns}",
               f"--hostname={worker.hostname}", "--entrypoint=" + json.dumps(argv)]
        env = {**apiserver.service_env(), **env}  # the kubelet's service variables; the pod's own win
        run += [f"--env={k}={v}" for k, v in env.items() if k != "HOSTNAME"]
        if spec.working_dir:
            run.append(f"--workdir={spec.working_dir}")
        own_volumes(pod, spec, worker.volumes)
        run += security_args(pod, spec) + limit_args(spec) + mount_args(pod, spec, worker.volumes, sandbox)
        run.append(image.ref)
        return PodmanContainer(name, run, worker.log_path(spec.name), argv)


def containers(namespace: str, pod: str) -> list[dict[str, Any]]:
    """`podman ps` of a pod's running containers (for tests): Names, Image, Labels, ..."""
    out = podman("ps", "--filter", f"label={POD_LABEL}={namespace}/{pod}", "--format", "json").stdout
    return list(json.loads(out or "[]"))


def memory_usage_bytes(name: str) -> int:
    """A container's memory use as its cgroup counts it (`podman stats`)."""
    stats = json.loads(podman("stats", "--no-stream", "--no-reset", "--format", "json", name).stdout or "[]")
    if not stats:
        raise LookupError(f"no stats for container {name}")
    text = str(stats[0].get("mem_usage", "")).split("/")[0].strip()
    return int(podspec.parse_quantity(text.removesuffix("B")))  # podman's units: kB, MB, GB (decimal)
