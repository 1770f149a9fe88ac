"""What the pod runner knows about a pod's containers, and the pod status it reports from that.

Pure: records in, status dicts (the API's camelCase shape) out; no I/O, no clocks except `now()`.
"""

from __future__ import annotations

import dataclasses
import datetime

RESTART_BACKOFF_MAX_S = 10.0


def now() -> str:
    """The current time as the API writes it (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Terminated:
    """A finished run of a container."""

    exit_code: int
    started_at: str
    finished_at: str
    container_id: str
    reason: str = ""

    def as_api(self) -> dict[str, object]:
        reason = self.reason or ("Completed" if self.exit_code == 0 else "Error")
        return {"terminated": {"exitCode": self.exit_code, "reason": reason, "startedAt": self.started_at,
                               "finishedAt": self.finished_at, "containerID": self.container_id}}


@dataclasses.dataclass
class ContainerRecord:
    """One container of a pod: its current process (if any), restarts and readiness."""

    name: str
    image: str
    has_readiness_probe: bool = False
    pid: int | None = None
    started_at: str | None = None
    restart_count: int = 0
    ready: bool = False
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    restart_at: float | None = None
    probe_successes: int = 0
    probe_failures: int = 0
    next_probe_at: float = 0.0
    live_failures: int = 0
    next_live_probe_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def container_id(self) -> str:
        return f"kray://{self.pid}" if self.pid is not None else ""

    def mark_started(self, pid: int) -> None:
        if self.terminated is not None:
            self.last_terminated = self.terminated
        self.pid, self.started_at, self.terminated = pid, now(), None
        self.ready = not self.has_readiness_probe
        self.waiting_reason, self.waiting_message, self.restart_at = "", "", None
        self.probe_successes = self.probe_failures = self.live_failures = 0
        self.next_probe_at = self.next_live_probe_at = 0.0

    def mark_exited(self, exit_code: int, reason: str = "") -> None:
        self.terminated = Terminated(exit_code, self.started_at or now(), now(), self.container_id, reason)
        self.pid, self.ready = None, False

    def mark_waiting(self, reason: str, message: str = "") -> None:
        self.waiting_reason, self.waiting_message = reason, message

    def as_api(self, init: bool = False) -> dict[str, object]:
        state: dict[str, object]
        # While waiting to restart, the run that just ended is the last state.
        last = self.terminated if (self.waiting_reason and self.terminated) else self.last_terminated
        if self.running:
            state = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None and not self.waiting_reason:
            state = self.terminated.as_api()
        else:
            waiting: dict[str, str] = {"reason": self.waiting_reason or "ContainerCreating"}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        out: dict[str, object] = {
            "name": self.name, "image": self.image or "kray-pod-runner/local", "imageID": "",
            "containerID": self.container_id or (self.terminated.container_id if self.terminated else ""),
            "ready": self.ready if not init else (self.terminated is not None and self.terminated.exit_code == 0),
            "restartCount": self.restart_count, "started": self.running, "state": state,
            "lastState": last.as_api() if last else {},
        }
        if not out["containerID"]:
            del out["containerID"]
        return out


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether restartPolicy restarts a container that exited with exit_code."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def restart_backoff(restarts: int) -> float:
    """Seconds before the next restart: 0.5 s doubling to 10 s (the kubelet's 10 s..5 min, shortened for tests)."""
    return min(0.5 * 2.0 ** restarts, RESTART_BACKOFF_MAX_S)


def exit_code_of(returncode: int) -> int:
    """A Popen return code as a container exit code (death by signal N reads as 128+N)."""
    return 128 - returncode if returncode < 0 else returncode


def pod_phase(containers: list[ContainerRecord], initialized: bool, init_failed: bool) -> str:
    """The pod phase the kubelet would report (restarts pending are recorded in `restart_at`)."""
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
    if any(c.running or (c.restart_at is not None and c.terminated is not None) for c in containers):
        return "Running"
    if any(c.terminated is None for c in containers):
        # Not started yet (or its config is missing): Pending until something has run.
        ran = any(c.terminated is not None or c.last_terminated is not None for c in containers)
        return "Running" if ran else "Pending"
    if all(c.terminated is not None and c.terminated.exit_code == 0 for c in containers):
        return "Succeeded"
    return "Failed"


@dataclasses.dataclass
class Conditions:
    """The four pod conditions with their transition times, kept across reports."""

    values: dict[str, bool] = dataclasses.field(default_factory=dict)
    since: dict[str, str] = dataclasses.field(default_factory=dict)

    def set(self, kind: str, value: bool) -> None:
        if self.values.get(kind) != value:
            self.values[kind], self.since[kind] = value, now()

    def as_api(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            if kind not in self.values:
                continue
            cond: dict[str, object] = {"type": kind, "status": "True" if self.values[kind] else "False",
                                       "lastProbeTime": None, "lastTransitionTime": self.since[kind]}
            if not self.values[kind] and kind in ("ContainersReady", "Ready"):
                cond["reason"] = "ContainersNotReady"
            out.append(cond)
        return out


def pod_status(phase: str, conditions: Conditions, pod_ip: str, host_ip: str, start_time: str,
               init: list[ContainerRecord], main: list[ContainerRecord]) -> dict[str, object]:
    """The `status` the runner patches onto the pod."""
    status: dict[str, object] = {
        "phase": phase, "conditions": conditions.as_api(), "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}], "startTime": start_time,
        "containerStatuses": [c.as_api() for c in main],
    }
    if pod_ip:
        status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    if init:
        status["initContainerStatuses"] = [c.as_api(init=True) for c in init]
    return status
