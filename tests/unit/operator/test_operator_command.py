"""builders.command: rayStartParams and resource limits become the `kray start` argv, as in KubeRay."""

from __future__ import annotations

import pytest
from kray_operator import models
from kray_operator.builders import command


def res(limits=None, requests=None) -> models.ResourceRequirements:
    return models.ResourceRequirements(limits=limits or {}, requests=requests or {})


def test_flags_sorted_with_kuberay_boolean_handling() -> None:
    flags = command.render_flags({
        "num-cpus": "2", "block": "true", "disable-usage-stats": "True", "no-monitor": "false",
        "log-color": "false", "include-dashboard": "true", "include-log-monitor": "False",
    })
    assert flags == [
        "--block", "--disable-usage-stats", "--include-dashboard=true", "--include-log-monitor=False",
        "--log-color=false", "--num-cpus=2",
    ]


def test_resources_flag_loses_shell_quotes() -> None:
    assert command.render_flags({"resources": "'{\"A\": 1}'"}) == ['--resources={"A": 1}']


@pytest.mark.parametrize(
    "limits, requests, expect",
    [
        ({"cpu": "500m"}, {}, {"num-cpus": "1"}),
        ({"cpu": "2", "memory": "1Gi"}, {}, {"num-cpus": "2", "memory": "1073741824"}),
        ({}, {"cpu": "1500m", "memory": "1Gi"}, {"num-cpus": "2"}),
        ({"cpu": "0"}, {"cpu": "3"}, {"num-cpus": "3"}),
        ({"nvidia.com/gpu": 2}, {}, {"num-gpus": "2"}),
        ({"amd.com/gpu": "1", "nvidia.com/gpu": "0"}, {}, {"num-gpus": "1"}),
        ({"google.com/tpu": "4"}, {}, {"resources": '{"TPU": 4}'}),
        ({}, {}, {}),
    ],
)
def test_resource_params(limits, requests, expect) -> None:
    assert command.resource_params(res(limits, requests)) == expect


def test_head_defaults_and_limits() -> None:
    params = command.effective_params("head", {}, res({"cpu": "500m", "memory": "2Gi", "nvidia.com/gpu": "1"}))
    assert command.start_argv("head", params) == [
        "kray", "start", "--head", "--block", "--dashboard-host=0.0.0.0", "--memory=2147483648",
        "--metrics-export-port=8080", "--num-cpus=1", "--num-gpus=1", "--port=6379",
    ]


def test_params_override_limits_but_not_block() -> None:
    params = command.effective_params(
        "head", {"num-cpus": "0", "memory": "100", "num-gpus": "0", "port": "7000", "block": "false"},
        res({"cpu": "4", "memory": "1Gi", "nvidia.com/gpu": "2"}),
    )
    assert params["num-cpus"] == "0" and params["memory"] == "100" and params["num-gpus"] == "0"
    assert params["port"] == "7000" and params["block"] == "true"


def test_worker_joins_the_head() -> None:
    params = command.effective_params("worker", {}, res({"cpu": "1"}), head_address="c-head-svc.ns.svc.cluster.local:6379")
    argv = command.start_argv("worker", params)
    assert argv[:2] == ["kray", "start"] and "--head" not in argv
    assert "--address=c-head-svc.ns.svc.cluster.local:6379" in argv and "--block" in argv
    assert not any(a.startswith(("--port", "--dashboard-host")) for a in argv)


def test_worker_address_from_params_wins() -> None:
    params = command.effective_params("worker", {"address": "elsewhere:1"}, res(), head_address="svc:6379")
    assert params["address"] == "elsewhere:1"
    with pytest.raises(ValueError, match="needs the head's address"):
        command.effective_params("worker", {}, res())


def test_user_resources_merge_with_tpus() -> None:
    params = command.effective_params("worker", {"resources": "'{\"accel\": 1}'"}, res({"google.com/tpu": 4}),
                                      head_address="h:1")
    assert params["resources"] == '{"TPU": 4, "accel": 1}'
    kept = command.effective_params("worker", {"resources": '{"TPU": 1}'}, res({"google.com/tpu": 4}), head_address="h:1")
    assert kept["resources"] == '{"TPU": 1}'
    with pytest.raises(ValueError, match="is not JSON"):
        command.effective_params("worker", {"resources": "{x}"}, res({"google.com/tpu": 4}), head_address="h:1")


START = ["kray", "start", "--head", "--block"]


def container(**fields) -> models.Container:
    return models.Container(name="kray", image="kray:latest", **fields)


def test_command_without_user_command_is_plain_argv() -> None:
    assert command.container_command(container(), START, overwrite=False) == {"command": START, "args": []}


def test_user_setup_command_runs_first_then_exec() -> None:
    out = command.container_command(container(command=["pip", "install", "x"], args=["-q"]), START, overwrite=False)
    assert out == {"command": ["/bin/sh", "-c"], "args": ["pip install x -q && exec kray start --head --block"]}


def test_own_kray_start_or_overwrite_is_left_alone() -> None:
    assert command.container_command(container(command=["sh", "-c", "kray start --head --block"]), START, False) is None
    assert command.container_command(container(command=["my-entry"]), START, overwrite=True) is None
