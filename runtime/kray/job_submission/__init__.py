"""Ray's job SDK (`ray.job_submission`): submit entrypoints to a cluster's job server and follow them."""

from kray.job_submission.sdk import JobSubmissionClient
from kray.jobs.records import JobDetails, JobStatus, JobType

JobInfo = JobDetails  # Ray's older name for a job's record

__all__ = ["JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient", "JobType"]
