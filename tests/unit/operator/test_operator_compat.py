"""builders.compat: the KubeRay fields kray accepts without acting on them, one line each, naming them."""

from __future__ import annotations

from typing import Any

from kray_operator import models
from kray_operator.builders import compat


def spec(doc: dict[str, Any]) -> models.RayClusterSpec:
    return models.RayCluster.model_validate(doc).spec


def test_the_sample_has_nothing_to_report(cluster_doc: dict[str, Any]) -> None:
    assert compat.notices(spec(cluster_doc)) == []


def test_each_field_without_effect_is_named(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["headGroupSpec"].update(rayStartParams={"num-cpus": "1", "redis-password": "x"},
                                                enableIngress=True)
    cluster_doc["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"temp-dir": "/t", "log-color": "true"}
    cluster_doc["spec"].update(authOptions={"mode": "disabled"}, enableInTreeAutoscaling=True,
                               autoscalerOptions={"version": "v1", "image": "x", "idleTimeoutSeconds": 60},
                               gcsFaultToleranceOptions={"redisAddress": "redis:6379"})
    lines = compat.notices(spec(cluster_doc))
    assert lines[0].startswith("rayStartParams ['redis-password'] of group 'headgroup' have no effect")
    assert lines[1].startswith("rayStartParams ['log-color', 'temp-dir'] of group 'small' have no effect")
    assert "authOptions.mode disabled" in lines[2] and "<cluster>-token" in lines[2]
    assert lines[3].startswith("autoscalerOptions ['image', 'version'] have no effect")
    assert lines[4].startswith("gcsFaultToleranceOptions has no effect")
    assert "enableIngress" in lines[5] and len(lines) == 6


def test_autoscaler_policy_options_need_in_tree_autoscaling(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["autoscalerOptions"] = {"idleTimeoutSeconds": 5, "upscalingMode": "Conservative"}
    assert compat.notices(spec(cluster_doc)) == [
        "autoscalerOptions ['idleTimeoutSeconds', 'upscalingMode'] have no effect without enableInTreeAutoscaling: true"]
    cluster_doc["spec"]["enableInTreeAutoscaling"] = True
    assert compat.notices(spec(cluster_doc)) == []


def test_auth_mode_token_is_honoured_not_reported(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["authOptions"] = {"mode": "token"}
    parsed = spec(cluster_doc)
    assert parsed.ray_token_auth and compat.notices(parsed) == []


def test_the_crd_takes_kuberays_auth_and_autoscaler_version(cluster_doc: dict[str, Any], crd_validate) -> None:
    cluster_doc["spec"].update(authOptions={"mode": "token"}, managedBy="ray.io/kuberay-operator",
                               autoscalerOptions={"version": "v2", "command": ["a"], "args": ["b"]},
                               gcsFaultToleranceOptions={"redisAddress": "redis:6379"})
    assert crd_validate(cluster_doc) == []
    assert compat.notices(spec(cluster_doc))  # and the model takes them too
    cluster_doc["spec"]["managedBy"] = "someone-else"
    assert any("managedBy" in e for e in crd_validate(cluster_doc))
    cluster_doc["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    assert spec(cluster_doc).managed_elsewhere
    cluster_doc["spec"]["authOptions"] = {"mode": "oauth"}
    assert any("authOptions.mode" in e for e in crd_validate(cluster_doc))
    cluster_doc["spec"]["authOptions"] = {"mode": "token", "secretName": "mine"}
    assert any("secretName" in e for e in crd_validate(cluster_doc)), "refused by name, not pruned"
