"""The head's HTTP server (port 8265 by default): cluster state, Ray's job API and package uploads.

An aiohttp application in a process of its own on the head (`python -m kray.dashboard`), off the GCS's
path: it reads the GCS over its socket. Endpoints:

    GET  /healthz, /api/gcs_healthz           liveness of this server; of the GCS behind it
    GET  /api/version                         versions (Ray's shape, so Ray's SDK accepts it)
    GET  /api/cluster/demand, /api/nodes      pending resource shapes (the autoscaler's input); nodes
    *    /api/jobs/...                        Ray's Jobs REST API (see kray.dashboard.job_routes)
    GET  /api/v0/{tasks,actors,nodes,...}     Ray's state API (see kray.dashboard.state_routes)
    GET  /api/v0/logs, /api/v0/logs/file      Ray's log API (see kray.dashboard.log_routes)
    GET|PUT /api/packages/{protocol}/{name}   runtime_env packages: exists? / upload
    GET  /, /static/..., /api/dashboard/...  the dashboard page (see kray.dashboard.page_routes)

When the cluster has a token every request but the health checks must carry it, as Ray's token auth takes it:
`Authorization: Bearer <token>`, `X-Ray-Authorization: Bearer <token>`, or the `ray-authentication-token`
cookie (which the page's login sets); a missing token answers 401, a wrong one 403. The page and its
login endpoints answer without it.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kray import config
from kray.dashboard import gcs as gcs_mod
from kray.dashboard import job_routes, log_routes, page_routes, state_routes

log = logging.getLogger(__name__)

# The Ray release whose job API and state paths kray follows (Ray's SDK checks `ray_version`).
RAY_API_VERSION = "2.60.0"
JOB_API_VERSION = "4"
# As Ray's: health checks answer without the token (probes carry none).
OPEN_PATHS = frozenset({"/healthz", "/api/healthz", "/api/gcs_healthz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _auth_middleware(token: str | None) -> Any:
    expected = ("Bearer " + token).encode() if token else b""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not token or request.path in OPEN_PATHS or page_routes.is_public(request.path):
            return await handler(request)
        given = request.headers.get("Authorization") or request.headers.get("X-Ray-Authorization") or ""
        if not given and request.cookies.get("ray-authentication-token"):
            given = "Bearer " + request.cookies["ray-authentication-token"]
        if not given:
            return web.Response(status=401, text="Unauthorized: Missing authentication token. Send the cluster "
                                                 "token as 'Authorization: Bearer <token>' (KRAY_CLUSTER_TOKEN).")
        if not hmac.compare_digest(given.encode(), expected):
            return web.Response(status=403, text="Forbidden: Invalid authentication token")
        return await handler(request)

    return check_token


@web.middleware
async def _errors_as_text(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An unexpected failure answers 500 with its reason; the server keeps serving."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as e:
        log.exception("%s %s failed", request.method, request.path)
        return web.Response(status=500, text=f"Internal error: {type(e).__name__}: {e}")


def make_app(gcs_address: str, session_dir: str, session_name: str, token: str | None) -> web.Application:
    """The HTTP application of one head."""
    app = web.Application(
        middlewares=[_errors_as_text, _auth_middleware(token)], client_max_size=config.MAX_UPLOAD_BYTES,
    )
    gcs = gcs_mod.GcsClient(gcs_address)
    app["gcs"] = gcs
    app["session_name"] = session_name

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def gcs_healthz(request: web.Request) -> web.Response:
        try:
            await gcs.cluster_state()
        except Exception as e:  # noqa: BLE001 - the answer is the health
            return web.Response(status=503, text=f"the GCS does not answer: {e}")
        return web.Response(text="success")

    async def version(request: web.Request) -> web.Response:
        from kray import __version__

        return web.json_response({
            "version": JOB_API_VERSION, "ray_version": RAY_API_VERSION, "ray_commit": "kray",
            "session_name": session_name, "kray_version": __version__,
        })

    async def demand(request: web.Request) -> web.Response:
        state = await gcs.cluster_state()
        keys = ("demand", "nodes", "task_demand", "placement_groups", "resource_requests")
        return web.json_response({key: state[key] for key in keys if key in state})

    async def nodes(request: web.Request) -> web.Response:
        state = await gcs.cluster_state()
        return web.json_response({"nodes": state["nodes"]})

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text=json.dumps({"error": f"no such endpoint: {request.path}"}),
                            content_type="application/json")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/healthz", healthz)
    app.router.add_get("/api/gcs_healthz", gcs_healthz)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/cluster/demand", demand)
    app.router.add_get("/api/nodes", nodes)
    job_routes.add_routes(app, gcs, session_dir)
    state_routes.add_routes(app, gcs_address)  # Ray's state API: /api/v0/tasks, /api/v0/actors, ...
    log_routes.add_routes(app, gcs_address)  # Ray's log API: /api/v0/logs, /api/v0/logs/file
    page_routes.add_routes(app, gcs_address, token)  # the dashboard page, its login and node view
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
