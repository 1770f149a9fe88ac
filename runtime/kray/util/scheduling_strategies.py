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


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group's bundle (any bundle when the index is -1). As in Ray,
    placement_group=None schedules outside any group (a child task so escapes its parent's captured group)."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        count = getattr(placement_group, "bundle_count", None)
        if not isinstance(placement_group_bundle_index, int) or placement_group_bundle_index < -1 or (
            count is not None and placement_group_bundle_index >= count
        ):
            raise ValueError(
                f"placement_group_bundle_index {placement_group_bundle_index} is out of range for a group of "
                f"{count} bundle(s)."
            )
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


def apply(options: dict[str, Any], request: dict[str, float]) -> tuple[dict[str, float], tuple]:
    """The resource request and wire strategy for these options (placement groups rename resources)."""
    strategy = options.get("scheduling_strategy")
    pg, index = None, -1
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg, index = strategy.placement_group, strategy.placement_group_bundle_index
        strategy = None
    elif options.get("placement_group") not in (None, "default"):
        pg, index = options["placement_group"], options.get("placement_group_bundle_index", -1)
    if pg is not None:
        from kray.scheduling import placement

        return placement.task_request_in_group(request, pg.id.hex(), index), ("DEFAULT",)
    return request, as_wire(strategy)


def as_wire(strategy: Any) -> tuple:
    """("DEFAULT",), ("SPREAD",) or ("NODE_AFFINITY", node_id bytes, soft)."""
    if strategy is None or strategy == "DEFAULT":
        return ("DEFAULT",)
    if strategy == "SPREAD":
        return ("SPREAD",)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return ("NODE_AFFINITY", bytes.fromhex(strategy.node_id), bool(strategy.soft))
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return ("DEFAULT",)  # expressed through renamed resources, see apply()
    raise ValueError(
        f"Unsupported scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD' or "
        "kray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id, soft)."
    )
