"""The dashboard page's sign-in on the head's real aiohttp application (in this process, on loopback; no
GCS needed): the page and its files are open, `POST /api/authenticate` checks the token and sets Ray's
HttpOnly, SameSite=Strict cookie, which then opens the API; without a cluster token there is nothing to
sign in to. The browser flow itself is tested in tests/integration/test_dashboard_page.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from kray.dashboard import app as app_mod

TOKEN = "the-cluster-token"


def _with_client(tmp_path: Path, token: str | None, check: Callable[[TestClient], Awaitable[Any]]) -> None:
    async def run() -> None:
        app = app_mod.make_app("tcp://127.0.0.1:1", str(tmp_path), "session", token)
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(run())


def test_the_page_is_open_and_the_token_buys_an_httponly_cookie(tmp_path: Path) -> None:
    async def check(client: TestClient) -> None:
        for path in ("/", "/static/dashboard.js", "/static/dashboard.css"):
            assert (await client.get(path)).status == 200, path
        assert "<script src=\"/static/dashboard.js\">" in await (await client.get("/")).text()
        assert (await (await client.get("/api/authentication_mode")).json()) == {"authentication_mode": "token"}
        assert (await client.get("/api/version")).status == 401
        assert (await client.get("/api/dashboard/nodes")).status == 401
        assert (await client.post("/api/authenticate")).status == 401
        wrong = await client.post("/api/authenticate", headers={"Authorization": "Bearer not-it"})
        assert wrong.status == 403 and "Set-Cookie" not in wrong.headers
        assert (await client.get("/api/version")).status == 401
        right = await client.post("/api/authenticate", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status == 200
        cookie = right.cookies["ray-authentication-token"]
        assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Strict"
        assert (await client.get("/api/version")).status == 200  # the cookie now opens the API

    _with_client(tmp_path, TOKEN, check)


def test_without_a_cluster_token_there_is_nothing_to_sign_in_to(tmp_path: Path) -> None:
    async def check(client: TestClient) -> None:
        assert (await (await client.get("/api/authentication_mode")).json()) == {"authentication_mode": "disabled"}
        refused = await client.post("/api/authenticate", headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status == 401 and "without a token" in await refused.text()
        assert (await client.get("/api/version")).status == 200

    _with_client(tmp_path, None, check)
