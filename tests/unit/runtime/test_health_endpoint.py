"""The health endpoint's answers (raylet/health_http.py) and the node checks behind them
(raylet/liveness.Heartbeat.checks), without processes or sockets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kray import config
from kray.protocol import messages
from kray.raylet import health_http, liveness


def healthy(include_gcs: bool) -> list[health_http.Check]:
    return [("raylet", "", ""), *([("gcs", "", "no local gcs")] if include_gcs else [])]


def test_rays_paths_answer_200_with_success_lines() -> None:
    assert health_http.answer("GET", "/api/healthz", healthy) == (200, "raylet: success\ngcs: success (no local gcs)\n")
    assert health_http.answer("GET", "/api/local_raylet_healthz", healthy) == (200, "raylet: success\n")
    assert health_http.answer("HEAD", "/api/healthz/?verbose=1", healthy)[0] == 200


def test_one_failing_check_makes_it_503_with_the_reason() -> None:
    def gcs_silent(include_gcs: bool) -> list[health_http.Check]:
        return [("raylet", "", ""), ("gcs", "the GCS at tcp://h:6379 has not answered for 12s", "")]
    status, body = health_http.answer("GET", "/api/healthz", gcs_silent)
    assert status == 503
    assert body == "raylet: success\ngcs: the GCS at tcp://h:6379 has not answered for 12s\n"


def test_other_paths_and_methods_are_refused() -> None:
    status, body = health_http.answer("GET", "/", healthy)
    assert status == 404 and "/api/healthz" in body
    assert health_http.answer("POST", "/api/healthz", healthy)[0] == 405


def test_request_parsing() -> None:
    assert health_http.parse_request_line(b"GET /api/healthz HTTP/1.1\r\nHost: x\r\n") is None  # not complete
    assert health_http.parse_request_line(b"GET /api/healthz HTTP/1.1\r\nHost: x\r\n\r\n") == ("GET", "/api/healthz")
    with pytest.raises(ValueError, match="not an HTTP request line"):
        health_http.parse_request_line(b"hello\r\n\r\n")
    with pytest.raises(ValueError, match="too large"):
        health_http.parse_request_line(b"G" * (health_http.MAX_REQUEST_BYTES + 1))


def test_response_bytes() -> None:
    raw = health_http.response_bytes(503, "raylet: x\n")
    assert raw.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
    assert b"Content-Length: 10\r\n" in raw and raw.endswith(b"\r\n\r\nraylet: x\n")
    assert health_http.response_bytes(200, "ok", head_only=True).endswith(b"\r\n\r\n")


def test_endpoint_listens_on_the_nodes_loopback_address_else_everywhere() -> None:
    assert health_http.bind_addresses("127.0.0.3") == ["127.0.0.3"]
    assert health_http.bind_addresses("100.64.0.7") == ["0.0.0.0"]


class _Loop:
    """Runs what the heartbeat thread posts to the raylet's loop when `turn()` is called."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], Any]] = []

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        self.calls.append(lambda: fn(*args))

    def turn(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            call()


class _Node:
    def __init__(self, is_head: bool) -> None:
        self.loop = _Loop()
        self.gcs_address = "tcp://head:6379"
        self.node = messages.NodeInfo(node_id=b"n" * 16, ip="10.0.0.2", raylet_address="tcp://10.0.0.2:1",
                                      log_address="", resources={}, shm_dir="", spill_dir="", is_head=is_head)
        self.view_version = 0
        self.last_gcs_answer = time.monotonic()
        self.exit_reason = ""


def _heartbeat(is_head: bool) -> tuple[liveness.Heartbeat, _Node]:
    node = _Node(is_head)
    return liveness.Heartbeat(node), node  # type: ignore[arg-type]


def test_a_node_is_unhealthy_until_the_gcs_accepted_it() -> None:
    beat, _ = _heartbeat(is_head=False)
    assert beat.checks(True) == [("raylet", "not yet accepted by the GCS at tcp://head:6379", ""),
                                 ("gcs", "", "no local gcs")]
    beat.accepted = True
    assert beat.checks(True) == [("raylet", "", ""), ("gcs", "", "no local gcs")]


def test_a_silent_gcs_fails_the_raylet_and_on_the_head_the_gcs_check() -> None:
    beat, node = _heartbeat(is_head=True)
    beat.accepted = True
    beat.last_answer = node.last_gcs_answer = time.monotonic() - config.NODE_TIMEOUT_S - 5
    (_, failure, _), (_, gcs_failure, _) = beat.checks(True)
    assert "has not answered for" in failure and gcs_failure == failure


def test_a_node_that_leaves_is_unhealthy() -> None:
    beat, node = _heartbeat(is_head=False)
    beat.accepted = True
    node.exit_reason = "node 6e is not in the cluster: it was declared dead"
    assert beat.checks(False) == [("raylet", "leaving the cluster: node 6e is not in the cluster: it was declared dead", "")]


def test_a_wedged_raylet_loop_fails_the_check_a_turning_one_does_not() -> None:
    beat, node = _heartbeat(is_head=False)
    beat.accepted = True
    assert beat.checks(False)[0][1] == ""  # sends a wake-up to the loop
    node.loop.turn()
    assert beat.checks(False)[0][1] == ""  # answered: sends another
    beat._loop_ping_sent -= health_http.LOOP_STALL_S + 1  # as if it stayed unanswered for too long
    beat._loop_pong -= health_http.LOOP_STALL_S + 1
    assert "event loop has not run" in beat.checks(False)[0][1]
    node.loop.turn()
    assert beat.checks(False)[0][1] == ""
