"""Head and worker Pod manifests of a RayCluster, from its Pod templates.

The template is kept as written (quantities become strings); the operator adds labels (kray.io/* and
KubeRay's ray.io/*), the owner reference, the `kray start` command, environment (address, token, pod IP,
KubeRay's RAY_* variables), default ports, httpGet probes on the node's health endpoint and a memory-backed /dev/shm.
Pure: the random name suffix is passed in; no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

from kray_operator import models, quantity
from kray_operator.builders import command, names

SHM_VOLUME = "shared-mem"
SHM_PATH = "/dev/shm"
# Where the object store would live instead of /dev/shm; when set, /dev/shm is not added.
PLASMA_DIRECTORY_PARAM = "plasma-directory"

# Environment the kray process reads (see runtime/kray/config.py).
ENV_ADDRESS = "KRAY_ADDRESS"
ENV_TOKEN = "KRAY_CLUSTER_TOKEN"
ENV_CLUSTER_NAME = "KRAY_CLUSTER_NAME"
ENV_CLUSTER_NAMESPACE = "KRAY_CLUSTER_NAMESPACE"
ENV_NODE_TYPE = "KRAY_NODE_TYPE"
ENV_NODE_GROUP = "KRAY_NODE_GROUP"
ENV_POD_NAME = "KRAY_POD_NAME"
ENV_NODE_IP = "KRAY_NODE_IP"
ENV_GEN_START_CMD = "KRAY_GEN_START_CMD"
# KubeRay's variables, for programs and commands written for KubeRay Pods.
KUBERAY_GEN_START_CMD = "KUBERAY_GEN_RAY_START_CMD"
RAY_ADDRESS = "RAY_ADDRESS"
RAY_PORT = "RAY_PORT"
RAY_AUTH_MODE = "RAY_AUTH_MODE"
RAY_AUTH_TOKEN = "RAY_AUTH_TOKEN"
FQ_RAY_IP = "FQ_RAY_IP"
RAY_IP = "RAY_IP"
LOCAL_HOST = "127.0.0.1"

# Probes of the kray container unless its template has its own: httpGet on the raylet's health endpoint,
# at Ray's dashboard agent port and path (as KubeRay's probes for Ray >= 2.53), so the kubelet asks and
# no process starts in the pod. Ready once the node is alive in the cluster and its raylet runs;
# restarted when it stays unhealthy for two minutes. With `dashboard-agent-listen-port: "0"` (no
# endpoint), the probes exec `kray health-check` instead.
HEALTH_PORT_PARAM = "dashboard-agent-listen-port"
DEFAULT_HEALTH_PORT = 52365
HEALTH_PATH = "/api/healthz"
HEALTH_CHECK = ["kray", "health-check"]
READINESS_TIMING = {"initialDelaySeconds": 2, "periodSeconds": 5, "timeoutSeconds": 2, "successThreshold": 1,
                    "failureThreshold": 10}
LIVENESS_TIMING = {"initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5, "successThreshold": 1,
                   "failureThreshold": 12}


def head_pod(cluster: models.RayCluster, suffix: str,
             domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> dict[str, Any]:
    """The head Pod `<cluster>-head-<suffix>`: `kray start --head --block --port=6379 ...`."""
    head = cluster.spec.head_group_spec
    return _pod(cluster, names.HEAD, names.HEAD_GROUP, head.template, head.ray_start_params,
                names.head_pod_name(cluster.metadata.name, suffix), domain)


def worker_pod(cluster: models.RayCluster, group_name: str, suffix: str,
               domain: str = names.DEFAULT_CLUSTER_DOMAIN, replica_index: int | None = None,
               replica_name: str | None = None, host_index: int | None = None) -> dict[str, Any]:
    """A worker Pod `<cluster>-<group>-worker-<suffix>`: `kray start --address=<head-svc>:6379 --block ...`.

    `replica_index` becomes KubeRay's ray.io/worker-group-replica-index label; in a multi-host group
    (numOfHosts > 1) `replica_name` and `host_index` its ray.io/worker-group-replica-name and
    ray.io/replica-host-index labels.
    """
    group = cluster.spec.group(group_name)
    if group is None:
        known = [g.group_name for g in cluster.spec.worker_group_specs]
        raise ValueError(f"RayCluster {cluster.metadata.name!r} has no worker group {group_name!r} (groups: {known})")
    pod = _pod(cluster, names.WORKER, group.group_name, group.template, group.ray_start_params,
               names.worker_pod_name(cluster.metadata.name, group.group_name, suffix), domain)
    labels = pod["metadata"]["labels"]
    if replica_index is not None:
        labels[names.RAY_REPLICA_INDEX_LABEL] = str(replica_index)
    if replica_name is not None and group.num_of_hosts > 1:
        labels[names.RAY_REPLICA_NAME_LABEL] = replica_name
        labels[names.RAY_HOST_INDEX_LABEL] = str(host_index or 0)
    return pod


def overwrites_command(cluster: models.RayCluster, template: models.PodTemplateSpec) -> bool:
    """Whether `ray.io/overwrite-container-cmd` (or kray.io's) is "true" on the RayCluster or the template."""
    keys = (names.RAY_OVERWRITE_CMD_ANNOTATION, names.OVERWRITE_CMD_ANNOTATION)
    tables = (cluster.metadata.annotations, template.metadata.annotations)
    return any(str(table.get(key, "")).lower() == "true" for table in tables for key in keys)


def _pod(cluster: models.RayCluster, node_type: str, group: str, template: models.PodTemplateSpec,
         params: dict[str, str], pod_name: str, domain: str) -> dict[str, Any]:
    names.check_cluster_name(cluster.metadata.name)
    body = copy.deepcopy(template.to_manifest())
    meta = body.get("metadata") or {}
    spec: dict[str, Any] = body["spec"]
    _quantities_as_strings(spec)
    kray_model = template.spec.containers[0]
    kray = spec["containers"][0]

    address = names.gcs_address(cluster, domain)
    effective = command.effective_params(
        node_type, params, kray_model.resources, head_address=None if node_type == names.HEAD else address
    )
    start = command.start_command(node_type, effective, params)
    generated = command.container_command(kray_model, start, overwrites_command(cluster, template))
    if generated is not None:
        kray["command"] = generated["command"]
        kray["args"] = generated["args"]

    _add_env(kray, _kray_env(cluster, node_type, group, address, start))
    _add_env(kray, _kuberay_env(cluster, node_type, address, start, domain))
    if node_type == names.WORKER:
        for init in spec.get("initContainers") or []:
            _add_env(init, _head_ip_env(cluster, domain))
    _add_ports(kray, _default_ports(node_type, effective))
    readiness, liveness = health_probes(effective)
    kray.setdefault("readinessProbe", readiness)
    kray.setdefault("livenessProbe", liveness)
    if PLASMA_DIRECTORY_PARAM not in effective:
        _add_shm(spec, kray, kray_model.resources)

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": cluster.metadata.namespace,
            "labels": names.node_labels(cluster.metadata.name, node_type, group, meta.get("labels")),
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [names.owner_reference("RayCluster", cluster.metadata)],
        },
        "spec": spec,
    }


