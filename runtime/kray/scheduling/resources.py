"""Resource sets (CPU, GPU, memory, custom) and the arithmetic the raylet's ledger needs.

Pure functions over dicts of name -> amount; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

EPSILON = 1e-9


def fits(available: Mapping[str, float], request: Mapping[str, float]) -> bool:
    """True if every requested amount is available."""
    for name, amount in request.items():
        if amount > EPSILON and available.get(name, 0.0) + EPSILON < amount:
            return False
    return True


def feasible(total: Mapping[str, float], request: Mapping[str, float]) -> bool:
    """True if the request could ever fit on a node with these totals."""
    return fits(total, request)


def subtract(available: dict[str, float], request: Mapping[str, float]) -> None:
    for name, amount in request.items():
        if amount:
            available[name] = available.get(name, 0.0) - amount


def add(available: dict[str, float], request: Mapping[str, float]) -> None:
    for name, amount in request.items():
        if amount:
            available[name] = available.get(name, 0.0) + amount


def task_request(
    num_cpus: float | None, num_gpus: float | None, memory: float | None,
    resources: Mapping[str, float] | None, default_cpus: float = 1.0,
) -> dict[str, float]:
    """The resource request of a task or actor from its options (Ray's defaults: 1 CPU)."""
    request: dict[str, float] = {}
    cpus = default_cpus if num_cpus is None else float(num_cpus)
    if cpus:
        request["CPU"] = cpus
    if num_gpus:
        request["GPU"] = float(num_gpus)
    if memory:
        request["memory"] = float(memory)
    for name, amount in (resources or {}).items():
        if name in ("CPU", "GPU", "memory"):
            raise ValueError(
                f"Use num_cpus/num_gpus/memory instead of resources={{'{name}': ...}}."
            )
        if amount < 0:
            raise ValueError(f"Resource {name!r} must not be negative (got {amount}).")
        if amount:
            request[name] = float(amount)
    for name, amount in request.items():
        if amount < 0:
            raise ValueError(f"Resource {name} must not be negative (got {amount}).")
    return request


def describe(request: Mapping[str, float]) -> str:
    return ", ".join(f"{k}: {v:g}" for k, v in sorted(request.items())) or "no resources"


def take_gpus(gpu_free: dict[int, float], amount: float) -> dict[int, float]:
    """Pick GPU indices for a lease from `gpu_free` (index -> free share, updated): whole free GPUs,
    or a share of one for fractions."""
    if amount <= 0:
        return {}
    if amount < 1:
        for index, free in sorted(gpu_free.items(), key=lambda kv: (kv[1], kv[0])):
            if free + 1e-9 >= amount:
                gpu_free[index] = free - amount
                return {index: amount}
        return {}
    taken: dict[int, float] = {}
    for index, free in sorted(gpu_free.items()):
        if len(taken) >= int(amount):
            break
        if free >= 1.0 - 1e-9:
            taken[index] = 1.0
            gpu_free[index] = 0.0
    return taken
