"""`kray job ...` as a CI step runs it, against a head started by `kray start --head`: submit waits, streams
the output and exits with the job's outcome; status, logs, list, stop and delete; the address and token
found on the head's machine without being told.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import helpers, multinode


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[multinode.MultiNodeCluster]:
    with multinode.running(tmp_path_factory.mktemp("jobcli"), num_cpus=2, num_nodes=1) as started:
        yield started


def _job(head: multinode.MultiNodeCluster, *args: str, cwd: Path | None = None,
         local: bool = True) -> subprocess.CompletedProcess:
    """`kray job ARGS`; `local`: as on the head's machine (its address file, no address or token given)."""
    node = head.nodes[0]
    env = head.node_env(node, None)
    if not local:
        record = node.address_file() or {}
        env["RAY_ADDRESS"] = "http://" + record["dashboard_url"]
        env["KRAY_TEMP_DIR"] = str(cwd or head.base_dir)  # no address file there
        env["KRAY_CLUSTER_TOKEN"] = head.token
    return subprocess.run([*multinode.kray_cli(), "job", *args], env=env, cwd=cwd or head.base_dir,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_submit_waits_streams_the_output_and_exits_zero_on_success(
    head: multinode.MultiNodeCluster, tmp_path: Path,
) -> None:
    (tmp_path / "lib.py").write_text("ANSWER = 42\n")
    (tmp_path / "main.py").write_text(
        "import kray, lib\nkray.init()\nprint('answer', kray.get(kray.remote(lambda: lib.ANSWER).remote()))\n")
    result = _job(head, "submit", "--submission-id", "cli-ok", "--working-dir", str(tmp_path),
                  "--", "python", "main.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "answer 42" in result.stdout and "Job 'cli-ok' succeeded" in result.stdout
    status = _job(head, "status", "cli-ok")
    assert status.returncode == 0 and "succeeded" in status.stdout
    logs = _job(head, "logs", "cli-ok")
    assert logs.stdout.strip() == "answer 42"
    listing = _job(head, "list")
    assert "cli-ok" in listing.stdout and "SUCCEEDED" in listing.stdout
    assert _job(head, "delete", "cli-ok").returncode == 0
    missing = _job(head, "status", "cli-ok")
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_submit_exits_non_zero_when_the_job_fails(head: multinode.MultiNodeCluster, tmp_path: Path) -> None:
    result = _job(head, "submit", "--", "python -c 'import sys; print(\"bad input\"); sys.exit(3)'",
                  cwd=tmp_path, local=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bad input" in result.stdout and "exit code 3" in result.stderr


def test_no_wait_then_follow_and_stop(head: multinode.MultiNodeCluster, tmp_path: Path) -> None:
    submitted = _job(head, "submit", "--no-wait", "--submission-id", "cli-sleeper",
                     "--runtime-env-json", '{"env_vars": {"WHO": "sleeper"}}', "--",
                     "echo started by $WHO; sleep 600")
    assert submitted.returncode == 0, submitted.stderr
    helpers.wait_until(lambda: "started by sleeper" in _job(head, "logs", "cli-sleeper").stdout,
                       what="the job's first line")
    stopped = _job(head, "stop", "cli-sleeper")
    assert stopped.returncode == 0 and "was stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    followed = _job(head, "logs", "--follow", "cli-sleeper")
    assert followed.returncode == 0 and "started by sleeper" in followed.stdout


def test_bad_options_are_refused_with_the_reason(head: multinode.MultiNodeCluster) -> None:
    result = _job(head, "submit", "--runtime-env-json", "{nope", "--", "true")
    assert result.returncode == 2 and "--runtime-env-json must be JSON" in result.stderr
    result = _job(head, "submit", "--runtime-env-json", '{"container": {"image": "x"}}', "--", "true")
    assert result.returncode == 1 and "container" in result.stderr
