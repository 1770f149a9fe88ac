"""The cluster verbs with a RayCluster manifest as the cluster file, on the k8s tier: `kray up` waits for
the cluster, `kray get-head-ip` names the head pod's IP, `kray submit` runs a script's folder as a job in
the cluster and exits with its outcome, `--stop` deletes the cluster afterwards.

Runs the operator, pods as processes in network namespaces, and the `kray` CLI as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from operator_support import SAMPLE, Clusters, OperatorProcess, wait_for

pytestmark = pytest.mark.k8s

NAME = "raycluster-sample"
CLI_TIMEOUT_S = 300.0


def _kray(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for name in ("KRAY_ADDRESS", "RAY_ADDRESS", "KRAY_CLUSTER_TOKEN"):
        env.pop(name, None)
    env["KRAY_TEMP_DIR"] = str(cwd / "kray-temp")  # no local cluster record to fall back on
    return subprocess.run([sys.executable, "-c", "from kray.cli.main import main; main()", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def test_up_submit_and_down_with_a_cluster_file(
        kray_operator: OperatorProcess, clusters: Clusters, k8s_namespace: str, pod_runner: object,
        tmp_path: Path) -> None:
    manifest = yaml.safe_load(SAMPLE.read_text())
    manifest["metadata"]["namespace"] = k8s_namespace
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump(manifest))

    up = _kray("up", str(cluster_file), "--timeout", "240", cwd=tmp_path)
    assert up.returncode == 0 and "is ready" in up.stdout, up.stdout + up.stderr
    (head,) = clusters.pods(NAME, "head")
    ip = _kray("get-head-ip", str(cluster_file), cwd=tmp_path)
    assert ip.stdout.strip() == head.status.pod_ip, ip.stdout + ip.stderr

    project = tmp_path / "project"
    project.mkdir()
    (project / "shapes.py").write_text("SIDES = {'triangle': 3, 'square': 4}\n")
    (project / "count.py").write_text(
        "import sys, kray, shapes\n"
        "kray.init()\n"
        "@kray.remote\n"
        "def sides(name):\n"
        "    import shapes\n"
        "    return shapes.SIDES[name]\n"
        "print('total sides', sum(kray.get([sides.remote(n) for n in sys.argv[1:]])))\n")
    done = _kray("submit", "--start", str(cluster_file), str(project / "count.py"), "--", "triangle", "square",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "total sides 7" in done.stdout and "succeeded" in done.stdout

    (project / "broken.py").write_text("raise SystemExit('the input was wrong')\n")
    failed = _kray("submit", "--stop", str(cluster_file), str(project / "broken.py"), cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "the input was wrong" in failed.stdout + failed.stderr
    wait_for(lambda: not clusters.pod_names(NAME, "head"), 120.0, "the cluster's pods to go after --stop",
             kray_operator)
    missing = subprocess.run(["kubectl", "get", "raycluster", NAME, "-n", k8s_namespace], capture_output=True,
                             text=True, timeout=60, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_a_cluster_file_must_be_a_kray_raycluster(tmp_path: Path) -> None:
    manifest = yaml.safe_load(SAMPLE.read_text())
    manifest["apiVersion"] = "ray.io/v1"
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump(manifest))
    done = _kray("up", str(cluster_file), cwd=tmp_path)
    assert done.returncode == 1 and "kray.io/v1" in done.stderr, done.stderr
