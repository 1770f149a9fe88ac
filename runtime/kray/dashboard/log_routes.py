"""Ray's log API over HTTP on the head (`ray logs` and `ray.util.state.get_log` talk to these paths),
answered from kray.util.log_state (each node's files are read through that node's raylet).

    GET /api/v0/logs?node_id=ID&node_ip=IP&glob=PATTERN
        {"result": true, "msg": "", "data": {"result": {"worker_out": [...], "raylet": [...], ...}}};
        the head node's files when neither node_id nor node_ip is given
    GET /api/v0/logs/file?node_id=&node_ip=&filename=|actor_id=|task_id=|pid=|submission_id=
                          &lines=1000&suffix=out&attempt_number=0&timeout=30
        the file's text (its last `lines` lines; -1: all of it), as plain bytes
    GET /api/v0/logs/stream?...same...&interval=0.5
        the same, then what is appended to the file, for as long as the client reads

A bad parameter or a file that is not there answers 400 (list) or 404 with the reason. Token auth is the
app's (kray.dashboard.app). Reads run on threads, so a slow raylet never stalls the server.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from kray.protocol import client
from kray.util import log_state, state_sources


def _number(query: Any, name: str, default: Any, kind: type = int) -> Any:
    """Query parameter `name` as an int (or a float with kind=float); `default` when absent or empty."""
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None


def add_routes(app: web.Application, gcs_address: str) -> None:
    """Register /api/v0/logs, /api/v0/logs/file and /api/v0/logs/stream on the head's application."""

    async def list_logs(request: web.Request) -> web.Response:
        q = request.query
        try:
            source = state_sources.StateSource(gcs_address, _number(q, "timeout", 30.0, float) or 30.0)
            node_id, node_ip, glob = q.get("node_id") or None, q.get("node_ip") or None, q.get("glob") or None

            def listing() -> dict[str, list[str]]:
                node = log_state.pick_node(source, node_id, node_ip)
                return log_state.categorized(log_state.node_files(source, node), glob)

            result = await asyncio.to_thread(listing)
        except (ValueError, ConnectionError) as e:
            return web.json_response({"result": False, "msg": str(e), "data": {}}, status=400)
        return web.json_response({"result": True, "msg": "", "data": {"result": result}})

    def file_handler(follow: bool) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            q = request.query
            try:
                timeout = _number(q, "timeout", 30.0, float) or 30.0
                source = state_sources.StateSource(gcs_address, timeout)
                pid = _number(q, "pid", -1)
                target: dict[str, Any] = {
                    "node_id": q.get("node_id") or None, "node_ip": q.get("node_ip") or None,
                    "filename": q.get("filename") or None, "actor_id": q.get("actor_id") or None,
                    "task_id": q.get("task_id") or None, "pid": pid if pid >= 0 else None,
                    "suffix": q.get("suffix") or "out", "submission_id": q.get("submission_id") or None,
                    "attempt_number": _number(q, "attempt_number", 0),
                }
                lines = _number(q, "lines", log_state.DEFAULT_TAIL)
                interval = _number(q, "interval", None, float)
                node, name = await asyncio.to_thread(lambda: log_state.resolve_file(source, **target))
                stop = threading.Event()  # ends a follow whose client went away
                chunks = log_state.read_chunks(source, node, name, lines, follow, interval, stop)
                first = await asyncio.to_thread(next, chunks, None)
            except ValueError as e:
                return web.Response(status=404 if str(e).startswith("no ") else 400, text=str(e))
            except (ConnectionError, RuntimeError) as e:
                return web.Response(status=404, text=str(e))
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            await response.prepare(request)
            try:
                chunk = first
                while chunk is not None:
                    await response.write(chunk)
                    chunk = await asyncio.to_thread(next, chunks, None)
            except (ConnectionResetError, client.NoReply, RuntimeError):
                pass  # the client went away, or the node did
            finally:
                stop.set()
            await response.write_eof()
            return response

        return handle

    app.router.add_get("/api/v0/logs", list_logs)
    app.router.add_get("/api/v0/logs/file", file_handler(False))
    app.router.add_get("/api/v0/logs/stream", file_handler(True))
