"""Names, labels, ports and owner references shared by every builder.

Pure functions and constants; no I/O.
"""

from __future__ import annotations

import re
import string

from kray_operator import models

# Label keys (KubeRay's ray.io/* keys, under kray.io); the operator selects by these.
CLUSTER_LABEL = "kray.io/cluster"
NODE_TYPE_LABEL = "kray.io/node-type"
GROUP_LABEL = "kray.io/group"
IS_NODE_LABEL = "kray.io/is-kray-node"
ORIGINATED_FROM_CRD_LABEL = "kray.io/originated-from-crd"
ORIGINATED_FROM_CR_NAME_LABEL = "kray.io/originated-from-cr-name"
# KubeRay's own keys, also set on Pods and Services so `kubectl get pods -l ray.io/cluster=NAME` works.
RAY_CLUSTER_LABEL = "ray.io/cluster"
RAY_NODE_TYPE_LABEL = "ray.io/node-type"
RAY_GROUP_LABEL = "ray.io/group"
RAY_IS_NODE_LABEL = "ray.io/is-ray-node"
RAY_IDENTIFIER_LABEL = "ray.io/identifier"
RAY_REPLICA_INDEX_LABEL = "ray.io/worker-group-replica-index"
# Multi-host groups (numOfHosts > 1), as KubeRay labels them: the replica a Pod belongs to, and its host.
RAY_REPLICA_NAME_LABEL = "ray.io/worker-group-replica-name"
RAY_HOST_INDEX_LABEL = "ray.io/replica-host-index"
APP_NAME_LABEL = "app.kubernetes.io/name"
CREATED_BY_LABEL = "app.kubernetes.io/created-by"
APP_NAME = "kray"
CREATED_BY = "kray-operator"
# Annotation (on the RayCluster or a Pod template): "true" keeps the kray container's own command untouched.
OVERWRITE_CMD_ANNOTATION = "kray.io/overwrite-container-cmd"
RAY_OVERWRITE_CMD_ANNOTATION = "ray.io/overwrite-container-cmd"

HEAD = "head"
WORKER = "worker"
HEAD_GROUP = models.HEAD_GROUP_NAME

# Default ports, as Ray's.
GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001
METRICS_PORT = 8080
# Port name -> (rayStartParams key that moves it, default).
HEAD_PORTS: dict[str, tuple[str, int]] = {
    "gcs-server": ("port", GCS_PORT),
    "dashboard": ("dashboard-port", DASHBOARD_PORT),
    "client": ("ray-client-server-port", CLIENT_PORT),
    "metrics": ("metrics-export-port", METRICS_PORT),
}

TOKEN_KEY = "token"
AUTH_TOKEN_KEY = "auth_token"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
# Longest cluster name whose "<name>-head-svc" is still a valid Service name (63 chars).
MAX_CLUSTER_NAME = 63 - len("-head-svc")
SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class InvalidNameError(ValueError):
    """A resource name the operator cannot build children for."""


def check_cluster_name(name: str) -> None:
    """Raise with advice when `name` cannot prefix the head Service and Pod names."""
    if len(name) > MAX_CLUSTER_NAME:
        raise InvalidNameError(
            f"RayCluster name {name!r} is {len(name)} characters; use at most {MAX_CLUSTER_NAME} so that "
            f"'{name}-head-svc' fits the 63-character limit of Service names"
        )
    if not _DNS_1035.match(name):
        raise InvalidNameError(
            f"RayCluster name {name!r} must start with a lowercase letter and contain only lowercase "
            "letters, digits and '-' (it prefixes a Service name)"
        )


def check_suffix(suffix: str) -> None:
    """Raise unless `suffix` is a short lowercase alphanumeric string, as random Pod suffixes are."""
    if not suffix or len(suffix) > 10 or any(c not in SUFFIX_ALPHABET for c in suffix):
        raise ValueError(f"suffix {suffix!r} must be 1-10 lowercase letters or digits")


def head_service_name(cluster: str) -> str:
    """`<cluster>-head-svc`, the default name of the head Service."""
    return f"{cluster}-head-svc"


def custom_head_service_name(spec: models.RayClusterSpec) -> str | None:
    """headGroupSpec.headService.metadata.name when set (KubeRay names the head Service with it)."""
    overlay = spec.head_group_spec.head_service or {}
    name = (overlay.get("metadata") or {}).get("name")
    return str(name) if name else None


def cluster_head_service_name(cluster: models.RayCluster) -> str:
    """The head Service's name: headService.metadata.name when set, else `<cluster>-head-svc`."""
    return custom_head_service_name(cluster.spec) or head_service_name(cluster.metadata.name)


def check_service_name(name: str) -> None:
    """Raise with advice unless `name` is a valid Service name (a DNS-1035 label)."""
    if len(name) > 63 or not _DNS_1035.match(name):
        raise InvalidNameError(
            f"headService.metadata.name {name!r} is not a valid Service name: at most 63 lowercase "
            "letters, digits and '-', starting with a letter"
        )


def auth_secret_name(cluster: str) -> str:
    """`<cluster>`: KubeRay's Secret of the Ray auth token (key `auth_token`), made with authOptions.mode token."""
    return cluster


