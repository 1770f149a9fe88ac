"""Submitted jobs: records (pure), the supervisor actor that runs an entrypoint, and the job manager
that the head's HTTP server drives. The SDK users call is `kray.job_submission`."""
