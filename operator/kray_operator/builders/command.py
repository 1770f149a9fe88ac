"""The `kray start` command of a head or worker container, from rayStartParams and resource limits.

Mirrors KubeRay's generation of `ray start`: num-cpus, num-gpus and memory come from the container's
limits unless rayStartParams set them; "true" is a bare flag, "false" drops it. Pure; no I/O.
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
_QUOTES = "'\"` "


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


def _merge_resources(user: str | None, implied: str | None) -> str | None:
    """Add implied accelerator resources to the user's `resources` JSON unless it already names one."""
    if implied is None:
        return user
    if user is None:
        return implied
    try:
        mine = json.loads(user.strip(_QUOTES))
    except json.JSONDecodeError:
        raise ValueError(
            f"rayStartParams resources={user!r} is not JSON; write it like '{{\"accel\": 1}}'"
        ) from None
    if not isinstance(mine, dict):
        raise ValueError(f"rayStartParams resources={user!r} must be a JSON object")  # noqa: TRY004 (a bad value)
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


def render_flags(params: Mapping[str, str]) -> list[str]:
    """`--key=value` per param in sorted order; "true" -> `--key`, "false" -> nothing (as KubeRay).

    A `resources` value loses the shell quotes KubeRay manifests wrap it in, since no shell reads argv.
    """
    flags: list[str] = []
    for key in sorted(params):
        value = params[key]
        lowered = value.lower()
        if lowered in ("true", "false") and key not in VALUED_BOOLEAN_FLAGS:
            if lowered == "true":
                flags.append(f"--{key}")
            continue
        if key == "resources":
            value = value.strip(_QUOTES)
        flags.append(f"--{key}={value}")
    return flags


def start_argv(node_type: str, params: Mapping[str, str]) -> list[str]:
    """`kray start [--head] <flags>` as an argv list, from effective params."""
    argv = ["kray", "start"]
    if node_type == names.HEAD:
        argv.append("--head")
    return argv + render_flags(params)


def user_command(container: models.Container) -> list[str]:
    """The container's own command followed by its args, as written in the template."""
    return list(container.command or []) + list(container.args or [])


def container_command(container: models.Container, start: list[str], overwrite: bool) -> dict[str, list[str]] | None:
    """The command/args to set on the kray container, or None to leave the template's own.

    - overwrite annotation, or a command that already runs `kray start`: left as written;
    - no command: `start` as argv (no shell needed);
    - a command of the user's (a setup step): `/bin/sh -c '<user command> && exec kray start ...'`,
      the user's part first since `kray start --block` never returns.
    """
    mine = user_command(container)
    if overwrite or "kray start" in " ".join(mine):
        return None
    if not mine:
        return {"command": start, "args": []}
    script = f"{' '.join(mine)} && exec {shlex.join(start)}"
    return {"command": ["/bin/sh", "-c"], "args": [script]}