def token_secret_name(cluster: str) -> str:
    """`<cluster>-token`: the Secret holding the cluster token under key `token`."""
    return f"{cluster}-token"


def head_pod_name(cluster: str, suffix: str) -> str:
    """`<cluster>-head-<suffix>`."""
    check_suffix(suffix)
    return f"{cluster}-head-{suffix}"


def worker_replica_name(group: str, suffix: str) -> str:
    """`<group>-<suffix>`: a multi-host replica's ray.io/worker-group-replica-name (a 63-char label value)."""
    check_suffix(suffix)
    return f"{group[:62 - len(suffix)].rstrip('-_.')}-{suffix}"


def worker_pod_name(cluster: str, group: str, suffix: str) -> str:
    """`<cluster>-<group>-worker-<suffix>`, trimmed in the middle to stay a valid 63-char hostname."""
    check_suffix(suffix)
    tail = f"-worker-{suffix}"
    prefix = f"{cluster}-{group}"
    room = 63 - len(tail)
    if len(prefix) > room:
        prefix = prefix[:room].rstrip("-")
    return prefix + tail


def service_fqdn(cluster: str, namespace: str, domain: str = DEFAULT_CLUSTER_DOMAIN,
                 service: str | None = None) -> str:
    """The head Service's DNS name, `<service>.<ns>.svc.<domain>` (`service` defaults to `<cluster>-head-svc`)."""
    return f"{service or head_service_name(cluster)}.{namespace}.svc.{domain}"


def head_port(params: dict[str, str], name: str) -> int:
    """The head's port called `name` (see HEAD_PORTS), moved by its rayStartParams key if set."""
    key, default = HEAD_PORTS[name]
    value = params.get(key)
    if value is None:
        return default
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"rayStartParams {key}={value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"rayStartParams {key}={value!r} is not a port number between 1 and 65535")
    return port


def gcs_address(cluster: models.RayCluster, domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """`host:port` of the head's GCS, as workers and drivers in the cluster reach it."""
    params = cluster.spec.head_group_spec.ray_start_params
    host = service_fqdn(cluster.metadata.name, cluster.metadata.namespace, domain, cluster_head_service_name(cluster))
    return f"{host}:{head_port(params, 'gcs-server')}"


def dashboard_address(cluster_name: str, namespace: str, params: dict[str, str],
                      domain: str = DEFAULT_CLUSTER_DOMAIN, service: str | None = None) -> str:
    """`host:port` of the head's dashboard and job API (`service`: a custom head Service name)."""
    return f"{service_fqdn(cluster_name, namespace, domain, service)}:{head_port(params, 'dashboard')}"


def app_labels() -> dict[str, str]:
    """Labels every object made by the operator carries."""
    return {APP_NAME_LABEL: APP_NAME, CREATED_BY_LABEL: CREATED_BY}


def cluster_labels(cluster: str) -> dict[str, str]:
    """Labels of objects belonging to a cluster (Service, Secret)."""
    return {CLUSTER_LABEL: cluster, RAY_CLUSTER_LABEL: cluster, **app_labels()}


def identifier(cluster: str, node_type: str) -> str:
    """KubeRay's ray.io/identifier value: `<cluster>-head` or `<cluster>-worker`, cut to a label's 63 chars."""
    return f"{cluster}-{node_type}"[:63].rstrip("-_.")


def node_labels(cluster: str, node_type: str, group: str,
                user_labels: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of a kray Pod: the template's labels, then the operator's (kray.io/* and KubeRay's
    ray.io/*), which users cannot override."""
    labels = dict(user_labels or {})
    labels.update(app_labels())
    labels.update({
        IS_NODE_LABEL: "yes",
        CLUSTER_LABEL: cluster,
        NODE_TYPE_LABEL: node_type,
        GROUP_LABEL: group,
        RAY_IS_NODE_LABEL: "yes",
        RAY_CLUSTER_LABEL: cluster,
        RAY_NODE_TYPE_LABEL: node_type,
        RAY_GROUP_LABEL: group,
        RAY_IDENTIFIER_LABEL: identifier(cluster, node_type),
    })
    return labels


def head_selector(cluster: str) -> dict[str, str]:
    """Label selector of the head Pod."""
    return {CLUSTER_LABEL: cluster, NODE_TYPE_LABEL: HEAD}


def worker_selector(cluster: str, group: str | None = None) -> dict[str, str]:
    """Label selector of a cluster's worker Pods (of one group when given)."""
    selector = {CLUSTER_LABEL: cluster, NODE_TYPE_LABEL: WORKER}
    if group is not None:
        selector[GROUP_LABEL] = group
    return selector


def selector_string(selector: dict[str, str]) -> str:
    """`k=v,k2=v2`, for list calls."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def owner_reference(kind: str, meta: models.ObjectMeta) -> dict[str, object]:
    """An ownerReference making the object with `meta` the controller of a child (for GC)."""
    if not meta.name or not meta.uid:
        raise ValueError(f"{kind} metadata needs a name and a uid to own children (got {meta.name!r}, {meta.uid!r})")
    return {
        "apiVersion": models.API_VERSION,
        "kind": kind,
        "name": meta.name,
        "uid": meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
