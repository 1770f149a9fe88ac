"""The `kray start` command of a head or worker container, from rayStartParams and resource limits.

Mirrors KubeRay's generation of `ray start`: num-cpus, num-gpus and memory come from the container's
limits unless rayStartParams set them; "true" is a bare flag, "false" drops it; the command is a shell
line (`/bin/bash -c --`, `ulimit -n` first) so values expand as in KubeRay. Pure; no I/O.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping

from kray_operator import models, quantity
from kray_operator.builders import names

# Flags whose "true"/"false" value is passed through instead of being a bare switch (as KubeRay).
VALUED_BOOLEAN_FLAGS = frozenset({"log-color", "include-dashboard", "include-log-monitor"})
# Accelerators (other than GPUs) that become custom resources, by Kubernetes resource name.
ACCELERATOR_RESOURCES = {"google.com/tpu": "TPU"}
# rayStartParams that `kray start` takes (see runtime/kray/cli/node_commands.py).
KRAY_START_FLAGS = frozenset({
    "address", "port", "node-ip-address", "num-cpus", "num-gpus", "memory", "resources",
    "object-store-memory", "dashboard-host", "dashboard-port", "metrics-export-port", "block",
    "dashboard-agent-listen-port", "ray-client-server-port",
})
# `ray start` flags that have no meaning on kray: accepted, left out of the command, reported once.
NO_EFFECT_FLAGS = frozenset({
    "object-manager-port", "node-manager-port", "gcs-server-port", "min-worker-port", "max-worker-port",
    "worker-port-list", "redis-max-memory", "redis-password", "redis-username",
    "redis-shard-ports", "include-dashboard", "dashboard-agent-grpc-port",
    "dashboard-grpc-port", "runtime-env-agent-port", "plasma-directory", "object-spilling-directory",
    "autoscaling-config", "no-redirect-output", "plasma-store-socket-name", "raylet-socket-name",
    "temp-dir", "system-config", "enable-object-reconstruction", "no-monitor", "tracing-startup-hook",
    "ray-debugger-external", "disable-usage-stats", "labels", "labels-file", "include-log-monitor",
    "log-style", "log-color", "verbose", "storage", "node-name", "enable-resource-isolation",
    "system-reserved-cpu", "system-reserved-memory", "cgroup-path",
})
# As KubeRay: raise the open-files limit of `kray start` and its children (overridable per Pod).
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"
SHELL = ["/bin/bash", "-c", "--"]


def check_params(params: Mapping[str, str]) -> None:
    """Raise naming every rayStartParams key that neither `kray start` nor Ray's `ray start` knows."""
    unknown = sorted(k for k in params if k not in KRAY_START_FLAGS and k not in NO_EFFECT_FLAGS)
    if unknown:
        raise ValueError(
            f"rayStartParams {unknown} are not `ray start` flags kray knows; remove them or check their "
            f"spelling (kray start takes {sorted(KRAY_START_FLAGS)})"
        )


def ignored_params(params: Mapping[str, str]) -> list[str]:
    """The rayStartParams keys that are accepted but have no effect on kray, sorted."""
    return sorted(k for k in params if k in NO_EFFECT_FLAGS)


def is_gpu_resource(name: str) -> bool:
    """Whether a Kubernetes resource name is a GPU ("nvidia.com/gpu", "amd.com/gpu", ...)."""
    return name.lower().endswith("gpu")


def resource_params(resources: models.ResourceRequirements) -> dict[str, str]:
    """rayStartParams implied by a container's resources: num-cpus, memory, num-gpus, resources.

    CPU comes from the limit, else the request, rounded up ("500m" -> "1"); memory from the limit in
    bytes; GPUs from the first resource whose name ends in "gpu"; a TPU limit becomes {"TPU": n}.
    """
    params: dict[str, str] = {}
    cpu = resources.limits.get("cpu")
    if cpu is None or quantity.is_zero(cpu):
        cpu = resources.requests.get("cpu")
    if cpu is not None and not quantity.is_zero(cpu):
        params["num-cpus"] = str(quantity.ceil_int(cpu))
    memory = resources.limits.get("memory")
    if memory is not None and not quantity.is_zero(memory):
        params["memory"] = str(quantity.ceil_int(memory))
    custom: dict[str, object] = {}
    for name in sorted(resources.limits):
        value = resources.limits[name]
        if quantity.is_zero(value):
            continue
        if "num-gpus" not in params and is_gpu_resource(name):
            params["num-gpus"] = str(quantity.ceil_int(value))
        if name in ACCELERATOR_RESOURCES and not custom:
            amount = quantity.parse(value)
            custom[ACCELERATOR_RESOURCES[name]] = int(amount) if amount == int(amount) else float(amount)
    if custom:
        params["resources"] = json.dumps(custom, sort_keys=True)
    return params


