"""Fixtures of the integration tier: real local clusters, started with `kray.init()` and checked on shutdown.

Starts and stops kray processes. Every cluster a fixture starts is shut down by it, and its
shutdown fails the test if a kray process or a /dev/shm/kray-* entry of that session is left.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import pytest

from . import helpers

# Workers cannot import this test package (tests/ is not on their sys.path), so the remote functions,
# exception classes and helpers defined here travel by value, as a notebook's or a script's would.
cloudpickle.register_pickle_by_value(sys.modules[__package__])


@pytest.fixture
def cluster_factory() -> Iterator[Callable[..., helpers.LocalCluster]]:
    """Start a local cluster with `kray.init(**kwargs)`; it is shut down (and leak-checked) after the test."""
    started: list[helpers.LocalCluster] = []

    def start(**init_kwargs: Any) -> helpers.LocalCluster:
        cluster = helpers.LocalCluster(**init_kwargs)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in reversed(started):
        cluster.shutdown()


@pytest.fixture
def actors() -> Iterator[list[Any]]:
    """Handles the test appends here are killed when it ends, so tests leave the cluster idle."""
    import kray

    made: list[Any] = []
    yield made
    for handle in made:
        kray.kill(handle)  # harmless when the actor is already dead


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], None]]:
    """Connect this process as a driver to a multinode.MultiNodeCluster (kray.init(address=...) with
    the cluster's token); the driver is shut down after the test."""
    import kray

    def attach(target: Any) -> None:
        monkeypatch.setenv("KRAY_CLUSTER_TOKEN", target.token)
        monkeypatch.delenv("KRAY_ADDRESS", raising=False)
        kray.init(address=target.address)

    yield attach
    kray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def no_kray_process_left() -> Iterator[None]:
    """After the whole tier, no kray process started by it may still run."""
    yield
    left = helpers.alive(helpers.kray_processes())
    assert not left, f"kray processes still running after the integration tests: {helpers.describe(left)}"
