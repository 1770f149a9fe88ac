"""`kray job submit|status|logs|stop|list|delete`: Ray's job CLI over `kray.job_submission`.

Makes HTTP requests to a cluster's job server; prints to the terminal. `submit` waits and streams the
job's output by default, and exits non-zero unless the job succeeded (what a CI step needs).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from typing import Any

import click

ADDRESS_HELP = ("The job server, e.g. http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, KRAY_ADDRESS or "
                "RAY_ADDRESS, else this machine's cluster).")


def _client(address: str | None, headers: str | None = None) -> Any:
    from kray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address, headers=_json_option("--headers", headers, dict))
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise click.ClickException(str(e)) from None


def _json_option(name: str, value: str | None, kind: type) -> Any:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise click.BadParameter(f"{name} must be JSON: {e}") from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"{name} must be a JSON {'object' if kind is dict else kind.__name__}")
    return parsed


def _runtime_env(path: str | None, inline: str | None, working_dir: str | None) -> dict[str, Any]:
    if path and inline:
        raise click.BadParameter("pass only one of --runtime-env and --runtime-env-json")
    env: dict[str, Any] = {}
    if path:
        import yaml

        try:
            with open(path) as f:
                env = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise click.BadParameter(f"--runtime-env {path}: {e}") from None
        if not isinstance(env, dict):
            raise click.BadParameter(f"--runtime-env {path} must hold a YAML mapping")
    elif inline:
        env = _json_option("--runtime-env-json", inline, dict)
    if working_dir:
        env["working_dir"] = working_dir
    return env


def report(client: Any, job_id: str) -> Any:
    from kray.job_submission import JobStatus

    info = client.get_job_info(job_id)
    if info.status == JobStatus.SUCCEEDED:
        click.secho(f"Job '{job_id}' succeeded", fg="green")
    elif info.status == JobStatus.STOPPED:
        click.secho(f"Job '{job_id}' was stopped", fg="yellow")
    elif info.status == JobStatus.FAILED:
        click.secho(f"Job '{job_id}' failed", fg="red", err=True)
        if info.message:
            click.echo(f"Status message: {info.message}", err=True)
    else:
        click.echo(f"Status for job '{job_id}': {info.status}")
        if info.message:
            click.echo(f"Status message: {info.message}")
    return info.status


async def follow_logs(client: Any, job_id: str) -> None:
    async for chunk in client.tail_job_logs(job_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@click.group("job")
def job() -> None:
    """Submit, follow, stop, list and delete jobs on a kray cluster."""


@job.command(context_settings={"ignore_unknown_options": True})
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.option("--submission-id", "--job-id", "submission_id", default=None, help="A unique id for the job.")
@click.option("--runtime-env", default=None, help="A YAML file with the job's runtime_env.")
@click.option("--runtime-env-json", default=None, help="The job's runtime_env as JSON.")
@click.option("--working-dir", default=None, help="A local directory (or .zip) to upload as the working_dir.")
@click.option("--metadata-json", default=None, help="Metadata as a JSON object of strings.")
@click.option("--entrypoint-num-cpus", type=float, default=None, help="CPUs to reserve for the entrypoint.")
@click.option("--entrypoint-num-gpus", type=float, default=None, help="GPUs to reserve for the entrypoint.")
@click.option("--entrypoint-memory", type=int, default=None, help="Memory (bytes) to reserve for the entrypoint.")
@click.option("--entrypoint-resources", default=None, help="Custom resources to reserve, as JSON.")
@click.option("--headers", default=None, help="Extra HTTP headers as a JSON object.")
@click.option("--no-wait", is_flag=True, help="Return once submitted instead of following the job's output.")
@click.argument("entrypoint", nargs=-1, required=True, type=click.UNPROCESSED)
def submit(address: str | None, submission_id: str | None, runtime_env: str | None, runtime_env_json: str | None,
           working_dir: str | None, metadata_json: str | None, entrypoint_num_cpus: float | None,
           entrypoint_num_gpus: float | None, entrypoint_memory: int | None, entrypoint_resources: str | None,
           headers: str | None, no_wait: bool, entrypoint: tuple[str, ...]) -> None:
    """Submit ENTRYPOINT (after `--`) as a job; wait for it and stream its output unless --no-wait."""
    client = _client(address, headers)
    command = entrypoint[0] if len(entrypoint) == 1 else shlex.join(entrypoint)
    try:
        job_id = client.submit_job(
            entrypoint=command, submission_id=submission_id,
            runtime_env=_runtime_env(runtime_env, runtime_env_json, working_dir),
            metadata=_json_option("--metadata-json", metadata_json, dict),
            entrypoint_num_cpus=entrypoint_num_cpus, entrypoint_num_gpus=entrypoint_num_gpus,
            entrypoint_memory=entrypoint_memory,
            entrypoint_resources=_json_option("--entrypoint-resources", entrypoint_resources, dict),
        )
    except (RuntimeError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.secho(f"Job '{job_id}' submitted successfully", fg="green")
    if no_wait:
        click.echo(f"Follow it with: kray job logs --follow {job_id}")
        return
    click.echo("Tailing logs until the job exits (disable with --no-wait):")
    asyncio.run(follow_logs(client, job_id))
    status = report(client, job_id)
    if status.value != "SUCCEEDED":
        sys.exit(1)


@job.command()
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.argument("job_id")
def status(address: str | None, job_id: str) -> None:
    """Print a job's status and message; exit 1 if there is no such job."""
    client = _client(address)
    try:
        report(client, job_id)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None


@job.command()
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the job ends.")
@click.argument("job_id")
def logs(address: str | None, follow: bool, job_id: str) -> None:
    """Print a job's output."""
    client = _client(address)
    try:
        if follow:
            asyncio.run(follow_logs(client, job_id))
        else:
            sys.stdout.write(client.get_job_logs(job_id))
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None


@job.command()
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.option("--no-wait", is_flag=True, help="Return without waiting for the job to stop.")
@click.argument("job_id")
def stop(address: str | None, no_wait: bool, job_id: str) -> None:
    """Stop a job: SIGTERM to its entrypoint's process group, SIGKILL after a grace period."""
    client = _client(address)
    try:
        stopped = client.stop_job(job_id)
        if not stopped:
            click.echo(f"Job '{job_id}' had already ended.")
            return
        click.echo(f"Stopping job '{job_id}'")
        while not no_wait and not client.get_job_status(job_id).is_terminal():
            time.sleep(0.1)
        if not no_wait:
            report(client, job_id)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None


@job.command(name="list")
@click.option("--address", default=None, help=ADDRESS_HELP)
def list_jobs(address: str | None) -> None:
    """List the cluster's submitted jobs."""
    client = _client(address)
    rows = [(j.submission_id, j.status.value, j.entrypoint) for j in client.list_jobs()]
    width = max([len(r[0]) for r in rows] + [len("SUBMISSION ID")])
    click.echo(f"{'SUBMISSION ID':<{width}}  {'STATUS':<9}  ENTRYPOINT")
    for submission_id, state, entrypoint in rows:
        click.echo(f"{submission_id:<{width}}  {state:<9}  {entrypoint}")


@job.command()
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.argument("job_id")
def delete(address: str | None, job_id: str) -> None:
    """Delete an ended job's record and logs."""
    client = _client(address)
    try:
        client.delete_job(job_id)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Job '{job_id}' deleted successfully")
