"""Test support for the container-mode k8s tests: the project's images built from this tree
(`kray_images`), a pod runner that runs pods from their image with podman (`container_pod_runner`),
and how a manifest asks for that runner's node.

Runs images/build.sh (podman builds, cached by content hash) and starts a PodRunner; no mocks.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane import launcher
from podrunner import PodRunner, podman
from podrunner.runner import RUNTIME_LABEL

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
BUILD_TIMEOUT_S = 900.0

# What a pod spec carries to run on the container-mode node (and only there).
CONTAINER_NODE: dict[str, Any] = {
    "nodeSelector": {RUNTIME_LABEL: "container"},
    "tolerations": [{"key": RUNTIME_LABEL, "operator": "Equal", "value": "container", "effect": "NoSchedule"}],
}


@dataclasses.dataclass(frozen=True)
class Images:
    """The images built from this tree, by content-hash tag, and how long making sure of them took."""

    runtime: str
    operator: str
    seconds: float


def build_images() -> Images:
    """`images/build.sh --if-changed`: seconds when the tree's images exist, a build otherwise.

    Fails the test (never skips) when no container engine works here.
    """
    started = time.monotonic()
    done = subprocess.run(["bash", str(REPO_ROOT / "images" / "build.sh"), "--if-changed"], capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT_S, check=False, env=podman.engine_env())
    refs = dict(line.split("=", 1) for line in done.stdout.splitlines() if line.startswith("KRAY_"))
    if done.returncode != 0 or "KRAY_IMAGE" not in refs:
        pytest.fail(f"images/build.sh --if-changed failed ({done.returncode}); container mode needs podman "
                    f"(apt-get install podman, as .ci/run does):\n{done.stderr[-3000:]}", pytrace=False)
    return Images(refs["KRAY_IMAGE"], refs["KRAY_OPERATOR_IMAGE"], time.monotonic() - started)


def on_container_node(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a pod spec that the container-mode runner (and no other) runs."""
    spec = copy.deepcopy(pod_spec)
    spec.update(copy.deepcopy(CONTAINER_NODE))
    return spec


def with_image(cluster: dict[str, Any], image: str) -> dict[str, Any]:
    """A RayCluster manifest whose pods run `image` (never pulled) on the container-mode node."""
    out = copy.deepcopy(cluster)
    groups = [out["spec"]["headGroupSpec"], *out["spec"].get("workerGroupSpecs", [])]
    for group in groups:
        template = group["template"]
        template["spec"] = on_container_node(template["spec"])
        for c in template["spec"]["containers"]:
            c["image"], c["imagePullPolicy"] = image, "Never"
    return out


@pytest.fixture(scope="session")
def kray_images() -> Images:
    """The runtime and operator images of this tree (built when their content hash is new)."""
    return build_images()


@pytest.fixture(scope="session")
def container_pod_runner(control_plane: launcher.ControlPlane, kray_images: Images) -> Iterator[PodRunner]:
    """A second kubelet stand-in whose pods run from their image with podman in the pod's network
    namespace. Its node is tainted, so only pods with CONTAINER_NODE's selector and toleration go there."""
    runner = PodRunner(control_plane.kubeconfig, control_plane.log_dir / "pod-runner-container",
                       pod_runtime="container", dedicated=True).start()
    try:
        yield runner
    finally:
        runner.stop()
        token = runner.podman.token if runner.podman is not None else "(none)"
        leaked = podman.podman("ps", "--all", "--filter", f"label={podman.LABEL}={token}",
                               "--format", "{{.Names}}", check=False).stdout.split()
        assert not leaked, f"containers left after the pod runner stopped: {leaked}"
