"""Scheduling strategies accepted by `.options(scheduling_strategy=...)`, as in ray.util.

Pure data; `as_wire` turns any accepted form into the tuple the raylets understand.
"""

from __future__ import annotations

from typing import Any


class NodeAffinitySchedulingStrategy:
    """Run on the node with this id; with soft=True, run elsewhere when that node cannot."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False, _fail_on_unavailable: bool = False) -> None:
        if not isinstance(node_id, str):
            raise TypeError("NodeAffinitySchedulingStrategy needs the node id as a hex string (kray.nodes()[i]['NodeID']).")
        try:
            bytes.fromhex(node_id)
        except ValueError:
            raise ValueError(f"{node_id!r} is not a node id (a hex string from kray.nodes()).") from None
        self.node_id = node_id
        self.soft = soft

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


def as_wire(strategy: Any) -> tuple:
    """("DEFAULT",), ("SPREAD",) or ("NODE_AFFINITY", node_id bytes, soft)."""
    if strategy is None or strategy == "DEFAULT":
        return ("DEFAULT",)
    if strategy == "SPREAD":
        return ("SPREAD",)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return ("NODE_AFFINITY", bytes.fromhex(strategy.node_id), bool(strategy.soft))
    raise ValueError(
        f"Unsupported scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD' or "
        "kray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id, soft)."
    )
