"""builders.command: rayStartParams and resource limits become the `kray start` shell line, as in KubeRay."""

from __future__ import annotations

import pytest
from kray_operator import models
from kray_operator.builders import command


def res(limits=None, requests=None) -> models.ResourceRequirements:
    return models.ResourceRequirements(limits=limits or {}, requests=requests or {})


def test_flags_sorted_with_kuberay_boolean_handling() -> None:
    flags = command.render_flags({"num-cpus": "2", "block": "true", "dashboard-host": "false"})
    assert flags == ["--block", "--num-cpus=2"]


def test_flags_without_effect_on_kray_are_left_out() -> None:
    params = {"num-cpus": "2", "disable-usage-stats": "true", "log-color": "false", "object-manager-port": "8076",
              "include-dashboard": "true", "temp-dir": "/tmp/x"}
    assert command.render_flags(params) == ["--num-cpus=2"]
    assert command.ignored_params(params) == [
        "disable-usage-stats", "include-dashboard", "log-color", "object-manager-port", "temp-dir"]


def test_unknown_flags_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"\['num-cpu', 'wat'\] are not `ray start` flags"):
        command.effective_params("head", {"num-cpu": "1", "wat": "x", "num-gpus": "0"}, res())


def test_user_values_go_to_the_shell_as_written() -> None:
    assert command.render_flags({"node-ip-address": "$MY_POD_IP"}) == ["--node-ip-address=$MY_POD_IP"]
    # KubeRay's ray-job.resources.yaml quotes the JSON for the shell; a bare JSON object gets quoted here.
    quoted = '"{\\"resource1\\": 2, \\"resource2\\": 3}"'
    assert command.render_flags({"resources": quoted}) == [f"--resources={quoted}"]
    assert command.render_flags({"resources": '{"A": 1}'}) == ["--resources='{\"A\": 1}'"]


@pytest.mark.parametrize("value", ['"{\\"resource1\\": 2}"', "'{\"resource1\": 2}'", '{"resource1": 2}'])
def test_resources_json_as_a_shell_reads_it(value: str) -> None:
    assert command.parse_resources(value) == {"resource1": 2}


@pytest.mark.parametrize("value", ["{x}", '"[1]"', '{"a": "b"}'])
def test_bad_resources_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="resources="):
        command.effective_params("head", {"resources": value}, res({"google.com/tpu": 4}))


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
    assert command.start_command("head", params, {}) == (
        "kray start --head --block --dashboard-host=0.0.0.0 --memory=2147483648 "
        "--metrics-export-port=8080 --num-cpus=1 --num-gpus=1 --port=6379")


def test_params_override_limits_but_not_block() -> None:
    params = command.effective_params(
        "head", {"num-cpus": "0", "memory": "100", "num-gpus": "0", "port": "7000", "block": "false"},
        res({"cpu": "4", "memory": "1Gi", "nvidia.com/gpu": "2"}),
    )
    assert params["num-cpus"] == "0" and params["memory"] == "100" and params["num-gpus"] == "0"
    assert params["port"] == "7000" and params["block"] == "true"


def test_worker_joins_the_head() -> None:
    params = command.effective_params("worker", {}, res({"cpu": "1"}), head_address="c-head-svc.ns.svc.cluster.local:6379")
    line = command.start_command("worker", params, {})
    assert line.startswith("kray start --address=c-head-svc.ns.svc.cluster.local:6379 --block")
    assert "--head" not in line and "--port" not in line and "--dashboard-host" not in line


def test_worker_address_from_params_wins() -> None:
    params = command.effective_params("worker", {"address": "elsewhere:1"}, res(), head_address="svc:6379")
    assert params["address"] == "elsewhere:1"
    with pytest.raises(ValueError, match="needs the head's address"):
        command.effective_params("worker", {}, res())


def test_user_resources_merge_with_tpus() -> None:
    params = command.effective_params("worker", {"resources": "'{\"accel\": 1}'"}, res({"google.com/tpu": 4}),
                                      head_address="h:1")
    assert params["resources"] == '{"TPU": 4, "accel": 1}'
    line = command.start_command("worker", params, {"resources": "'{\"accel\": 1}'"})
    assert "--resources='{\"TPU\": 4, \"accel\": 1}'" in line, "a merged value is the operator's: quoted"
    kept = command.effective_params("worker", {"resources": '{"TPU": 1}'}, res({"google.com/tpu": 4}), head_address="h:1")
    assert kept["resources"] == '{"TPU": 1}'


START = "kray start --head --block"
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"


def container(**fields) -> models.Container:
    return models.Container(name="kray", image="kray:latest", **fields)


def test_command_without_user_command_runs_in_bash_after_ulimit() -> None:
    assert command.container_command(container(), START, overwrite=False) == {
        "command": ["/bin/bash", "-c", "--"], "args": [f"{ULIMIT}; exec {START}"]}


def test_user_command_and_args_are_joined_and_run_first() -> None:
    # KubeRay's head-command sample: command ["echo 123"], args ["456"].
    out = command.container_command(container(command=["echo 123"], args=["456"]), START, overwrite=False)
    assert out == {"command": ["/bin/bash", "-c", "--"], "args": [f" echo 123  456  && {ULIMIT}; exec {START}"]}


def test_own_ray_start_or_overwrite_is_left_alone() -> None:
    assert command.container_command(container(command=["sh", "-c", "kray start --head --block"]), START, False) is None
    assert command.container_command(container(args=["ray start --head --block"]), START, False) is None
    assert command.container_command(container(command=["my-entry"]), START, overwrite=True) is None
