"""The job server's requests to the GCS (key-value store, cluster state), awaitable from its event loop.

Each request runs the blocking request/reply helper on a thread, so a slow GCS never stalls HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kray.protocol import client, messages

TIMEOUT_S = 10.0


class GcsClient:
    """Awaitable GCS requests for the head's HTTP server."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def _request(self, make: Callable[[int], Any]) -> Any:
        return await asyncio.to_thread(client.request, self.address, make, TIMEOUT_S)

    async def kv_get(self, key: str) -> bytes | None:
        value: bytes | None = await self._request(lambda rid: messages.KvGet(rid, key))
        return value

    async def kv_put(self, key: str, value: bytes, overwrite: bool = True) -> bool:
        """Store `value`; False when the key exists and overwrite is False."""
        return bool(await self._request(lambda rid: messages.KvPut(rid, key, value, overwrite)))

    async def kv_keys(self, prefix: str) -> list[str]:
        keys: list[str] = await self._request(lambda rid: messages.KvKeys(rid, prefix))
        return keys

    async def kv_del(self, key: str) -> bool:
        return bool(await self._request(lambda rid: messages.KvDel(rid, key)))

    async def cluster_state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self._request(lambda rid: messages.GetClusterState(rid))
        return state

    async def hold_packages(self, holder: str, uris: list[str]) -> None:
        await self._request(lambda rid: messages.HoldPackages(rid, holder, uris))

    async def submission_ended(self, submission_id: str) -> None:
        await self._request(lambda rid: messages.SubmissionEnded(rid, submission_id))
