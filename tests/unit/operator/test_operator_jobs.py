"""builders.jobs: a RayJob's cluster, submitter Job and job API request."""

from __future__ import annotations

import json
import shlex
from typing import Any

import kubernetes_validate
import pytest
from kray_operator import job_models, models
from kray_operator.builders import jobs, names

URL = "http://rayjob-sample-abcde-head-svc.ns1.svc.cluster.local:8265"


def job_cluster(job: job_models.RayJob) -> models.RayCluster:
    manifest = jobs.ray_cluster(job, jobs.cluster_name(job, "abcde"))
    manifest["metadata"]["uid"] = "uid-c"
    return models.RayCluster.model_validate(manifest)


def test_cluster_for_a_job(job: job_models.RayJob) -> None:
    manifest = jobs.ray_cluster(job, jobs.cluster_name(job, "abcde"))
    assert manifest["metadata"]["name"] == "rayjob-sample-abcde"
    assert manifest["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
    assert manifest["metadata"]["labels"][names.ORIGINATED_FROM_CR_NAME_LABEL] == "rayjob-sample"
    assert manifest["spec"] == job.spec.ray_cluster_spec.to_manifest()


def test_cluster_names_fit_a_service_name(job_doc: dict[str, Any]) -> None:
    job_doc["metadata"]["name"] = "a" * 200
    name = jobs.cluster_name(job_models.RayJob.model_validate(job_doc), "abcde")
    assert len(names.head_service_name(name)) <= 63
    names.check_cluster_name(name)
    job_doc["metadata"]["name"] = "1-job"
    assert jobs.cluster_name(job_models.RayJob.model_validate(job_doc), "x").startswith("job-1-job")


def test_submission_id(job: job_models.RayJob, job_doc: dict[str, Any]) -> None:
    assert jobs.submission_id(job, "zz") == "rayjob-sample-zz"
    job_doc["spec"]["jobId"] = "mine"
    assert jobs.submission_id(job_models.RayJob.model_validate(job_doc), "zz") == "mine"


def test_submitter_job(job: job_models.RayJob) -> None:
    made = jobs.submitter_job(job, job_cluster(job), "rayjob-sample-zz")
    kubernetes_validate.validate(made, "1.35", strict=True)
    assert made["metadata"]["name"] == "rayjob-sample" and made["spec"]["backoffLimit"] == 2
    assert made["metadata"]["ownerReferences"][0]["uid"] == "uid-job"
    pod = made["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["image"] == "kray:latest"
    assert container["command"][:2] == ["/bin/sh", "-c"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KRAY_CLUSTER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "rayjob-sample-abcde-token"
    assert env["KRAY_DASHBOARD_ADDRESS"]["value"] == URL


def test_submit_argv_keeps_entrypoint_whole(job: job_models.RayJob) -> None:
    argv = jobs.submit_argv(job, "id1", URL)
    assert argv[:8] == ["kray", "job", "submit", "--address", URL, "--submission-id", "id1", "--no-wait"]
    assert argv[-2:] == ["--", job.spec.entrypoint]
    assert json.loads(argv[argv.index("--runtime-env-json") + 1]) == {"env_vars": {"KRAY_SAMPLE": "1"}}
    script = jobs.submitter_script(job, "id1", URL)
    assert shlex.join(argv) in script
    words = shlex.split(script.split("then ", 1)[1].split("; fi", 1)[0])
    assert words == argv
    assert script.startswith("until python3 -c ") and f"{URL}/api/version" in script.split(";")[0]
    assert f"; if ! kray job status --address {URL} id1 >/dev/null 2>&1; then " in script
    assert script.endswith(f"fi && kray job logs --address {URL} --follow id1")


def test_submit_options(job_doc: dict[str, Any]) -> None:
    job_doc["spec"].update(entrypointNumCpus=1, entrypointNumGpus=0.5, entrypointResources='{"a": 2}',
                           metadata={"owner": "me"}, submitterConfig={"backoffLimit": 0})
    del job_doc["spec"]["runtimeEnvYAML"]
    job = job_models.RayJob.model_validate(job_doc)
    argv = jobs.submit_argv(job, "id", URL)
    for flag, value in [("--entrypoint-num-cpus", "1"), ("--entrypoint-num-gpus", "0.5"),
                        ("--entrypoint-resources", '{"a": 2.0}'), ("--metadata-json", '{"owner": "me"}')]:
        assert argv[argv.index(flag) + 1] == value
    assert "--runtime-env-json" not in argv
    assert jobs.submitter_job(job, job_cluster(job), "id")["spec"]["backoffLimit"] == 0


def test_user_submitter_template(job_doc: dict[str, Any]) -> None:
    job_doc["spec"]["submitterPodTemplate"] = {
        "metadata": {"labels": {"team": "ml"}},
        "spec": {"restartPolicy": "OnFailure", "containers": [
            {"name": "submit", "image": "custom:1", "command": ["my-submit"],
             "env": [{"name": "KRAY_DASHBOARD_ADDRESS", "value": "mine"}]}]},
    }
    job = job_models.RayJob.model_validate(job_doc)
    template = jobs.submitter_job(job, job_cluster(job), "id")["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["command"] == ["my-submit"] and container["image"] == "custom:1"
    assert template["spec"]["restartPolicy"] == "OnFailure"
    assert template["metadata"]["labels"]["team"] == "ml"
    env = {e["name"]: e for e in container["env"]}
    assert env["KRAY_DASHBOARD_ADDRESS"]["value"] == "mine" and "KRAY_CLUSTER_TOKEN" in env


def test_http_submission_request(job: job_models.RayJob, job_doc: dict[str, Any]) -> None:
    assert jobs.submission_request(job, "id") == {
        "entrypoint": job.spec.entrypoint, "submission_id": "id", "runtime_env": {"env_vars": {"KRAY_SAMPLE": "1"}}}
    job_doc["spec"].update(entrypointNumCpus=2, entrypointResources='{"a": 1}', metadata={"k": "v"})
    body = jobs.submission_request(job_models.RayJob.model_validate(job_doc), "id")
    assert body["entrypoint_num_cpus"] == 2 and body["entrypoint_resources"] == {"a": 1.0} and body["metadata"] == {"k": "v"}


def test_dashboard_url() -> None:
    assert jobs.dashboard_url("c", "ns") == "http://c-head-svc.ns.svc.cluster.local:8265"
    assert jobs.dashboard_url("c", "ns", {"dashboard-port": "9000"}, "corp") == "http://c-head-svc.ns.svc.corp:9000"


def test_selector_jobs_create_no_cluster(job_doc: dict[str, Any]) -> None:
    del job_doc["spec"]["rayClusterSpec"]
    job_doc["spec"].update(clusterSelector={"ray.io/cluster": "b"}, shutdownAfterJobFinishes=False,
                           ttlSecondsAfterFinished=0)
    with pytest.raises(ValueError, match="creates none"):
        jobs.ray_cluster(job_models.RayJob.model_validate(job_doc), "x")
