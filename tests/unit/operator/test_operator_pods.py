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
    start = ("kray start --head --block --dashboard-host=0.0.0.0 --memory=1073741824 "
             "--metrics-export-port=8080 --num-cpus=1 --port=6379")
    assert kray["command"] == ["/bin/bash", "-c", "--"]
    assert kray["args"] == [f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; exec {start}"]
    assert env_of(pod)["KUBERAY_GEN_RAY_START_CMD"]["value"] == env_of(pod)["KRAY_GEN_START_CMD"]["value"] == start
    kubernetes_validate.validate(pod, "1.35", strict=True)


def test_worker_pod(cluster: models.RayCluster) -> None:
    pod = pods.worker_pod(cluster, "small", "x1y2z")
    assert pod["metadata"]["name"] == "raycluster-sample-small-worker-x1y2z"
    assert pod["metadata"]["labels"][names.NODE_TYPE_LABEL] == "worker"
    assert pod["metadata"]["labels"][names.GROUP_LABEL] == "small"
    line = pod["spec"]["containers"][0]["args"][0]
    assert "; exec kray start --address=raycluster-sample-head-svc.ns1.svc.cluster.local:6379 --block" in line
    assert "--num-cpus=1" in line and "--head" not in line
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


def test_kuberay_env(cluster: models.RayCluster) -> None:
    fqdn = "raycluster-sample-head-svc.ns1.svc.cluster.local"
    head, worker = env_of(pods.head_pod(cluster, "a1")), env_of(pods.worker_pod(cluster, "small", "a1"))
    for env in (head, worker):
        assert env["RAY_CLUSTER_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}
        assert env["RAY_CLUSTER_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert env["RAY_CLOUD_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["RAY_NODE_TYPE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}}
        assert env["RAY_PORT"]["value"] == "6379"
        assert "RAY_AUTH_MODE" not in env and "RAY_AUTH_TOKEN" not in env
    assert head["RAY_ADDRESS"]["value"] == "127.0.0.1:6379" and "FQ_RAY_IP" not in head
    assert worker["RAY_ADDRESS"]["value"] == f"{fqdn}:6379"
    assert worker["FQ_RAY_IP"]["value"] == fqdn and worker["RAY_IP"]["value"] == "raycluster-sample-head-svc"


def test_auth_mode_token_env(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["authOptions"] = {"mode": "token"}
    cluster = models.RayCluster.model_validate(cluster_doc)
    for pod in (pods.head_pod(cluster, "a1"), pods.worker_pod(cluster, "small", "a1")):
        env = env_of(pod)
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "raycluster-sample", "key": "auth_token"}}
        assert env["KRAY_CLUSTER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "raycluster-sample-token"
    cluster_doc["spec"]["authOptions"] = {"mode": "disabled"}
    assert "RAY_AUTH_MODE" not in env_of(pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a1"))


def test_custom_head_service_name_is_the_address(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["headGroupSpec"]["headService"] = {"metadata": {"name": "my-head"}}
    cluster_doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["initContainers"] = [
        {"name": "wait", "image": "busybox", "command": ["true"]}]
    pod = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a1")
    env = env_of(pod)
    assert env["KRAY_ADDRESS"]["value"] == env["RAY_ADDRESS"]["value"] == "my-head.ns1.svc.cluster.local:6379"
    assert "--address=my-head.ns1.svc.cluster.local:6379" in pod["spec"]["containers"][0]["args"][0]
    init_env = {e["name"]: e["value"] for e in pod["spec"]["initContainers"][0]["env"]}
    assert init_env == {"FQ_RAY_IP": "my-head.ns1.svc.cluster.local", "RAY_IP": "my-head"}


def test_unquoted_quantities_become_strings(cluster_doc: dict[str, Any]) -> None:
    spec = cluster_doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    spec["containers"][0]["resources"] = {"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": 0.5}}
    spec["initContainers"] = [{"name": "i", "image": "x", "resources": {"limits": {"cpu": 2}}}]
    spec["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": 1000000}}]
    del spec["containers"][0]["volumeMounts"]
    pod = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a1")
    kray = pod["spec"]["containers"][0]
    assert kray["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "0.5"}}
    assert pod["spec"]["initContainers"][0]["resources"] == {"limits": {"cpu": "2"}}
    assert pod["spec"]["volumes"][0] == {"name": "scratch", "emptyDir": {"sizeLimit": "1000000"}}
    assert kray["args"][0].endswith("--num-cpus=1")
    kubernetes_validate.validate(pod, "1.35", strict=True)


def test_httpget_probes_on_the_health_endpoint_unless_the_template_has_its_own(cluster_doc: dict[str, Any]) -> None:
    cluster = models.RayCluster.model_validate(cluster_doc)
    for pod in (pods.head_pod(cluster, "a1"), pods.worker_pod(cluster, "small", "a1")):
        kray = pod["spec"]["containers"][0]
        for probe in (kray["readinessProbe"], kray["livenessProbe"]):
            assert probe["httpGet"] == {"path": "/api/healthz", "port": 52365}  # Ray's agent port and path
            assert "exec" not in probe  # no process per probe
        assert kray["livenessProbe"]["initialDelaySeconds"] > kray["readinessProbe"]["initialDelaySeconds"]
        kubernetes_validate.validate(pod, "1.35", strict=True)
    own = {"tcpSocket": {"port": 6379}, "periodSeconds": 3}
    cluster_doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["readinessProbe"] = own
    head = pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a1")["spec"]["containers"][0]
    assert head["readinessProbe"] == own and head["livenessProbe"]["httpGet"]
    kubernetes_validate.validate(pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a1"), "1.35",
                                 strict=True)


def test_probes_follow_dashboard_agent_listen_port(cluster_doc: dict[str, Any]) -> None:
    cluster_doc["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"dashboard-agent-listen-port": "9999"}
    worker = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a1")
    kray = worker["spec"]["containers"][0]
    assert kray["readinessProbe"]["httpGet"]["port"] == 9999 and kray["livenessProbe"]["httpGet"]["port"] == 9999
    assert "--dashboard-agent-listen-port=9999" in kray["args"][0]
    cluster_doc["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"dashboard-agent-listen-port": "0"}
    kray = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a1")["spec"]["containers"][0]
    assert kray["readinessProbe"]["exec"] == {"command": ["kray", "health-check"]}  # no endpoint: exec instead
    cluster_doc["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"dashboard-agent-listen-port": "agent"}
    with pytest.raises(ValueError, match="dashboard-agent-listen-port='agent' is not a port number"):
        pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a1")


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


def test_kuberay_labels(cluster: models.RayCluster) -> None:
    head = pods.head_pod(cluster, "a")["metadata"]["labels"]
    worker = pods.worker_pod(cluster, "small", "a")["metadata"]["labels"]
    assert {k: v for k, v in head.items() if k.startswith("ray.io/")} == {
        "ray.io/cluster": "raycluster-sample", "ray.io/node-type": "head", "ray.io/group": "headgroup",
        "ray.io/is-ray-node": "yes", "ray.io/identifier": "raycluster-sample-head"}
    assert {k: v for k, v in worker.items() if k.startswith("ray.io/")} == {
        "ray.io/cluster": "raycluster-sample", "ray.io/node-type": "worker", "ray.io/group": "small",
        "ray.io/is-ray-node": "yes", "ray.io/identifier": "raycluster-sample-worker"}
    assert head["app.kubernetes.io/created-by"] == "kray-operator" and head["app.kubernetes.io/name"] == "kray"
    assert names.RAY_REPLICA_INDEX_LABEL not in worker
    indexed = pods.worker_pod(cluster, "small", "a", replica_index=2)["metadata"]["labels"]
    assert indexed[names.RAY_REPLICA_INDEX_LABEL] == "2"


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
    assert "--port=7000" in pods.head_pod(cluster, "a")["spec"]["containers"][0]["args"][0]
    worker = pods.worker_pod(cluster, "small", "a")
    assert "--address=raycluster-sample-head-svc.ns1.svc.cluster.local:7000" in worker["spec"]["containers"][0]["args"][0]
    assert env_of(worker)["RAY_PORT"]["value"] == "7000"


def test_user_command_runs_before_kray_start(cluster_doc: dict[str, Any]) -> None:
    kray = cluster_doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    kray["command"] = ["echo", "setup"]
    pod = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a")
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["/bin/bash", "-c", "--"]
    assert container["args"][0].startswith(" echo  setup  && ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; "
                                           "exec kray start --address=")


def test_overwrite_annotation_keeps_command(cluster_doc: dict[str, Any]) -> None:
    template = cluster_doc["spec"]["headGroupSpec"]["template"]
    template["metadata"] = {"annotations": {names.OVERWRITE_CMD_ANNOTATION: "true"}}
    template["spec"]["containers"][0].update(command=["my-start"], args=["--x"])
    container = pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a")["spec"]["containers"][0]
    assert container["command"] == ["my-start"] and container["args"] == ["--x"]


def test_kuberay_overwrite_annotation_on_the_cluster(cluster_doc: dict[str, Any]) -> None:
    # KubeRay's overwrite-command sample: the generated line is run from the environment.
    cluster_doc["metadata"]["annotations"] = {names.RAY_OVERWRITE_CMD_ANNOTATION: "true"}
    own = ["/bin/bash", "-c", "--"], ["ulimit -n 65536; echo head; $KUBERAY_GEN_RAY_START_CMD"]
    cluster_doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(command=own[0], args=own[1])
    pod = pods.head_pod(models.RayCluster.model_validate(cluster_doc), "a")
    container = pod["spec"]["containers"][0]
    assert (container["command"], container["args"]) == own
    assert env_of(pod)["KUBERAY_GEN_RAY_START_CMD"]["value"].startswith("kray start --head --block")
    worker = pods.worker_pod(models.RayCluster.model_validate(cluster_doc), "small", "a")
    assert "command" not in worker["spec"]["containers"][0], "no command of its own: the image's runs"


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
