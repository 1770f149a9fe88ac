"""The Helm charts beyond their defaults: helm/kray-cluster takes a values file written for KubeRay's
`ray-cluster` chart (head, worker, additionalWorkerGroups, common.containerEnv, initContainers,
sidecarContainers, envFrom, service.type ...), and helm/kray-operator's metrics Service, optional
ServiceMonitor, cluster domain and leader-election timing checks. Rendered with `helm template`; every
Pod template is validated as a Pod with kubernetes-validate, the RayCluster against the CRD.

Runs the helm binary that tools/fetch_helm.sh caches outside the clone (the `helm` fixture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_helm import CLUSTER_CHART, K8S_VERSION, OPERATOR_CHART, by_kind, render, run_helm

# Shaped like a values file for KubeRay's ray-cluster chart (its key names), with kray's image.
KUBERAY_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/kray", "tag": "0.1.0", "pullPolicy": "Always"},
    "nameOverride": "kuberay",
    "imagePullSecrets": [{"name": "regcred"}],
    "common": {"containerEnv": [{"name": "COMMON", "value": "1"}]},
    "head": {
        "rayVersion": "2.41.0",
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"idleTimeoutSeconds": 30},
        "labels": {"team": "ml"},
        "annotations": {"note": "head"},
        "serviceAccountName": "ray-head",
        "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": 0},
        "containerEnv": [{"name": "MY_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "envFrom": [{"secretRef": {"name": "my-env-secret"}}],
        "resources": {"limits": {"cpu": 1, "memory": "2G"}, "requests": {"cpu": 1, "memory": "2G"}},
        "nodeSelector": {"pool": "cpu"},
        "tolerations": [{"key": "ray", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}]}}},
        "podSecurityContext": {"fsGroup": 100},
        "securityContext": {"runAsNonRoot": True},
        "volumes": [{"name": "log-volume", "emptyDir": {}}],
        "volumeMounts": [{"mountPath": "/tmp/ray", "name": "log-volume"}],
        "initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
        "sidecarContainers": [{"name": "fluentbit", "image": "fluent/fluent-bit:3.0",
                               "volumeMounts": [{"mountPath": "/tmp/ray", "name": "log-volume"}]}],
        "headService": {"metadata": {"annotations": {"svc": "yes"}}},
    },
    "worker": {
        "groupName": "workergroup", "replicas": 2, "minReplicas": 1, "maxReplicas": 5,
        "rayStartParams": {"resources": '"{\\"custom\\": 1}"'},
        "containerEnv": [{"name": "RAY_DISABLE_DOCKER_CPU_WARNING", "value": "1"}],
        "resources": {"limits": {"cpu": 1, "memory": "1G"}, "requests": {"cpu": "200m", "memory": "1G"}},
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "sidecarContainers": [{"name": "side", "image": "busybox:1.36", "command": ["sleep", "infinity"]}],
    },
    "additionalWorkerGroups": {
        "smallGroup": {"disabled": True, "replicas": 1},
        "gpu-group": {"replicas": 0, "minReplicas": 0, "maxReplicas": 2,
                     "resources": {"limits": {"cpu": 4, "nvidia.com/gpu": 1, "memory": "8G"}},
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
    },
    "service": {"type": "NodePort"},
}


def _render_values(helm: str, chart: Path, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = run_helm(helm, "template", "rel", str(chart), "--namespace", "ml", "--values", str(path)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _as_pod(template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **(template.get("metadata") or {})},
            "spec": template["spec"]}


def test_a_kuberay_ray_cluster_values_file_renders_a_valid_raycluster(helm: str, crd_validate, tmp_path: Path) -> None:
    (cluster,) = _render_values(helm, CLUSTER_CHART, KUBERAY_VALUES, tmp_path)
    assert crd_validate(cluster) == []
    spec = cluster["spec"]
    assert cluster["metadata"]["name"] == "rel-kuberay"
    assert (spec["rayVersion"], spec["enableInTreeAutoscaling"]) == ("2.41.0", True)
    assert spec["autoscalerOptions"] == {"idleTimeoutSeconds": 30}
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "NodePort" and head["headService"]["metadata"]["annotations"] == {"svc": "yes"}
    assert head["rayStartParams"] == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
    pod = head["template"]["spec"]
    (kray, sidecar) = pod["containers"]
    assert [e["name"] for e in kray["env"]] == ["COMMON", "MY_POD_IP"]
    assert kray["envFrom"] == [{"secretRef": {"name": "my-env-secret"}}]
    assert kray["image"] == "registry.example/kray:0.1.0" and kray["imagePullPolicy"] == "Always"
    assert sidecar["name"] == "fluentbit" and pod["initContainers"][0]["name"] == "init"
    assert pod["securityContext"] == {"fsGroup": 100} and kray["securityContext"] == {"runAsNonRoot": True}
    assert pod["serviceAccountName"] == "ray-head" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"mountPath": "/tmp/ray", "name": "log-volume"} in kray["volumeMounts"]
    assert head["template"]["metadata"] == {"labels": {"team": "ml"}, "annotations": {"note": "head"}}

    worker, gpu = spec["workerGroupSpecs"]  # smallGroup is disabled
    assert (worker["groupName"], worker["replicas"], worker["minReplicas"], worker["maxReplicas"]) == (
        "workergroup", 2, 1, 5)
    assert worker["rayStartParams"] == {"resources": '"{\\"custom\\": 1}"'}
    assert [c["name"] for c in worker["template"]["spec"]["containers"]] == ["kray-worker", "side"]
    assert (gpu["groupName"], gpu["replicas"], gpu["maxReplicas"]) == ("gpu-group", 0, 2)
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1

    for template in (head["template"], worker["template"], gpu["template"]):
        kubernetes_validate.validate(_as_pod(template), K8S_VERSION, strict=True)


def test_worker_can_be_disabled_and_lists_still_work(helm: str, crd_validate) -> None:
    (cluster,) = render(helm, CLUSTER_CHART, "worker.disabled=true", "workerGroups[0].groupName=extra",
                        "additionalWorkerGroups.small.replicas=1")
    assert [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]] == ["small", "extra"]
    assert crd_validate(cluster) == []
    (alone,) = render(helm, CLUSTER_CHART, "worker.disabled=true")
    assert "workerGroupSpecs" not in alone["spec"]
    refused = run_helm(helm, "template", "rel", str(CLUSTER_CHART), "--set", "additionalWorkerGroups.bigGroup.replicas=1",
                       ok=False)
    assert refused.returncode != 0 and "additionalWorkerGroups.bigGroup" in refused.stderr and '"biggroup"' in refused.stderr


def test_operator_metrics_service_and_service_monitor(helm: str) -> None:
    docs = render(helm, OPERATOR_CHART, "metrics.serviceMonitor.enabled=true",
                  "metrics.serviceMonitor.labels.release=prom", "clusterDomain=corp.internal")
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics=http://0.0.0.0:8081/metrics" in container["args"]
    assert "--cluster-domain=corp.internal" in container["args"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    service = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "rel-kray-operator-metrics")
    kubernetes_validate.validate(service, K8S_VERSION, strict=True)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    (monitor,) = by_kind(docs, "ServiceMonitor")  # a CRD kind: kubernetes-validate has no schema for it
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kray-system"]}

    plain = render(helm, OPERATOR_CHART)
    assert not by_kind(plain, "ServiceMonitor")
    off = render(helm, OPERATOR_CHART, "metrics.enabled=false")
    assert not any(s["metadata"]["name"].endswith("-metrics") for s in by_kind(off, "Service"))
    args = by_kind(off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--metrics") for a in args)


@pytest.mark.parametrize("sets, message", [
    (("leaderElection.renewDeadlineSeconds=30",), "renewDeadlineSeconds must be less than leaseDurationSeconds"),
    (("leaderElection.retryPeriodSeconds=12",), "retryPeriodSeconds must be less than renewDeadlineSeconds"),
    (("metrics.enabled=false", "metrics.serviceMonitor.enabled=true"), "serviceMonitor.enabled needs metrics.enabled"),
])
def test_operator_chart_refuses_unsafe_values(helm: str, sets: tuple[str, ...], message: str) -> None:
    args = ["template", "rel", str(OPERATOR_CHART)]
    for item in sets:
        args += ["--set", item]
    result = run_helm(helm, *args, ok=False)
    assert result.returncode != 0 and message in result.stderr


def test_chart_leader_election_defaults_match_the_operators() -> None:
    from kray_operator import __main__ as cli

    values = yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text())["leaderElection"]
    args = cli.parse_args(["--leader-elect"]).election
    assert (values["leaseDurationSeconds"], values["renewDeadlineSeconds"], values["retryPeriodSeconds"]) == (
        args.lease_duration_s, args.renew_deadline_s, args.retry_period_s)
    assert values["renewDeadlineSeconds"] < values["leaseDurationSeconds"]


def test_cluster_chart_pod_monitor_scrapes_every_node_it_makes(helm: str) -> None:
    from kray_operator import models
    from kray_operator.builders import pods

    assert not by_kind(render(helm, CLUSTER_CHART), "PodMonitor")  # off by default: no Prometheus CRDs needed
    docs = render(helm, CLUSTER_CHART, "metrics.podMonitor.enabled=true", "metrics.podMonitor.labels.release=prom",
                  "metrics.podMonitor.scrapeTimeout=10s")
    (monitor,) = by_kind(docs, "PodMonitor")  # a CRD kind: kubernetes-validate has no schema for it
    (cluster,) = by_kind(docs, "RayCluster")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kray-system"]}
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    model = models.RayCluster.model_validate({**cluster, "metadata": {**cluster["metadata"], "uid": "u1"}})
    group = model.spec.worker_group_specs[0].group_name
    for pod in (pods.head_pod(model, "abcde"), pods.worker_pod(model, group, "fghij")):
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        ports = pod["spec"]["containers"][0]["ports"]
        assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in ports
