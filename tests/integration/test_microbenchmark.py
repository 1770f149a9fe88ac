"""`kray microbenchmark` runs Ray's loops on a real local cluster and prints rows with Ray's names.

Only that it runs and reports sane numbers is checked (rates are measured by `make bench`, never
asserted in tests). Starts a local cluster in a subprocess.
"""

from __future__ import annotations

import re
import subprocess
import sys

ROWS = ("single client get calls (Plasma Store)", "multi client tasks async", "1:1 actor calls sync")


def test_the_microbenchmark_prints_rays_rows() -> None:
    for row in ROWS:
        done = subprocess.run(
            [sys.executable, "-c", "from kray.cli.main import main; main()", "microbenchmark", "--duration=0.5",
             f"--filter={row}"], capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        match = re.search(rf"^{re.escape(row)} per second ([\d.]+) \+- ([\d.]+)$", done.stdout, re.MULTILINE)
        assert match, f"no {row!r} line in:\n{done.stdout}"
        assert float(match.group(1)) > 0
        assert row in done.stdout.split("metric", 1)[1], "the final table lists the row"


def test_the_job_rows_run_a_job_and_report_latency() -> None:
    row = "job submit to SUCCEEDED latency (s)"
    done = subprocess.run(
        [sys.executable, "-c", "from kray.cli.main import main; main()", "microbenchmark", f"--filter={row}"],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(rf"^{re.escape(row)} ([\d.]+) \+- ([\d.]+)$", done.stdout, re.MULTILINE)
    assert match and float(match.group(1)) > 0, done.stdout


def test_the_idle_rows_report_cpu_per_process_kind() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from kray.cli.main import main; main()", "microbenchmark", "--filter=idle CPU"],
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for kind in ("GCS (s)", "raylet (s)", "per idle actor (ms)", "driver (s)", "100 idle actors + node (s)"):
        row = f"idle CPU per 10 s: {kind}"
        match = re.search(rf"^{re.escape(row)} ([\d.]+) \+- ([\d.]+)$", done.stdout, re.MULTILINE)
        assert match, f"no {row!r} line in:\n{done.stdout}"
        assert float(match.group(1)) >= 0


def test_the_scale_rows_report_actors_started_at_once_and_placement_group_churn() -> None:
    for pattern, rows in (("300 actors", ("300 actors started at once: time to all answered (s)",
                                          "300 actors started at once: RSS per actor (MB)")),
                          ("placement groups", (("placement groups created, ready and removed (1,000 in a row) "
                                                "per second"),))):
        done = subprocess.run(
            [sys.executable, "-c", "from kray.cli.main import main; main()", "microbenchmark", "--scale",
             f"--filter={pattern}"], capture_output=True, text=True, timeout=1800, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        for row in rows:
            match = re.search(rf"^{re.escape(row)} ([\d.]+) \+- ([\d.]+)$", done.stdout, re.MULTILINE)
            assert match and float(match.group(1)) > 0, f"no {row!r} line in:\n{done.stdout}"
        assert "1:1 actor calls sync" not in done.stdout  # --scale runs the scale rows only


def test_compare_runs_the_same_rows_under_another_framework_and_prints_ratios() -> None:
    """The --compare-ray plumbing, without Ray: kray against kray, through the same subprocess, row code and
    ratio table that Ray's run goes through (CI has no Ray; `--compare-framework` is the hidden switch)."""
    row = "single client tasks sync"
    done = subprocess.run(
        [sys.executable, "-c", "from kray.cli.main import main; main()", "microbenchmark", "--duration=0.5",
         f"--filter={row}", "--compare-ray", "--compare-framework=kray"],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    other = re.search(rf"^kray: {re.escape(row)} per second ([\d.]+) \+- ([\d.]+)$", done.stdout, re.MULTILINE)
    assert other and float(other.group(1)) > 0, done.stdout
    ratio = re.search(rf"^{re.escape(row)}\s+([\d,.]+)\s+([\d,.]+)\s+([\d,.]+)\s+(kray|even)$", done.stdout,
                      re.MULTILINE)
    assert ratio, f"no ratio line in:\n{done.stdout}"
    mine, theirs, quotient = (float(ratio.group(i).replace(",", "")) for i in (1, 2, 3))
    assert theirs == float(other.group(1))
    assert abs(quotient - mine / theirs) <= 0.01 * quotient + 0.005


def test_compare_refuses_an_interpreter_without_the_framework() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from kray.cli.main import main; main()", "microbenchmark", "--filter=tasks sync",
         f"--compare-ray={sys.executable}", "--compare-framework=no_such_framework_kray_test"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert f"no_such_framework_kray_test is not importable by {sys.executable}" in done.stderr, done.stderr
    assert "single client tasks sync" not in done.stdout  # refused before any row ran
