"""The job manager of the head's HTTP server: submits, watches, stops and deletes jobs.

Runs on the server's event loop. Job records live in the GCS's key-value store (so a restarted server
finds them), logs in the head's session directory; each job's entrypoint runs under a detached
supervisor actor, placed with the entrypoint's resources, that this process connects to as a driver.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from kray import config
from kray.jobs import records
from kray.jobs.records import JobDetails, JobStatus

log = logging.getLogger(__name__)

RECORD_PREFIX = "job_info:"
SUPERVISOR_NAMESPACE = "_kray_job_supervisors"
POLL_WAIT_S = 1.0
# A running job's driver (its job id) is looked up in the GCS at most this often.
DRIVER_LOOKUP_PERIOD_S = 1.0


def supervisor_name(submission_id: str) -> str:
    return f"_kray_job_supervisor_{submission_id}"


class JobNotFound(KeyError):
    pass


class JobManager:
    """Everything `/api/jobs/` does, over the GCS client `gcs` (see kray.dashboard.gcs)."""

    def __init__(self, gcs: Any, log_dir: str) -> None:
        self.gcs = gcs
        self.log_dir = log_dir
        self.jobs: dict[str, JobDetails] = {}
        self.watchers: dict[str, asyncio.Task] = {}
        self.stopping: set[str] = set()
        self.changed: dict[str, asyncio.Condition] = {}
        self._driver_lock = asyncio.Lock()
        self._connected = False
        self._head_node_id = ""
        self._driver_ips: dict[str, str] = {}
        self._driver_looked_up: dict[str, float] = {}
        self.handles: dict[str, Any] = {}
        os.makedirs(log_dir, exist_ok=True)

    # ------------------------------------------------------------------ records

    def log_path(self, submission_id: str) -> str:
        return os.path.join(self.log_dir, f"job-driver-{submission_id}.log")

    async def _save(self, job: JobDetails) -> None:
        self.jobs[job.submission_id] = job
        await self.gcs.kv_put(RECORD_PREFIX + job.submission_id, job.dumps())
        cond = self.changed.get(job.submission_id)
        if cond is not None:
            async with cond:
                cond.notify_all()

    async def get(self, submission_id: str) -> JobDetails:
        """A submitted job by its submission id, or any job (a plain driver too) by its job id."""
        job = self.jobs.get(submission_id)
        if job is None:
            raw = await self.gcs.kv_get(RECORD_PREFIX + submission_id)
            if raw is None:
                return await self._by_job_id(submission_id)
            job = self.jobs[submission_id] = JobDetails.loads(raw)
        if job.job_id is None and job.status == JobStatus.RUNNING and submission_id in self._driver_ips:
            now = time.monotonic()
            if now - self._driver_looked_up.get(submission_id, 0.0) > DRIVER_LOOKUP_PERIOD_S:
                self._driver_looked_up[submission_id] = now
                await self._find_driver(job)
        return job

    async def _find_driver(self, job: JobDetails) -> None:
        """Fill in job_id and driver_info once the entrypoint's driver has registered with the GCS."""
        from kray import ids

        try:
            state = await self.gcs.cluster_state()
        except Exception:  # noqa: BLE001 - the record stays as it was; asked again next time
            return
        driver = next((j for j in state["jobs"] if j.get("submission_id") == job.submission_id), None)
        if driver is not None:
            job.job_id = ids.job_id_hex(driver["job_id"])
            job.driver_info = {"id": job.job_id, "node_ip_address": self._driver_ips[job.submission_id],
                               "pid": str(driver["driver_pid"])}

    async def _drivers(self) -> list[JobDetails]:
        """Drivers that connected by themselves (Ray's DRIVER jobs), not this server's own."""
        from kray import ids

        state = await self.gcs.cluster_state()
        return [records.driver_job(j, ids.job_id_hex(j["job_id"])) for j in state["jobs"]
                if not j.get("submission_id") and j.get("namespace") != SUPERVISOR_NAMESPACE]

    async def _by_job_id(self, job_id: str) -> JobDetails:
        for job in list(self.jobs.values()):
            if job.job_id == job_id:
                return job
        for driver in await self._drivers():
            if driver.job_id == job_id:
                return driver
        raise JobNotFound(job_id)

    async def list(self) -> list[JobDetails]:
        found = []
        for key in await self.gcs.kv_keys(RECORD_PREFIX):
            try:
                found.append(await self.get(key[len(RECORD_PREFIX):]))
            except JobNotFound:
                pass  # deleted meanwhile
        found += await self._drivers()
        return sorted(found, key=lambda j: j.start_time or 0)

    # ------------------------------------------------------------------ submit

    async def submit(self, request: records.SubmitRequest) -> str:
        """Record the job as PENDING and start it in the background; BadRequest for a taken id."""
        submission_id = request.submission_id or records.new_submission_id()
        job = JobDetails(
            submission_id=submission_id, entrypoint=request.entrypoint, status=JobStatus.PENDING,
            message=records.MESSAGES[JobStatus.PENDING], start_time=records.now_ms(),
            metadata=request.metadata, runtime_env=request.runtime_env,
            entrypoint_num_cpus=request.entrypoint_num_cpus, entrypoint_num_gpus=request.entrypoint_num_gpus,
            entrypoint_memory=request.entrypoint_memory, entrypoint_resources=request.entrypoint_resources,
        )
        if not await self.gcs.kv_put(RECORD_PREFIX + submission_id, job.dumps(), overwrite=False):
            raise records.BadRequest(
                f"Job with submission_id {submission_id} already exists. Please use a different submission_id."
            )
        self.jobs[submission_id] = job
        from kray.gcs import packages
        from kray.runtime_env import validation

        uris = packages.uris_of(validation.serialize(request.runtime_env))
        if uris:  # the job's packages stay until it ends (SubmissionEnded releases them)
            await self.gcs.hold_packages(f"submission:{submission_id}", uris)
        self.changed[submission_id] = asyncio.Condition()
        self.watchers[submission_id] = asyncio.get_running_loop().create_task(self._run(job, request))
        return submission_id

    async def _connect(self) -> None:
        """Join the cluster as a driver, once (supervisors are actors)."""
        async with self._driver_lock:
            if self._connected:
                return
            import kray

            address = self.gcs.address.removeprefix("tcp://")
            await asyncio.to_thread(kray.init, address, namespace=SUPERVISOR_NAMESPACE, log_to_driver=False,
                                    ignore_reinit_error=True)
            state = await self.gcs.cluster_state()
            self._head_node_id = next((n["node_id"] for n in state["nodes"] if n["is_head"] and n["alive"]), "")
            self._connected = True

    def _supervisor_options(self, request: records.SubmitRequest) -> dict[str, Any]:
        from kray.util import scheduling_strategies

        options: dict[str, Any] = {
            "name": supervisor_name(request.submission_id or ""), "namespace": SUPERVISOR_NAMESPACE,
            "lifetime": "detached", "num_cpus": request.entrypoint_num_cpus or 0,
            "max_concurrency": 100,
        }
        if request.entrypoint_num_gpus:
            options["num_gpus"] = request.entrypoint_num_gpus
        if request.entrypoint_memory:
            options["memory"] = request.entrypoint_memory
        if request.entrypoint_resources:
            options["resources"] = dict(request.entrypoint_resources)
        if not request.resources() and self._head_node_id:
            # As in Ray: an entrypoint that asks for nothing runs on the head node.
            options["scheduling_strategy"] = scheduling_strategies.NodeAffinitySchedulingStrategy(
                self._head_node_id, soft=False)
        return options

    async def _run(self, job: JobDetails, request: records.SubmitRequest) -> None:
        sid = job.submission_id
        try:
            await self._connect()
            import kray
            from kray.jobs import supervisor

            request.submission_id = sid
            actor_class = kray.remote(supervisor.JobSupervisor).options(**self._supervisor_options(request))
            handle = self.handles[sid] = actor_class.remote(sid, job.entrypoint, job.runtime_env)
            try:
                where = await asyncio.wait_for(_await_ref(handle.start.remote()), config.JOB_START_TIMEOUT_S)
            except asyncio.TimeoutError:
                kray.kill(handle)
                await self._finish(job, JobStatus.FAILED, None, message=(
                    f"Job supervisor actor could not be scheduled within {config.JOB_START_TIMEOUT_S:g}s: no "
                    f"node has the entrypoint's resources {request.resources() or {}} free."), error="JOB_SUPERVISOR_ACTOR_START_TIMEOUT")
                return
            if sid in self.stopping:
                await _await_ref(handle.stop.remote(config.JOB_STOP_WAIT_S))
            job.status = JobStatus.RUNNING
            job.message = records.MESSAGES[JobStatus.RUNNING]
            job.driver_node_id = where["node_id"]
            self._driver_ips[sid] = where["node_ip_address"]
            await self._save(job)
            await self._follow(job, handle)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("job %s failed to run", sid)
            await self._finish(job, JobStatus.FAILED, None, message=_setup_failure(e),
                               error="RUNTIME_ENV_SETUP_FAILURE" if "RuntimeEnvSetupError" in type(e).__name__
                               or "RuntimeEnvSetupError" in str(e) else "JOB_SUPERVISOR_ACTOR_DIED")

    async def _follow(self, job: JobDetails, handle: Any) -> None:
        """Copy the entrypoint's output into the log file until it exits; then record how it ended."""
        import kray

        offset = 0
        path = self.log_path(job.submission_id)
        while True:
            try:
                result = await _await_ref(handle.poll.remote(offset, POLL_WAIT_S))
            except kray.exceptions.RayError as e:
                await self._finish(job, JobStatus.FAILED, None, error="JOB_SUPERVISOR_ACTOR_DIED",
                                   message=f"The job's supervisor (and with it the entrypoint) died: {e}")
                return
            if result["data"]:
                _append(path, result["data"])
                offset += len(result["data"])
                await self._notify(job.submission_id)
            if result["exit_code"] is not None:
                break
        code = int(result["exit_code"])
        if job.submission_id in self.stopping:
            await self._finish(job, JobStatus.STOPPED, code)
        elif code == 0:
            await self._finish(job, JobStatus.SUCCEEDED, code)
        else:
            tail = _read(path, max(0, offset - records.FAILED_LOG_TAIL_CHARS * 4)).decode(errors="replace")
            await self._finish(job, JobStatus.FAILED, code, message=records.failed_message(code, tail),
                               error="JOB_ENTRYPOINT_COMMAND_ERROR")
        try:
            kray.kill(handle)
        except Exception as e:  # noqa: BLE001 - a supervisor already gone needs no killing
            log.debug("the supervisor of job %s was already gone: %s", job.submission_id, e)

    async def _finish(self, job: JobDetails, status: JobStatus, code: int | None, message: str | None = None,
                      error: str | None = None) -> None:
        job.status = status
        job.message = message or records.MESSAGES.get(status, "")
        job.error_type = error
        job.driver_exit_code = code
        job.end_time = records.now_ms()
        if job.job_id is None and job.submission_id in self._driver_ips:
            await self._find_driver(job)
        await self._save(job)
        for table in (self.watchers, self.handles, self._driver_ips, self._driver_looked_up):
            table.pop(job.submission_id, None)
        self.stopping.discard(job.submission_id)
        try:
            await self.gcs.submission_ended(job.submission_id)
        except Exception:  # noqa: BLE001 - the GCS may be gone; the job's record says how it ended
            log.warning("could not tell the GCS that job %s ended", job.submission_id)

    # ------------------------------------------------------------------ stop, delete, logs

    async def stop(self, submission_id: str) -> bool:
        """Stop a running or pending job; False when it had already ended."""
        job = _submitted(await self.get(submission_id), "stop")
        submission_id = job.submission_id
        if job.status.is_terminal():
            return False
        self.stopping.add(submission_id)
        watcher = self.watchers.get(submission_id)
        if job.status == JobStatus.PENDING and watcher is not None:
            # Still waiting for resources (or setting up): give up the wait and the supervisor.
            watcher.cancel()
            handle = self.handles.pop(submission_id, None)
            if handle is not None:
                import kray

                kray.kill(handle)
            await self._finish(job, JobStatus.STOPPED, None)
            return True
        if job.status == JobStatus.RUNNING and self._connected:
            import kray

            try:
                handle = kray.get_actor(supervisor_name(submission_id), namespace=SUPERVISOR_NAMESPACE)
                await _await_ref(handle.stop.remote(config.JOB_STOP_WAIT_S))
            except (ValueError, kray.exceptions.RayError):
                pass  # ended meanwhile; the watcher records it
        return True

    async def delete(self, submission_id: str) -> bool:
        job = _submitted(await self.get(submission_id), "delete")
        submission_id = job.submission_id
        if not job.status.is_terminal():
            raise records.BadRequest(
                f"Attempted to delete job '{submission_id}', but it is in a non-terminal state {job.status.value}. "
                "Please stop the job first (kray job stop).")
        await self.gcs.kv_del(RECORD_PREFIX + submission_id)
        self.jobs.pop(submission_id, None)
        self.changed.pop(submission_id, None)
        try:
            os.unlink(self.log_path(submission_id))
        except FileNotFoundError:
            pass
        return True

    async def logs(self, submission_id: str) -> str:
        job = _submitted(await self.get(submission_id), "get logs of")
        return _read(self.log_path(job.submission_id), 0).decode(errors="replace")

    async def tail(self, submission_id: str) -> AsyncIterator[str]:
        """The log as it grows, chunk by chunk, until the job ends."""
        job = _submitted(await self.get(submission_id), "get logs of")
        submission_id = job.submission_id
        cond = self.changed.setdefault(submission_id, asyncio.Condition())
        offset = 0
        while True:
            data = _read(self.log_path(submission_id), offset)
            if data:
                offset += len(data)
                yield data.decode(errors="replace")
            if job.status.is_terminal() and not data:
                return
            async with cond:
                try:
                    await asyncio.wait_for(cond.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
            job = await self.get(submission_id)

    async def _notify(self, submission_id: str) -> None:
        cond = self.changed.get(submission_id)
        if cond is not None:
            async with cond:
                cond.notify_all()


def _submitted(job: JobDetails, what: str) -> JobDetails:
    if job.type != records.JobType.SUBMISSION:
        raise records.BadRequest(f"Can only {what} submission type jobs; {job.job_id} is a driver that "
                                 "connected by itself")
    return job


def _append(path: str, data: bytes) -> None:
    with open(path, "ab") as out:
        out.write(data)


def _read(path: str, offset: int) -> bytes:
    """A local log file from `offset` on (b"" when it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


async def _await_ref(ref: Any) -> Any:
    return await ref


def _setup_failure(e: BaseException) -> str:
    return f"Job supervisor failed to start the entrypoint: {type(e).__name__}: {e}"
