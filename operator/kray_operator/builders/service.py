"""The head Service of a RayCluster: `<cluster>-head-svc`, or headService.metadata.name when set, with the
GCS, dashboard/job API, client and metrics ports.

Unset or ClusterIP serviceType gives a headless Service (the name resolves to the head Pod's IP,
published before the Pod is ready so workers can start joining). Pure; no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

from kray_operator import models
from kray_operator.builders import names


def head_service(cluster: models.RayCluster) -> dict[str, Any]:
    """The head Service manifest, owned by the RayCluster.

    headGroupSpec.headService (a Service) is merged in, as KubeRay does: its name names the Service,
    its labels and annotations are added, its spec fields kept, except the selector, which always picks
    this cluster's head Pod; the default named ports are appended to its ports unless a port of the
    same name or number is there already.
    """
    name = cluster.metadata.name
    names.check_cluster_name(name)
    service_name = names.cluster_head_service_name(cluster)
    names.check_service_name(service_name)
    head = cluster.spec.head_group_spec
    overlay = copy.deepcopy(head.head_service or {})
    overlay_meta = overlay.get("metadata") or {}
    spec: dict[str, Any] = dict(overlay.get("spec") or {})

    spec["selector"] = names.head_selector(name)
    spec["ports"] = _append_missing(list(spec.get("ports") or []),
                                    service_ports(head.ray_start_params, head.template))
    service_type = spec.get("type") or head.service_type or "ClusterIP"
    spec["type"] = service_type
    if service_type == "ClusterIP" and "clusterIP" not in spec:
        spec["clusterIP"] = "None"
    if spec.get("clusterIP") == "None":
        spec.setdefault("publishNotReadyAddresses", True)

    labels = dict(overlay_meta.get("labels") or {})
    labels.update(names.cluster_labels(name))
    labels[names.NODE_TYPE_LABEL] = names.HEAD
    labels[names.RAY_NODE_TYPE_LABEL] = names.HEAD
    labels[names.RAY_IDENTIFIER_LABEL] = names.identifier(name, names.HEAD)
    annotations = dict(overlay_meta.get("annotations") or {})
    annotations.update(cluster.spec.head_service_annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name,
            "namespace": cluster.metadata.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [names.owner_reference("RayCluster", cluster.metadata)],
        },
        "spec": spec,
    }


def _append_missing(ports: list[dict[str, Any]], defaults: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user's ports, then each default port whose name and number are both still free."""
    taken_names = {p.get("name") for p in ports}
    taken_numbers = {p.get("port") for p in ports}
    return ports + [p for p in defaults if p["name"] not in taken_names and p["port"] not in taken_numbers]


def service_ports(params: dict[str, str], template: models.PodTemplateSpec) -> list[dict[str, Any]]:
    """Default ports (moved by rayStartParams), then named ports the kray container adds."""
    ports: dict[str, int] = {port: names.head_port(params, port) for port in names.HEAD_PORTS}
    for declared in template.spec.containers[0].ports or []:
        port_name = declared.get("name")
        number = declared.get("containerPort")
        if port_name and isinstance(number, int) and port_name not in ports and number not in ports.values():
            ports[port_name] = number
    return [
        {"name": port_name, "port": number, "targetPort": number, "protocol": "TCP"}
        for port_name, number in ports.items()
    ]


def endpoints(service: dict[str, Any]) -> dict[str, str]:
    """Port numbers by name, as RayCluster .status.endpoints shows them."""
    return {p["name"]: str(p["port"]) for p in service.get("spec", {}).get("ports", []) if p.get("name")}
