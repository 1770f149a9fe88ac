"""The dashboard page on the head (`http://HEAD:8265/`): its static files, Ray's token login for browsers,
and the node view's data (each node's worker processes with their CPU and memory).

    GET  /                          the page (static/index.html); GET /static/... its script and style
    GET  /api/authentication_mode   {"authentication_mode": "token" | "disabled"}, as Ray's dashboard asks
    POST /api/authenticate          checks `Authorization: Bearer <token>` and sets the HttpOnly, SameSite=Strict
                                    `ray-authentication-token` cookie that the app's token check accepts
    GET  /api/dashboard/nodes       every node: resources, object store use, host CPU/memory, worker processes

The page, its files and the two login endpoints answer without the token (as Ray's dashboard: a browser
must load the login prompt first); everything the page then reads needs the cookie. The page reads the
rest from the existing routes (/api/nodes, /api/cluster/demand, /api/jobs/, /api/v0/...).
"""

from __future__ import annotations

import asyncio
import hmac
import os
from typing import Any

from aiohttp import web

from kray.util import state_sources

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
COOKIE_NAME = "ray-authentication-token"  # Ray's cookie name, so one login serves both
COOKIE_MAX_AGE_S = 30 * 24 * 3600  # Ray's: 30 days
PUBLIC_PATHS = frozenset({"/", "/index.html", "/favicon.ico", "/api/authentication_mode", "/api/authenticate"})
PUBLIC_PREFIX = "/static/"
NODE_STATS_TIMEOUT_S = 5.0


def is_public(path: str) -> bool:
    """Whether a path answers without the token: the page, its static files and the login endpoints."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def _node_rows(state: dict[str, Any], gcs_address: str) -> list[dict[str, Any]]:
    """Every node in the GCS's cluster state, with what its raylet reports (live nodes only)."""
    source = state_sources.StateSource(gcs_address, NODE_STATS_TIMEOUT_S)
    stats = {node.node_id.hex(): answer for node, answer in source.node_stats()}
    rows = []
    for node in state["nodes"]:
        reported = stats.get(node["node_id"], {})
        rows.append({
            "node_id": node["node_id"], "ip": node["ip"], "is_head": bool(node["is_head"]),
            "state": "ALIVE" if node["alive"] else "DEAD",
            "resources_total": node["resources_total"],
            "resources_available": node.get("resources_available", {}),
            "object_store": reported.get("store"),
            "host": reported.get("host"),  # CPU and memory of the node's machine (psutil), when reported
            "raylet_pid": reported.get("pid"),
            "workers": reported.get("worker_list", []),
        })
    return rows


def add_routes(app: web.Application, gcs_address: str, token: str | None) -> None:
    """Register the page, its files, the browser login and the node view on the head's application."""
    expected = ("Bearer " + token).encode() if token else b""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(os.path.join(STATIC_DIR, "index.html"), headers={"Cache-Control": "no-cache"})

    async def favicon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def authentication_mode(request: web.Request) -> web.Response:
        response = web.json_response({"authentication_mode": "token" if token else "disabled"})
        if not token:
            response.del_cookie(COOKIE_NAME, path="/")
        return response

    async def authenticate(request: web.Request) -> web.Response:
        if not token:
            return web.Response(status=401, text="Unauthorized: this cluster runs without a token (no login needed)")
        given = request.headers.get("Authorization", "").strip()
        if not given:
            return web.Response(status=401, text="Unauthorized: Missing authentication token. Send the cluster "
                                                 "token as 'Authorization: Bearer <token>'.")
        if given[:7].lower() == "bearer ":
            given = given[7:].strip()
        if not hmac.compare_digest(("Bearer " + given).encode(), expected):
            return web.Response(status=403, text="Forbidden: Invalid authentication token")
        response = web.json_response({"status": "authenticated", "message": "Token is valid"})
        response.set_cookie(COOKIE_NAME, token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True,
                            samesite="Strict", secure=request.secure)
        return response

    async def nodes(request: web.Request) -> web.Response:
        state = await request.app["gcs"].cluster_state()
        rows = await asyncio.to_thread(_node_rows, state, gcs_address)
        return web.json_response({"nodes": rows}, dumps=state_sources.dumps)

    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static(PUBLIC_PREFIX, STATIC_DIR, append_version=False)
    app.router.add_get("/api/authentication_mode", authentication_mode)
    app.router.add_post("/api/authenticate", authenticate)
    app.router.add_get("/api/dashboard/nodes", nodes)
