"""builders.job_facts and builders.jobs: what a RayJob pass reads from API objects, and the objects a
RayJob makes (its cluster with KubeRay's labels, the SidecarMode container, the submitter's env)."""

from __future__ import annotations

import shlex
from typing import Any

import kubernetes_validate
from kray_operator import job_models, models
from kray_operator.builders import job_facts, jobs


def test_cluster_facts() -> None:
    assert job_facts.cluster_facts(None) == job_facts.ClusterFacts()
    body = {"metadata": {"name": "c"}, "status": {"state": "ready"},
            "spec": {"workerGroupSpecs": [{"groupName": "a", "suspend": True}, {"groupName": "b"}]}}
    facts = job_facts.cluster_facts(body, "c-head-svc.ns.svc.cluster.local:8265")
    assert facts.ready and facts.present and not facts.workers_suspended and facts.status == {"state": "ready"}
    body["spec"]["workerGroupSpecs"][1]["suspend"] = True
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    facts = job_facts.cluster_facts(body)
    assert facts.workers_suspended and facts.deleting and not facts.ready and not facts.present


def test_batch_job_facts() -> None:
    assert not job_facts.batch_job_facts(None).exists
    running = job_facts.batch_job_facts({"metadata": {}, "status": {"active": 1}})
    assert running.exists and not running.failed and running.finished_at is None
    done = job_facts.batch_job_facts({"metadata": {}, "status": {"conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"},
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:02Z"}]}})
    assert not done.failed and done.finished_at == job_facts.parse_time("2026-01-01T00:00:02Z")
    failed = job_facts.batch_job_facts({"metadata": {}, "status": {"conditions": [
        {"type": "FailureTarget", "status": "True"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit",
         "lastTransitionTime": "2026-01-01T00:00:03Z"}]}})
    assert failed.failed and failed.reason == "BackoffLimitExceeded" and failed.finished_at is not None


def test_sidecar_facts() -> None:
    assert not job_facts.sidecar_facts(None, "s").exists

    def pod(state: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"containerStatuses": [{"name": "kray-head", "state": {"running": {}}},
                                                 {"name": "s", "state": state}]}}

    assert job_facts.sidecar_facts(pod({"running": {}}), "s") == job_facts.SubmitterFacts(exists=True)
    ok = job_facts.sidecar_facts(pod({"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:00:09Z"}}), "s")
    assert not ok.failed and ok.finished_at == job_facts.parse_time("2026-01-01T00:00:09Z")
    bad = job_facts.sidecar_facts(pod({"terminated": {"exitCode": 1, "reason": "Error"}}), "s")
    assert bad.failed and "exited with code 1" in bad.message


def test_api_facts() -> None:
    facts = job_facts.api_facts({"status": "RUNNING", "message": "m", "start_time": 1767225600000, "end_time": None})
    assert (facts.outcome, facts.status, facts.start_ms, facts.end_ms) == (job_facts.API_FOUND, "RUNNING",
                                                                          1767225600000, 0)


def test_cluster_of_a_job_carries_kuberay_labels_and_the_jobs_own(job_doc: dict[str, Any]) -> None:
    job_doc["metadata"].update(labels={"team": "ml"}, annotations={"note": "x"})
    job = job_models.RayJob.model_validate(job_doc)
    made = jobs.ray_cluster(job, "rayjob-sample-abcde", "id1")
    labels = made["metadata"]["labels"]
    assert labels["team"] == "ml" and made["metadata"]["annotations"] == {"note": "x"}
    assert labels["ray.io/originated-from-crd"] == "RayJob" and labels["ray.io/originated-from-cr-name"] == "rayjob-sample"
    assert labels["ray.io/job-submission-mode"] == "K8sJobMode" == labels["kray.io/job-submission-mode"]
    head = made["spec"]["headGroupSpec"]["template"]["spec"]
    assert len(head["containers"]) == 1 and "restartPolicy" not in head


def test_sidecar_mode_adds_the_submitter_to_the_head(job_doc: dict[str, Any], crd_validate) -> None:
    job_doc["spec"]["submissionMode"] = "SidecarMode"
    job = job_models.RayJob.model_validate(job_doc)
    made = jobs.ray_cluster(job, "rayjob-sample-abcde", "id1")
    assert crd_validate(made) == []
    head = made["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["restartPolicy"] == "Never"
    sidecar = head["containers"][-1]
    assert sidecar["name"] == jobs.SUBMITTER_CONTAINER and sidecar["image"] == "kray:latest"
    script = sidecar["command"][2]
    assert "http://127.0.0.1:8265/api/version" in script
    submit = shlex.split(script.split("done; ", 1)[1])
    assert submit[:7] == ["kray", "job", "submit", "--address", "http://127.0.0.1:8265", "--submission-id", "id1"]
    assert "--no-wait" not in submit, "the sidecar waits: its exit code is the job's outcome"
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["KRAY_CLUSTER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "rayjob-sample-abcde-token"
    assert env["RAY_JOB_SUBMISSION_ID"]["value"] == "id1" and env["PYTHONUNBUFFERED"]["value"] == "1"


def test_submitter_env_has_kuberays_names_too(job: job_models.RayJob) -> None:
    manifest = jobs.ray_cluster(job, jobs.cluster_name(job, "abcde"))
    manifest["metadata"]["uid"] = "uid-c"
    cluster = models.RayCluster.model_validate(manifest)
    made = jobs.submitter_job(job, cluster, "id9")
    kubernetes_validate.validate(made, "1.35", strict=True)
    env = {e["name"]: e.get("value") for e in made["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_DASHBOARD_ADDRESS"] == "rayjob-sample-abcde-head-svc.ns1.svc.cluster.local:8265"
    assert env["RAY_JOB_SUBMISSION_ID"] == env["KRAY_JOB_SUBMISSION_ID"] == "id9"
    assert made["spec"]["template"]["metadata"]["labels"]["ray.io/originated-from-crd"] == "RayJob"


def test_the_jobs_own_head_service(job: job_models.RayJob) -> None:
    manifest = jobs.ray_cluster(job, "rayjob-sample-abcde")
    manifest["metadata"]["uid"] = "uid-c"
    made = jobs.job_head_service(job, models.RayCluster.model_validate(manifest))
    kubernetes_validate.validate(made, "1.35", strict=True)
    assert made["metadata"]["name"] == "rayjob-sample-head-svc" == jobs.job_service_name(job)
    assert made["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
    assert made["metadata"]["labels"]["ray.io/node-type"] == "head"
    assert made["metadata"]["labels"]["ray.io/originated-from-cr-name"] == "rayjob-sample"
    assert jobs.service_cluster(made) == "rayjob-sample-abcde" and jobs.service_cluster(None) == ""
    assert {p["name"] for p in made["spec"]["ports"]} >= {"dashboard", "gcs-server"}
