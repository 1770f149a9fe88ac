"""builders.pods: head and worker Pods carry the template, labels, owner, command, env, ports and /dev/shm."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from kray_operator import models
from kray_operator.builders import names, pods


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_head_pod(cluster: models.RayCluster) -> None:
    pod = pods.head_pod(cluster, "abcde")
    meta = pod["metadata"]
    assert meta["name"] == "raycluster-sample-head-abcde" and meta["namespace"] == "ns1"
    assert meta["labels"][names.CLUSTER_LABEL] == "raycluster-sample"
    assert meta["labels"][names.NODE_TYPE_LABEL] == "head"
    assert meta["labels"][names.GROUP_LABEL] == "headgroup"
    assert meta["ownerReferences"] == [{
        "apiVersion": "kray.io/v1", "kind": "RayCluster", "name": "raycluster-sample", "uid": "uid-cluster",
        "controller": True, "blockOwnerDeletion": True,
    }]
    kray = pod["spec"]["containers"][0]
    assert kray["command"] == [
        "kray", "start", "--head", "--block", "--dashboard-host=0.0.0.0", "--memory=1073741824",
        "--metrics-export-port=8080", "--num-cpus=1", "--port=6379",
    ]
    assert "args" not in kray
    kubernetes_validate.validate(pod, "1.35", strict=True)


def test_worker_pod(cluster: models.RayCluster) -> None:
    pod = pods.worker_pod(cluster, "small", "x1y2z")
    assert pod["metadata"]["name"] == "raycluster-sample-small-worker-x1y2z"
    assert pod["metadata"]["labels"][names.NODE_TYPE_LABEL] == "worker"
    assert pod["metadata"]["labels"][names.GROUP_LABEL] == "small"
    command = pod["spec"]["containers"][0]["command"]
    assert command[:3] == ["kray", "start", "--address=raycluster-sample-head-svc.ns1.svc.cluster.local:6379"]
    assert "--block" in command and "--num-cpus=1" in command and "--head" not in command
    kubernetes_validate.validate(pod, "1.35", strict=True)


def test_env_token_address_and_pod_ip(cluster: models.RayCluster) -> None:
    env = env_of(pods.worker_pod(cluster, "small", "a1"))
    assert env["KRAY_CLUSTER_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "raycluster-sample-token", "key": "token"}}
    assert env["KRAY_ADDRESS"]["value"] == "raycluster-sample-head-svc.ns1.svc.cluster.local:6379"
    assert env["KRAY_NODE_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["KRAY_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["KRAY_NODE_GROUP"]["value"] == "small" and env["KRAY_NODE_TYPE"]["value"] == "worker"
    assert env["KRAY_GEN_START_CMD"]["value"].startswith("kray start --address=")


def test_health_check_probes_unless_the_template_has_its_own(cluster_doc: dict[str, Any]) -> None:
    cluster = models.RayCluster.model_validate(cluster_doc)
    for pod in (pods.head_pod(cluster, "a1"), pods.worker_pod(cluster, "small", "a1")):
        kray = pod["spec"]["containers"][0]
        assert kray["readinessProbe"]["exec"] == {"command": ["kray", "health-check"]}
        assert kray["livenessProbe"]["exec"] == {"command": ["kray", "health-check"]}
        assert kray["livenessProbe"]["initialDelaySeconds"] > kray["readinessProbe"]["initialDelaySeconds"]
    own = {"tcpSocket": {"port": 6379}, "periodSeconds": 3}
    cluster_doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["readinessProbe"] = own
    head = pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a1")["spec"]["containers"][0]
    assert head["readinessProbe"] == own and head["livenessProbe"]["exec"]
    kubernetes_validate.validate(pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a1"), "1.35",
                                 strict=True)


def test_template_env_wins(cluster_doc: dict[str, Any]) -> None:
    kray = cluster_doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    kray["env"] = [{"name": "KRAY_ADDRESS", "value": "mine:1"}, {"name": "OTHER", "value": "x"}]
    pod = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a1")
    names_ = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert names_.count("KRAY_ADDRESS") == 1 and env_of(pod)["KRAY_ADDRESS"]["value"] == "mine:1"
    assert names_[:2] == ["KRAY_ADDRESS", "OTHER"]


def test_labels_cannot_be_overridden_but_are_kept(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["headGroupSpec"]["template"]["metadata"] = {
        "labels": {"team": "ml", names.NODE_TYPE_LABEL: "worker", names.CLUSTER_LABEL: "other"},
        "annotations": {"a": "b"},
    }
    pod = pods.head_pod(models.RayCluster.model_validate(cluster_doc), "abc")
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "ml" and labels[names.NODE_TYPE_LABEL] == "head"
    assert labels[names.CLUSTER_LABEL] == "raycluster-sample"
    assert pod["metadata"]["annotations"] == {"a": "b"}


def test_head_ports_added_unless_declared(cluster: models.RayCluster, cluster_doc: dict[str, Any]) -> None:
    head_ports = {p["name"]: p["containerPort"] for p in pods.head_pod(cluster, "a")["spec"]["containers"][0]["ports"]}
    assert head_ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}
    worker_ports = pods.worker_pod(cluster, "small", "a")["spec"]["containers"][0]["ports"]
    assert worker_ports == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]


def test_shm_kept_when_mounted(cluster: models.RayCluster) -> None:
    spec = pods.head_pod(cluster, "a")["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["shm"]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "shm", "mountPath": "/dev/shm"}]


def test_shm_added_sized_to_memory_limit(cluster_doc: dict[str, Any]) -> None:
    spec = cluster_doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    del spec["volumes"]
    del spec["containers"][0]["volumeMounts"]
    pod = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a")
    assert pod["spec"]["volumes"] == [{"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "shared-mem", "mountPath": "/dev/shm"}]


def test_custom_gcs_port_moves_worker_address(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["headGroupSpec"]["rayStartParams"] = {"port": "7000"}
    cluster = models.RayCluster.model_validate(cluster_doc)
    assert "--port=7000" in pods.head_pod(cluster, "a")["spec"]["containers"][0]["command"]
    worker = pods.worker_pod(cluster, "small", "a")["spec"]["containers"][0]["command"]
    assert "--address=raycluster-sample-head-svc.ns1.svc.cluster.local:7000" in worker


def test_user_command_runs_before_kray_start(cluster_doc: dict[str, Any]) -> None:
    kray = cluster_doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    kray["command"] = ["echo", "setup"]
    pod = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a")
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    assert container["args"][0].startswith("echo setup && exec kray start --address=")


def test_overwrite_annotation_keeps_command(cluster_doc: dict[str, Any]) -> None:
    template = cluster_doc["spec"]["headGroupSpec"]["template"]
    template["metadata"] = {"annotations": {names.OVERWRITE_CMD_ANNOTATION: "true"}}
    template["spec"]["containers"][0].update(command=["my-start"], args=["--x"])
    container = pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a")["spec"]["containers"][0]
    assert container["command"] == ["my-start"] and container["args"] == ["--x"]


def test_building_does_not_touch_the_model(cluster: models.RayCluster) -> None:
    before = copy.deepcopy(cluster.model_dump())
    pods.head_pod(cluster, "a")
    pods.worker_pod(cluster, "small", "b")
    assert cluster.model_dump() == before


def test_errors(cluster: models.RayCluster, cluster_doc: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="has no worker group 'gpu'"):
        pods.worker_pod(cluster, "gpu", "a")
    with pytest.raises(ValueError, match="lowercase letters or digits"):
        pods.head_pod(cluster, "NOT_OK")
    cluster_doc["metadata"]["name"] = "x" * 60
    with pytest.raises(names.InvalidNameError, match="use at most 54"):
        pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a")
    cluster_doc["metadata"]["name"] = "9lives"
    with pytest.raises(names.InvalidNameError, match="must start with a lowercase letter"):
        pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a")


def test_long_worker_names_stay_valid_hostnames() -> None:
    name = names.worker_pod_name("c" * 54, "g" * 63, "abcde")
    assert len(name) <= 63 and name.endswith("-worker-abcde")
