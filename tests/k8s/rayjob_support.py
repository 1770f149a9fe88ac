"""Test support for the RayJob k8s tests: RayJob, submitter Job and RayCluster calls of one namespace,
light RayJob manifests made from the sample, kubectl, and the job API of a cluster's head.

Talks to the test API server and, over HTTP, to job servers in pods; starts kubectl processes.
"""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kray.job_submission import JobSubmissionClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_support import OperatorProcess, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
JOB_SAMPLE = REPO_ROOT / "crds" / "samples" / "rayjob.yaml"
GROUP, VERSION = "kray.io", "v1"
CLEANUP_TIMEOUT_S = 60.0


def kubectl(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the test control plane (KUBECONFIG is set by the control_plane fixture)."""
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ))
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stdout}{done.stderr}"
    return done


def job_manifest(namespace: str, name: str, *, workers: bool = False, **spec: Any) -> dict[str, Any]:
    """crds/samples/rayjob.yaml renamed, with `spec` merged in (a key set to None is removed); without
    workers unless asked, so that a test's cluster is one head Pod."""
    body = copy.deepcopy(yaml.safe_load(JOB_SAMPLE.read_text()))
    body["metadata"] = {"name": name, "namespace": namespace}
    if not workers:
        body["spec"]["rayClusterSpec"]["workerGroupSpecs"] = []
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


class RayJobs:
    """RayJob, RayCluster, batch Job and Event calls of one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str, operator: OperatorProcess) -> None:
        self.custom: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)
        self.batch: Any = client.BatchV1Api(api)
        self.namespace = namespace
        self.operator = operator

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "rayjobs", body)
        return result

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "rayjobs", name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return result

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.get(name) or {}).get("status") or {})

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, "rayjobs", name, {"spec": spec})

    def wait(self, name: str, timeout: float, what: str, **expected: Any) -> dict[str, Any]:
        """Wait until every `expected` status field has its value; returns the status."""
        def check() -> dict[str, Any]:
            status = self.status(name)
            return status if all(status.get(k) == v for k, v in expected.items()) else {}

        try:
            return wait_for(check, timeout, what, self.operator)
        except AssertionError as e:
            raise AssertionError(f"{e}\nRayJob status: {self.status(name)}") from None

    def cluster(self, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "rayclusters", name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return result

    def clusters_of(self, job: str) -> list[dict[str, Any]]:
        """RayClusters created for the RayJob `job` (by their originated-from label), deleted ones excluded."""
        items = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "rayclusters",
            label_selector=f"ray.io/originated-from-cr-name={job}")["items"]
        return [c for c in items if not c["metadata"].get("deletionTimestamp")]

    def batch_job(self, name: str) -> Any:
        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def submitter_pods(self, job: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}").items
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp)

    def events(self, reason: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(self.namespace).items
                if e.reason == reason and e.involved_object.kind == "RayJob"]

    def job_client(self, cluster: str) -> JobSubmissionClient:
        """kray's own JobSubmissionClient for the cluster's head (its Pod IP, with the cluster token)."""
        status = (self.cluster(cluster) or {}).get("status") or {}
        pod_ip = (status.get("head") or {}).get("podIP")
        assert pod_ip, f"RayCluster {cluster} has no head Pod IP: {status}"
        secret = self.core.read_namespaced_secret(f"{cluster}-token", self.namespace)
        token = base64.b64decode(secret.data["token"]).decode()
        return JobSubmissionClient(f"http://{pod_ip}:8265", headers={"Authorization": f"Bearer {token}"})

    def delete_all(self) -> None:
        """Delete every RayJob of the namespace and wait until they are gone (their finalizer needs the
        operator, so this runs before the operator stops)."""
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "rayjobs")["items"]
        for item in items:
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "rayjobs",
                                                            item["metadata"]["name"])
            except ApiException as e:
                if e.status != 404:
                    raise
        deadline = time.monotonic() + CLEANUP_TIMEOUT_S
        while time.monotonic() < deadline:
            left = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "rayjobs")["items"]
            if not left:
                return
            time.sleep(0.5)
        raise AssertionError(f"RayJobs still there {CLEANUP_TIMEOUT_S:.0f} s after deletion: "
                             f"{[i['metadata']['name'] for i in left]}")


@pytest.fixture
def rayjobs(kube_api: client.ApiClient, k8s_namespace: str, kray_operator: OperatorProcess,
            pod_runner: Any) -> Iterator[RayJobs]:
    """RayJob helpers, with the pod runner running the pods; every RayJob is deleted (and its finalizer
    handled) before the operator stops."""
    jobs = RayJobs(kube_api, k8s_namespace, kray_operator)
    try:
        yield jobs
    finally:
        jobs.delete_all()
