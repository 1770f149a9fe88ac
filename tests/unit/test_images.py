"""Static checks of the container images' recipes (images/): build arguments, non-root users, no CA or
secret baked in, agreement with the operator chart, and the `make images` entry point.

Reads files; runs only `make -n` and build.sh's no-engine path (milliseconds). Building and running the
images is `make images` (see images/build.sh), too slow for this tier.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
RUNTIME = IMAGES / "runtime.Dockerfile"
OPERATOR = IMAGES / "operator.Dockerfile"
CHART_VALUES = ROOT / "helm" / "kray-operator" / "values.yaml"


def instructions(dockerfile: pathlib.Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    return result


def args_of(dockerfile: pathlib.Path, keyword: str) -> list[str]:
    return [rest for kw, rest in instructions(dockerfile) if kw == keyword]


def final_stage(dockerfile: pathlib.Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    return steps[last_from:]


def test_both_dockerfiles_exist() -> None:
    assert RUNTIME.is_file() and OPERATOR.is_file()


def test_runtime_base_is_a_build_argument() -> None:
    steps = instructions(RUNTIME)
    assert steps[0] == ("ARG", "BASE=python:3.11-slim"), "the first line must declare ARG BASE before any FROM"
    froms = args_of(RUNTIME, "FROM")
    assert froms and all(f.split()[0] == "${BASE}" for f in froms)


def test_operator_builds_on_the_runtime_image() -> None:
    steps = instructions(OPERATOR)
    assert steps[0] == ("ARG", "RUNTIME_IMAGE=kray:latest")
    assert args_of(OPERATOR, "FROM") == ["${RUNTIME_IMAGE}"]
    assert any("kray[operator]" in run for run in args_of(OPERATOR, "RUN"))


def _final_user(dockerfile: pathlib.Path) -> str:
    users = [rest for kw, rest in final_stage(dockerfile) if kw == "USER"]
    assert users, f"{dockerfile.name} sets no USER"
    return users[-1]


@pytest.mark.parametrize(("dockerfile", "uid"), [(RUNTIME, 1000), (OPERATOR, 65532)], ids=["runtime", "operator"])
def test_runs_as_a_numeric_non_root_user(dockerfile: pathlib.Path, uid: int) -> None:
    # Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert _final_user(dockerfile) == f"{uid}:{uid}"
    assert any(f"--uid {uid}" in run for run in args_of(dockerfile, "RUN")), "the user must exist in /etc/passwd"


def test_operator_user_matches_the_chart() -> None:
    values = yaml.safe_load(CHART_VALUES.read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert _final_user(OPERATOR) == f"{uid}:{values['podSecurityContext']['runAsGroup']}"
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    envs = " ".join(args_of(OPERATOR, "ENV"))
    assert "HOME=/tmp" in envs and "PYTHONDONTWRITEBYTECODE=1" in envs  # /tmp is the chart's emptyDir


def test_operator_entrypoint_is_the_charts_command() -> None:
    assert args_of(OPERATOR, "ENTRYPOINT") == ['["python", "-m", "kray_operator"]']
    deployment = (ROOT / "helm" / "kray-operator" / "templates" / "deployment.yaml").read_text()
    assert 'command: ["python", "-m", "kray_operator"]' in deployment


def test_runtime_defaults() -> None:
    final = dict(final_stage(RUNTIME))
    assert final["WORKDIR"] == "/home/kray"
    assert args_of(RUNTIME, "CMD") == ['["kray", "--help"]']
    assert "/opt/kray/venv/bin" in final["ENV"].split("PATH=", 1)[1].split()[0]


@pytest.mark.parametrize("dockerfile", [RUNTIME, OPERATOR], ids=["runtime", "operator"])
def test_pip_keeps_no_cache(dockerfile: pathlib.Path) -> None:
    installs = [run for run in args_of(dockerfile, "RUN") if "pip install" in run]
    assert installs
    assert all("--no-cache-dir" in run for run in installs)


@pytest.mark.parametrize("dockerfile", [RUNTIME, OPERATOR], ids=["runtime", "operator"])
def test_no_ca_or_secret_baked_in(dockerfile: pathlib.Path) -> None:
    for kw, rest in instructions(dockerfile):
        if kw in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem|key)\b|/etc/ssl|secret", rest, re.IGNORECASE), f"{kw} {rest}"
        if kw in ("ENV", "ARG"):
            assert not re.search(r"PIP_CERT|REQUESTS_CA_BUNDLE|SSL_CERT_FILE|PIP_INDEX_URL|TOKEN|PASSWORD", rest), \
                f"{kw} {rest}"
    # The build-time CA arrives only as a RUN-scoped secret mount.
    for run in args_of(dockerfile, "RUN"):
        if "PIP_CERT" in run:
            assert run.startswith("--mount=type=secret,id=hostca ")


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "**/__pycache__"):
        assert entry in ignored


def test_build_script_passes_the_ca_as_a_secret() -> None:
    script = (IMAGES / "build.sh").read_text()
    assert "--secret" in script and "id=hostca" in script
    assert "kray:$tag" in script and "kray-operator:$tag" in script
    assert (IMAGES / "containers.conf").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_images_calls_build_script() -> None:
    result = subprocess.run(["make", "-n", "images"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            check=True)
    assert "images/build.sh" in result.stdout


def test_build_script_without_an_engine_exits_2(tmp_path: pathlib.Path) -> None:
    # A PATH with the script's helpers but neither docker nor podman.
    for tool in ("bash", "dirname", "cat", "timeout"):
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (tmp_path / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRAY_")}
    env["PATH"] = str(tmp_path)
    result = subprocess.run([str(tmp_path / "bash"), str(IMAGES / "build.sh")], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    assert "no working container engine" in result.stderr


def test_build_script_if_engine_without_an_engine_says_so_and_exits_0(tmp_path: pathlib.Path) -> None:
    # `make test` calls `build.sh --if-changed --if-engine`: no engine is not an error there (the
    # container-mode tests fail instead, saying why), and no image reference is printed.
    for tool in ("bash", "dirname", "cat", "timeout"):
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (tmp_path / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRAY_")}
    env["PATH"] = str(tmp_path)
    result = subprocess.run([str(tmp_path / "bash"), str(IMAGES / "build.sh"), "--if-changed", "--if-engine"],
                            env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "images not built" in result.stderr and "KRAY_IMAGE" not in result.stdout


def test_build_script_rejects_unknown_options() -> None:
    result = subprocess.run(["bash", str(IMAGES / "build.sh"), "--if-unchanged"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 1 and "unknown option --if-unchanged" in result.stderr


def test_runtime_image_carries_numpy_and_pandas() -> None:
    build_steps = " ".join(args_of(RUNTIME, "RUN"))
    assert '"numpy>=' in build_steps and '"pandas>=' in build_steps
