"""`make k8s-up` / `make k8s-down` (tools/local_k8s.py) as a person or a script uses them: the last line of
k8s-up is an export of KUBECONFIG, the sample RayCluster applied with it comes up, and k8s-down leaves no
process, network namespace, mount or state behind.

Runs make in subprocesses (a real control plane, pod runner and operator in the background, process mode),
in a state dir of its own so a local Kubernetes someone started on this machine is left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import local_kubernetes
import pytest
import yaml
from kubernetes import client, config
from local_kubernetes import OPERATOR_NAMESPACE, running
from operator_support import SAMPLE, wait_for
from podrunner import network, podman

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0


def _make(target: str, state_dir: Path, mode: str = "process") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KRAY_LOCAL_K8S_DIR=str(state_dir), K8S_PODS=mode)
    env.pop("KUBECONFIG", None)
    return subprocess.run(["make", "-s", target], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1100, check=False)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh state dir (short path: pods' socket paths live below it); k8s-down runs even on failure."""
    parent = Path(tempfile.mkdtemp(prefix="kray-lk-"))
    d = parent / "state"
    try:
        yield d
    finally:
        if d.exists():
            _make("k8s-down", d)
        shutil.rmtree(parent, ignore_errors=True)


def _ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return pod.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in conditions)


def _namespaces(token: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"{network.PREFIX}{token}-")]


def _up(state_dir: Path, mode: str = "process") -> tuple[str, dict[str, Any]]:
    """`make -s k8s-up`: its last stdout line, and the state it wrote."""
    up = _make("k8s-up", state_dir, mode)
    assert up.returncode == 0, f"make k8s-up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}"
    last = up.stdout.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"export KUBECONFIG=\S+", last), f"last line of make k8s-up is not an export: {last!r}"
    state = json.loads((state_dir / "state.json").read_text())
    assert state["mode"] == mode and state["network"] == "netns", state
    assert last == f"export KUBECONFIG={state['kubeconfig']}"
    return last, state


def _run_sample(kubeconfig: str, token: str) -> tuple[Any, dict[int, str | None]]:
    """Applies crds/samples/raycluster.yaml as `kubectl apply -f` would, waits for its head pod Running
    and Ready, and returns that pod and the processes running in the pods (PIDs with start times)."""
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        core: Any = client.CoreV1Api(api)
        sample = yaml.safe_load(SAMPLE.read_text())
        client.CustomObjectsApi(api).create_namespaced_custom_object("kray.io", "v1", "default", "rayclusters",
                                                                     sample)
        name = sample["metadata"]["name"]

        def head() -> Any:
            pods = core.list_namespaced_pod("default", label_selector=f"kray.io/cluster={name},kray.io/node-type=head")
            return next((p for p in pods.items if _ready(p)), None)

        pod = wait_for(head, READY_TIMEOUT_S, f"the head pod of {name} Running and Ready")
        assert pod.status.pod_ip.startswith("100.")
    finally:
        api.close()
    pod_processes = local_kubernetes.pod_processes(token)
    assert pod_processes, "no process runs in the pods' network namespaces"
    return pod, pod_processes


def _down_leaves_nothing(state_dir: Path, state: dict[str, Any], pod_processes: dict[int, str | None]) -> None:
    down = _make("k8s-down", state_dir)
    assert down.returncode == 0, f"make k8s-down failed ({down.returncode}):\n{down.stdout}\n{down.stderr}"
    ours = {"background process": state["daemon"], **state["processes"]}
    left = [name for name, (pid, start) in ours.items() if running(pid, start)]
    left += [f"pod process {pid}" for pid, start in pod_processes.items() if running(pid, start)]
    assert not left, f"still running after make k8s-down: {left}"
    assert not _namespaces(state["token"]), "network namespaces left"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"{network.PREFIX}{state['token']}-" not in mounts and str(state_dir) not in mounts, "mounts left"
    assert not state_dir.exists(), f"state left in {state_dir}: {list(state_dir.rglob('*'))[:20]}"
    assert not (network.STATE_ROOT / state["token"]).exists(), "the pod runner's registry entry is left"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    assert f"krb{state['token']}" not in links, "the pod bridge is left"
    if state["mode"] == "container":
        containers = podman.podman("ps", "--all", "--filter", f"label={podman.LABEL}={state['token']}",
                                   "--format", "{{.Names}}").stdout.split()
        assert not containers, f"containers left: {containers}"


def test_k8s_up_runs_the_sample_and_k8s_down_leaves_nothing(state_dir: Path) -> None:
    last, state = _up(state_dir)

    # Running it again finds the running one; asking for the other mode while it runs is refused.
    again = _make("k8s-up", state_dir)
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == last, again.stderr
    assert "already up" in again.stderr
    other = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "local_k8s.py"), "up", "--mode=container"],
                           env=dict(os.environ, KRAY_LOCAL_K8S_DIR=str(state_dir)), capture_output=True, text=True,
                           timeout=60, check=False)
    assert other.returncode == 1 and "already runs in process mode" in other.stderr, other.stderr

    # The operator authenticates as the chart's ServiceAccount (so it has the chart's RBAC), not as the admin.
    environ = Path(f"/proc/{state['processes']['operator'][0]}/environ").read_bytes().split(b"\0")
    operator_kubeconfig = next(e for e in environ if e.startswith(b"KUBECONFIG=")).split(b"=", 1)[1].decode()
    operator_api = config.new_client_from_config(config_file=operator_kubeconfig)
    try:
        authentication: Any = client.AuthenticationV1Api(operator_api)  # loosely typed: a plain-dict body
        review = authentication.create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    finally:
        operator_api.close()
    assert review.status.user_info.username == f"system:serviceaccount:{OPERATOR_NAMESPACE}:kray-operator"

    _, pod_processes = _run_sample(state["kubeconfig"], state["token"])
    _down_leaves_nothing(state_dir, state, pod_processes)


def test_k8s_down_cleans_up_after_its_background_process_was_killed(state_dir: Path) -> None:
    _, state = _up(state_dir)
    _, pod_processes = _run_sample(state["kubeconfig"], state["token"])
    pid, start = state["daemon"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid, start), 30, "the background process gone")
    _down_leaves_nothing(state_dir, state, pod_processes)


@pytest.mark.timeout(1200)
def test_k8s_up_in_container_mode_runs_the_operator_and_the_sample_from_the_images(state_dir: Path) -> None:
    _, state = _up(state_dir, "container")  # builds the images first when this tree's content changed
    assert state["operator"].startswith(f"pod {OPERATOR_NAMESPACE}/"), state["operator"]
    operator_pod = state["operator"].split()[1].split("/")[1]
    (operator,) = podman.containers(OPERATOR_NAMESPACE, operator_pod)
    assert operator["Image"] == local_kubernetes.OPERATOR_IMAGE, operator
    head, pod_processes = _run_sample(state["kubeconfig"], state["token"])
    (container,) = podman.containers("default", head.metadata.name)
    assert container["Image"] == "localhost/kray:latest", container  # the sample's image: kray:latest
    _down_leaves_nothing(state_dir, state, pod_processes)