def parse_resources(value: str) -> dict[str, float]:
    """The JSON object a `resources` value gives `kray start` once a shell has read it: KubeRay manifests
    quote it (`'"{\\"A\\": 1}"'`), so quoting is undone first; a bare `{"A": 1}` is taken as is."""
    text = value.strip()
    if text.startswith(("'", '"')):
        try:
            words = shlex.split(text)
        except ValueError:
            words = []
        text = words[0] if len(words) == 1 else text
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(
            f"rayStartParams resources={value!r} is not a JSON object; write it like '{{\"accel\": 1}}'"
        ) from None
    if not isinstance(parsed, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in parsed.values()):
        raise ValueError(f"rayStartParams resources={value!r} must be a JSON object of numbers, e.g. '{{\"accel\": 1}}'")
    return parsed


def _merge_resources(user: str | None, implied: str | None) -> str | None:
    """Add implied accelerator resources to the user's `resources` JSON unless it already names one."""
    mine = parse_resources(user) if user is not None else None
    if implied is None:
        return user
    if user is None or mine is None:
        return implied
    if any(name in mine for name in ACCELERATOR_RESOURCES.values()):
        return user
    mine.update(json.loads(implied))
    return json.dumps(mine, sort_keys=True)


def effective_params(node_type: str, params: Mapping[str, str], resources: models.ResourceRequirements,
                     head_address: str | None = None) -> dict[str, str]:
    """rayStartParams with the operator's defaults and the resource-derived values filled in.

    Head: port, dashboard-host=0.0.0.0, metrics-export-port; worker: address=`head_address`.
    Both: block=true (the container lives as long as `kray start`). User values win, except block.
    """
    check_params(params)
    merged = dict(params)
    if node_type == names.HEAD:
        merged.setdefault("port", str(names.GCS_PORT))
        merged.setdefault("dashboard-host", "0.0.0.0")
    else:
        if head_address is None and "address" not in merged:
            raise ValueError("a worker needs the head's address")
        if head_address is not None:
            merged.setdefault("address", head_address)
    merged.setdefault("metrics-export-port", str(names.METRICS_PORT))
    merged["block"] = "true"
    implied = resource_params(resources)
    for key in ("num-cpus", "memory", "num-gpus"):
        if key in implied:
            merged.setdefault(key, implied[key])
    resources_json = _merge_resources(merged.get("resources"), implied.get("resources"))
    if resources_json is not None:
        merged["resources"] = resources_json
    return merged


def _shell_value(key: str, value: str, generated: bool) -> str:
    """A flag's value in the shell line: the user's as written (a shell reads it, as in KubeRay), except
    a `resources` JSON that is not already quoted, and values the operator generated, which are quoted."""
    if generated:
        return shlex.quote(value)
    if key == "resources" and not value.startswith(("'", '"')):
        return shlex.quote(value)
    return value


def render_flags(params: Mapping[str, str], generated: frozenset[str] = frozenset()) -> list[str]:
    """`--key=value` per param in sorted order; "true" -> `--key`, "false" -> nothing (as KubeRay).

    Flags without effect on kray (NO_EFFECT_FLAGS) are left out; `generated` names the params the
    operator wrote (quoted for the shell), the others are passed as the manifest wrote them.
    """
    flags: list[str] = []
    for key in sorted(params):
        if key in NO_EFFECT_FLAGS:
            continue
        value = params[key]
        lowered = value.lower()
        if lowered in ("true", "false") and key not in VALUED_BOOLEAN_FLAGS:
            if lowered == "true":
                flags.append(f"--{key}")
            continue
        flags.append(f"--{key}={_shell_value(key, value, key in generated)}")
    return flags


def start_command(node_type: str, params: Mapping[str, str], user_params: Mapping[str, str]) -> str:
    """`kray start [--head] <flags>` as one shell line, from effective params.

    Params not in `user_params` (or changed from them) were generated by the operator and are quoted.
    """
    generated = frozenset(k for k, v in params.items() if user_params.get(k) != v)
    words = ["kray", "start"] + (["--head"] if node_type == names.HEAD else [])
    return " ".join(words + render_flags(params, generated))


def user_command(container: models.Container) -> str:
    """The container's command and args joined as KubeRay joins them (each word padded with spaces)."""
    return "".join(f" {word} " for word in list(container.command or []) + list(container.args or []))


def container_command(container: models.Container, start: str, overwrite: bool) -> dict[str, list[str]] | None:
    """The command/args to set on the kray container, or None to leave the template's own.

    As KubeRay: with the overwrite annotation, or a command that already runs `ray start`/`kray start`,
    the template's command stays; else `/bin/bash -c -- "[USER && ]ulimit -n ...; exec kray start ..."`,
    the user's part first since `kray start --block` never returns. (`exec` lets `kray start` get the
    Pod's SIGTERM itself; KubeRay's line has none.)
    """
    mine = user_command(container)
    if overwrite or "ray start" in mine:  # also matches "kray start"
        return None
    generated = f"{ULIMIT}; exec {start}"
    return {"command": list(SHELL), "args": [f"{mine} && {generated}" if mine.strip() else generated]}
