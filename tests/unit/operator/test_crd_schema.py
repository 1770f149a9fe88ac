"""The CRDs in crds/: valid CRDs, structural, in step with the models; samples validate, bad specs don't."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import crd_helpers
import kubernetes_validate
import pydantic
import pytest
from kray_operator import job_models, models
from kray_operator.builders import jobs, observed, pods, service, status


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_crd_is_a_valid_apiextensions_v1_object(kind: str) -> None:
    crd = crd_helpers.load_yaml(crd_helpers.CRD_FILES[kind])
    kubernetes_validate.validate(crd, "1.35", strict=True)
    spec = crd["spec"]
    assert spec["group"] == "kray.io"
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.kray.io"
    assert spec["names"]["kind"] == kind
    assert spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert version["name"] == "v1" and version["served"] and version["storage"]
    assert version["subresources"]["status"] == {}


def test_names_do_not_clash_with_kuberay() -> None:
    cluster = crd_helpers.load_yaml(crd_helpers.CRD_FILES["RayCluster"])["spec"]["names"]
    job = crd_helpers.load_yaml(crd_helpers.CRD_FILES["RayJob"])["spec"]["names"]
    assert cluster["plural"] == "rayclusters" and job["plural"] == "rayjobs"
    assert not set(cluster["shortNames"]) & set(job["shortNames"])
    assert {"krc", "krj"} <= set(cluster["shortNames"]) | set(job["shortNames"])


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_schema_is_structural(kind: str) -> None:
    """Every node says its type (or is int-or-string), so the API server accepts and prunes by it."""
    for path, node in walk(crd_helpers.crd_schema(kind)):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{kind}{path} has no type"


def test_printer_columns() -> None:
    cluster = crd_helpers.load_yaml(crd_helpers.CRD_FILES["RayCluster"])["spec"]["versions"][0]
    job = crd_helpers.load_yaml(crd_helpers.CRD_FILES["RayJob"])["spec"]["versions"][0]
    cluster_cols = {c["name"]: c["jsonPath"] for c in cluster["additionalPrinterColumns"]}
    job_cols = {c["name"]: c["jsonPath"] for c in job["additionalPrinterColumns"]}
    assert cluster_cols["desired workers"] == ".status.desiredWorkerReplicas"
    assert cluster_cols["available workers"] == ".status.availableWorkerReplicas"
    assert cluster_cols["status"] == ".status.state"
    assert cluster_cols["age"] == ".metadata.creationTimestamp"
    assert job_cols["job status"] == ".status.jobStatus"
    assert job_cols["deployment status"] == ".status.jobDeploymentStatus"
    assert job_cols["start time"] == ".status.startTime" and job_cols["end time"] == ".status.endTime"
    assert job_cols["age"] == ".metadata.creationTimestamp"


def test_rayjob_embeds_the_raycluster_spec() -> None:
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    cluster_spec = crd_helpers.crd_schema("RayCluster")["properties"]["spec"]
    job_cluster_spec = crd_helpers.crd_schema("RayJob")["properties"]["spec"]["properties"]["rayClusterSpec"]
    assert strip(job_cluster_spec) == strip(cluster_spec)
    cluster_status = crd_helpers.crd_schema("RayCluster")["properties"]["status"]
    job_cluster_status = crd_helpers.crd_schema("RayJob")["properties"]["status"]["properties"]["rayClusterStatus"]
    assert strip(job_cluster_status) == strip(cluster_status)


def aliases(model: type[pydantic.BaseModel]) -> set:
    return {field.alias or name for name, field in model.model_fields.items()}


def schema_at(kind: str, path: str) -> dict[str, Any]:
    """The schema node at a dotted path; `[]` steps into list items ("spec.workerGroupSpecs[].scaleStrategy")."""
    node = crd_helpers.crd_schema(kind)
    for part in path.split("."):
        is_list = part.endswith("[]")
        node = node["properties"][part.removesuffix("[]")]
        if is_list:
            node = node["items"]
    return node


@pytest.mark.parametrize(
    "kind, path, model",
    [
        ("RayCluster", "spec", models.RayClusterSpec),
        ("RayCluster", "spec.headGroupSpec", models.HeadGroupSpec),
        ("RayCluster", "spec.workerGroupSpecs[]", models.WorkerGroupSpec),
        ("RayCluster", "spec.workerGroupSpecs[].scaleStrategy", models.ScaleStrategy),
        ("RayCluster", "spec.autoscalerOptions", models.AutoscalerOptions),
        ("RayCluster", "status", models.RayClusterStatus),
        ("RayCluster", "status.head", models.HeadInfo),
        ("RayCluster", "status.conditions[]", models.Condition),
        ("RayJob", "spec", job_models.RayJobSpec),
        ("RayJob", "spec.submitterConfig", job_models.SubmitterConfig),
        ("RayJob", "spec.deletionStrategy", job_models.DeletionStrategy),
        ("RayJob", "spec.deletionStrategy.deletionRules[]", job_models.DeletionRule),
        ("RayJob", "spec.deletionStrategy.deletionRules[].condition", job_models.DeletionCondition),
        ("RayJob", "status", job_models.RayJobStatus),
        ("RayJob", "status.rayJobInfo", job_models.RayJobStatusInfo),
    ],
)
def test_models_and_crd_declare_the_same_fields(kind: str, path: str, model: type[pydantic.BaseModel]) -> None:
    """A field the CRD lacks is pruned by the API server; one the model lacks is rejected by it."""
    declared = set(schema_at(kind, path)["properties"]) - {"kopf"}
    assert declared == aliases(model)


@pytest.mark.parametrize("sample", ["raycluster.yaml", "rayjob.yaml"])
def test_samples_validate(sample: str, crd_validate) -> None:
    doc = crd_helpers.load_yaml(crd_helpers.SAMPLES / sample)
    assert crd_validate(doc) == []


def test_sample_has_shm_and_small_limits() -> None:
    doc = crd_helpers.load_yaml(crd_helpers.SAMPLES / "raycluster.yaml")
    head = doc["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["containers"][0]["image"] == "kray:latest"
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}} in head["volumes"]
    assert len(doc["spec"]["workerGroupSpecs"]) == 1


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is KeyError:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return out


@pytest.mark.parametrize(
    "path, value, expect",
    [
        ("spec.workerGroupSpecs.0.replicas", -1, "minimum of 0"),
        ("spec.workerGroupSpecs.0.minReplicas", -2, "minimum of 0"),
        ("spec.workerGroupSpecs.0.maxReplicas", -1, "minimum of 0"),
        ("spec.workerGroupSpecs.0.numOfHosts", 0, "minimum of 1"),
        ("spec.workerGroupSpecs.0.groupName", "Big_Group", "does not match"),
        ("spec.workerGroupSpecs.0.replica", 2, "Additional properties"),
        ("spec.workerGroupSpecs.0.rayStartParams", {"num-cpus": 1}, "is not of type 'string'"),
        ("spec.headGroupSpec.serviceType", "Ingress", "is not one of"),
        ("spec.headGroupSpec", KeyError, "'headGroupSpec' is a required property"),
        ("spec.headGroupSpec.template.spec.containers", [], "should be non-empty"),
        ("spec.headGroupSpec.template.spec.containers.0.image", KeyError, "'image' is a required property"),
        ("spec.autoscalerOptions", {"upscalingMode": "Fast"}, "is not one of"),
        ("status", {"desiredCPU": "lots"}, "does not match"),
    ],
)
def test_raycluster_schema_rejects(cluster_doc, crd_validate, path: str, value: Any, expect: str) -> None:
    errors = crd_validate(_set(cluster_doc, path, value))
    assert any(expect in e for e in errors), errors


@pytest.mark.parametrize(
    "path, value, expect",
    [
        ("spec.backoffLimit", -1, "minimum of 0"),
        ("spec.activeDeadlineSeconds", 0, "minimum of 1"),
        ("spec.ttlSecondsAfterFinished", -5, "minimum of 0"),
        ("spec.deletionStrategy", {"deletionRules": [{"policy": "DeleteAll", "condition": {"jobStatus": "FAILED"}}]},
         "is not one of"),
        ("spec.deletionStrategy", {"deletionRules": [{"policy": "DeleteSelf", "condition": {"jobStatus": "STOPPED"}}]},
         "is not one of"),
        ("spec.preRunningDeadlineSeconds", 0, "minimum of 1"),
        ("spec.rayClusterSpec.workerGroupSpecs.0.replicas", -1, "minimum of 0"),
        ("spec.entrypointNumCpus", -1, "minimum of 0"),
    ],
)
def test_rayjob_schema_rejects(job_doc, crd_validate, path: str, value: Any, expect: str) -> None:
    errors = crd_validate(_set(job_doc, path, value))
    assert any(expect in e for e in errors), errors


def test_min_le_max_is_a_cel_rule() -> None:
    item = schema_at("RayCluster", "spec.workerGroupSpecs[]")
    rules = [v["rule"] for v in item["x-kubernetes-validations"]]
    assert any("self.minReplicas <= self.maxReplicas" in r for r in rules)


def test_kopf_status_storage_is_declared() -> None:
    for kind in ("RayCluster", "RayJob"):
        kopf = crd_helpers.crd_schema(kind)["properties"]["status"]["properties"]["kopf"]
        assert kopf["x-kubernetes-preserve-unknown-fields"] is True


def test_status_the_operator_writes_is_declared(cluster, crd_validate) -> None:
    """Status written by builders.status passes the CRD, so a structural schema prunes nothing."""
    head = pods.head_pod(cluster, "h0000")
    head["status"] = {"phase": "Running", "podIP": "100.64.0.2", "conditions": [{"type": "Ready", "status": "True"}]}
    head["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    worker = pods.worker_pod(cluster, "small", "w0000")
    views = observed.from_manifests([head, worker])
    written = status.cluster_status(cluster, views, service.head_service(cluster), "2025-01-01T00:00:05Z")
    written = {k: v for k, v in written.items() if v is not None}
    written["head"] = {k: v for k, v in written["head"].items() if v is not None}
    written["kopf"] = {"progress": {"handler": {"retries": 1}}}
    doc = dict(cluster.model_dump(by_alias=True, exclude_none=True, mode="json"), status=written)
    assert crd_validate(doc) == []


def test_rayjob_status_fields_validate(job_doc, crd_validate) -> None:
    job_doc["status"] = {
        "jobId": "j-1", "rayClusterName": "c", "dashboardURL": "c-head-svc.ns1.svc.cluster.local:8265",
        "jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "reason": "AppFailed", "message": "m",
        "startTime": "2025-01-01T00:00:00Z", "endTime": "2025-01-01T00:00:09Z", "succeeded": 0, "failed": 1,
        "observedGeneration": 1, "rayClusterStatus": {"state": "ready", "desiredWorkerReplicas": 1},
    }
    assert crd_validate(job_doc) == []
    parsed = job_models.RayJob.model_validate(job_doc)
    assert parsed.status is not None and parsed.status.dashboard_url.endswith(":8265")


def test_cluster_made_for_a_job_validates(job, crd_validate) -> None:
    assert crd_validate(jobs.ray_cluster(job, jobs.cluster_name(job, "abcde"))) == []


def test_rayjob_crd_is_synced_with_raycluster_and_helm() -> None:
    """tools/sync_crds.py embeds RayCluster's schemas into RayJob's and copies the CRDs to the chart."""
    done = subprocess.run([sys.executable, str(crd_helpers.ROOT / "tools" / "sync_crds.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"run `python tools/sync_crds.py`:\n{done.stdout}{done.stderr}"
