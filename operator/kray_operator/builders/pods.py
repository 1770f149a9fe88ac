"""Head and worker Pod manifests of a RayCluster, from its Pod templates.

The template is kept as written; the operator adds labels, the owner reference, the `kray start`
command, environment (address, token, pod IP), default ports, `kray health-check` probes and a
memory-backed /dev/shm.
Pure: the random name suffix is passed in; no I/O.
"""

from __future__ import annotations

import copy
import shlex
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

# Probes of the kray container unless its template has its own: ready once the node is alive in the
# cluster and its raylet answers; restarted when it stays unhealthy for two minutes.
HEALTH_CHECK = ["kray", "health-check"]
READINESS_PROBE = {"exec": {"command": HEALTH_CHECK}, "initialDelaySeconds": 2, "periodSeconds": 5,
                   "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 10}
LIVENESS_PROBE = {"exec": {"command": HEALTH_CHECK}, "initialDelaySeconds": 30, "periodSeconds": 10,
                  "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 12}


def head_pod(cluster: models.RayCluster, suffix: str,
             domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> dict[str, Any]:
    """The head Pod `<cluster>-head-<suffix>`: `kray start --head --block --port=6379 ...`."""
    head = cluster.spec.head_group_spec
    return _pod(cluster, names.HEAD, names.HEAD_GROUP, head.template, head.ray_start_params,
                names.head_pod_name(cluster.metadata.name, suffix), domain)


def worker_pod(cluster: models.RayCluster, group_name: str, suffix: str,
               domain: str = names.DEFAULT_CLUSTER_DOMAIN) -> dict[str, Any]:
    """A worker Pod `<cluster>-<group>-worker-<suffix>`: `kray start --address=<head-svc>:6379 --block ...`."""
    group = cluster.spec.group(group_name)
    if group is None:
        known = [g.group_name for g in cluster.spec.worker_group_specs]
        raise ValueError(f"RayCluster {cluster.metadata.name!r} has no worker group {group_name!r} (groups: {known})")
    return _pod(cluster, names.WORKER, group.group_name, group.template, group.ray_start_params,
                names.worker_pod_name(cluster.metadata.name, group.group_name, suffix), domain)


def _pod(cluster: models.RayCluster, node_type: str, group: str, template: models.PodTemplateSpec,
         params: dict[str, str], pod_name: str, domain: str) -> dict[str, Any]:
    names.check_cluster_name(cluster.metadata.name)
    body = copy.deepcopy(template.to_manifest())
    meta = body.get("metadata") or {}
    spec: dict[str, Any] = body["spec"]
    kray_model = template.spec.containers[0]
    kray = spec["containers"][0]

    address = names.gcs_address(cluster, domain)
    effective = command.effective_params(
        node_type, params, kray_model.resources, head_address=None if node_type == names.HEAD else address
    )
    start = command.start_argv(node_type, effective)
    overwrite = str(template.metadata.annotations.get(names.OVERWRITE_CMD_ANNOTATION, "")).lower() == "true"
    generated = command.container_command(kray_model, start, overwrite)
    if generated is not None:
        kray["command"] = generated["command"]
        if generated["args"]:
            kray["args"] = generated["args"]
        else:
            kray.pop("args", None)

    _add_env(kray, _kray_env(cluster, node_type, group, address, start))
    _add_ports(kray, _default_ports(node_type, effective))
    kray.setdefault("readinessProbe", copy.deepcopy(READINESS_PROBE))
    kray.setdefault("livenessProbe", copy.deepcopy(LIVENESS_PROBE))
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


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _kray_env(cluster: models.RayCluster, node_type: str, group: str, address: str,
              start: list[str]) -> list[dict[str, Any]]:
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
        {"name": ENV_GEN_START_CMD, "value": shlex.join(start)},
    ]


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
            return str(value)
    return None
