"""RayJob submission modes and lifecycle for real: HTTPMode (the operator posts to the head's job API),
clusterSelector onto an existing RayCluster, SidecarMode, InteractiveMode, a failing entrypoint retried
on fresh clusters up to backoffLimit, activeDeadlineSeconds, and suspend/resume.

Starts the operator, runs pods as processes in network namespaces, and talks to job servers in pods.
"""

from __future__ import annotations

import pytest
from operator_support import Clusters, sample, wait_for
from podrunner import PodRunner
from rayjob_support import RayJobs, job_manifest, kubectl

pytestmark = pytest.mark.k8s

RUN_TIMEOUT_S = 240.0
PRINT = "python -c \"print('job output', 6 * 7)\""


def test_http_mode_submits_from_the_operator(rayjobs: RayJobs, k8s_namespace: str) -> None:
    rayjobs.create(job_manifest(k8s_namespace, "http", submissionMode="HTTPMode", entrypoint=PRINT,
                                shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0,
                                metadata={"owner": "ci"}, entrypointNumCpus=0.5))
    status = rayjobs.wait("http", RUN_TIMEOUT_S, "Complete", jobDeploymentStatus="Complete")
    assert status["jobStatus"] == "SUCCEEDED" and status["succeeded"] == 1
    assert rayjobs.batch_job("http") is None and rayjobs.events("CreatedRayJobSubmitter") == []
    client = rayjobs.job_client(status["rayClusterName"])
    info = client.get_job_info(status["jobId"])
    assert info.metadata == {"owner": "ci"} and info.entrypoint_num_cpus == 0.5
    assert info.runtime_env and info.runtime_env["env_vars"] == {"KRAY_SAMPLE": "1"}
    assert "job output 42" in client.get_job_logs(status["jobId"])
    assert len(client.list_jobs()) == 1


def test_cluster_selector_runs_on_an_existing_cluster_and_keeps_it(
        rayjobs: RayJobs, clusters: Clusters, k8s_namespace: str) -> None:
    shared = sample(k8s_namespace, "shared")
    shared["spec"]["workerGroupSpecs"] = []
    clusters.create(shared)
    wait_for(lambda: clusters.status("shared").get("state") == "ready", RUN_TIMEOUT_S, "the shared cluster ready",
             rayjobs.operator)
    body = job_manifest(k8s_namespace, "picky", rayClusterSpec=None, clusterSelector={"ray.io/cluster": "shared"},
                        shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0, entrypoint=PRINT)
    rayjobs.create(body)
    status = rayjobs.wait("picky", RUN_TIMEOUT_S, "Complete", jobDeploymentStatus="Complete")
    assert status["rayClusterName"] == "shared" and status["jobStatus"] == "SUCCEEDED"
    assert rayjobs.events("CreatedRayCluster") == [] and rayjobs.clusters_of("picky") == []
    assert [j.submission_id for j in rayjobs.job_client("shared").list_jobs()] == [status["jobId"]]
    rayjobs.delete_all()
    assert clusters.status("shared").get("state") == "ready", "a selected cluster is not the job's to delete"


def test_a_failing_entrypoint_is_retried_on_fresh_clusters_then_fails(rayjobs: RayJobs, k8s_namespace: str) -> None:
    rayjobs.create(job_manifest(k8s_namespace, "flaky", backoffLimit=1, submissionMode="HTTPMode",
                                entrypoint="python -c \"import sys; print('boom'); sys.exit(3)\""))
    status = rayjobs.wait("flaky", 2 * RUN_TIMEOUT_S, "Failed", jobDeploymentStatus="Failed")
    assert status["reason"] == "AppFailed" and status["jobStatus"] == "FAILED"
    assert status["failed"] == 2 and status["succeeded"] == 0
    created = [e.message for e in rayjobs.events("CreatedRayCluster")]
    assert len(created) == 2 and len(set(created)) == 2, f"one fresh cluster per attempt: {created}"
    assert len(rayjobs.events("DeletedRayCluster")) >= 1


def test_active_deadline_fails_a_long_job_and_removes_its_cluster(rayjobs: RayJobs, k8s_namespace: str) -> None:
    rayjobs.create(job_manifest(k8s_namespace, "slow", entrypoint="sleep 600", activeDeadlineSeconds=45,
                                backoffLimit=2, ttlSecondsAfterFinished=0))
    status = rayjobs.wait("slow", 120, "Failed by the deadline", jobDeploymentStatus="Failed")
    assert status["reason"] == "DeadlineExceeded" and "ActiveDeadlineSeconds: 45" in status["message"]
    assert status["failed"] == 1, "a deadline is not retried"
    wait_for(lambda: rayjobs.cluster(status["rayClusterName"]) is None, 60, "the cluster deleted", rayjobs.operator)


