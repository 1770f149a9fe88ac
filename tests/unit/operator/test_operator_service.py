"""builders.service and builders.secret: the head Service and the cluster token Secret."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes_validate
import pytest
from kray_operator import models
from kray_operator.builders import names, secret, service


def test_headless_head_service(cluster: models.RayCluster) -> None:
    svc = service.head_service(cluster)
    assert svc["metadata"]["name"] == "raycluster-sample-head-svc"
    assert svc["metadata"]["namespace"] == "ns1"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-cluster"
    spec = svc["spec"]
    assert spec["clusterIP"] == "None" and spec["type"] == "ClusterIP" and spec["publishNotReadyAddresses"]
    assert spec["selector"] == {names.CLUSTER_LABEL: "raycluster-sample", names.NODE_TYPE_LABEL: "head"}
    assert {(p["name"], p["port"]) for p in spec["ports"]} == {
        ("gcs-server", 6379), ("dashboard", 8265), ("client", 10001), ("metrics", 8080)}
    kubernetes_validate.validate(svc, "1.35", strict=True)
    assert service.endpoints(svc) == {"gcs-server": "6379", "dashboard": "8265", "client": "10001", "metrics": "8080"}


def test_service_type_and_moved_ports(cluster_doc: dict[str, Any]) -> None:
    head = cluster_doc["spec"]["headGroupSpec"]
    head.update(serviceType="NodePort", rayStartParams={"dashboard-port": "9000"})
    head["template"]["spec"]["containers"][0]["ports"].append({"name": "serve", "containerPort": 8000})
    cluster_doc["spec"]["headServiceAnnotations"] = {"a": "1"}
    svc = service.head_service(models.RayCluster.model_validate(cluster_doc))
    assert svc["spec"]["type"] == "NodePort" and "clusterIP" not in svc["spec"]
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports["dashboard"] == 9000 and ports["serve"] == 8000
    assert svc["metadata"]["annotations"] == {"a": "1"}


def test_head_service_overlay(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["headGroupSpec"]["headService"] = {
        "metadata": {"labels": {"x": "y"}, "annotations": {"b": "2"}},
        "spec": {"type": "LoadBalancer", "selector": {"wrong": "1"}, "loadBalancerSourceRanges": ["10.0.0.0/8"]},
    }
    svc = service.head_service(models.RayCluster.model_validate(cluster_doc))
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert svc["spec"]["selector"] == names.head_selector("raycluster-sample")
    assert svc["metadata"]["labels"]["x"] == "y" and svc["metadata"]["annotations"] == {"b": "2"}
    kubernetes_validate.validate(svc, "1.35", strict=True)


def test_custom_head_service_name_and_appended_ports(cluster_doc: dict[str, Any]) -> None:
    # KubeRay's custom-head-service sample: the user's ports come first, the default named ports are
    # appended unless a port of that name or number is already there.
    cluster_doc["spec"]["headGroupSpec"]["headService"] = {
        "metadata": {"name": "custom-ray-head"},
        "spec": {"ports": [{"name": "my-app", "port": 7777, "targetPort": 7777},
                           {"name": "dash", "port": 8265, "targetPort": 8265}]},
    }
    cluster = models.RayCluster.model_validate(cluster_doc)
    svc = service.head_service(cluster)
    assert svc["metadata"]["name"] == "custom-ray-head"
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [
        ("my-app", 7777), ("dash", 8265), ("gcs-server", 6379), ("client", 10001), ("metrics", 8080)]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == names.head_selector("raycluster-sample")
    assert names.gcs_address(cluster) == "custom-ray-head.ns1.svc.cluster.local:6379"
    assert names.dashboard_address("raycluster-sample", "ns1", {}, service="custom-ray-head") == \
        "custom-ray-head.ns1.svc.cluster.local:8265"
    kubernetes_validate.validate(svc, "1.35", strict=True)
    cluster_doc["spec"]["headGroupSpec"]["headService"]["metadata"]["name"] = "Not_OK"
    with pytest.raises(names.InvalidNameError, match="headService.metadata.name 'Not_OK'"):
        service.head_service(models.RayCluster.model_validate(cluster_doc))


def test_service_labels_include_kuberay_ones(cluster: models.RayCluster) -> None:
    labels = service.head_service(cluster)["metadata"]["labels"]
    assert labels["ray.io/cluster"] == labels[names.CLUSTER_LABEL] == "raycluster-sample"
    assert labels["ray.io/node-type"] == "head" and labels["ray.io/identifier"] == "raycluster-sample-head"


def test_bad_port_param(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["headGroupSpec"]["rayStartParams"] = {"port": "http"}
    with pytest.raises(ValueError, match="rayStartParams port='http' is not a port number"):
        service.head_service(models.RayCluster.model_validate(cluster_doc))


def test_token_secret(cluster: models.RayCluster) -> None:
    token = "t0ken-" + "x" * 20
    made = secret.token_secret(cluster, token)
    assert made["metadata"]["name"] == "raycluster-sample-token" and made["type"] == "Opaque"
    assert base64.b64decode(made["data"]["token"]).decode() == token
    assert secret.read_token(made) == token
    assert made["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
    kubernetes_validate.validate(made, "1.35", strict=True)
    with pytest.raises(ValueError, match="at least 16 characters"):
        secret.token_secret(cluster, "short")
    with pytest.raises(ValueError, match="has no key 'token'"):
        secret.read_token({"metadata": {"name": "s"}, "data": {}})


def test_auth_secret_is_kuberays(cluster: models.RayCluster) -> None:
    token = "t0ken-" + "x" * 20
    made = secret.auth_secret(cluster, token)
    assert made["metadata"]["name"] == "raycluster-sample"
    assert made["metadata"]["labels"]["ray.io/cluster"] == "raycluster-sample"
    assert secret.read_token(made, names.AUTH_TOKEN_KEY) == token
    kubernetes_validate.validate(made, "1.35", strict=True)


def test_owner_needs_uid(cluster_doc: dict[str, Any]) -> None:
    del cluster_doc["metadata"]["uid"]
    with pytest.raises(ValueError, match="needs a name and a uid"):
        service.head_service(models.RayCluster.model_validate(cluster_doc))
