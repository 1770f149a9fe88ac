"""The cluster verbs on Kubernetes, with a RayCluster manifest as the cluster file: `kray up`, `down`,
`submit`, `exec`, `attach`, `dashboard`, `get-head-ip`.

Runs kubectl (see kube_cluster) and, for `submit`, the job SDK against the head's job API.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import time

import click

from kray.cli import kube_cluster

CLUSTER_FILE = click.argument("cluster_file", type=click.Path(exists=True, dir_okay=False))


@click.command()
@CLUSTER_FILE
@click.option("--no-wait", is_flag=True, help="Return once applied, without waiting for the cluster to be ready.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for the cluster to be ready.")
def up(cluster_file: str, no_wait: bool, timeout: float) -> None:
    """Create or update the RayCluster of CLUSTER_FILE and wait until it is ready."""
    cluster = kube_cluster.load(cluster_file)
    click.echo(kube_cluster.kubectl("apply", "-f", cluster_file).stdout.strip())
    if no_wait:
        return
    state = kube_cluster.wait_ready(cluster, timeout)
    where = state.get("head") or {}
    click.secho(f"RayCluster {cluster.name} is ready: head pod {where.get('podName')} at {where.get('podIP')}, "
                f"{state.get('readyWorkerReplicas', 0)} worker(s).", fg="green")
    click.echo("Next:")
    click.echo(f"    kray submit {cluster_file} script.py     # run a script as a job, its folder as working_dir")
    click.echo(f"    kray dashboard {cluster_file}            # the job API and dashboard on localhost:8265")
    click.echo(f"    kray attach {cluster_file}               # a shell in the head pod")


@click.command()
@CLUSTER_FILE
def down(cluster_file: str) -> None:
    """Delete the RayCluster of CLUSTER_FILE (its pods and services go with it)."""
    kube_cluster.load(cluster_file)
    click.echo(kube_cluster.kubectl("delete", "-f", cluster_file, "--wait=true").stdout.strip())


@click.command(name="get-head-ip")
@CLUSTER_FILE
def get_head_ip(cluster_file: str) -> None:
    """Print the IP of the cluster's head pod."""
    click.echo(kube_cluster.head(kube_cluster.load(cluster_file))["podIP"])


@click.command(context_settings={"ignore_unknown_options": True})
@CLUSTER_FILE
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--start", is_flag=True, help="Bring the cluster up first (kray up).")
@click.option("--stop", is_flag=True, help="Take the cluster down afterwards (kray down), however the job ends.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for the cluster with --start.")
def submit(cluster_file: str, script: str, script_args: tuple[str, ...], start: bool, stop: bool,
           timeout: float) -> None:
    """Run SCRIPT on the cluster as a job (its folder is the working_dir), stream its output, and exit
    with the job's outcome. Arguments after `--` go to the script."""
    cluster = kube_cluster.load(cluster_file)
    if start:
        kube_cluster.kubectl("apply", "-f", cluster_file)
        kube_cluster.wait_ready(cluster, timeout)
    try:
        succeeded = _submit(cluster, script, script_args)
    finally:
        if stop:
            kube_cluster.kubectl("delete", "-f", cluster_file, "--wait=true")
    if not succeeded:
        sys.exit(1)


def _submit(cluster: kube_cluster.ClusterFile, script: str, script_args: tuple[str, ...]) -> bool:
    from kray.cli import job_commands
    from kray.job_submission import JobStatus, JobSubmissionClient

    folder, name = os.path.split(os.path.abspath(script))
    with kube_cluster.job_api(cluster) as url:
        client = JobSubmissionClient(url, headers={"X-Ray-Authorization": "Bearer " + kube_cluster.token(cluster)})
        job_id = client.submit_job(entrypoint=shlex.join(["python", name, *script_args]),
                                   runtime_env={"working_dir": folder})
        click.secho(f"Job '{job_id}' submitted to RayCluster {cluster.name}", fg="green")
        asyncio.run(job_commands.follow_logs(client, job_id))
        return bool(job_commands.report(client, job_id) == JobStatus.SUCCEEDED)


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@CLUSTER_FILE
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(cluster_file: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a shell in the head pod (kubectl exec) and exit with its status."""
    cluster = kube_cluster.load(cluster_file)
    pod = kube_cluster.head(cluster)["podName"]
    line = command[0] if len(command) == 1 else shlex.join(command)
    sys.exit(subprocess.call(["kubectl", "exec", *cluster.ns_args(), pod, "--", "/bin/bash", "-c", line]))


@click.command()
@CLUSTER_FILE
def attach(cluster_file: str) -> None:
    """An interactive shell in the head pod (kubectl exec -it)."""
    cluster = kube_cluster.load(cluster_file)
    pod = kube_cluster.head(cluster)["podName"]
    sys.exit(subprocess.call(["kubectl", "exec", "-it", *cluster.ns_args(), pod, "--", "/bin/bash"]))


@click.command()
@CLUSTER_FILE
@click.option("--port", default=kube_cluster.DASHBOARD_PORT, show_default=True, help="The local port.")
def dashboard(cluster_file: str, port: int) -> None:
    """Forward localhost:PORT to the head's dashboard and job API until interrupted."""
    cluster = kube_cluster.load(cluster_file)
    where = kube_cluster.head(cluster)
    service = where.get("serviceName") or f"{cluster.name}-head-svc"
    with kube_cluster.port_forward(cluster, service, port, kube_cluster.dashboard_port(cluster)) as local:
        click.echo(f"The job API of {cluster.name} is at http://127.0.0.1:{local} (Ctrl-C stops forwarding).")
        click.echo(f"Its token: kubectl get secret {cluster.name}{kube_cluster.TOKEN_SECRET_SUFFIX} "
                   f"-o jsonpath='{{.data.token}}' | base64 -d")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


COMMANDS = (up, down, get_head_ip, submit, exec_, attach, dashboard)
