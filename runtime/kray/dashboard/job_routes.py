"""Ray's Jobs REST API and runtime_env package endpoints, as aiohttp routes over the job manager.

Paths, JSON field names and status codes are Ray's: 200 with JSON on success, 400 with a text reason
for a bad request, 404 for an unknown job, 413 for an upload over the size limit.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kray import config
from kray.jobs import manager as manager_mod
from kray.jobs import records
from kray.util import safe_names

PACKAGE_PROTOCOLS = ("gcs",)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def _not_found(job_id: str) -> web.Response:
    return _text(404, f"Job {job_id} does not exist")


async def _answer(job_id: str, make: Callable[[], Awaitable[Any]]) -> web.Response:
    """The JSON that `make` produces, or Ray's answer to an unknown job (404) or a bad request (400)."""
    try:
        return web.json_response(await make())
    except manager_mod.JobNotFound:
        return _not_found(job_id)
    except records.BadRequest as e:
        return _text(400, str(e))


async def _keyed(key: str, value: Awaitable[Any]) -> dict[str, Any]:
    return {key: await value}


async def _as_json(job: Awaitable[records.JobDetails]) -> dict[str, Any]:
    return (await job).to_json()


def add_routes(app: web.Application, gcs: Any, session_dir: str) -> None:
    """Register the job and package routes on `app`; the manager keeps its logs under session_dir/logs."""
    jobs = manager_mod.JobManager(gcs, os.path.join(session_dir, "logs"))
    app["job_manager"] = jobs

    async def submit(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as e:
            return _text(400, f"The request body is not valid JSON: {e}")
        try:
            submit_request = records.parse_submit_request(body)
            from kray import runtime_env

            _check_uploaded(submit_request.runtime_env)
            submit_request.runtime_env = runtime_env.validate(submit_request.runtime_env)
            submission_id = await jobs.submit(submit_request)
        except (records.BadRequest, ValueError, TypeError) as e:
            return _text(400, str(e))
        return web.json_response({"job_id": submission_id, "submission_id": submission_id})

    async def list_jobs(request: web.Request) -> web.Response:
        return web.json_response([job.to_json() for job in await jobs.list()])

    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return await _answer(job_id, lambda: _as_json(jobs.get(job_id)))

    async def logs(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return await _answer(job_id, lambda: _keyed("logs", jobs.logs(job_id)))

    async def tail(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        try:
            job = await jobs.get(job_id)
        except manager_mod.JobNotFound:
            return _not_found(job_id)
        if job.type != records.JobType.SUBMISSION:
            return _text(400, "Can only get logs of submission type jobs")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for chunk in jobs.tail(job_id):
            if ws.closed:
                break
            await ws.send_str(chunk)
        await ws.close()
        return ws

    async def stop(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return await _answer(job_id, lambda: _keyed("stopped", jobs.stop(job_id)))

    async def delete(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return await _answer(job_id, lambda: _keyed("deleted", jobs.delete(job_id)))

    async def package_exists(request: web.Request) -> web.Response:
        uri, refusal = _package_uri(request)
        if refusal is not None:
            return refusal
        from kray.runtime_env import packaging

        if await gcs.kv_get(packaging.kv_key(uri)) is None:
            return _text(404, f"Package {uri} does not exist")
        return web.Response()

    async def upload_package(request: web.Request) -> web.Response:
        uri, refusal = _package_uri(request)
        if refusal is not None:
            return refusal
        from kray.runtime_env import packaging

        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _text(413, f"The package is larger than this server takes ({config.MAX_UPLOAD_BYTES} bytes); "
                              "exclude large files with runtime_env 'excludes' or a .gitignore.")
        await gcs.kv_put(packaging.kv_key(uri), data)
        return web.Response()

    router = app.router
    for path in ("/api/jobs/", "/api/jobs"):
        router.add_post(path, submit)
        router.add_get(path, list_jobs)
    router.add_get("/api/jobs/{job_id}", get_job)
    router.add_get("/api/jobs/{job_id}/logs", logs)
    router.add_get("/api/jobs/{job_id}/logs/tail", tail)
    router.add_post("/api/jobs/{job_id}/stop", stop)
    router.add_delete("/api/jobs/{job_id}", delete)
    router.add_get("/api/packages/{protocol}/{package_name}", package_exists)
    router.add_put("/api/packages/{protocol}/{package_name}", upload_package)


def _package_uri(request: web.Request) -> tuple[str, web.Response | None]:
    """The package URI a package route names, or the 400 answer for a protocol or name kray refuses."""
    protocol = request.match_info["protocol"]
    if protocol not in PACKAGE_PROTOCOLS:
        return "", _text(400, f"unknown package protocol {protocol!r}; kray stores 'gcs' packages")
    uri = f"{protocol}://{request.match_info['package_name']}"
    if not safe_names.is_package_uri(uri):
        return uri, _text(400, f"package name {request.match_info['package_name']!r:.100} is not allowed: "
                               "packages are named _ray_pkg_<letters, digits, '_' or '-'>.zip")
    return uri, None


def _check_uploaded(runtime_env: dict[str, Any]) -> None:
    """A job's packages must be uploaded first: a local path means nothing on the head."""
    modules = runtime_env.get("py_modules") or []
    paths = [runtime_env.get("working_dir")] + (list(modules) if isinstance(modules, list) else [])
    for path in paths:
        if isinstance(path, str) and "://" not in path:
            raise ValueError(
                f"runtime_env refers to the local path {path!r}; upload it first (the job SDK and "
                "`kray job submit --working-dir` do) and pass its gcs:// URI")
