"""`kubectl logs` against pods of the pod runner, through the real API server: the whole log, --tail,
and -f following a running container until it exits (the kubelet API of podrunner/kubelet_api.py).

Starts pods as processes (pod runner fixture) and kubectl processes.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from kubernetes import client
from podrunner import PodRunner
from rayjob_support import kubectl

pytestmark = pytest.mark.k8s

SCRIPT = "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.6)\n"


def test_kubectl_logs_follow_and_tail(pod_runner: PodRunner, kube_api: client.ApiClient, k8s_namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(k8s_namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "kray:test", "command": ["python3", "-c", SCRIPT]}]}})
    pod_runner.wait_for_pod(k8s_namespace, "talker", lambda p: p.status.phase in ("Running", "Succeeded"), 60)
    started = time.monotonic()
    follow = subprocess.run(["kubectl", "logs", "-f", "-n", k8s_namespace, "talker"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.splitlines() == [f"line {i}" for i in range(5)]
    assert time.monotonic() - started < 30, "-f returns when the container exits"
    assert kubectl("logs", "-n", k8s_namespace, "talker", "--tail=2").stdout.splitlines() == ["line 3", "line 4"]
    missing = kubectl("logs", "-n", k8s_namespace, "talker", "-c", "nope", check=False)
    assert missing.returncode != 0 and "nope" in missing.stderr
