"""Fixtures of the k8s tier: a real control plane (`control_plane`), the kubelet stand-in
(`pod_runner`; `container_pod_runner` runs pods from their image with podman, image_support.py), an API
client (`kube_api`), a throwaway namespace per test (`k8s_namespace`), and the operator watching it
(`kray_operator`, with `clusters` to read and edit its RayClusters and `rayjobs` for RayJobs).

Starts and stops processes, network namespaces and temp dirs (all removed at session end; logs are
kept when a test failed or KRAY_K8S_KEEP_LOGS is set), and sets KUBECONFIG for the session.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

# controlplane/ and podrunner/ are test-support packages next to this file, not installed ones.
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from controlplane import launcher
from image_support import container_pod_runner, kray_images  # noqa: F401 - container-mode fixtures
from operator_support import Clusters, OperatorProcess
from podrunner import PodRunner
from rayjob_support import rayjobs  # noqa: F401 - the `rayjobs` fixture of the RayJob tests

REPO_ROOT = _HERE.parent.parent
NAMESPACE_READY_TIMEOUT_S = 30.0


def _report(request: pytest.FixtureRequest, line: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def _keep_logs(request: pytest.FixtureRequest) -> bool:
    return bool(request.session.testsfailed) or bool(os.environ.get("KRAY_K8S_KEEP_LOGS"))


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[launcher.ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager with crds/*.yaml applied; KUBECONFIG points at it.

    Fails (never skips) when the binaries are missing: run `make k8s-env`.
    """
    try:
        cp = launcher.ControlPlane(crd_dir=REPO_ROOT / "crds")
    except launcher.MissingBinariesError as e:
        missing = str(e)
    else:
        missing = ""
    if missing:
        pytest.fail(missing, pytrace=False)
    cp.start()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cp.kubeconfig)
    try:
        yield cp
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        keep = _keep_logs(request)
        cp.stop(keep_logs=keep)
        if keep:
            _report(request, f"k8s tier: control-plane and pod logs kept in {cp.log_dir}")


@pytest.fixture(scope="session")
def kube_api(control_plane: launcher.ControlPlane) -> Iterator[client.ApiClient]:
    """A kubernetes ApiClient for the test control plane (admin credentials)."""
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def pod_runner(control_plane: launcher.ControlPlane) -> Iterator[PodRunner]:
    """The kubelet stand-in: runs every pod of the cluster as processes in a network namespace."""
    runner = PodRunner(control_plane.kubeconfig, control_plane.log_dir / "pod-runner").start()
    try:
        yield runner
    finally:
        runner.stop()


@pytest.fixture
def k8s_namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (ready for pods: its default ServiceAccount exists), deleted after the test."""
    core: Any = client.CoreV1Api(kube_api)  # loosely typed: manifests are plain dicts here
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug or 'test'}-{secrets.token_hex(2)}"
    core.create_namespace({"metadata": {"name": name}})
    deadline = time.monotonic() + NAMESPACE_READY_TIMEOUT_S
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def kray_operator(control_plane: launcher.ControlPlane, k8s_namespace: str) -> Iterator[OperatorProcess]:
    """`python -m kray_operator` watching the test's namespace; stopped before the namespace is deleted."""
    op = OperatorProcess(control_plane.kubeconfig, k8s_namespace,
                         control_plane.log_dir / f"operator-{k8s_namespace}.log").start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def clusters(kube_api: client.ApiClient, k8s_namespace: str) -> Clusters:
    """RayCluster, Pod and Event helpers of the test's namespace."""
    return Clusters(kube_api, k8s_namespace)
