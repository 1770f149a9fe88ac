"""The k8s tier's control plane itself: reachable, the kray CRDs validate, the garbage collector and
the Job controller run. Needs `make k8s-env`; starts processes through the `control_plane` fixture.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import launcher
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.k8s


def _api(cls: Any, api: client.ApiClient) -> Any:
    """A kubernetes API group client, loosely typed: these tests pass manifests as plain dicts."""
    return cls(api)
REPO_ROOT = Path(__file__).resolve().parents[2]


def _eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def _crd_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text())
                 if d and d.get("kind") == "CustomResourceDefinition"]
    return docs


def _invalid_spec(schema: dict[str, Any]) -> dict[str, Any] | None:
    """A spec that breaks the schema on one top-level field: below a minimum, or a non-boolean."""
    for name, prop in sorted(schema.get("properties", {}).items()):
        if prop.get("type") == "integer" and "minimum" in prop:
            return {name: int(prop["minimum"]) - 1}
        if prop.get("type") == "boolean":
            return {name: "not-a-boolean"}
    return None


def test_api_server_answers_with_the_pinned_version(control_plane: launcher.ControlPlane,
                                                    kube_api: client.ApiClient) -> None:
    version = _api(client.VersionApi, kube_api).get_code()
    assert version.git_version == launcher.kubernetes_version()
    names = [ns.metadata.name for ns in _api(client.CoreV1Api, kube_api).list_namespace().items]
    assert "default" in names and "kube-system" in names
    assert os.environ["KUBECONFIG"] == str(control_plane.kubeconfig)
    out = subprocess.run(["kubectl", "get", "namespaces", "-o", "name"], check=False, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "namespace/default" in out.stdout


def test_every_crd_in_the_repo_is_established(control_plane: launcher.ControlPlane,
                                              kube_api: client.ApiClient) -> None:
    expected = sorted(d["metadata"]["name"] for d in _crd_docs())
    assert sorted(control_plane.applied_crds) == expected
    ext = _api(client.ApiextensionsV1Api, kube_api)
    for name in expected:
        conditions = {c.type: c.status for c in ext.read_custom_resource_definition(name).status.conditions}
        assert conditions.get("Established") == "True", (name, conditions)


@pytest.mark.parametrize("crd", _crd_docs(), ids=lambda d: d["metadata"]["name"])
def test_crd_schema_rejects_an_invalid_object(crd: dict[str, Any], control_plane: launcher.ControlPlane,
                                              kube_api: client.ApiClient, k8s_namespace: str) -> None:
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    bad = _invalid_spec(spec_schema)
    assert bad is not None, "the CRD's spec has no integer-with-minimum or boolean field to break"
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    body = {"apiVersion": f"{group}/{version['name']}", "kind": crd["spec"]["names"]["kind"],
            "metadata": {"name": "invalid"}, "spec": bad}
    with pytest.raises(ApiException) as err:
        _api(client.CustomObjectsApi, kube_api).create_namespaced_custom_object(
            group, version["name"], k8s_namespace, plural, body)
    assert err.value.status == 422, err.value.body
    field = next(iter(bad))
    assert field in str(err.value.body)


def _owned_config_map(core: Any, namespace: str, owner: dict[str, str]) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "owned", "ownerReferences": [{**owner, "blockOwnerDeletion": True}]}, "data": {"k": "v"}})


def _gone(read: Callable[[], object]) -> bool:
    try:
        read()
        return False
    except ApiException as e:
        return e.status == 404


def test_garbage_collector_deletes_what_a_deleted_config_map_owned(kube_api: client.ApiClient,
                                                                   k8s_namespace: str) -> None:
    core = _api(client.CoreV1Api, kube_api)
    owner = core.create_namespaced_config_map(k8s_namespace, {"metadata": {"name": "owner"}})
    _owned_config_map(core, k8s_namespace, {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                             "uid": owner.metadata.uid})
    core.delete_namespaced_config_map("owner", k8s_namespace)
    _eventually(lambda: _gone(lambda: core.read_namespaced_config_map("owned", k8s_namespace)), 15,
                "owned ConfigMap collected")


def test_garbage_collector_knows_the_kray_crds_from_the_start(control_plane: launcher.ControlPlane,
                                                              kube_api: client.ApiClient,
                                                              k8s_namespace: str) -> None:
    # Applied before the controller-manager started, a CR's dependents go within a second, not 5-21 s.
    if "rayclusters.kray.io" not in control_plane.applied_crds:
        pytest.fail("crds/ has no rayclusters.kray.io CRD")
    objects, core = _api(client.CustomObjectsApi, kube_api), _api(client.CoreV1Api, kube_api)
    cluster = objects.create_namespaced_custom_object("kray.io", "v1", k8s_namespace, "rayclusters", {
        "apiVersion": "kray.io/v1", "kind": "RayCluster", "metadata": {"name": "gc-owner"},
        "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "head", "image": "kray"}]}}}},
    })
    _owned_config_map(core, k8s_namespace, {"apiVersion": "kray.io/v1", "kind": "RayCluster",
                                             "name": "gc-owner", "uid": cluster["metadata"]["uid"]})
    objects.delete_namespaced_custom_object("kray.io", "v1", k8s_namespace, "rayclusters", "gc-owner")
    _eventually(lambda: _gone(lambda: core.read_namespaced_config_map("owned", k8s_namespace)), 4,
                "ConfigMap owned by a RayCluster collected")


def test_a_job_gets_a_pod(kube_api: client.ApiClient, k8s_namespace: str) -> None:
    _api(client.BatchV1Api, kube_api).create_namespaced_job(k8s_namespace, {
        "metadata": {"name": "hello"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "kray", "command": ["true"]}]}}},
    })
    core = _api(client.CoreV1Api, kube_api)
    _eventually(lambda: bool(core.list_namespaced_pod(k8s_namespace, label_selector="job-name=hello").items),
                15, "the Job controller created a Pod")


def test_missing_binaries_fail_with_the_make_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(launcher.MissingBinariesError, match="make k8s-env"):
        launcher.find_binaries()


def test_a_second_control_plane_stops_every_process_and_removes_its_dir(control_plane: launcher.ControlPlane) -> None:
    other = launcher.ControlPlane(crd_dir=None).start()
    pids, workdir = other.pids, other.workdir
    assert set(pids) == set(launcher.BINARIES)
    other.stop()
    assert not workdir.exists()
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} survived stop()"
