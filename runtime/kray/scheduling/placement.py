"""Where the bundles of a placement group go: PACK, SPREAD, STRICT_PACK, STRICT_SPREAD.

Pure: node views and bundles in, one node id per bundle (or None) out; no I/O. `place` uses the
nodes' free resources (can it be placed now?); pass the totals to ask whether it ever could.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kray.scheduling import resources as res
from kray.scheduling.policy import NodeView

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def place(
    bundles: Sequence[Mapping[str, float]], strategy: str, nodes: Sequence[NodeView], use_totals: bool = False
) -> list[bytes] | None:
    """A node id for each bundle, or None when the group does not fit (all or nothing)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"placement strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    free = {n.node_id: dict(n.total if use_totals else n.available) for n in nodes if n.alive}
    order = sorted(free)  # deterministic
    if not order:
        return None
    if strategy in ("PACK", "STRICT_PACK"):
        combined: dict[str, float] = {}
        for bundle in bundles:
            res.add(combined, bundle)
        for node_id in order:
            if res.fits(free[node_id], combined):
                return [node_id] * len(bundles)
        if strategy == "STRICT_PACK":
            return None
        return _greedy(bundles, free, order, prefer_same=True)
    if strategy == "STRICT_SPREAD":
        if len(bundles) > len(order):
            return None
        return _distinct(bundles, free, order)
    return _distinct(bundles, free, order) or _greedy(bundles, free, order, prefer_same=False)


def _greedy(
    bundles: Sequence[Mapping[str, float]], free: dict[bytes, dict[str, float]], order: list[bytes], prefer_same: bool
) -> list[bytes] | None:
    chosen: list[bytes] = []
    last: bytes | None = None
    for i, bundle in enumerate(bundles):
        candidates = ([last] if prefer_same and last is not None else []) + (
            order if prefer_same else order[i % len(order):] + order[: i % len(order)]
        )
        node_id = next((n for n in candidates if res.fits(free[n], bundle)), None)
        if node_id is None:
            return None
        res.subtract(free[node_id], bundle)
        chosen.append(node_id)
        last = node_id
    return chosen


def _distinct(
    bundles: Sequence[Mapping[str, float]], free: dict[bytes, dict[str, float]], order: list[bytes]
) -> list[bytes] | None:
    """Each bundle on a different node (a simple backtracking match; groups are small)."""
    chosen: list[bytes] = []

    def assign(i: int) -> bool:
        if i == len(bundles):
            return True
        for node_id in order:
            if node_id not in chosen and res.fits(free[node_id], bundles[i]):
                chosen.append(node_id)
                if assign(i + 1):
                    return True
                chosen.pop()
        return False

    return list(chosen) if assign(0) else None


def bundle_resources(bundle: Mapping[str, float], pg_hex: str, index: int) -> dict[str, float]:
    """The resources a reserved bundle adds to its node, named as Ray names them."""
    out: dict[str, float] = {}
    for name, amount in bundle.items():
        out[f"{name}_group_{index}_{pg_hex}"] = amount
        out[f"{name}_group_{pg_hex}"] = amount
    out[f"bundle_group_{index}_{pg_hex}"] = 1000.0
    out[f"bundle_group_{pg_hex}"] = 1000.0
    return out


def task_request_in_group(request: Mapping[str, float], pg_hex: str, index: int) -> dict[str, float]:
    """A task's request rewritten to draw from a placement group's bundle (any bundle if index is -1)."""
    suffix = f"_group_{pg_hex}" if index < 0 else f"_group_{index}_{pg_hex}"
    out = {f"{name}{suffix}": amount for name, amount in request.items() if amount}
    out[f"bundle{suffix}"] = 0.001
    return out
