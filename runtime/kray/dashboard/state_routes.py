"""Ray's state API over HTTP on the head (`/api/v0/...`), answered from kray.util.state.

    GET /api/v0/{actors,tasks,nodes,objects,jobs,placement_groups,workers}
        ?limit=100&detail=false&timeout=30&filter_keys=state&filter_predicates=%3D&filter_values=RUNNING
    GET /api/v0/{tasks,actors,objects}/summarize

Answers have Ray's envelope: {"result": true, "msg": "", "data": {"result": {"total", "num_after_truncation",
"num_filtered", "result": [...rows...], "partial_failure_warning", "warnings"}}}; a bad filter or limit
answers 400 with the reason (Ray's envelope with "result": false). The queries run on threads, so a slow
GCS never stalls the server. Token auth is the app's (kray.dashboard.app).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from kray.util import state, state_sources

RESOURCES = ("actors", "tasks", "nodes", "objects", "jobs", "placement_groups", "workers")
SUMMARIES = {"tasks": state.summarize_tasks, "actors": state.summarize_actors, "objects": state.summarize_objects}


def _envelope(ok: bool, msg: str, result: Any, status: int = 200) -> web.Response:
    return web.json_response({"result": ok, "msg": msg, "data": {"result": result} if ok else {}}, status=status,
                             dumps=state_sources.dumps)


def _query(request: web.Request) -> tuple[list[tuple[str, str, str]], int, bool, float]:
    """Ray's query parameters: (filters, limit, detail, timeout); ValueError names a bad one."""
    q = request.query
    keys, predicates, values = q.getall("filter_keys", []), q.getall("filter_predicates", []), q.getall("filter_values", [])
    if not len(keys) == len(predicates) == len(values):
        raise ValueError("filter_keys, filter_predicates and filter_values must be given the same number of times")
    try:
        limit = int(q.get("limit", state.DEFAULT_LIMIT))
        timeout = float(q.get("timeout", state.DEFAULT_RPC_TIMEOUT))
    except ValueError:
        raise ValueError(f"limit and timeout must be numbers, got limit={q.get('limit')!r} "
                         f"timeout={q.get('timeout')!r}") from None
    detail = q.get("detail", "false").strip().lower() in ("1", "true", "yes")
    return list(zip(keys, predicates, values)), limit, detail, timeout


def add_routes(app: web.Application, gcs_address: str) -> None:
    """Register the /api/v0/ state routes on the head's application."""

    def list_handler(resource: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            try:
                filters, limit, detail, timeout = _query(request)
                source = state_sources.StateSource(gcs_address, timeout)
                total = None
                if resource == "tasks":
                    checked = state.state_columns.check_filters("tasks", filters)
                    _, total, _ = await asyncio.to_thread(source.tasks, checked, 0)
                rows = await asyncio.to_thread(state.list_resource, resource, source, filters, limit, int(timeout),
                                               detail)
            except ValueError as e:
                return _envelope(False, str(e), None, status=400)
            count = len(rows) if total is None else total
            return _envelope(True, "", {
                "total": count, "num_after_truncation": len(rows), "num_filtered": count, "result": rows,
                "partial_failure_warning": "", "warnings": None,
            })

        return handle

    def summary_handler(resource: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            source = state_sources.StateSource(gcs_address)
            summary = await asyncio.to_thread(SUMMARIES[resource], source)
            cluster = summary["cluster"]
            return _envelope(True, "", {
                "total": cluster.get("total_tasks", cluster.get("total_actors", cluster.get("total_objects", 0))),
                "num_after_truncation": None, "num_filtered": None,
                "result": {"node_id": "cluster", **summary},
                "partial_failure_warning": "", "warnings": None,
            })

        return handle

    for resource in SUMMARIES:
        app.router.add_get(f"/api/v0/{resource}/summarize", summary_handler(resource))
    for resource in RESOURCES:
        app.router.add_get(f"/api/v0/{resource}", list_handler(resource))
