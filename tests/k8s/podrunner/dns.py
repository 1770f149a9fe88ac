"""Cluster DNS as per-pod hosts files: which names resolve to which pod IPs.

Pure functions over small typed views of Services and pods; no I/O (network.py writes the files).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

CLUSTER_DOMAIN = "cluster.local"


@dataclasses.dataclass(frozen=True)
class ServiceView:
    """What name resolution needs from a Service."""

    namespace: str
    name: str
    selector: Mapping[str, str]
    publish_not_ready: bool = False

    @classmethod
    def from_api(cls, svc: Any) -> ServiceView | None:
        """From a kubernetes V1Service; None for Services that no pod can back (no selector, ExternalName)."""
        meta, spec = svc.metadata, svc.spec
        if spec is None or not spec.selector or spec.type == "ExternalName":
            return None
        return cls(namespace=meta.namespace, name=meta.name, selector=dict(spec.selector),
                   publish_not_ready=bool(spec.publish_not_ready_addresses))


@dataclasses.dataclass(frozen=True)
class PodView:
    """What name resolution needs from a pod this runner runs."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str
    ready: bool
    running: bool
    hostname: str
    subdomain: str | None = None
    created: float = 0.0


def service_names(svc: ServiceView, from_namespace: str) -> list[str]:
    """The names a pod in `from_namespace` can use for `svc`, as cluster DNS plus search paths allow."""
    fq = [f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc",
          f"{svc.name}.{svc.namespace}.svc.{CLUSTER_DOMAIN}"]
    return ([svc.name] if svc.namespace == from_namespace else []) + fq


def backends(svc: ServiceView, pods: Iterable[PodView]) -> list[PodView]:
    """Pods that back `svc`: selector matches, and ready (or merely running if it publishes not-ready)."""
    chosen = [
        p for p in pods
        if p.namespace == svc.namespace and p.ip
        and all(p.labels.get(k) == v for k, v in svc.selector.items())
        and (p.ready or (svc.publish_not_ready and p.running))
    ]
    return sorted(chosen, key=lambda p: (p.created, p.name))


def hosts_file(me: PodView, services: Iterable[ServiceView], pods: Iterable[PodView]) -> str:
    """The /etc/hosts a pod sees: localhost, its own hostname, then one line per (IP, service names)."""
    pods = list(pods)
    hostname = me.hostname
    own = [hostname]
    if me.subdomain:
        base = f"{hostname}.{me.subdomain}.{me.namespace}.svc"
        own = [f"{base}.{CLUSTER_DOMAIN}", base, hostname]
    lines = [
        "# Kubernetes-managed hosts file (kray pod runner: cluster DNS stand-in).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if me.ip:
        lines.append(f"{me.ip}\t{' '.join(own)}")
    names_by_ip: dict[str, list[str]] = {}
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        for pod in backends(svc, pods):
            names_by_ip.setdefault(pod.ip, []).extend(service_names(svc, me.namespace))
    # A headless Service also names each of its pods that sets hostname+subdomain.
    for pod in pods:
        is_me = (pod.namespace, pod.name) == (me.namespace, me.name)
        if pod.subdomain and pod.ip and (pod.ready or pod.running) and not is_me:
            base = f"{pod.hostname}.{pod.subdomain}.{pod.namespace}.svc"
            names_by_ip.setdefault(pod.ip, []).extend([f"{base}.{CLUSTER_DOMAIN}", base])
    for ip, names in names_by_ip.items():
        unique = list(dict.fromkeys(names))
        lines.append(f"{ip}\t{' '.join(unique)}")
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str) -> str:
    """A resolv.conf with the cluster search path; queries fail fast (nothing answers on 127.0.0.1:53)."""
    search = f"{namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
    return f"search {search}\nnameserver 127.0.0.1\noptions ndots:5 timeout:1 attempts:1\n"


def pod_hostname(name: str, hostname: str | None) -> str:
    """The pod's hostname: spec.hostname, else the pod name cut to 63 characters as the kubelet does."""
    return (hostname or name)[:63].rstrip("-.")
