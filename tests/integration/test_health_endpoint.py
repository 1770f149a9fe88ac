"""The node's health endpoint (issue 20, item 5): `kray start --dashboard-agent-listen-port` serves
Ray's /api/healthz and /api/local_raylet_healthz from the raylet; 200 while the node is a live member
of its cluster, no answer or 503 once its raylet is stopped, declared dead or killed.

Starts multi-node clusters on loopback addresses with the real `kray start`; signals raylets.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from . import helpers, multinode
from .multinode import MultiNodeCluster, Node

NODE_TIMEOUT_S = 3.0
BOUND_S = 60.0


class HealthCluster(MultiNodeCluster):
    """Every node gets a health port of its own (the default 52365 may be held by another test)."""

    health_ports: dict[int, int]

    def start_args(self, node: Node) -> list[str]:
        if not hasattr(self, "health_ports"):
            self.health_ports = {}
        self.health_ports[node.index] = multinode.free_port(node.ip)
        return [*super().start_args(node), f"--dashboard-agent-listen-port={self.health_ports[node.index]}"]

    def url(self, index: int, path: str = "/api/healthz") -> str:
        return f"http://{self.ip_of(index)}:{self.health_ports[index]}{path}"

    def raylet(self, index: int) -> psutil.Process:
        return next(p for p in self.nodes[index].processes() if "kray.raylet" in " ".join(p.cmdline()))


def get(url: str, method: str = "GET", timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); (0, reason) when nothing answers (refused, reset or timed out)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[HealthCluster]:
    cluster = HealthCluster(tmp_path, num_cpus=1, num_nodes=2, extra_env={"KRAY_NODE_TIMEOUT_S": f"{NODE_TIMEOUT_S:g}"})
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.teardown()


def test_a_live_node_answers_200_on_rays_paths(pair: HealthCluster) -> None:
    assert get(pair.url(0)) == (200, "raylet: success\ngcs: success\n")
    assert get(pair.url(1)) == (200, "raylet: success\ngcs: success (no local gcs)\n")
    assert get(pair.url(1, "/api/local_raylet_healthz")) == (200, "raylet: success\n")
    assert get(pair.url(0, "/api/healthz/"))[0] == 200
    status, body = get(pair.url(0, "/metrics"))
    assert status == 404 and "/api/healthz" in body
    assert get(pair.url(0), method="POST")[0] == 405
    # `kray health-check` asks the same endpoint, for people.
    done = pair.run_cli(["health-check", "--node-ip-address=127.0.0.2",
                         f"--dashboard-agent-listen-port={pair.health_ports[1]}"], pair.node_env(pair.nodes[1], None))
    assert done.returncode == 0 and done.stdout == "raylet: success\ngcs: success (no local gcs)\n", done
    # A client that connects and says nothing holds no thread: the next probe is answered all the same.
    with socket.create_connection((pair.ip_of(0), pair.health_ports[0])):
        assert get(pair.url(0))[0] == 200


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is in state T (stopped), read from /proc/PID/task/*/stat."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue
    return bool(states) and all(state in ("T", "t") for state in states)


def test_a_stopped_raylet_does_not_answer_and_once_declared_dead_leaves(pair: HealthCluster) -> None:
    raylet = pair.raylet(1)
    raylet.suspend()
    try:
        # SIGSTOP is delivered to each thread as it next runs: probe once every thread is stopped.
        helpers.wait_until(lambda: _all_threads_stopped(raylet.pid), BOUND_S, "the raylet's threads to stop")
        status, reason = get(pair.url(1), timeout=1.0)
        assert status == 0, f"a SIGSTOPped raylet answered {status}: {reason}"
        check = ["health-check", f"--address={pair.address}", "--node-ip-address=127.0.0.2", "--timeout=1"]
        helpers.wait_until(
            lambda: "no live node at 127.0.0.2" in pair.run_cli(check, pair.node_env(pair.nodes[0], pair.token)).stderr,
            BOUND_S, "the stopped node to be declared dead")
    finally:
        raylet.resume()
    # Resumed, it learns it was declared dead: it answers 503 while it leaves, then nothing.
    seen: list[tuple[int, str]] = []

    def gone() -> bool:
        seen.append(get(pair.url(1), timeout=1.0))
        return seen[-1][0] == 0
    helpers.wait_until(gone, BOUND_S, "the dead node's endpoint to close")
    assert all(status in (0, 503) for status, _ in seen[1:]), seen
    # Until its first heartbeat after SIGCONT is answered (with the rejection), the node can only say that the
    # GCS has been silent; after that, that it is leaving. Either way it is unhealthy, and says why.
    assert all("leaving the cluster" in body or "has not answered for" in body
               for status, body in seen if status == 503), seen
    pair.nodes[1].stopped = True  # it left on its own: nothing for `kray stop` to stop
    assert get(pair.url(0))[0] == 200


def test_a_killed_node_refuses_probes(pair: HealthCluster) -> None:
    pair.kill_node(1)  # SIGKILL: its raylet and workers
    status, reason = get(pair.url(1))
    # Refused, or reset when the kernel had queued the connection before the process died: no answer either way.
    assert status == 0 and ("refused" in reason.lower() or "reset" in reason.lower()), (status, reason)
    done = pair.run_cli(["health-check", "--node-ip-address=127.0.0.2",
                         f"--dashboard-agent-listen-port={pair.health_ports[1]}"], pair.node_env(pair.nodes[0], None))
    assert done.returncode == 1 and "did not answer" in done.stderr, done


def test_an_explicit_health_port_that_is_taken_fails_start(tmp_path: Path) -> None:
    cluster = MultiNodeCluster(tmp_path, num_nodes=0)
    node = cluster._new_node(None, None, "127.0.0.1")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = cluster.run_cli(["start", "--head", "--node-ip-address=127.0.0.1", f"--port={multinode.free_port()}",
                                  f"--dashboard-agent-listen-port={port}"], cluster.node_env(node, None))
    assert result.returncode != 0
    assert "--dashboard-agent-listen-port" in result.stderr and str(port) in result.stderr
    assert node.address_file() is None
