"""The head's HTTP API: pending resource demand (what the autoscaler reads) and nodes, as JSON."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import kray
import pytest
from kray.protocol import wire
from kray.util import placement_group, remove_placement_group


def _get(url: str, token: str | None = "") -> dict:
    """GET a JSON answer, sending this driver's cluster token (or `token` when given)."""
    token = wire.get_token() if token == "" else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return json.loads(response.read())


def test_demand_lists_the_shapes_that_wait_and_drops_them_once_placed(cluster_factory) -> None:
    cluster_factory(num_cpus=1, include_dashboard=True)
    base = "http://" + kray.init(ignore_reinit_error=True).dashboard_url

    @kray.remote(num_cpus=3, resources={"shape": 1})
    def never_fits() -> int:
        return 1

    pending = never_fits.remote()
    deadline = time.monotonic() + 30
    demand: list = []
    while time.monotonic() < deadline:
        demand = _get(base + "/api/cluster/demand")["demand"]
        if demand:
            break
        time.sleep(0.1)
    assert demand == [{"CPU": 3.0, "shape": 1.0}]
    kray.cancel(pending)
    with pytest.raises(kray.exceptions.TaskCancelledError):
        kray.get(pending, timeout=30)

    nodes = _get(base + "/api/nodes")["nodes"]
    assert len(nodes) == 1 and nodes[0]["alive"] and nodes[0]["resources_total"]["CPU"] == 1.0


def test_unknown_endpoint_is_a_404_with_a_message(cluster_factory) -> None:
    cluster_factory(num_cpus=1, include_dashboard=True)
    with pytest.raises(urllib.error.HTTPError) as info:
        _get("http://" + kray.init(ignore_reinit_error=True).dashboard_url + "/api/nope")
    assert info.value.code == 404
    assert "no such endpoint" in info.value.read().decode()


def test_demand_includes_actors_and_placement_group_bundles_that_wait(cluster_factory) -> None:
    cluster_factory(num_cpus=1, include_dashboard=True)
    base = "http://" + kray.init(ignore_reinit_error=True).dashboard_url

    @kray.remote(num_cpus=2, resources={"actor_shape": 1})
    class TooBig:
        def ping(self) -> int:
            return 1

    actor = TooBig.remote()
    group = placement_group([{"CPU": 1, "bundle_shape": 2}], strategy="PACK")
    expected = [{"CPU": 2.0, "actor_shape": 1.0}, {"CPU": 1.0, "bundle_shape": 2.0}]
    deadline = time.monotonic() + 30
    demand: list = []
    while time.monotonic() < deadline:
        demand = _get(base + "/api/cluster/demand")["demand"]
        if sorted(map(str, demand)) == sorted(map(str, expected)):
            break
        time.sleep(0.1)
    assert sorted(map(str, demand)) == sorted(map(str, expected)), demand
    kray.kill(actor)
    remove_placement_group(group)
    deadline = time.monotonic() + 30
    while demand and time.monotonic() < deadline:
        demand = _get(base + "/api/cluster/demand")["demand"]
        time.sleep(0.1)
    assert demand == [], "shapes of a killed actor and a removed group are still reported as demand"


def test_every_endpoint_but_healthz_needs_the_cluster_token(cluster_factory) -> None:
    cluster_factory(num_cpus=1, include_dashboard=True)
    base = "http://" + kray.init(ignore_reinit_error=True).dashboard_url
    with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
        assert response.read() == b"ok"
    with urllib.request.urlopen(base + "/api/gcs_healthz", timeout=10) as response:
        assert response.read() == b"success"
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(base + "/api/nodes", token=None)
    assert missing.value.code == 401 and "Missing authentication token" in missing.value.read().decode()
    with pytest.raises(urllib.error.HTTPError) as wrong:
        _get(base + "/api/jobs/", token="not-the-token")
    assert wrong.value.code == 403
    version = _get(base + "/api/version")
    assert version["version"] == "4" and version["ray_version"].startswith("2.")


def test_an_embedded_cluster_has_no_http_server_unless_asked(cluster_factory) -> None:
    cluster_factory(num_cpus=1)
    assert kray.init(ignore_reinit_error=True).dashboard_url == ""
