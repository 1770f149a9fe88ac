"""The operator's own Prometheus metrics: RayClusters by state, reconcile results, rendered by
prometheus_client and served over real HTTP by `metrics.serve` (parsed with prometheus_client's parser)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from kray_operator import metrics
from kray_operator.handlers import raycluster
from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_clusters_by_state_follow_their_events_and_deletion() -> None:
    metrics.cluster_state("m1", "a", "ready")
    metrics.cluster_state("m1", "b", "")
    metrics.cluster_state("m1", "b", "ready")  # the same cluster, now with a status
    metrics.cluster_state("m1", "c", "failed")
    samples = _samples(metrics.render())
    assert samples[("kray_operator_rayclusters", (("state", "ready"),))] >= 2
    assert samples[("kray_operator_rayclusters", (("state", "failed"),))] >= 1
    ready = metrics.value("kray_operator_rayclusters", {"state": "ready"})
    raycluster.cluster_event(namespace="m1", name="a", type="DELETED", body={"status": {"state": "ready"}})
    assert metrics.value("kray_operator_rayclusters", {"state": "ready"}) == ready - 1
    metrics.cluster_state("m1", "b", None)
    metrics.cluster_state("m1", "c", None)


def test_served_over_http_at_its_path_only() -> None:
    port = _free_port()
    server = metrics.serve(f"http://127.0.0.1:{port}/metrics")
    try:
        metrics.inc("kray_operator_reconcile_total", {"kind": "RayCluster", "result": "error"})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            samples = _samples(response.read().decode())
        assert samples[("kray_operator_reconcile_total", (("kind", "RayCluster"), ("result", "error")))] >= 1
        assert ("kray_operator_leader", ()) in samples
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
        assert refused.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_bad_metrics_url_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="--metrics needs an http URL with a port"):
        metrics.serve("0.0.0.0:8081")
