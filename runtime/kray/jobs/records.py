"""Job records as Ray's job API shows them: statuses, `JobInfo`/`JobDetails`, and submit requests.

Pure data and validation: no I/O. Field names, status values and messages are Ray's, so Ray's own
`JobSubmissionClient` and KubeRay read kray's answers unchanged.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import random
import re
import string
import time
from typing import Any


class JobStatus(str, enum.Enum):
    """The status of a submitted job (Ray's `ray.job_submission.JobStatus`)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return f"{self.value}"

    def is_terminal(self) -> bool:
        """Whether the job has ended (it will not change status again)."""
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobType(str, enum.Enum):
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


MESSAGES = {
    JobStatus.PENDING: "Job has not started yet. It may be waiting for resources (CPUs, GPUs, memory, "
                       "custom resources) to become available, or for the runtime environment to be set up.",
    JobStatus.RUNNING: "Job is currently running.",
    JobStatus.SUCCEEDED: "Job finished successfully.",
    JobStatus.STOPPED: "Job was intentionally stopped.",
}

# How much of the end of a failed job's log its message quotes (Ray: 20,000 characters).
FAILED_LOG_TAIL_CHARS = 20_000

_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-:]{1,200}$")


@dataclasses.dataclass
class JobDetails:
    """What `GET /api/jobs/{id}` answers, and what the GCS stores per submitted job (as JSON)."""

    submission_id: str  # "" for a DRIVER job (null in JSON)
    entrypoint: str
    status: JobStatus = JobStatus.PENDING
    type: JobType = JobType.SUBMISSION
    job_id: str | None = None
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None  # milliseconds since the epoch, as Ray's
    end_time: int | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    runtime_env: dict[str, Any] = dataclasses.field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None
    driver_agent_http_address: str | None = None
    driver_node_id: str | None = None
    driver_exit_code: int | None = None
    driver_info: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        data["type"] = self.type.value
        data["submission_id"] = self.submission_id or None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobDetails:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = JobStatus(values.get("status", "PENDING"))
        values["type"] = JobType(values.get("type", "SUBMISSION"))
        values["submission_id"] = values.get("submission_id") or ""
        return cls(**values)

    def dumps(self) -> bytes:
        return json.dumps(self.to_json()).encode()

    @classmethod
    def loads(cls, raw: bytes) -> JobDetails:
        return cls.from_json(json.loads(raw))


def driver_job(record: dict[str, Any], job_id_hex: str) -> JobDetails:
    """A driver that connected by itself (not a submitted job), from the GCS's job table, as Ray lists it."""
    ended = record.get("end_time")
    return JobDetails(
        submission_id="", entrypoint=str(record.get("entrypoint", "")), type=JobType.DRIVER,
        job_id=job_id_hex, status=JobStatus.SUCCEEDED if ended else JobStatus.RUNNING,
        message=None, start_time=int(record.get("start_time", 0) * 1000),
        end_time=int(ended * 1000) if ended else None,
        driver_info={"id": job_id_hex, "node_ip_address": "", "pid": str(record.get("driver_pid", ""))},
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def new_submission_id() -> str:
    """A generated submission id in Ray's style: `raysubmit_` and 16 letters and digits."""
    alphabet = string.ascii_letters + string.digits
    return "raysubmit_" + "".join(random.SystemRandom().choice(alphabet) for _ in range(16))


@dataclasses.dataclass
class SubmitRequest:
    """The body of `POST /api/jobs/` (Ray's JobSubmitRequest), checked."""

    entrypoint: str
    submission_id: str | None = None
    runtime_env: dict[str, Any] = dataclasses.field(default_factory=dict)
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None

    def resources(self) -> dict[str, float]:
        """The resources the entrypoint reserves, as kray's scheduler names them."""
        wanted: dict[str, float] = {}
        if self.entrypoint_num_cpus:
            wanted["CPU"] = float(self.entrypoint_num_cpus)
        if self.entrypoint_num_gpus:
            wanted["GPU"] = float(self.entrypoint_num_gpus)
        if self.entrypoint_memory:
            wanted["memory"] = float(self.entrypoint_memory)
        wanted.update(self.entrypoint_resources or {})
        return wanted


class BadRequest(ValueError):
    """A submit request that cannot be accepted; the text says what to change."""


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadRequest(f"{key} must be a non-negative number, got {value!r}")
    return value


def parse_submit_request(body: Any) -> SubmitRequest:
    """Check a submit request body; raises BadRequest naming the field at fault."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object with at least an 'entrypoint' field")
    known = {f.name for f in dataclasses.fields(SubmitRequest)} | {"job_id", "entrypoint_label_selector"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown field(s) in the job submission: {', '.join(unknown)}; "
                         f"known fields are {', '.join(sorted(known - {'job_id'}))}")
    if body.get("entrypoint_label_selector"):
        raise BadRequest("entrypoint_label_selector is not supported by kray; use entrypoint_resources")
    entrypoint = body.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise BadRequest("'entrypoint' must be a non-empty string, e.g. \"python script.py\"")
    submission_id = body.get("submission_id") or body.get("job_id")
    if submission_id is not None and (not isinstance(submission_id, str) or not _ID_PATTERN.match(submission_id)):
        raise BadRequest(f"submission_id must be 1-200 letters, digits or '_.-:', got {submission_id!r}")
    runtime_env = body.get("runtime_env") or {}
    if not isinstance(runtime_env, dict):
        raise BadRequest(f"runtime_env must be a JSON object, got {runtime_env!r}")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise BadRequest("metadata must be a JSON object of strings to strings")
    resources = body.get("entrypoint_resources")
    if resources is not None:
        if not isinstance(resources, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in resources.values()
        ):
            raise BadRequest("entrypoint_resources must be a JSON object of resource names to non-negative numbers")
        if {"CPU", "GPU", "memory"} & set(resources):
            raise BadRequest("use entrypoint_num_cpus, entrypoint_num_gpus and entrypoint_memory for CPU, GPU "
                             "and memory, not entrypoint_resources")
    memory = _number(body, "entrypoint_memory")
    return SubmitRequest(
        entrypoint=entrypoint,
        submission_id=submission_id,
        runtime_env=runtime_env,
        metadata=metadata,
        entrypoint_num_cpus=_number(body, "entrypoint_num_cpus"),
        entrypoint_num_gpus=_number(body, "entrypoint_num_gpus"),
        entrypoint_memory=int(memory) if memory is not None else None,
        entrypoint_resources={k: float(v) for k, v in resources.items()} if resources else None,
    )


def failed_message(exit_code: int | None, log_tail: str) -> str:
    """Ray's message for an entrypoint that exited non-zero."""
    if exit_code is not None and exit_code < 0:
        head = f"Job entrypoint command was killed by signal {-exit_code}"
    else:
        head = f"Job entrypoint command failed with exit code {exit_code}"
    return f"{head}, last available logs (truncated to {FAILED_LOG_TAIL_CHARS:,} chars):\n" + \
        log_tail[-FAILED_LOG_TAIL_CHARS:]
