"""The Helm charts: lint, render, validate the output, and keep the chart's CRDs equal to crds/.

Runs the helm binary that tools/fetch_helm.sh caches outside the clone (the fixture fetches it).
"""

from __future__ import annotations

import subprocess
from typing import Any

import crd_helpers
import kubernetes_validate
import pytest
import yaml

OPERATOR_CHART = crd_helpers.ROOT / "helm" / "kray-operator"
CLUSTER_CHART = crd_helpers.ROOT / "helm" / "kray-cluster"
K8S_VERSION = "1.35"


def run_helm(helm: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=120)
    if ok:
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def render(helm: str, chart: Any, *sets: str, namespace: str = "kray-system") -> list[dict[str, Any]]:
    args = ["template", "rel", str(chart), "--namespace", namespace, "--include-crds"]
    for item in sets:
        args += ["--set", item]
    return [d for d in yaml.safe_load_all(run_helm(helm, *args).stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("chart", [OPERATOR_CHART, CLUSTER_CHART], ids=["kray-operator", "kray-cluster"])
def test_lint(helm: str, chart) -> None:
    run_helm(helm, "lint", "--strict", str(chart))


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_chart_crds_are_exact_copies(name: str) -> None:
    chart_copy = OPERATOR_CHART / "crds" / name
    assert chart_copy.read_bytes() == (crd_helpers.CRDS / name).read_bytes(), (
        f"{chart_copy} differs from crds/{name}; run: cp crds/{name} {chart_copy}"
    )
    assert sorted(p.name for p in (OPERATOR_CHART / "crds").iterdir()) == ["raycluster.yaml", "rayjob.yaml"]


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("watch.clusterWide=false", "watch.namespaces={team-a,team-b}", "replicas=2", "logLevel=debug"),
        ("serviceAccount.create=false", "serviceAccount.name=existing", "rbac.create=false"),
    ],
    ids=["cluster-wide", "namespaced", "bring-your-own-sa"],
)
def test_operator_chart_renders_valid_manifests(helm: str, sets) -> None:
    docs = render(helm, OPERATOR_CHART, *sets)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("CustomResourceDefinition") == 2 and kinds.count("Deployment") == 1
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_operator_deployment(helm: str) -> None:
    (deployment,) = by_kind(render(helm, OPERATOR_CHART), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "kray_operator"]
    assert container["args"] == [
        "--liveness=http://0.0.0.0:8080/healthz", "--metrics=http://0.0.0.0:8081/metrics",
        "--cluster-domain=cluster.local", "--leader-elect", "--leader-election-namespace=kray-system",
        "--leader-election-id=rel-kray-operator", "--lease-duration=15", "--renew-deadline=10", "--retry-period=2",
        "--all-namespaces"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert pod["serviceAccountName"] == "rel-kray-operator"
    assert container["image"] == "kray-operator:0.1.0"


def rules_of(doc: dict[str, Any]) -> dict[str, set]:
    out: dict[str, set] = {}
    for rule in doc["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault(f"{group}/{resource}", set()).update(rule["verbs"])
    return out


def test_rbac_is_least_privilege(helm: str) -> None:
    docs = render(helm, OPERATOR_CHART)
    main = next(d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"] == "rel-kray-operator")
    rules = rules_of(main)
    assert rules["kray.io/rayclusters"] >= {"get", "list", "watch", "create", "patch", "delete"}
    assert rules["kray.io/rayclusters/status"] >= {"patch"} and rules["kray.io/rayjobs/status"] >= {"patch"}
    assert rules["kray.io/rayclusters/finalizers"] == {"update"}
    assert rules["/pods"] == {"get", "list", "watch", "create", "delete"}
    assert rules["/secrets"] == {"get", "create", "delete"}
    assert rules["/events"] == {"create", "patch"}
    assert rules["batch/jobs"] >= {"create", "delete", "watch"}
    assert not any("*" in verbs for verbs in rules.values()) and "*" not in str(main["rules"])
    framework = next(d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"].endswith("-framework"))
    assert set(rules_of(framework)) == {"apiextensions.k8s.io/customresourcedefinitions", "/namespaces"}


def test_namespaced_mode_uses_roles(helm: str) -> None:
    docs = render(helm, OPERATOR_CHART, "watch.clusterWide=false", "watch.namespaces={team-a,team-b}")
    docs = [d for d in docs if not d["metadata"]["name"].endswith("-leader-election")]
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "Role")) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["team-a", "team-b"]
    assert [r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")] == ["rel-kray-operator-framework"]
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    default_ns = render(helm, OPERATOR_CHART, "watch.clusterWide=false", "leaderElection.enabled=false", namespace="ops")
    assert [r["metadata"]["namespace"] for r in by_kind(default_ns, "Role")] == ["ops"]


def test_leader_election_role_and_its_absence(helm: str) -> None:
    docs = render(helm, OPERATOR_CHART, namespace="ops")
    (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert role["metadata"]["namespace"] == "ops"
    assert rules_of(role) == {"coordination.k8s.io/leases": {"get", "create", "update"}}
    alone = render(helm, OPERATOR_CHART, "leaderElection.enabled=false")
    (deployment,) = by_kind(alone, "Deployment")
    assert "--leader-elect" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert deployment["spec"]["strategy"]["type"] == "Recreate" and not by_kind(alone, "Role")
    with pytest.raises(AssertionError, match="replicas > 1 needs leaderElection.enabled"):
        render(helm, OPERATOR_CHART, "leaderElection.enabled=false", "replicas=2")


def test_bad_log_level_fails(helm: str) -> None:
    result = run_helm(helm, "template", "rel", str(OPERATOR_CHART), "--set", "logLevel=loud", ok=False)
    assert result.returncode != 0 and "logLevel must be info, verbose or debug" in result.stderr


def test_cluster_chart_renders_a_valid_raycluster(helm: str, crd_validate) -> None:
    (cluster,) = render(helm, CLUSTER_CHART, namespace="ml")
    assert cluster["kind"] == "RayCluster" and cluster["apiVersion"] == "kray.io/v1"
    assert cluster["metadata"] == {**cluster["metadata"], "name": "rel", "namespace": "ml"}
    assert crd_validate(cluster) == []
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}} in head["volumes"]


def test_cluster_chart_values(helm: str, crd_validate) -> None:
    (cluster,) = render(
        helm, CLUSTER_CHART,
        "head.rayStartParams.num-cpus=0", "head.rayStartParams.object-store-memory=1000000000",
        "head.serviceType=NodePort", "enableInTreeAutoscaling=true", "autoscalerOptions.idleTimeoutSeconds=30",
        "worker.disabled=true",
        "workerGroups[0].groupName=cpu", "workerGroups[0].replicas=2", "workerGroups[0].maxReplicas=4",
        "workerGroups[0].shmSize=", "workerGroups[0].idleTimeoutSeconds=10",
        "workerGroups[1].groupName=gpu", "workerGroups[1].minReplicas=1", "workerGroups[1].image.tag=gpu",
    )
    assert crd_validate(cluster) == []
    spec = cluster["spec"]
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0", "object-store-memory": "1000000000"}
    assert spec["headGroupSpec"]["serviceType"] == "NodePort" and spec["enableInTreeAutoscaling"] is True
    cpu, gpu = spec["workerGroupSpecs"]
    assert (cpu["groupName"], cpu["replicas"], cpu["maxReplicas"], cpu["idleTimeoutSeconds"]) == ("cpu", 2, 4, 10)
    assert "volumes" not in cpu["template"]["spec"]
    assert (gpu["groupName"], gpu["minReplicas"], gpu["maxReplicas"]) == ("gpu", 1, 2147483647)
    assert gpu["template"]["spec"]["containers"][0]["image"] == "kray:gpu"


def test_cluster_chart_rejects_bad_names(helm: str) -> None:
    result = run_helm(helm, "template", "rel", str(CLUSTER_CHART), "--set", "fullnameOverride=" + "r" * 55, ok=False)
    assert result.returncode != 0 and "longer than 54 characters" in result.stderr
    result = run_helm(helm, "template", "1st", str(CLUSTER_CHART), ok=False)
    assert result.returncode != 0 and "must start with a letter" in result.stderr