def test_suspend_deletes_cluster_and_submitter_and_resume_starts_over(rayjobs: RayJobs, k8s_namespace: str) -> None:
    entrypoint = "python -c \"import time; time.sleep(12); print('done')\""
    rayjobs.create(job_manifest(k8s_namespace, "pausable", suspend=True, entrypoint=entrypoint))
    rayjobs.wait("pausable", 30, "Suspended", jobDeploymentStatus="Suspended")
    assert rayjobs.clusters_of("pausable") == [] and rayjobs.batch_job("pausable") is None

    rayjobs.patch_spec("pausable", {"suspend": False})
    first = rayjobs.wait("pausable", RUN_TIMEOUT_S, "running", jobDeploymentStatus="Running", jobStatus="RUNNING")
    rayjobs.patch_spec("pausable", {"suspend": True})
    suspended = rayjobs.wait("pausable", 60, "Suspended again", jobDeploymentStatus="Suspended")
    assert "rayClusterName" not in suspended and "jobId" not in suspended
    assert rayjobs.cluster(first["rayClusterName"]) is None
    wait_for(lambda: rayjobs.batch_job("pausable") is None, 30, "the submitter Job deleted", rayjobs.operator)
    assert len(rayjobs.events("DeletedRayCluster")) == 1 and len(rayjobs.events("DeletedRayJobSubmitter")) == 1

    rayjobs.patch_spec("pausable", {"suspend": False})
    done = rayjobs.wait("pausable", RUN_TIMEOUT_S, "Complete after resume", jobDeploymentStatus="Complete")
    assert done["jobStatus"] == "SUCCEEDED" and done["rayClusterName"] != first["rayClusterName"]
    assert done["jobId"] != first["jobId"]


def test_sidecar_mode_submits_from_the_head_pod(pod_runner: PodRunner, rayjobs: RayJobs, k8s_namespace: str) -> None:
    rayjobs.create(job_manifest(k8s_namespace, "sidecar", submissionMode="SidecarMode", entrypoint=PRINT,
                                shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0))
    status = rayjobs.wait("sidecar", RUN_TIMEOUT_S, "Complete", jobDeploymentStatus="Complete")
    assert status["jobStatus"] == "SUCCEEDED" and rayjobs.batch_job("sidecar") is None
    cluster = rayjobs.cluster(status["rayClusterName"]) or {}
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert [c["name"] for c in head["containers"]][-1] == "kray-job-submitter" and head["restartPolicy"] == "Never"
    head_pod = cluster["status"]["head"]["podName"]
    logs = kubectl("logs", "-n", k8s_namespace, head_pod, "-c", "kray-job-submitter").stdout
    assert "job output 42" in logs, pod_runner.read_log(k8s_namespace, head_pod, "kray-job-submitter")


def test_interactive_mode_waits_for_the_users_job_id(rayjobs: RayJobs, k8s_namespace: str) -> None:
    rayjobs.create(job_manifest(k8s_namespace, "repl", submissionMode="InteractiveMode", entrypoint=None,
                                shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0))
    waiting = rayjobs.wait("repl", RUN_TIMEOUT_S, "Waiting", jobDeploymentStatus="Waiting")
    client = rayjobs.job_client(waiting["rayClusterName"])
    submitted = client.submit_job(entrypoint=PRINT, submission_id="by-hand-1")
    rayjobs.patch_spec("repl", {"jobId": submitted})
    done = rayjobs.wait("repl", RUN_TIMEOUT_S, "Complete", jobDeploymentStatus="Complete")
    assert done["jobId"] == "by-hand-1" and done["jobStatus"] == "SUCCEEDED"


def test_deletion_rules_delete_the_cluster_then_the_rayjob(rayjobs: RayJobs, k8s_namespace: str) -> None:
    rules = [{"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}},
             {"policy": "DeleteSelf", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 8}},
             {"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "ttlSeconds": 0}}]
    rayjobs.create(job_manifest(k8s_namespace, "tidy", submissionMode="HTTPMode", entrypoint=PRINT,
                                shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0,
                                deletionStrategy={"deletionRules": rules}))
    status = rayjobs.wait("tidy", RUN_TIMEOUT_S, "Complete", jobDeploymentStatus="Complete")
    wait_for(lambda: rayjobs.cluster(status["rayClusterName"]) is None, 30, "DeleteCluster at once", rayjobs.operator)
    assert rayjobs.get("tidy") is not None, "DeleteSelf waits for its ttlSeconds"
    wait_for(lambda: rayjobs.get("tidy") is None, 60, "DeleteSelf after 8 s", rayjobs.operator)


def test_deleting_a_running_rayjob_stops_its_job(rayjobs: RayJobs, clusters: Clusters, k8s_namespace: str) -> None:
    shared = sample(k8s_namespace, "keeper")
    shared["spec"]["workerGroupSpecs"] = []
    clusters.create(shared)
    rayjobs.create(job_manifest(k8s_namespace, "doomed", rayClusterSpec=None, entrypoint="sleep 300",
                                clusterSelector={"ray.io/cluster": "keeper"}, submissionMode="HTTPMode",
                                shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0))
    status = rayjobs.wait("doomed", RUN_TIMEOUT_S, "RUNNING", jobDeploymentStatus="Running", jobStatus="RUNNING")
    rayjobs.delete_all()
    client = rayjobs.job_client("keeper")
    wait_for(lambda: client.get_job_status(status["jobId"]).value == "STOPPED", 30,
             "the job stopped by the RayJob's finalizer", rayjobs.operator)
