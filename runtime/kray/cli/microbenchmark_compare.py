"""`kray microbenchmark --compare-ray[=PYTHON]`: the same loops under Ray, in the same run, as ratios.

Runs microbenchmark_rows as a script under PYTHON (this interpreter unless told; Ray must be importable
there), with kray's own source on PYTHONPATH so that the very same row code runs, reads its `ROW` lines
and prints kray's figure, the other framework's and their ratio for every row both measured. Starts that
interpreter as a subprocess; nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from kray.cli import microbenchmark_rows

# The directory that holds the `kray` package: the other interpreter imports the row modules from it.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_TIMEOUT_S = 24 * 3600.0


def resolve_python(python: str | None) -> str:
    """The interpreter to run the other framework in: PYTHON as given (a path or a name on PATH)."""
    if not python:
        return sys.executable
    if os.sep not in python:
        import shutil

        found = shutil.which(python)
        if found is None:
            raise click.ClickException(f"--compare-ray={python}: no such interpreter on PATH")
        return found
    if not os.access(python, os.X_OK):
        raise click.ClickException(f"--compare-ray={python}: not an executable interpreter")
    return python


def _env() -> dict[str, str]:
    paths = [SOURCE_ROOT, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def check_importable(python: str, framework: str) -> None:
    """Fail at once, naming the interpreter, when `framework` cannot be imported there."""
    done = subprocess.run([python, "-c", f"import {framework}"], capture_output=True, text=True, timeout=300,
                          env=_env(), check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise click.ClickException(
            f"--compare-ray: {framework} is not importable by {python}: {last}. Give an interpreter that has "
            f"it: --compare-ray=/path/to/python")


def run_other(python: str, framework: str, pattern: str, duration: float, scale: bool,
              echo: Callable[[str], None] = click.echo) -> list[dict[str, Any]]:
    """Run the rows under `framework` in `python`; echo its lines as they come and return its rows."""
    echo("")
    echo(f"the same rows under {framework} ({python}):")
    command = [python, "-m", "kray.cli.microbenchmark_rows", "--framework", framework, "--filter", pattern,
               "--duration", str(duration), *(["--scale"] if scale else [])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(microbenchmark_rows.ROW_PREFIX):
                row = microbenchmark_rows.parse_rows(line)[0]
                words = [row["name"], row["unit"]] if row["unit"] else [row["name"]]
                echo(" ".join([f"{framework}:", *words, f"{row['mean']:.2f}", "+-", f"{row['std']:.2f}"]))
            elif line.startswith("skipped:"):
                echo(f"{framework}: {line.rstrip()}")
        code = proc.wait(RUN_TIMEOUT_S)
    if code != 0:
        tail = "".join(lines[-30:])
        raise click.ClickException(f"the {framework} run failed (exit {code}):\n{tail}")
    return microbenchmark_rows.parse_rows("".join(lines))


def lower_is_better(unit: str) -> bool:
    """Rates ("per second") are better high; times, memory and percentages better low."""
    return unit != microbenchmark_rows.PER_SECOND


def ratios(mine: Sequence[Any], other: Sequence[dict[str, Any]]) -> list[tuple[str, float, float, float, str]]:
    """(row, kray's mean, the other's mean, kray/other, who is ahead) for every row both measured."""
    theirs = {row["name"]: row for row in other}
    table = []
    for result in mine:
        row = theirs.get(result.name)
        if row is None:
            continue
        ratio = result.mean / row["mean"] if row["mean"] else float("inf")
        if result.mean == row["mean"]:
            ahead = "even"
        elif (result.mean < row["mean"]) == lower_is_better(result.unit):
            ahead = "kray"
        else:
            ahead = "other"
        table.append((result.name, result.mean, row["mean"], ratio, ahead))
    return table


def print_ratios(mine: Sequence[Any], other: Sequence[dict[str, Any]], framework: str,
                 echo: Callable[[str], None] = click.echo) -> None:
    table = ratios(mine, other)
    if not table:
        echo(f"no row was measured under both kray and {framework}")
        return
    width = max(len(row[0]) for row in table)
    echo("")
    echo(f"{'metric':<{width}}  {'kray':>14}  {framework:>14}  {'kray/' + framework:>12}  ahead")
    echo(f"{'-' * width}  {'-' * 14}  {'-' * 14}  {'-' * 12}  -----")
    for name, kray_mean, other_mean, ratio, ahead in table:
        echo(f"{name:<{width}}  {kray_mean:>14,.2f}  {other_mean:>14,.2f}  {ratio:>12,.2f}  "
             f"{framework if ahead == 'other' else ahead}")
