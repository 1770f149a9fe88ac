"""The opt-in `ray` compatibility package (compat/): `import ray` is kray, `ray.X` is `kray.X` itself,
an unmodified Ray program runs, and the package refuses to build where Ray is installed.

Runs Python subprocesses with compat/ on their path, and makes a scratch virtualenv.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

from . import helpers

COMPAT = Path(helpers.package_root()).parent / "compat"

UNMODIFIED_RAY_PROGRAM = """
import ray
import ray.util.state
from ray.exceptions import RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
import kray, kray.util.state

assert ray is kray and ray.util.state is kray.util.state and RayTaskError is kray.exceptions.RayTaskError

ray.init(num_cpus=1)

@ray.remote
def double(x):
    return 2 * x

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def add(self):
        self.n += 1
        return self.n

@ray.remote
def node_ip():  # as KubeRay's sample programs tell nodes apart
    return ray._private.services.get_node_ip_address()

ips = set(ray.get([node_ip.remote() for _ in range(3)]))
print("node ips", ips == {ray.util.get_node_ip_address()} == {ray.get_runtime_context().get_node_ip_address()})
counter = Counter.remote()
print("results", ray.get([double.remote(i) for i in range(3)]), ray.get([counter.add.remote() for _ in range(2)]))
try:
    import ray.data
except ModuleNotFoundError as e:
    print("missing:", e)
ray.shutdown()
"""


def _run(code: str, python: str = sys.executable, args: list[str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(COMPAT), helpers.package_root(), env.get("PYTHONPATH")) if p)
    for name in ("KRAY_ADDRESS", "RAY_ADDRESS"):
        env.pop(name, None)
    return subprocess.run([python, "-c", code, *(args or [])], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_an_unmodified_ray_program_runs_on_kray() -> None:
    done = _run(UNMODIFIED_RAY_PROGRAM)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "results [0, 2, 4] [1, 2]" in done.stdout
    assert "node ips True" in done.stdout
    assert "missing: No module named 'ray.data': kray implements Ray Core" in done.stdout


def test_the_package_refuses_to_build_where_ray_is_installed(tmp_path: Path) -> None:
    env_dir = tmp_path / "env-with-ray"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    dist_info = site / "ray-2.60.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ray\nVersion: 2.60.0\n")
    refused = subprocess.run([str(python), str(COMPAT / "setup.py"), "--name"], capture_output=True, text=True,
                             timeout=60, check=False, cwd=COMPAT)
    assert refused.returncode != 0
    assert "refuses to install: Ray 2.60.0 is installed" in refused.stderr, refused.stderr

    (dist_info / "METADATA").unlink()
    dist_info.rmdir()
    probe = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["setup.py"]
        try:
            runpy.run_path({str(COMPAT / "setup.py")!r}, run_name="not_main_so_the_check_alone_runs")
        except ModuleNotFoundError as e:
            print("checked, then needed", e.name)
    """)
    allowed = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert "checked, then needed setuptools" in allowed.stdout, allowed.stdout + allowed.stderr


DOC_STYLE_IMPORTS = """
import sys
import time
import urllib.request
import ray
from ray import cloudpickle
from ray._raylet import ObjectRefGenerator
from ray.util.joblib import register_ray
import joblib

port = int(sys.argv[1])
ray.init(num_cpus=2, _metrics_export_port=port)
deadline = time.monotonic() + 60
while True:  # the node's metrics endpoint, once it serves
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as page:
            print("metrics", b"ray_node_cpu_utilization" in page.read())
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)

@ray.remote
def count(n):
    yield from range(n)

gen = count.remote(2)
print("generator", isinstance(gen, ObjectRefGenerator), [ray.get(r) for r in gen])

ref = ray.put({"hello": "world"})
blob = cloudpickle.dumps(ref)
del ref  # pinned: it was pickled out of band
again = cloudpickle.loads(blob)
print("unpickled", ray.get(again))
ray._private.internal_api.free(again)
try:
    ray.get(again, timeout=30)
except ray.exceptions.ObjectFreedError:
    print("freed")

register_ray()
with joblib.parallel_backend("ray"):
    print("joblib", joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(4)))
print("timeline", isinstance(ray.timeline(), list))
ray.shutdown()
"""


def test_names_rays_documentation_imports_from_private_modules() -> None:
    with socket.socket() as probe:  # a free port for the node's metrics
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _run(DOC_STYLE_IMPORTS, args=[str(port)])
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("metrics True", "generator True [0, 1]", "unpickled {'hello': 'world'}", "freed", "joblib [0, 1, 2, 3]",
                 "timeline True"):
        assert line in done.stdout, done.stdout + done.stderr
