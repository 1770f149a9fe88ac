"""What one reconcile pass of a RayJob observed, as plain frozen data: its RayCluster, its submitter
(the batch Job, or the sidecar in the head Pod), the job API's answer; what the pass decided; and RFC 3339
times to and from Unix seconds (calendar arithmetic, so deadlines need no clock: "now" is passed in).

Pure parsing of API objects into facts; no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any

API_FOUND = "found"
API_NOT_FOUND = "not_found"
API_ERROR = "error"


@dataclasses.dataclass(frozen=True)
class ClusterFacts:
    """The RayCluster the job runs on, as last read."""

    exists: bool = False
    deleting: bool = False
    state: str = ""
    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    dashboard_url: str = ""  # host:port of the job API through the head Service, as KubeRay writes it
    workers_suspended: bool = False  # every worker group has suspend: true

    @property
    def ready(self) -> bool:
        """The cluster reported state ready (all Pods were running and ready)."""
        return self.exists and not self.deleting and self.state == "ready"

    @property
    def present(self) -> bool:
        """It exists and is not being deleted."""
        return self.exists and not self.deleting


@dataclasses.dataclass(frozen=True)
class SubmitterFacts:
    """The submitter: the batch Job (K8sJobMode) or the head Pod's sidecar container (SidecarMode)."""

    exists: bool = False
    deleting: bool = False
    failed: bool = False
    reason: str = ""
    message: str = ""
    finished_at: float | None = None  # Unix seconds when it ended (succeeded or failed)


@dataclasses.dataclass(frozen=True)
class ApiFacts:
    """What GET /api/jobs/{id} answered (outcome API_FOUND, API_NOT_FOUND or API_ERROR)."""

    outcome: str = API_ERROR
    status: str = ""
    message: str = ""
    start_ms: int = 0
    end_ms: int = 0
    error: str = ""


@dataclasses.dataclass(frozen=True)
class Facts:
    """Everything a pass knows besides the RayJob itself; suffixes name a new job id and cluster."""

    status: dict[str, Any]
    cluster: ClusterFacts | None = None
    submitter: SubmitterFacts | None = None
    api: ApiFacts = ApiFacts()
    job_suffix: str = "00000"
    cluster_suffix: str = "00000"
    service_cluster: str | None = None  # the cluster `<rayjob>-head-svc` selects ("": none; None: not read)
    submit_error: str = ""  # an HTTPMode submission of this pass failed with this error
    submit_refused: bool = False  # ... and the job API refused it (4xx): retrying will not help


class Action(str, enum.Enum):
    """What the handler must do against the API server or the job API, in the order given."""

    CREATE_CLUSTER = "CreateCluster"
    CREATE_SUBMITTER = "CreateSubmitter"
    ENSURE_SERVICE = "EnsureService"
    SUBMIT = "Submit"
    DELETE_CLUSTER = "DeleteCluster"
    DELETE_SUBMITTER = "DeleteSubmitter"
    SUSPEND_WORKERS = "SuspendWorkers"
    DELETE_SELF = "DeleteSelf"


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the RayJob."""

    reason: str
    message: str
    warning: bool = False


@dataclasses.dataclass
class Step:
    """The outcome of a pass: actions to run, then the status to write (when `write`), events to post."""

    status: dict[str, Any]
    actions: list[Action] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    write: bool = True


def cluster_facts(body: dict[str, Any] | None, dashboard_url: str = "") -> ClusterFacts:
    """Facts of a RayCluster dict as the API server returns it (None: it does not exist)."""
    if body is None:
        return ClusterFacts()
    status = dict(body.get("status") or {})
    groups = (body.get("spec") or {}).get("workerGroupSpecs") or []
    return ClusterFacts(
        exists=True,
        deleting=bool((body.get("metadata") or {}).get("deletionTimestamp")),
        state=str(status.get("state") or ""),
        status=status,
        dashboard_url=dashboard_url,
        workers_suspended=all(bool(g.get("suspend")) for g in groups),
    )


def batch_job_facts(body: dict[str, Any] | None) -> SubmitterFacts:
    """Facts of the submitter batch/v1 Job: failed when its Failed condition is True; finished_at from
    the Complete or Failed condition."""
    if body is None:
        return SubmitterFacts()
    failed = False
    reason = message = ""
    finished_at: float | None = None
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True" or cond.get("type") not in ("Complete", "Failed"):
            continue
        if cond.get("type") == "Failed":
            failed, reason, message = True, str(cond.get("reason") or ""), str(cond.get("message") or "")
        finished_at = finished_at or parse_time_or_none(cond.get("lastTransitionTime"))
    return SubmitterFacts(exists=True, deleting=bool((body.get("metadata") or {}).get("deletionTimestamp")),
                          failed=failed, reason=reason, message=message, finished_at=finished_at)


def sidecar_facts(head_pod: dict[str, Any] | None, container: str) -> SubmitterFacts:
    """Facts of the sidecar submitter `container` in the head Pod (exists=False: no head Pod)."""
    if head_pod is None:
        return SubmitterFacts()
    for status in (head_pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != container:
            continue
        done = (status.get("state") or {}).get("terminated")
        if not done:
            break
        code = int(done.get("exitCode") or 0)
        return SubmitterFacts(
            exists=True, failed=code != 0, reason=str(done.get("reason") or ""),
            message=f"the submitter container {container} exited with code {code} ({done.get('reason') or ''})",
            finished_at=parse_time_or_none(done.get("finishedAt")))
    return SubmitterFacts(exists=True)


def api_facts(info: dict[str, Any]) -> ApiFacts:
    """Facts of a JobDetails dict from GET /api/jobs/{id}."""
    def millis(value: Any) -> int:
        try:
            return int(value or 0)
        except (TypeError, ValueError):
            return 0

    return ApiFacts(outcome=API_FOUND, status=str(info.get("status") or ""),
                    message=str(info.get("message") or ""), start_ms=millis(info.get("start_time")),
                    end_ms=millis(info.get("end_time")))


# ---- RFC 3339 times (UTC) and Unix seconds

_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$"
)
_DAY_S = 86400


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a Gregorian date."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The Gregorian (year, month, day) of a day count since 1970-01-01."""
    days += 719468
    era = (days if days >= 0 else days - 146096) // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def parse_time(text: str) -> float:
    """Unix seconds of an RFC 3339 time; ValueError when `text` is not one."""
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time like 2025-01-01T00:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    seconds = _days_from_civil(year, month, day) * _DAY_S + hour * 3600 + minute * 60 + second
    fraction = float(m.group(7)) if m.group(7) else 0.0
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds + fraction


def parse_time_or_none(text: str | None) -> float | None:
    """parse_time(), or None for an empty or malformed value."""
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def format_time(seconds: float) -> str:
    """The RFC 3339 UTC time (as Kubernetes writes it: "2025-01-01T00:00:00Z"), to the second, of Unix `seconds`."""
    whole = int(seconds // 1)
    days, rest = divmod(whole, _DAY_S)
    year, month, day = _civil_from_days(days)
    return f"{year:04d}-{month:02d}-{day:02d}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}Z"
