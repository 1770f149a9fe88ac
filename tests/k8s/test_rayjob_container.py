"""The sample RayJob in container mode: crds/samples/rayjob.yaml with only the image changed (and the
container-mode node asked for) becomes a cluster of pods from the runtime image and a submitter pod from the
same image whose `kray job submit` runs the entrypoint to SUCCEEDED.

Starts the operator, containers in network namespaces (fixtures) and kubectl.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from image_support import Images, on_container_node, with_image
from podrunner import PodRunner
from rayjob_support import JOB_SAMPLE, RayJobs, kubectl

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

NAME = "rayjob-sample"
RUN_TIMEOUT_S = 240.0


def _job_from_image(image: str) -> dict[str, Any]:
    job = yaml.safe_load(JOB_SAMPLE.read_text())
    # As KubeRay's samples are written: `import ray` (the image's compat package makes that kray).
    job["spec"]["entrypoint"] = "python -c \"import ray; ray.init(); print(ray.get(ray.put('hello from a RayJob')))\""
    job["spec"]["rayClusterSpec"] = with_image({"spec": job["spec"]["rayClusterSpec"]}, image)["spec"]
    job["spec"]["submitterPodTemplate"] = {"spec": on_container_node({
        "restartPolicy": "Never",
        "containers": [{"name": "submitter", "image": image, "imagePullPolicy": "Never"}]})}
    return dict(job)


def test_the_sample_rayjob_runs_from_the_image_to_success(container_pod_runner: PodRunner, kray_images: Images,
                                                          rayjobs: RayJobs, k8s_namespace: str,
                                                          tmp_path: Path) -> None:
    runner, ns = container_pod_runner, k8s_namespace
    path = tmp_path / "rayjob.yaml"
    path.write_text(yaml.safe_dump(_job_from_image(kray_images.runtime)))
    kubectl("apply", "-n", ns, "-f", str(path))
    done = kubectl("wait", "-n", ns, "--for=jsonpath={.status.jobDeploymentStatus}=Complete", f"rayjob/{NAME}",
                   f"--timeout={int(RUN_TIMEOUT_S)}s", timeout=RUN_TIMEOUT_S + 30, check=False)
    assert done.returncode == 0, f"{done.stderr}\nstatus: {rayjobs.status(NAME)}\n{rayjobs.operator.log_tail()}"
    status = rayjobs.status(NAME)
    assert status["jobStatus"] == "SUCCEEDED" and status["succeeded"] == 1, status

    (pod,) = rayjobs.submitter_pods(NAME)
    assert pod.spec.node_name == runner.node_name, "the submitter ran on the container-mode node"
    assert pod.spec.containers[0].image == kray_images.runtime
    log = runner.read_log(ns, pod.metadata.name)
    assert "podman run" in log and "hello from a RayJob" in log, log[-3000:]
