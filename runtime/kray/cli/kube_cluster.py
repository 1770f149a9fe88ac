"""A RayCluster manifest used as a cluster file, and what the cluster verbs need from Kubernetes: apply,
wait for ready, the head pod, the cluster token, and a way to reach the head's job API.

Runs `kubectl` (the current kubeconfig and namespace, as kubectl uses them) and opens TCP connections;
`kubectl port-forward` runs as a child process while a verb needs it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import click
import yaml

KUBECTL_TIMEOUT_S = 120.0
# The operator's names (kray_operator.builders.names), fixed by the CRD's contract with its users.
TOKEN_SECRET_SUFFIX, TOKEN_KEY = "-token", "token"
DASHBOARD_PORT = 8265


@dataclasses.dataclass
class ClusterFile:
    """The RayCluster in a cluster file: where it is and what it is called."""

    path: str
    name: str
    namespace: str | None  # None: the current context's namespace

    def ns_args(self) -> list[str]:
        return ["-n", self.namespace] if self.namespace else []


def kubectl(*args: str, check: bool = True, timeout: float = KUBECTL_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run kubectl with the user's kubeconfig; a failure raises a ClickException with kubectl's words."""
    if shutil.which("kubectl") is None:
        raise click.ClickException("kubectl is not installed (or not on PATH); the cluster verbs use it.")
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise click.ClickException(f"kubectl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def load(path: str) -> ClusterFile:
    """The RayCluster of a cluster file (a kray.io/v1 RayCluster manifest; other documents may be beside it)."""
    try:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
    except (OSError, yaml.YAMLError) as e:
        raise click.ClickException(f"cannot read the cluster file {path}: {e}") from None
    clusters = [d for d in documents if isinstance(d, dict) and d.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        raise click.ClickException(f"{path} must hold exactly one RayCluster (it holds {len(clusters)}).")
    cluster = clusters[0]
    if cluster.get("apiVersion") != "kray.io/v1":
        raise click.ClickException(
            f"{path}: apiVersion is {cluster.get('apiVersion')!r}; a kray cluster file is a kray.io/v1 RayCluster "
            "(a KubeRay manifest ports by changing apiVersion: ray.io/v1 to kray.io/v1 and the image).")
    meta = cluster.get("metadata") or {}
    if not meta.get("name"):
        raise click.ClickException(f"{path}: the RayCluster has no metadata.name.")
    return ClusterFile(path, str(meta["name"]), meta.get("namespace"))


def status(cluster: ClusterFile) -> dict[str, Any]:
    done = kubectl("get", "raycluster", cluster.name, *cluster.ns_args(), "-o", "json")
    return dict(json.loads(done.stdout).get("status") or {})


def wait_ready(cluster: ClusterFile, timeout: float) -> dict[str, Any]:
    """The cluster's status once its state is ready; a failed cluster or the timeout raise with the reason."""
    deadline = time.monotonic() + timeout
    while True:
        state = status(cluster)
        if state.get("state") == "ready":
            return state
        if state.get("state") == "failed":
            reasons = [c.get("message", "") for c in state.get("conditions") or [] if c.get("status") == "False"]
            raise click.ClickException(f"RayCluster {cluster.name} failed: {state.get('reason') or reasons}")
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"RayCluster {cluster.name} is not ready after {timeout:g}s (state {state.get('state')!r}); "
                f"see `kubectl describe raycluster {cluster.name}` and its pods' events.")
        time.sleep(1.0)


def head(cluster: ClusterFile) -> dict[str, str]:
    """The ready cluster's head: podName, podIP, serviceName."""
    found = status(cluster).get("head") or {}
    if not found.get("podName"):
        raise click.ClickException(f"RayCluster {cluster.name} has no head pod yet; run `kray up {cluster.path}`.")
    return {k: str(v) for k, v in found.items()}


def token(cluster: ClusterFile) -> str:
    secret = cluster.name + TOKEN_SECRET_SUFFIX
    done = kubectl("get", "secret", secret, *cluster.ns_args(), "-o", f"jsonpath={{.data.{TOKEN_KEY}}}")
    return base64.b64decode(done.stdout.strip()).decode()


def dashboard_port(cluster: ClusterFile) -> int:
    endpoints = status(cluster).get("endpoints") or {}
    return int(endpoints.get("dashboard", DASHBOARD_PORT))


def _reachable(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1.0):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def job_api(cluster: ClusterFile) -> Iterator[str]:
    """The head's job API as an http:// URL: the pod IP when this machine can reach it (inside the
    cluster's network), else a `kubectl port-forward` to the head Service for as long as it is needed."""
    where, port = head(cluster), dashboard_port(cluster)
    if where.get("podIP") and _reachable(where["podIP"], port):
        yield f"http://{where['podIP']}:{port}"
        return
    with port_forward(cluster, where.get("serviceName") or f"{cluster.name}-head-svc", 0, port) as local:
        yield f"http://127.0.0.1:{local}"


@contextlib.contextmanager
def port_forward(cluster: ClusterFile, service: str, local_port: int, remote_port: int) -> Iterator[int]:
    """`kubectl port-forward svc/SERVICE LOCAL:REMOTE` while the block runs; yields the local port."""
    proc = subprocess.Popen(
        ["kubectl", "port-forward", *cluster.ns_args(), f"svc/{service}", f"{local_port or ''}:{remote_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""  # "Forwarding from 127.0.0.1:PORT -> REMOTE"
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            raise click.ClickException(f"kubectl port-forward to svc/{service} failed: {line.strip()} {err.strip()}")
        yield int(match.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
