"""RayJob reconciliation for real: `kubectl apply` of the sample RayJob with the operator and the pod runner
becomes a RayCluster of running pods, a submitter Job whose pod runs `kray job submit`, a job that
succeeds, and a cluster deleted after ttlSecondsAfterFinished; bad specs fail once with advice; the
operator restarted mid-job converges without a second submission.

Starts the operator, runs pods as processes in network namespaces, runs kubectl, and reads job servers.
"""

from __future__ import annotations

import signal
import time

import pytest
from operator_support import OperatorProcess, stays, wait_for
from podrunner import PodRunner
from rayjob_support import JOB_SAMPLE, RayJobs, job_manifest, kubectl

pytestmark = pytest.mark.k8s

NAME = "rayjob-sample"
RUN_TIMEOUT_S = 240.0


def test_applied_sample_completes_logs_in_the_submitter_and_cleans_up_after_ttl(
        pod_runner: PodRunner, rayjobs: RayJobs, k8s_namespace: str) -> None:
    kubectl("apply", "-n", k8s_namespace, "-f", str(JOB_SAMPLE))
    # What a CI step runs.
    done = kubectl("wait", "-n", k8s_namespace, "--for=jsonpath={.status.jobDeploymentStatus}=Complete",
                   f"rayjob/{NAME}", f"--timeout={int(RUN_TIMEOUT_S)}s", timeout=RUN_TIMEOUT_S + 30, check=False)
    assert done.returncode == 0, f"{done.stderr}\nstatus: {rayjobs.status(NAME)}\n{rayjobs.operator.log_tail()}"
    status = rayjobs.status(NAME)
    assert status["jobStatus"] == "SUCCEEDED" and status["succeeded"] == 1 and status["failed"] == 0
    cluster_name = status["rayClusterName"]
    assert cluster_name.startswith(f"{NAME}-") and len(cluster_name) == len(NAME) + 6
    assert status["jobId"].startswith(f"{NAME}-")
    assert status["dashboardURL"] == f"{cluster_name}-head-svc.{k8s_namespace}.svc.cluster.local:8265"
    assert status["startTime"] <= status["endTime"] and status["rayJobInfo"]["endTime"]
    assert status["rayClusterStatus"]["state"] == "ready"

    # The submitter pod's log is the job's output, as a CI step reads it.
    (pod,) = rayjobs.submitter_pods(NAME)
    log = kubectl("logs", "-n", k8s_namespace, f"job/{NAME}").stdout
    assert "hello from a RayJob" in log, f"{log[-3000:]}\n{pod_runner.read_log(k8s_namespace, pod.metadata.name)}"
    assert log.splitlines()[0] in pod_runner.read_log(k8s_namespace, pod.metadata.name)
    submitter = rayjobs.batch_job(NAME)
    assert submitter.metadata.owner_references[0].kind == "RayJob"
    assert submitter.spec.template.metadata.labels["ray.io/originated-from-cr-name"] == NAME

    job_svc = rayjobs.core.read_namespaced_service(f"{NAME}-head-svc", k8s_namespace)
    assert job_svc.spec.selector["kray.io/cluster"] == cluster_name and job_svc.metadata.owner_references[0].kind == "RayJob"
    table = kubectl("get", "rayjob", NAME, "-n", k8s_namespace).stdout
    assert "SUCCEEDED" in table and "Complete" in table and cluster_name in table
    assert [e.message for e in rayjobs.events("CreatedRayCluster")] == [f"Created RayCluster {k8s_namespace}/{cluster_name}"]
    assert len(rayjobs.events("CreatedRayJobSubmitter")) == 1

    # shutdownAfterJobFinishes with ttlSecondsAfterFinished: 10 deletes the cluster, keeps the submitter.
    wait_for(lambda: rayjobs.cluster(cluster_name) is None, 60, "the cluster to be deleted", rayjobs.operator)
    gone_after = time.time()
    ended = status["endTime"]
    # The Event is posted once the delete call returned, which may be after the cluster is seen gone.
    wait_for(lambda: rayjobs.events("DeletedRayCluster"), 30, "the DeletedRayCluster Event", rayjobs.operator)
    assert gone_after - time.mktime(time.strptime(ended, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone >= 9
    assert rayjobs.batch_job(NAME) is not None, "the submitter Job stays so its logs can be read"
    assert rayjobs.status(NAME)["jobDeploymentStatus"] == "Complete"


@pytest.mark.parametrize("spec, expect", [
    ({"submissionMode": "SSHMode"}, "spec.submissionMode: Input should be 'K8sJobMode'"),
    ({"rayClusterSpec": None}, "set rayClusterSpec (a cluster to create for the job) or clusterSelector"),
    ({"runtimeEnvYAML": "pip: [requests"}, "runtimeEnvYAML is not valid YAML"),
])
def test_a_bad_spec_fails_once_with_advice(rayjobs: RayJobs, k8s_namespace: str, spec: dict, expect: str) -> None:
    rayjobs.create(job_manifest(k8s_namespace, "bad", **spec))
    status = rayjobs.wait("bad", 30, "Failed", jobDeploymentStatus="Failed", reason="ValidationFailed")
    assert expect in status["message"]
    wait_for(lambda: rayjobs.events("InvalidRayJobSpec"), 10, "the InvalidRayJobSpec event", rayjobs.operator)
    stays(lambda: len(rayjobs.events("InvalidRayJobSpec")) == 1 and rayjobs.status("bad") == status, 8,
          "one InvalidRayJobSpec event and an unchanged status")
    assert rayjobs.clusters_of("bad") == [] and rayjobs.batch_job("bad") is None


def test_operator_restarted_mid_job_does_not_submit_twice(
        pod_runner: PodRunner, rayjobs: RayJobs, kray_operator: OperatorProcess, k8s_namespace: str) -> None:
    entrypoint = "python -c \"import time; print('started', flush=True); time.sleep(20); print('finished')\""
    rayjobs.create(job_manifest(k8s_namespace, "restart", entrypoint=entrypoint, shutdownAfterJobFinishes=False,
                                ttlSecondsAfterFinished=0))
    status = rayjobs.wait("restart", RUN_TIMEOUT_S, "the job RUNNING", jobDeploymentStatus="Running",
                          jobStatus="RUNNING")
    kray_operator.stop(signal.SIGKILL)
    time.sleep(3)
    kray_operator.start()
    done = rayjobs.wait("restart", RUN_TIMEOUT_S, "Complete after the restart", jobDeploymentStatus="Complete")
    assert done["jobStatus"] == "SUCCEEDED" and done["jobId"] == status["jobId"]
    assert done["rayClusterName"] == status["rayClusterName"]
    assert [c["metadata"]["name"] for c in rayjobs.clusters_of("restart")] == [status["rayClusterName"]]
    listed = rayjobs.job_client(status["rayClusterName"]).list_jobs()
    assert [j.submission_id for j in listed] == [status["jobId"]], "submitted exactly once"
    assert len(rayjobs.submitter_pods("restart")) == 1
    assert len(rayjobs.events("CreatedRayJobSubmitter")) == 1 and len(rayjobs.events("CreatedRayCluster")) == 1