def health_port(params: dict[str, str]) -> int:
    """The node's health endpoint port: rayStartParams dashboard-agent-listen-port, else Ray's 52365."""
    value = params.get(HEALTH_PORT_PARAM)
    if value is None:
        return DEFAULT_HEALTH_PORT
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"rayStartParams {HEALTH_PORT_PARAM}={value!r} is not a port number") from None
    if not 0 <= port < 65536:
        raise ValueError(f"rayStartParams {HEALTH_PORT_PARAM}={value!r} is not a port number between 0 and 65535")
    return port


def health_probes(params: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(readinessProbe, livenessProbe): httpGet on the health endpoint, or exec probes when it is off."""
    port = health_port(params)
    handler: dict[str, Any] = ({"httpGet": {"path": HEALTH_PATH, "port": port}} if port
                               else {"exec": {"command": list(HEALTH_CHECK)}})
    return {**copy.deepcopy(handler), **READINESS_TIMING}, {**copy.deepcopy(handler), **LIVENESS_TIMING}


def _quantities_as_strings(spec: dict[str, Any]) -> None:
    """Write every resource quantity of a PodSpec as a string (YAML's `cpu: 1` is an integer)."""
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(kind) or []:
            resources = container.get("resources") or {}
            for table in ("limits", "requests"):
                if isinstance(resources.get(table), dict):
                    resources[table] = quantity.strings(resources[table])
    if isinstance(spec.get("overhead"), dict):
        spec["overhead"] = quantity.strings(spec["overhead"])
    pod_resources = spec.get("resources") or {}
    for table in ("limits", "requests"):
        if isinstance(pod_resources.get(table), dict):
            pod_resources[table] = quantity.strings(pod_resources[table])
    for volume in spec.get("volumes") or []:
        empty_dir = volume.get("emptyDir") or {}
        if "sizeLimit" in empty_dir and empty_dir["sizeLimit"] is not None:
            empty_dir["sizeLimit"] = quantity.to_string(empty_dir["sizeLimit"])


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _kray_env(cluster: models.RayCluster, node_type: str, group: str, address: str,
              start: str) -> list[dict[str, Any]]:
    """Environment of the kray container; the template's own variables of the same name win."""
    return [
        {"name": ENV_CLUSTER_NAME, "value": cluster.metadata.name},
        _field_env(ENV_CLUSTER_NAMESPACE, "metadata.namespace"),
        {"name": ENV_NODE_TYPE, "value": node_type},
        {"name": ENV_NODE_GROUP, "value": group},
        _field_env(ENV_POD_NAME, "metadata.name"),
        _field_env(ENV_NODE_IP, "status.podIP"),
        {"name": ENV_ADDRESS, "value": address},
        {
            "name": ENV_TOKEN,
            "valueFrom": {"secretKeyRef": {"name": names.token_secret_name(cluster.metadata.name),
                                           "key": names.TOKEN_KEY}},
        },
        {"name": ENV_GEN_START_CMD, "value": start},
    ]


def _head_ip_env(cluster: models.RayCluster, domain: str) -> list[dict[str, Any]]:
    """FQ_RAY_IP (the head Service's DNS name) and RAY_IP (its short name), as KubeRay sets on workers."""
    service = names.cluster_head_service_name(cluster)
    fqdn = names.service_fqdn(cluster.metadata.name, cluster.metadata.namespace, domain, service)
    return [{"name": FQ_RAY_IP, "value": fqdn}, {"name": RAY_IP, "value": service}]


def _kuberay_env(cluster: models.RayCluster, node_type: str, address: str, start: str,
                 domain: str) -> list[dict[str, Any]]:
    """KubeRay's variables: RAY_CLUSTER_NAME, RAY_CLUSTER_NAMESPACE, RAY_CLOUD_INSTANCE_ID, RAY_NODE_TYPE_NAME
    (fieldRefs), KUBERAY_GEN_RAY_START_CMD, RAY_PORT, RAY_ADDRESS (the head: 127.0.0.1:<port>), FQ_RAY_IP and
    RAY_IP on workers, and with authOptions.mode token RAY_AUTH_MODE and RAY_AUTH_TOKEN."""
    port = str(names.head_port(cluster.spec.head_group_spec.ray_start_params, "gcs-server"))
    env = _head_ip_env(cluster, domain) if node_type == names.WORKER else []
    env += [
        _field_env("RAY_CLUSTER_NAME", f"metadata.labels['{names.RAY_CLUSTER_LABEL}']"),
        _field_env("RAY_CLUSTER_NAMESPACE", "metadata.namespace"),
        _field_env("RAY_CLOUD_INSTANCE_ID", "metadata.name"),
        _field_env("RAY_NODE_TYPE_NAME", f"metadata.labels['{names.RAY_GROUP_LABEL}']"),
        {"name": KUBERAY_GEN_START_CMD, "value": start},
        {"name": RAY_PORT, "value": port},
        {"name": RAY_ADDRESS, "value": f"{LOCAL_HOST}:{port}" if node_type == names.HEAD else address},
    ]
    if cluster.spec.ray_token_auth:
        env += [
            {"name": RAY_AUTH_MODE, "value": models.AuthMode.TOKEN.value},
            {"name": RAY_AUTH_TOKEN, "valueFrom": {"secretKeyRef": {
                "name": names.auth_secret_name(cluster.metadata.name), "key": names.AUTH_TOKEN_KEY}}},
        ]
    return env


def _add_env(container: dict[str, Any], env: list[dict[str, Any]]) -> None:
    current = container.setdefault("env", [])
    present = {item.get("name") for item in current}
    current.extend(item for item in env if item["name"] not in present)


def _default_ports(node_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
    wanted = list(names.HEAD_PORTS) if node_type == names.HEAD else ["metrics"]
    return [{"name": name, "containerPort": names.head_port(params, name)} for name in wanted]


def _add_ports(container: dict[str, Any], ports: list[dict[str, Any]]) -> None:
    """Declare the default ports the template does not already declare (by name or number)."""
    current = container.setdefault("ports", [])
    taken_names = {p.get("name") for p in current}
    taken_numbers = {p.get("containerPort") for p in current}
    for port in ports:
        if port["name"] not in taken_names and port["containerPort"] not in taken_numbers:
            current.append(dict(port, protocol="TCP"))


def _add_shm(spec: dict[str, Any], container: dict[str, Any], resources: models.ResourceRequirements) -> None:
    """Mount a memory-backed emptyDir at /dev/shm (sized to the memory limit) unless one is mounted."""
    mounts = container.setdefault("volumeMounts", [])
    if any(m.get("mountPath") == SHM_PATH for m in mounts):
        return
    volumes = spec.setdefault("volumes", [])
    if not any(v.get("name") == SHM_VOLUME for v in volumes):
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        size = _memory(resources)
        if size is not None:
            empty_dir["sizeLimit"] = size
        volumes.append({"name": SHM_VOLUME, "emptyDir": empty_dir})
    mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})


def _memory(resources: models.ResourceRequirements) -> str | None:
    for table in (resources.limits, resources.requests):
        value = table.get("memory")
        if value is not None and not quantity.is_zero(value):
            return quantity.to_string(value)
    return None
