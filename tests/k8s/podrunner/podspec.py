"""A container's environment and argv as the kubelet computes them: env, envFrom, valueFrom, $(VAR).

Pure functions over kubernetes client models; Secrets and ConfigMaps come through the `Lookups` the
caller passes (the runner reads them from the API server). No I/O here.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity as _parse_quantity

# kubernetes.utils is untyped; this is its contract: a quantity ("500m", "2Gi", 3) in, a Decimal out.
parse_quantity: Callable[[object], Decimal] = _parse_quantity


class ConfigError(RuntimeError):
    """The container cannot be configured yet (the kubelet's CreateContainerConfigError)."""


@dataclasses.dataclass(frozen=True)
class Lookups:
    """How to read what a pod refers to; each returns None when the object does not exist."""

    secret: Callable[[str, str], Mapping[str, bytes] | None]
    config_map: Callable[[str, str], Mapping[str, str] | None]


@dataclasses.dataclass(frozen=True)
class PodFacts:
    """Values that fieldRef/resourceFieldRef can point at, besides the pod object itself."""

    pod_ip: str
    host_ip: str
    node_cpu: int
    node_memory: int


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known names are replaced, unknown left as is, $$ escapes a $."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR.sub(sub, text)


def secret_data(secret: Any) -> dict[str, bytes]:
    """A V1Secret's data (base64 in the API) and stringData as bytes."""
    out = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    out.update({k: v.encode() for k, v in (getattr(secret, "string_data", None) or {}).items()})
    return out


def config_map_data(cm: Any) -> dict[str, str]:
    """A V1ConfigMap's data plus binaryData decoded as UTF-8 where it can be."""
    out = dict(cm.data or {})
    for k, v in (cm.binary_data or {}).items():
        out[k] = base64.b64decode(v).decode(errors="replace")
    return out


_LABEL_PATH = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Any, path: str, facts: PodFacts) -> str:
    """The value of a downward-API fieldRef (the paths the kubelet supports)."""
    meta, spec = pod.metadata, pod.spec
    simple: dict[str, str | None] = {
        "metadata.name": meta.name, "metadata.namespace": meta.namespace, "metadata.uid": meta.uid,
        "spec.nodeName": spec.node_name, "spec.serviceAccountName": spec.service_account_name,
        "status.hostIP": facts.host_ip, "status.hostIPs": facts.host_ip,
        "status.podIP": facts.pod_ip, "status.podIPs": facts.pod_ip,
    }
    if path in simple:
        return simple[path] or ""
    m = _LABEL_PATH.match(path)
    if m:
        values = (meta.labels if m.group(1) == "labels" else meta.annotations) or {}
        return str(values.get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = (meta.labels if path == "metadata.labels" else meta.annotations) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(container: Any, ref: Any, facts: PodFacts) -> str:
    """A resourceFieldRef: the container's limit or request, the node's capacity when no limit is set."""
    resources = container.resources
    kind, _, name = ref.resource.partition(".")
    table = (resources.limits if kind == "limits" else resources.requests) if resources else None
    raw = (table or {}).get(name)
    if raw is None:
        value = parse_quantity(facts.node_cpu if name == "cpu" else facts.node_memory)
        if kind == "requests":
            value = parse_quantity(0)
    else:
        value = parse_quantity(raw)
    divisor = parse_quantity(ref.divisor or "1")
    return str(math.ceil(value / divisor))


def _ref_value(kind: str, data: Mapping[str, Any] | None, ref: Any) -> str | None:
    if data is None or ref.key not in data:
        if ref.optional:
            return None
        what = "not found" if data is None else f"has no key {ref.key!r}"
        raise ConfigError(f"{kind} {ref.name!r} {what}")
    value = data[ref.key]
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def container_env(pod: Any, container: Any, base: Mapping[str, str], facts: PodFacts,
                  lookups: Lookups) -> dict[str, str]:
    """The container's environment: base (the "image" env), envFrom, then env with $(VAR) expansion."""
    ns = pod.metadata.namespace
    env = dict(base)
    for source in container.env_from or []:
        prefix = source.prefix or ""
        data: Mapping[str, str | bytes] | None
        if source.config_map_ref is not None:
            ref, data = source.config_map_ref, lookups.config_map(ns, source.config_map_ref.name)
        elif source.secret_ref is not None:
            ref, data = source.secret_ref, lookups.secret(ns, source.secret_ref.name)
        else:
            continue
        if data is None:
            if ref.optional:
                continue
            raise ConfigError(f"envFrom {ref.name!r} not found in namespace {ns}")
        for k, v in data.items():
            env[prefix + k] = v.decode(errors="replace") if isinstance(v, bytes) else str(v)
    defined = dict(env)
    for var in container.env or []:
        value: str | None
        if var.value_from is None:
            value = expand(var.value or "", defined)
        elif var.value_from.field_ref is not None:
            value = field_value(pod, var.value_from.field_ref.field_path, facts)
        elif var.value_from.resource_field_ref is not None:
            value = resource_value(container, var.value_from.resource_field_ref, facts)
        elif var.value_from.secret_key_ref is not None:
            ref = var.value_from.secret_key_ref
            value = _ref_value("secret", lookups.secret(ns, ref.name), ref)
        elif var.value_from.config_map_key_ref is not None:
            ref = var.value_from.config_map_key_ref
            value = _ref_value("configmap", lookups.config_map(ns, ref.name), ref)
        else:
            raise ConfigError(f"env {var.name}: unsupported valueFrom")
        if value is not None:
            env[var.name] = value
            defined[var.name] = value
    return env


def container_argv(container: Any, env: Mapping[str, str]) -> list[str]:
    """command + args after $(VAR) expansion; a pod with neither has no image entrypoint to fall back to."""
    argv = [expand(a, env) for a in (container.command or [])]
    argv += [expand(a, env) for a in (container.args or [])]
    if not argv:
        raise ConfigError(f"container {container.name!r} has no command/args (there is no image "
                          "entrypoint in the pod runner)")
    return argv


def fits_node(pod: Any, labels: Mapping[str, str], taints: list[dict[str, str]]) -> bool:
    """Whether a pending pod may be bound to a node: its nodeSelector matches the node's labels and it
    tolerates the node's NoSchedule/NoExecute taints (the scheduler's two simplest filters)."""
    spec = pod.spec
    if any(labels.get(k) != v for k, v in (spec.node_selector or {}).items()):
        return False
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in spec.tolerations or []):
            return False
    return True


def _tolerates(toleration: Any, taint: Mapping[str, str]) -> bool:
    if toleration.effect and toleration.effect != taint.get("effect"):
        return False
    if not toleration.key:  # an empty key with Exists tolerates everything
        return toleration.operator == "Exists"
    if toleration.key != taint.get("key"):
        return False
    return toleration.operator == "Exists" or (toleration.value or "") == taint.get("value", "")
