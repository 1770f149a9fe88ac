"""What Ray's namespaces documentation does with a cluster started by `ray start --head`: drivers connect with
Ray Client's address (`ray://localhost:10001`), which `kray start --head` serves on its GCS
(--ray-client-server-port), find the cluster's token without being told, keep named detached actors apart by
namespace, and end with `context.disconnect()`. The head and the drivers run as a user runs them, as
processes with a KRAY_TEMP_DIR of their own and a marker that finds (and kills) them afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
from kray.api import runtime

from . import helpers, multinode

TIMEOUT_S = 120.0

DRIVERS = """
import sys
import kray

client = f"ray://localhost:{sys.argv[1]}"


@kray.remote
class Actor:
    pass


with kray.init(client, namespace="colors"):
    Actor.options(name="orange", lifetime="detached").remote()
with kray.init(client, namespace="fruits"):
    try:
        kray.get_actor("orange")
        raise SystemExit("'orange' of namespace 'colors' was found from namespace 'fruits'")
    except ValueError:
        pass
    Actor.options(name="orange", lifetime="detached").remote()  # the name is free in this namespace
    Actor.options(name="watermelon", lifetime="detached").remote()
context = kray.init(client, namespace="colors")
assert kray.get_runtime_context().namespace == "colors"
try:
    kray.get_actor("watermelon")
    raise SystemExit("'watermelon' of namespace 'fruits' was found from namespace 'colors'")
except ValueError:
    pass
kray.get_actor("orange")
kray.get_actor("watermelon", namespace="fruits")
context.disconnect()
assert not kray.is_initialized()
print("namespaces kept apart")
"""


def _env(temp_dir: Path, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KRAY_CLUSTER_TOKEN", "KRAY_ADDRESS", "RAY_ADDRESS", "KRAY_NODE_IP")}
    env["KRAY_TEMP_DIR"] = str(temp_dir)
    env[multinode.MARKER_ENV] = marker
    env["PYTHONPATH"] = os.pathsep.join(p for p in (helpers.package_root(), env.get("PYTHONPATH")) if p)
    return env


def test_drivers_reach_the_head_by_ray_client_address_and_keep_namespaces_apart(tmp_path: Path) -> None:
    temp_dir, marker = tmp_path / "temp", f"doc-ns-{uuid.uuid4().hex[:12]}"
    temp_dir.mkdir()
    client_port = multinode.free_port()
    env = _env(temp_dir, marker)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)

    try:
        head = run(*multinode.kray_cli(), "start", "--head", f"--port={multinode.free_port()}",
                   f"--ray-client-server-port={client_port}", f"--dashboard-port={multinode.free_port()}",
                   "--num-cpus=1", f"--object-store-memory={128 * helpers.MiB}")
        assert head.returncode == 0, head.stdout + head.stderr
        record = json.loads((temp_dir / multinode.ADDRESS_FILE_NAME).read_text())
        assert record["client_address"].endswith(f":{client_port}")
        drivers = run(sys.executable, "-c", DRIVERS, str(client_port))
        assert drivers.returncode == 0 and "namespaces kept apart" in drivers.stdout, drivers.stdout + drivers.stderr
        taken = run(*multinode.kray_cli(), "start", "--head", f"--port={multinode.free_port()}",
                    f"--ray-client-server-port={client_port}")
        assert taken.returncode != 0 and f"port {client_port} on 127.0.0.1 is in use" in taken.stderr, taken.stderr
    finally:
        run(*multinode.kray_cli(), "stop", "--force")
        for proc in multinode.marked_processes(marker):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


def test_a_ray_client_address_without_a_port_means_port_10001() -> None:
    assert runtime._endpoint("ray://head.example") == "tcp://head.example:10001"
    assert runtime._endpoint("ray://head.example:4321") == "tcp://head.example:4321"
    assert runtime._endpoint("head.example") == "tcp://head.example:6379"
