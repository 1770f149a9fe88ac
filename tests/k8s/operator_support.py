"""Test support for the operator's k8s tests: the operator as a subprocess, RayCluster and Pod helpers,
and a poll-with-deadline helper.

Starts and stops `python -m kray_operator` (by PID) and talks to the test API server.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml
from controlplane import launcher
from kubernetes import client

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = REPO_ROOT / "crds" / "samples" / "raycluster.yaml"
GROUP, VERSION, PLURAL = "kray.io", "v1", "rayclusters"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.2

T = TypeVar("T")


class OperatorProcess:
    """`python -m kray_operator --standalone --namespace=<ns>` against the test control plane."""

    def __init__(self, kubeconfig: Path, namespace: str, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.extra_args = extra_args
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> OperatorProcess:
        """Start it and wait until its liveness endpoint answers (handlers are registered by then)."""
        port = launcher.free_port()
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "kray_operator", "--standalone", f"--namespace={self.namespace}",
             f"--liveness=http://127.0.0.1:{port}/healthz", "--verbose", *self.extra_args],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/healthz"

        def alive() -> bool:
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(f"the operator exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return int(r.status) == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_for(alive, START_TIMEOUT_S, "the operator's liveness endpoint", self)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM lets kopf finish; SIGKILL simulates a crash); waits for the exit."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=STOP_TIMEOUT_S)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def pid(self) -> int:
        assert self.popen is not None, "the operator was not started"
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the operator's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_for(check: Callable[[], T], timeout: float, what: str, operator: OperatorProcess | None = None) -> T:
    """Poll `check` until it returns something truthy (returned); fail after `timeout` s saying `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL_S)
    tail = f"\noperator log:\n{operator.log_tail()}" if operator is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){tail}")


def stays(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Assert that `check` holds at every poll for `seconds` s (e.g. no extra Pods appear)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), f"{what} stopped holding"
        time.sleep(POLL_S)


def sample(namespace: str, name: str | None = None) -> dict[str, Any]:
    """crds/samples/raycluster.yaml, unchanged but for its namespace (and name when given)."""
    body = yaml.safe_load(SAMPLE.read_text())
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = namespace
    if name is not None:
        body["metadata"]["name"] = name
    return body


class Clusters:
    """RayCluster, Pod and Event calls of one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body)
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name)
        return result

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch(self, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON patch of the RayCluster (spec edits such as replicas or suspend)."""
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, operations,
            _content_type="application/json-patch+json")
        return result

    def set_replicas(self, name: str, replicas: int, group: int = 0) -> None:
        self.patch(name, [{"op": "replace", "path": f"/spec/workerGroupSpecs/{group}/replicas",
                           "value": replicas}])

    def handled(self, name: str) -> bool:
        """Whether kopf recorded the outcome of its handlers (its annotation under kray.io/)."""
        annotations = self.get(name)["metadata"].get("annotations") or {}
        return "kray.io/last-handled-configuration" in annotations

    def pods(self, name: str, node_type: str | None = None) -> list[Any]:
        """The cluster's Pods that are not being deleted, oldest first."""
        selector = f"kray.io/cluster={name}" + (f",kray.io/node-type={node_type}" if node_type else "")
        items = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        alive = [p for p in items if p.metadata.deletion_timestamp is None]
        return sorted(alive, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))

    def pod_names(self, name: str, node_type: str | None = None) -> set[str]:
        return {p.metadata.name for p in self.pods(name, node_type)}

    def counts(self, name: str) -> tuple[int, int]:
        """(head Pods, worker Pods) not being deleted."""
        pods = self.pods(name)
        heads = sum(1 for p in pods if p.metadata.labels.get("kray.io/node-type") == "head")
        return heads, len(pods) - heads

    def events(self, reason: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(self.namespace).items if e.reason == reason]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type `kind` in a status ({} when absent)."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})
