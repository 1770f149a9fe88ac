"""Job records and submit requests as Ray's job API shapes them: checked without a cluster."""

from __future__ import annotations

import pytest
from kray.jobs import records
from kray.jobs.records import JobDetails, JobStatus


def test_a_minimal_request_is_accepted_and_reserves_nothing() -> None:
    request = records.parse_submit_request({"entrypoint": "python run.py"})
    assert request.entrypoint == "python run.py" and request.submission_id is None
    assert request.resources() == {}


def test_entrypoint_resources_map_to_the_schedulers_names() -> None:
    request = records.parse_submit_request({
        "entrypoint": "x", "entrypoint_num_cpus": 2, "entrypoint_num_gpus": 0.5, "entrypoint_memory": 1024,
        "entrypoint_resources": {"slot": 1},
    })
    assert request.resources() == {"CPU": 2.0, "GPU": 0.5, "memory": 1024.0, "slot": 1.0}


def test_the_deprecated_job_id_field_is_the_submission_id() -> None:
    assert records.parse_submit_request({"entrypoint": "x", "job_id": "abc"}).submission_id == "abc"


@pytest.mark.parametrize(("body", "named"), [
    ([], "JSON object"),
    ({}, "entrypoint"),
    ({"entrypoint": "   "}, "entrypoint"),
    ({"entrypoint": "x", "colour": "red"}, "colour"),
    ({"entrypoint": "x", "submission_id": "has space"}, "submission_id"),
    ({"entrypoint": "x", "runtime_env": "pip"}, "runtime_env"),
    ({"entrypoint": "x", "metadata": {"a": 1}}, "metadata"),
    ({"entrypoint": "x", "entrypoint_num_cpus": -1}, "entrypoint_num_cpus"),
    ({"entrypoint": "x", "entrypoint_num_gpus": True}, "entrypoint_num_gpus"),
    ({"entrypoint": "x", "entrypoint_resources": {"CPU": 1}}, "entrypoint_num_cpus"),
    ({"entrypoint": "x", "entrypoint_resources": {"slot": "one"}}, "entrypoint_resources"),
    ({"entrypoint": "x", "entrypoint_label_selector": {"zone": "a"}}, "entrypoint_label_selector"),
])
def test_bad_requests_name_the_field_at_fault(body: object, named: str) -> None:
    with pytest.raises(records.BadRequest, match=named):
        records.parse_submit_request(body)


def test_details_round_trip_through_json_with_rays_field_names() -> None:
    job = JobDetails(submission_id="s1", entrypoint="echo", status=JobStatus.RUNNING, start_time=5,
                     metadata={"k": "v"})
    data = job.to_json()
    assert data["status"] == "RUNNING" and data["type"] == "SUBMISSION" and data["submission_id"] == "s1"
    assert JobDetails.loads(job.dumps()) == job


def test_only_ended_statuses_are_terminal() -> None:
    assert {s for s in JobStatus if s.is_terminal()} == {JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED}


def test_generated_ids_look_like_rays_and_differ() -> None:
    first, second = records.new_submission_id(), records.new_submission_id()
    assert first.startswith("raysubmit_") and len(first) == len("raysubmit_") + 16 and first != second


def test_a_failed_message_quotes_the_end_of_the_log() -> None:
    message = records.failed_message(3, "x" * 30_000 + "the end")
    assert message.startswith("Job entrypoint command failed with exit code 3")
    assert message.endswith("the end") and len(message) < 21_000
    assert "killed by signal 9" in records.failed_message(-9, "")
