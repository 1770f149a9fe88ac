"""Garbage collection of runtime_env packages in the GCS's key-value store.

A package (`gcs://_ray_pkg_<hash>.zip`) is kept while something holds it — a driver job that uses it
(`job:<id>`), a submitted job (`submission:<id>`), an actor created with it (`actor:<id>`) — or while a
fresh upload or existence check pins it (Ray's temporary reference, so an upload is not lost before the
job that asked for it starts). Then it is deleted. Runs on the GCS's loop; touches only the KV dict.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kray import config
from kray.runtime_env import packaging, validation

log = logging.getLogger(__name__)


def uris_of(runtime_env_text: str) -> list[str]:
    """The package URIs a runtime_env (canonical text, as task specs carry it) refers to."""
    if not runtime_env_text:
        return []
    env = validation.deserialize(runtime_env_text)
    found = [env.get("working_dir")] + list(env.get("py_modules") or [])
    return [uri for uri in found if isinstance(uri, str) and packaging.is_package_uri(uri)]


class PackageRefs:
    """Who holds which package, and the deletion of packages nobody holds."""

    def __init__(self, kv: dict[str, bytes], loop: Any) -> None:
        self.kv = kv
        self.holders: dict[str, set[str]] = {}  # KV key -> holders
        self.held: dict[str, set[str]] = {}  # holder -> KV keys
        self.pinned_until: dict[str, float] = {}  # KV key -> monotonic deadline of its temporary pin
        loop.call_every(config.PACKAGE_GC_PERIOD_S, self.collect)

    @staticmethod
    def is_package(key: str) -> bool:
        return key.startswith(packaging.KV_PREFIX)

    def touched(self, key: str) -> None:
        """An upload or existence check: keep the package for a while even if nobody holds it yet."""
        if self.is_package(key):
            self.pinned_until[key] = time.monotonic() + config.PACKAGE_PIN_S

    def hold(self, holder: str, uris: list[str]) -> None:
        for uri in uris:
            key = packaging.kv_key(uri)
            self.holders.setdefault(key, set()).add(holder)
            self.held.setdefault(holder, set()).add(key)

    def release(self, holder: str) -> None:
        """`holder` is gone; packages nobody holds any more go (unless pinned)."""
        for key in self.held.pop(holder, set()):
            left = self.holders.get(key)
            if left is not None:
                left.discard(holder)
                if not left:
                    del self.holders[key]
        self.collect()

    def collect(self) -> None:
        now = time.monotonic()
        for key in [k for k in self.kv if self.is_package(k)]:
            if key in self.holders or self.pinned_until.get(key, 0.0) > now:
                continue
            del self.kv[key]
            self.pinned_until.pop(key, None)
            log.info("deleted runtime_env package %s: nothing uses it", key)
        for key in [k for k, until in self.pinned_until.items() if until <= now and k not in self.kv]:
            del self.pinned_until[key]
