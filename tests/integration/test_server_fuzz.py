"""Every server port of a running cluster is fed malformed input, and keeps serving without losing work.

The ports: the GCS, the raylet (which also serves object transfer: ReadObject), a worker's and the
driver's core-worker servers, and the head's HTTP server. The input: raw TCP garbage, ZMTP greetings
that declare huge frames, pickles sent before authentication (without the token, or with a wrong one),
and, from a peer that holds the token, empty, undecodable, unknown, mis-sized and mis-typed messages,
ids that try to leave the object store's directory, thousands of frames and a 16 MiB frame. After each
barrage the server answers a real request, and at the end tasks and actor calls still return.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kray
import pytest
import zmq
from kray.api import runtime
from kray.protocol import client, messages, wire

from . import helpers, multinode

CANARY_NAME = "fuzz-canary-of-kray"  # not kray-*: the leak checks count those


@kray.remote
def add(a: int, b: int) -> int:
    return a + b


@kray.remote
class Echo:
    def address(self) -> str:
        return runtime.current_core().address

    def echo(self, value: Any) -> Any:
        return value


class _WritesFile:
    """Unpickling this creates `path`: the proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def _host_port(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def _raw_tcp(endpoint: str, payloads: list[bytes]) -> None:
    """Connect a plain TCP socket and write `payloads`; whatever the server does then is its business."""
    for payload in payloads:
        with socket.create_connection(_host_port(endpoint), timeout=5) as conn:
            try:
                conn.sendall(payload)
                conn.settimeout(0.5)
                conn.recv(4096)
            except OSError:
                pass  # the server closed the connection: the right answer to garbage


def _zmtp_greeting(mechanism: bytes) -> bytes:
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


GARBAGE = [
    os.urandom(4096),
    b"\x00" * 10_000,
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    # A greeting, then a command frame and a message frame claiming 2**62 bytes.
    _zmtp_greeting(b"PLAIN") + b"\x06" + (2**62).to_bytes(8, "big") + os.urandom(512),
    _zmtp_greeting(b"NULL") + b"\x02" + (2**62).to_bytes(8, "big") + os.urandom(512),
    _zmtp_greeting(b"CURVE") + os.urandom(256),
]


def _send_unauthenticated(endpoint: str, password: bytes | None, frames: list[bytes]) -> None:
    """Send frames from a DEALER that has no token (password None) or a wrong one."""
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if password is not None:
            sock.plain_username = b"kray"
            sock.plain_password = password
        sock.connect(endpoint)
        for _ in range(3):
            sock.send_multipart(frames, zmq.NOBLOCK) if sock.poll(0, zmq.POLLOUT) else None
        assert sock.poll(1000, zmq.POLLIN) == 0, f"{endpoint} answered a peer without the cluster token"
        sock.close(0)
    finally:
        ctx.term()


def _authenticated_barrage(endpoint: str, canary: Path) -> list[Any]:
    """Malformed messages from a peer with the token; returns the replies that came back."""
    code = {cls.__name__: cls._code for cls in wire._REGISTRY.values()}
    traversal = os.path.relpath(canary, "/dev/shm/kray-x")  # from a store directory to the canary
    frames_list: list[list[Any]] = [
        [b""],
        [os.urandom(200)],
        [pickle.dumps("not a message")],
        [pickle.dumps((999_999, ()))],
        [pickle.dumps((code["ReadObject"], (1,)))],  # too few fields
        [pickle.dumps((code["ReadObject"], 7))],  # fields not a tuple
        wire.pack(messages.ReadObject(11, "../" * 8 + "etc/passwd", 0, 4096)),
        wire.pack(messages.ReadObject(12, traversal, 0, 4096)),
        wire.pack(messages.DeleteObjects([traversal, "../" + CANARY_NAME, "..", "/" + str(canary)])),
        wire.pack(messages.DeleteObjects(5)),  # type: ignore[arg-type]
        wire.pack(messages.ObjectSealed(traversal, 10)),
        wire.pack(messages.KvPut(13, 14, b"v")),  # type: ignore[arg-type]
        wire.pack(messages.KvPut(14, "fuzz/a-key", b"v")),  # so that the next KvKeys has a key to compare
        wire.pack(messages.KvKeys(14, 14)),  # type: ignore[arg-type]
        wire.pack(messages.GetNodes(15), [b"x"] * 5000),
        wire.pack(messages.GetNodes(16), [os.urandom(16 << 20)]),
    ]
    ctx = zmq.Context()
    replies: list[Any] = []
    try:
        sock = wire.make_socket(ctx, zmq.DEALER)
        sock.connect(endpoint)
        for frames in frames_list:
            sock.send_multipart(frames)
        while sock.poll(2000, zmq.POLLIN):
            try:
                replies.append(wire.unpack(sock.recv_multipart())[0])
            except wire.MalformedMessage:
                replies.append(None)
        sock.close(0)
    finally:
        ctx.term()
    return replies


def _still_serves(endpoint: str, make: Any) -> Any:
    return client.request(endpoint, make, timeout=10.0)


@pytest.fixture
def canary() -> Any:
    path = Path("/dev/shm") / CANARY_NAME
    path.write_text("still here")
    yield path
    path.unlink(missing_ok=True)


def test_every_server_port_survives_malformed_input_and_loses_nothing(cluster_factory, canary, tmp_path) -> None:
    cluster_factory(num_cpus=1, include_dashboard=True)
    ctx = kray.init(ignore_reinit_error=True)
    core = runtime.current_core()
    before = kray.put(b"kept" * 1000)
    actor = Echo.remote()
    worker_address = kray.get(actor.address.remote())
    servers = {
        "GCS": core.gcs_address, "raylet": core.node.raylet_address, "worker": worker_address,
        "driver": core.address,
    }
    pickled_file = tmp_path / "unpickled"
    for name, endpoint in servers.items():
        _raw_tcp(endpoint, GARBAGE)
        _send_unauthenticated(endpoint, None, [pickle.dumps(_WritesFile(pickled_file))])
        _send_unauthenticated(endpoint, b"not-the-token", [pickle.dumps(_WritesFile(pickled_file))])
        replies = _authenticated_barrage(endpoint, canary)
        assert all(r is None or isinstance(r, messages.Reply) for r in replies), (name, replies)
        assert canary.read_text() == "still here", f"a malformed message to the {name} deleted a file outside the store"
        assert not pickled_file.exists(), f"the {name} unpickled a message from a peer without the token"
        assert _still_serves(core.gcs_address, lambda rid: messages.GetNodes(rid)), f"the GCS stopped after the {name} barrage"
        assert kray.get(add.remote(1, 2), timeout=30) == 3, f"tasks stopped after the {name} barrage"
        assert kray.get(actor.echo.remote(name), timeout=30) == name

    raylet_replies = _authenticated_barrage(core.node.raylet_address, canary)
    refused = [r.value for r in raylet_replies if isinstance(r, messages.Reply) and not r.ok]
    assert any("is not an object id" in str(v) for v in refused), refused
    assert kray.get(before) == b"kept" * 1000

    assert runtime._driver is not None and runtime._driver.local is not None
    logs = Path(runtime._driver.local.session_dir) / "logs"
    raylet_log = "".join(p.read_text(errors="replace") for p in logs.glob("raylet*"))
    assert "refused a malformed DeleteObjects: field 'object_hexes' is int 5" in raylet_log
    assert "dropped a malformed message" in raylet_log
    assert "Traceback" not in raylet_log, raylet_log[-3000:]
    gcs_log = "".join(p.read_text(errors="replace") for p in logs.glob("gcs*"))
    assert "refused a malformed KvPut: field 'key' is int 14" in gcs_log
    assert "refused a malformed KvKeys: field 'prefix' is int 14" in gcs_log
    assert _still_serves(core.gcs_address, lambda rid: messages.KvKeys(rid, "")) is not None
    assert "Traceback" not in gcs_log, gcs_log[-3000:]

    _http_fuzz(ctx.dashboard_url)
    assert kray.get(add.remote(2, 3), timeout=30) == 5


def _http(base: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _http_fuzz(dashboard_url: str) -> None:
    base = "http://" + dashboard_url
    auth = {"Authorization": "Bearer " + str(wire.get_token())}
    _raw_tcp("tcp://" + dashboard_url, [
        os.urandom(4096),
        b"POST /api/jobs/ HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n{",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10_000 + b"\r\n",
    ])
    assert _http(base, "POST", "/api/jobs/", b"{not json", {**auth, "Content-Type": "application/json"}) == 400
    assert _http(base, "POST", "/api/jobs/", json.dumps({"entrypoint": 5}).encode(), auth) == 400
    assert _http(base, "PUT", "/api/packages/gcs/..%2F..%2Fescape.zip", b"PK", auth) in (400, 404)
    assert _http(base, "PUT", "/api/packages/gcs/_ray_pkg_..zip", b"PK", auth) == 400
    assert _http(base, "GET", "/api/jobs/..%2F..%2Fetc%2Fpasswd", None, auth) in (400, 404)
    assert _http(base, "GET", "/api/jobs/", None, {"Authorization": "Bearer " + "x" * 100_000}) in (400, 403, 431)
    assert _http(base, "GET", "/healthz") == 200
    assert _http(base, "GET", "/api/jobs/", None, auth) == 200


def _plain_env(temp_dir: Path, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KRAY_CLUSTER_TOKEN", "KRAY_AUTH_MODE", "RAY_AUTH_MODE", "KRAY_ADDRESS", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (helpers.package_root(), env.get("PYTHONPATH")) if p)
    env["KRAY_TEMP_DIR"] = str(temp_dir)
    env[multinode.MARKER_ENV] = marker
    return env


def test_a_server_without_a_token_refuses_to_start_unless_told(tmp_path: Path) -> None:
    env = _plain_env(tmp_path, "fuzz-no-token:")
    port = wire.free_port()
    refused = subprocess.run([sys.executable, "-m", "kray.gcs", "--host", "127.0.0.1", "--port", str(port)],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0
    assert "no cluster token" in refused.stderr and "--no-auth" in refused.stderr


def test_kray_start_no_auth_runs_an_open_cluster_and_says_so(tmp_path: Path) -> None:
    marker = f"fuzz-no-auth-{os.getpid()}:"
    env = _plain_env(tmp_path, marker)
    port = wire.free_port()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*multinode.kray_cli(), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120, check=False)

    started = cli("start", "--head", "--no-auth", f"--port={port}", "--num-cpus=1", f"--dashboard-port={wire.free_port()}")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "running without authentication" in started.stderr
        assert f"kray start --no-auth --address='127.0.0.1:{port}'" in started.stdout
        assert "cluster_token" not in started.stdout
        driver = subprocess.run(
            [sys.executable, "-c", (f"import kray; kray.init(address='127.0.0.1:{port}'); "
             "print(kray.get(kray.remote(lambda: 41).remote()) + 1)")],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert driver.returncode == 0 and driver.stdout.strip().endswith("42"), driver.stdout + driver.stderr
    finally:
        stopped = cli("stop")
        helpers.wait_until(lambda: not multinode.marked_processes(marker), what="the open cluster's processes to stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
