"""One pod's life in the pod runner: bind, network, volumes, init containers, containers, restarts,
readiness, status reports, and deletion (kill, release, finalize).

Runs on a thread of its own per pod; starts and kills the pod's processes, creates its network
namespace through network.py, and patches/deletes the pod through the runner's API client.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from . import container, dns, podspec, status, volumes
from .network import NetworkError, Sandbox

if TYPE_CHECKING:
    from .runner import PodRunner

log = logging.getLogger(__name__)
TERMINAL = ("Succeeded", "Failed")
TICK_S = 0.2
STOP_GRACE_AT_TEARDOWN_S = 1.0


class PodWorker:
    """Runs one pod until it is deleted (or the runner stops)."""

    def __init__(self, runner: PodRunner, pod: Any) -> None:
        self.runner = runner
        self.pod = pod
        meta = pod.metadata
        self.namespace, self.name, self.uid = meta.namespace, meta.name, meta.uid
        self.key = f"{self.namespace}/{self.name}"
        self.dir = runner.pods_dir / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.policy: str = pod.spec.restart_policy or "Always"
        self.hostname = dns.pod_hostname(self.name, pod.spec.hostname)
        self.init = [status.ContainerRecord(c.name, c.image or "") for c in pod.spec.init_containers or []]
        self.main = [status.ContainerRecord(c.name, c.image or "", c.readiness_probe is not None)
                     for c in pod.spec.containers]
        self.procs: dict[str, container.Running] = {}
        self.sandbox: Sandbox | None = None
        self.pod_ip = ""
        self.volumes: dict[str, volumes.Volume] = {}
        self.conditions = status.Conditions()
        self.start_time = ""
        self.phase = "Pending"
        self.initialized = not self.init
        self.init_failed = False
        self._deleting = False
        self._gone = False
        self._wake = threading.Event()
        self._last_sent: dict[str, object] | None = None
        self.thread = threading.Thread(target=self._run, name=f"pod {self.key}", daemon=True)

    # -- called from the runner's watch thread ------------------------------------------------

    def update(self, pod: Any) -> None:
        """A newer version of the pod from the watch (labels, deletionTimestamp)."""
        self.pod = pod
        if pod.metadata.deletion_timestamp is not None:
            self._deleting = True
            self._wake.set()

    def gone(self) -> None:
        """The pod object no longer exists (force-deleted): stop without finalizing."""
        self._gone = self._deleting = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def log_path(self, container_name: str) -> Path:
        return self.dir / "logs" / f"{container_name}.log"

    def view(self) -> dns.PodView | None:
        """How DNS sees this pod (None before it has an IP)."""
        if self.sandbox is None:
            return None
        running = any(r.running for r in self.main)
        created = self.pod.metadata.creation_timestamp
        return dns.PodView(
            namespace=self.namespace, name=self.name, labels=dict(self.pod.metadata.labels or {}),
            ip=self.sandbox.ip, ready=running and self.initialized and all(r.ready for r in self.main),
            running=running, hostname=self.hostname, subdomain=self.pod.spec.subdomain,
            created=created.timestamp() if created else 0.0)

    # -- the pod's life -----------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._deleting or self.runner.stopping.is_set()

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        try:
            if not self._bind():
                return
            self.conditions.set("PodScheduled", True)
            self.sandbox = self.runner.net.add_pod(self.key)
            self.pod_ip = self.sandbox.ip
            self.start_time = status.now()
            self._report()
            if self._prepare_volumes() and self._run_init_containers():
                self._supervise()
            self._report()
            if self.phase in TERMINAL:
                self._kill_all(0.0)
                self._release()
            while not self._stopping():
                self._wait(1.0)
        except (ApiException, NetworkError, OSError) as e:
            log.error("pod runner: pod %s failed in the runner: %s", self.key, e)
        except Exception:
            log.exception("pod runner: pod %s: unexpected error", self.key)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        stopping = self.runner.stopping.is_set()
        self._kill_all(STOP_GRACE_AT_TEARDOWN_S if stopping else self._grace())
        self._release()
        if self._deleting and not self._gone and not stopping:
            self._finalize()
        self.runner.forget(self)

    def _grace(self) -> float:
        meta, spec = self.pod.metadata, self.pod.spec
        if meta.deletion_grace_period_seconds is not None:
            return float(meta.deletion_grace_period_seconds)
        return float(spec.termination_grace_period_seconds if spec.termination_grace_period_seconds
                     is not None else 30)

    def _bind(self) -> bool:
        if self.pod.spec.node_name == self.runner.node_name:
            return True
        body: Any = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.runner.node_name}}
        try:
            # _preload_content=False: the client cannot deserialize a Binding reply (target is None).
            self.runner.core.create_namespaced_pod_binding(self.name, self.namespace, body,
                                                           _preload_content=False)
            return True
        except ApiException as e:
            if e.status in (403, 404, 409):  # gone, bound elsewhere, or its namespace is terminating
                log.info("pod runner: pod %s not bound here (%s)", self.key, e.reason)
                return False
            raise

    def _prepare_volumes(self) -> bool:
        """Writes the pod's volumes, retrying while a Secret/ConfigMap it needs does not exist yet."""
        facts = self.runner.facts(self.pod_ip)
        while not self._stopping():
            try:
                self.volumes = volumes.materialize(self.pod, self.dir, self.runner.lookups, facts,
                                                   self.runner.service_account_token)
                return True
            except podspec.ConfigError as e:
                for rec in self.init or self.main:
                    rec.mark_waiting("ContainerCreating", str(e))
                self._report()
                self._wait(1.0)
        return False

    def _start(self, spec: Any, rec: status.ContainerRecord) -> bool:
        """Starts one run of a container; False (and a waiting reason) when its config is missing."""
        if self.sandbox is None:
            raise NetworkError("no sandbox")
        try:
            facts = self.runner.facts(self.pod_ip)
            base = {**self.runner.base_env, "HOSTNAME": self.hostname}
            env = podspec.container_env(self.pod, spec, base, facts, self.runner.lookups)
            if self.runner.podman is not None:  # container mode: the image's environment, not the host's
                self._started(spec, rec, self.runner.podman.start(self, spec, rec, env))
                return True
            argv = podspec.container_argv(spec, env)
            mounts = volumes.container_mounts(spec, self.volumes, self.runner.mount_points)
        except podspec.ConfigError as e:
            rec.mark_waiting(getattr(e, "reason", "CreateContainerConfigError"), str(e))
            return False
        if "TMPDIR" not in env:
            # A container's temporary files are its own and start empty on every run, as in an image's
            # writable layer. TMPDIR rather than a mount over /tmp: the runner's Python and the repository
            # may live under the host's /tmp.
            private = self.dir / "tmp" / f"{spec.name}-{rec.restart_count + (rec.terminated is not None)}"
            private.mkdir(parents=True, exist_ok=True)
            private.chmod(0o1777)
            env["TMPDIR"] = str(private)
        full = container.launch_argv(self.sandbox, argv, self.hostname, mounts, spec.working_dir)
        self._started(spec, rec, container.ContainerProcess(full, env, self.log_path(spec.name), argv))
        return True

    def _started(self, spec: Any, rec: status.ContainerRecord, proc: container.Running) -> None:
        self.procs[spec.name] = proc
        if rec.terminated is not None:
            rec.restart_count += 1
        rec.mark_started(proc.pid)

    def _run_init_containers(self) -> bool:
        for spec, rec in zip(self.pod.spec.init_containers or [], self.init):
            while True:
                if self._stopping():
                    return False
                if not self._start(spec, rec):
                    self._report()
                    self._wait(1.0)
                    continue
                self._report()
                code = self._wait_exit(spec.name)
                if code is None:
                    return False
                rec.mark_exited(code)
                if code == 0:
                    break
                if self.policy == "Never":
                    self.init_failed = True
                    self.phase = "Failed"
                    return False
                rec.mark_waiting("CrashLoopBackOff", f"back-off restarting failed init container {rec.name}")
                self._report()
                self._wait(status.restart_backoff(rec.restart_count))
        self.initialized = True
        return True

    def _wait_exit(self, name: str) -> int | None:
        proc = self.procs[name]
        while not self._stopping():
            code = proc.poll()
            if code is not None:
                del self.procs[name]
                return code
            self._wait(TICK_S)
        return None

    def _supervise(self) -> None:
        for rec in self.main:
            rec.restart_at = 0.0
        while not self._stopping():
            changed = self._tick()
            phase = status.pod_phase(self.main, self.initialized, self.init_failed)
            if changed or phase != self.phase:
                self.phase = phase
                self._report()
            if phase in TERMINAL:
                return
            self._wait(TICK_S)

    def _tick(self) -> bool:
        changed = False
        now = time.monotonic()
        for spec, rec in zip(self.pod.spec.containers, self.main):
            proc = self.procs.get(spec.name)
            if proc is not None:
                code = proc.poll()
                if code is None and container.run_liveness(rec, spec, self.pod_ip, proc):
                    log.info("pod runner: %s container %s failed its liveness probe; killing it", self.key, spec.name)
                    code = proc.stop(self._grace())
                if code is None:
                    changed |= container.run_readiness(rec, spec, self.pod_ip, proc)
                    continue
                del self.procs[spec.name]
                rec.mark_exited(code)
                changed = True
                if status.should_restart(self.policy, code):
                    rec.restart_at = now + status.restart_backoff(rec.restart_count)
                    rec.mark_waiting("CrashLoopBackOff", f"back-off restarting failed container {rec.name}")
            elif rec.restart_at is not None and now >= rec.restart_at:
                if not self._start(spec, rec):
                    rec.restart_at = now + 1.0
                changed = True
        return changed

    def exec(self, container_name: str | None, argv: list[str], timeout: float,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` in a running container as `kubectl exec` does: inside the container (its
        namespaces, or podman exec), with its environment plus `env`. LookupError when it is not running."""
        names = [c.name for c in self.pod.spec.containers]
        name = container_name or names[0]
        rec = next((r for r in self.main if r.name == name), None)
        if rec is None:
            raise LookupError(f"pod {self.key} has no container {name!r} (it has {names})")
        proc = self.procs.get(name)
        if rec.pid is None or proc is None:
            raise LookupError(f"container {name!r} of pod {self.key} is not running")
        full_argv, full_env = proc.exec_argv(argv, env)
        return subprocess.run(full_argv, env=full_env, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)

    # -- reporting and cleanup ----------------------------------------------------------------

    def _report(self) -> None:
        if self.phase not in TERMINAL and not self.init_failed:
            self.phase = status.pod_phase(self.main, self.initialized, self.init_failed)
        self.conditions.set("Initialized", self.initialized)
        ready = self.phase == "Running" and all(r.ready for r in self.main)
        self.conditions.set("ContainersReady", ready)
        self.conditions.set("Ready", ready)
        body = status.pod_status(self.phase, self.conditions, self.pod_ip,
                                 self.runner.host_ip, self.start_time or status.now(), self.init, self.main)
        if body != self._last_sent:
            try:
                self.runner.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": body})
                self._last_sent = body
            except ApiException as e:
                if e.status == 404:
                    self.gone()
                else:
                    log.warning("pod runner: status of %s not reported: %s %s", self.key, e.status, e.reason)
        self.runner.dns_changed()

    def _kill_all(self, grace: float) -> None:
        for name, proc in list(self.procs.items()):
            code = proc.stop(grace)
            for rec in self.main + self.init:
                if rec.name == name and rec.running:
                    rec.mark_exited(code)
            del self.procs[name]

    def _release(self) -> None:
        """Gives back the network namespace and removes the volume files (logs stay)."""
        if self.sandbox is not None:
            self.sandbox = None
            self.runner.net.remove_pod(self.key)
            self.runner.dns_changed()
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    def _finalize(self) -> None:
        """Deletes the pod object for good (grace 0), as the kubelet does once its processes are gone."""
        body: Any = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        try:
            self.runner.core.delete_namespaced_pod(self.name, self.namespace, body=body, grace_period_seconds=0)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("pod runner: could not finalize %s: %s %s", self.key, e.status, e.reason)
