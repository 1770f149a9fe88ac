"""models: the samples parse; bad specs fail with messages that say what to fix."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest
from kray_operator import models


def error_of(model: Any, doc: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate(doc)
    return models.describe_error(info.value)


def test_sample_cluster_parses_with_kuberay_defaults(cluster: models.RayCluster) -> None:
    group = cluster.spec.worker_group_specs[0]
    assert cluster.metadata.name == "raycluster-sample" and cluster.metadata.namespace == "ns1"
    assert group.group_name == "small" and group.replicas == 1 and group.max_replicas == 3
    assert group.num_of_hosts == 1 and group.scale_strategy.workers_to_delete == []
    assert cluster.spec.head_group_spec.template.spec.containers[0].resources.limits["cpu"] == "1"
    assert cluster.spec.group("small") is group and cluster.spec.group("nope") is None


def test_defaults_when_fields_are_left_out() -> None:
    group = models.WorkerGroupSpec.model_validate(
        {"groupName": "g", "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
    )
    assert (group.replicas, group.min_replicas, group.max_replicas) == (None, 0, models.MAX_INT32)
    assert group.ray_start_params == {}


def test_python_names_are_accepted_too() -> None:
    group = models.WorkerGroupSpec(
        group_name="g", min_replicas=1, max_replicas=2,
        template=models.PodTemplateSpec(spec=models.PodSpec(containers=[models.Container(name="c", image="i")])),
    )
    assert group.to_manifest()["minReplicas"] == 1


def test_manifest_round_trips(cluster_doc: dict[str, Any]) -> None:
    spec = models.RayClusterSpec.model_validate(cluster_doc["spec"])
    assert spec.to_manifest() == cluster_doc["spec"]


def test_unknown_template_fields_are_kept(cluster_doc: dict[str, Any]) -> None:
    spec = models.RayClusterSpec.model_validate(cluster_doc["spec"])
    template = spec.head_group_spec.template.to_manifest()
    assert template["spec"]["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert template["spec"]["containers"][0]["volumeMounts"] == [{"name": "shm", "mountPath": "/dev/shm"}]


def test_min_greater_than_max_says_what_to_change(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["workerGroupSpecs"][0].update(minReplicas=5, maxReplicas=2)
    message = error_of(models.RayCluster, cluster_doc)
    assert "minReplicas (5) is greater than maxReplicas (2)" in message
    assert "lower minReplicas or raise maxReplicas" in message
    assert message.startswith("spec.workerGroupSpecs[0]")


@pytest.mark.parametrize("field", ["replicas", "minReplicas", "maxReplicas"])
def test_negative_replicas(cluster_doc: dict[str, Any], field: str) -> None:
    cluster_doc["spec"]["workerGroupSpecs"][0][field] = -1
    message = error_of(models.RayCluster, cluster_doc)
    assert f"spec.workerGroupSpecs[0].{field}" in message and "greater than or equal to 0" in message


def test_duplicate_group_names(cluster_doc: dict[str, Any]) -> None:
    groups = cluster_doc["spec"]["workerGroupSpecs"]
    groups.append(copy.deepcopy(groups[0]))
    assert "duplicate groupName ['small']" in error_of(models.RayCluster, cluster_doc)


@pytest.mark.parametrize("name, expect", [("Big_Group", "must be a DNS label"), ("headgroup", "reserved")])
def test_bad_group_names(cluster_doc: dict[str, Any], name: str, expect: str) -> None:
    cluster_doc["spec"]["workerGroupSpecs"][0]["groupName"] = name
    assert expect in error_of(models.RayCluster, cluster_doc)


def test_unknown_spec_field_is_named(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["workerGroupSpecs"][0]["replica"] = 2
    message = error_of(models.RayCluster, cluster_doc)
    assert message == "spec.workerGroupSpecs[0].replica: unknown field; check its spelling against the CRD (crds/*.yaml)"


def test_ray_start_params_are_strings(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["headGroupSpec"]["rayStartParams"] = {"num-cpus": 0, "block": True, "log-color": "false"}
    params = models.RayCluster.model_validate(cluster_doc).spec.head_group_spec.ray_start_params
    assert params == {"num-cpus": "0", "block": "true", "log-color": "false"}


@pytest.mark.parametrize(
    "params, expect",
    [
        ({"--num-cpus": "1"}, "without dashes, e.g. 'num-cpus'"),
        ({"num cpus": "1"}, "is not a flag name"),
        ({"resources": {"a": 1}}, "must be a string (quote it in YAML)"),
        ({"num-cpus": None}, "give it a value or remove it"),
        (["num-cpus"], "must be a mapping"),
    ],
)
def test_bad_ray_start_params(cluster_doc: dict[str, Any], params: Any, expect: str) -> None:
    cluster_doc["spec"]["headGroupSpec"]["rayStartParams"] = params
    assert expect in error_of(models.RayCluster, cluster_doc)


def test_template_needs_a_container_with_an_image(cluster_doc: dict[str, Any]) -> None:
    head = cluster_doc["spec"]["headGroupSpec"]["template"]["spec"]
    assert "spec.headGroupSpec.template.spec.containers" in error_of(
        models.RayCluster, {**cluster_doc, "spec": {**cluster_doc["spec"], "headGroupSpec": {
            "template": {"spec": {"containers": []}}}}}
    )
    del head["containers"][0]["image"]
    assert "spec.headGroupSpec.template.spec.containers[0].image: Field required" in error_of(models.RayCluster, cluster_doc)


def test_bad_quantity(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "two"
    assert "resource 'cpu' has invalid quantity 'two'; write it like 500m, 2 or 1Gi" in error_of(models.RayCluster, cluster_doc)


def test_status_keeps_kopf_bookkeeping() -> None:
    status = models.RayClusterStatus.model_validate(
        {"state": "ready", "desiredCPU": "2", "head": {"podIP": "1.2.3.4"}, "kopf": {"progress": {}}}
    )
    assert status.desired_cpu == "2" and status.head.pod_ip == "1.2.3.4"
    assert status.model_extra == {"kopf": {"progress": {}}}
