"""Where a lease request should run: the raylet's placement decision, as a pure function.

Data in (this node, the request, the cluster view), decision out; no I/O. Follows Ray's hybrid
policy in spirit: run locally when the request fits here, otherwise spill back to a node that has
the resources free now, queue locally when only busy nodes fit, and report requests that fit no
node as infeasible. SPREAD rotates over the nodes that fit; node affinity pins to one node (or
prefers it, when soft).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from kray.scheduling import resources as res

DEFAULT = "DEFAULT"
SPREAD = "SPREAD"

GRANT, SPILL, QUEUE, INFEASIBLE = "grant", "spill", "queue", "infeasible"


@dataclasses.dataclass(frozen=True)
class NodeView:
    node_id: bytes
    raylet_address: str
    total: Mapping[str, float]
    available: Mapping[str, float]
    alive: bool = True


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # GRANT, SPILL, QUEUE or INFEASIBLE
    node: NodeView | None = None


# A request spilled this many times stays where it is: views of other nodes' load are a heartbeat
# old, and two raylets must not pass a request back and forth.
MAX_SPILLS = 3


def decide(
    local: NodeView, request: Mapping[str, float], cluster: Sequence[NodeView], strategy: tuple = (DEFAULT,),
    spilled: int = 0, spread_index: int = 0,
) -> Decision:
    """Decide where a request goes. `spilled`: how many raylets already sent it on."""
    nodes = [n for n in cluster if n.alive and n.node_id != local.node_id]
    kind = strategy[0] if strategy else DEFAULT
    if kind == "NODE_AFFINITY":
        target_id, soft = strategy[1], strategy[2]
        if target_id == local.node_id:
            return local_or_queue(local, request)
        target = next((n for n in nodes if n.node_id == target_id), None)
        if target is not None and res.feasible(target.total, request):
            return Decision(SPILL, target)
        if not soft:
            return Decision(INFEASIBLE)
        kind = DEFAULT
    if spilled and res.fits(local.available, request):
        return Decision(GRANT)  # sent here because it fits: run it
    if spilled >= MAX_SPILLS and res.feasible(local.total, request):
        return local_or_queue(local, request)
    if spilled and kind == SPREAD:
        kind = DEFAULT  # the spread choice was made by the first raylet
    if kind == SPREAD:
        candidates = sorted([local, *nodes], key=lambda n: n.node_id)
        free = [n for n in candidates if res.fits(n.available, request)]
        pool = free or [n for n in candidates if res.feasible(n.total, request)]
        if not pool:
            return Decision(INFEASIBLE)
        choice = pool[spread_index % len(pool)]
        if choice.node_id == local.node_id:
            return local_or_queue(local, request)
        return Decision(SPILL, choice)
    if res.fits(local.available, request):
        return Decision(GRANT)
    free_elsewhere = [n for n in nodes if res.fits(n.available, request)]
    if free_elsewhere:
        return Decision(SPILL, max(free_elsewhere, key=lambda n: _headroom(n, request)))
    if res.feasible(local.total, request):
        return Decision(QUEUE)
    feasible_elsewhere = [n for n in nodes if res.feasible(n.total, request)]
    if feasible_elsewhere:
        return Decision(SPILL, feasible_elsewhere[0])
    return Decision(INFEASIBLE)


def local_or_queue(local: NodeView, request: Mapping[str, float]) -> Decision:
    """Run here now if it fits, else wait here if this node could ever fit it."""
    if res.fits(local.available, request):
        return Decision(GRANT)
    if res.feasible(local.total, request):
        return Decision(QUEUE)
    return Decision(INFEASIBLE)


def _headroom(node: NodeView, request: Mapping[str, float]) -> float:
    """How much CPU (or, failing that, the first requested resource) the node would have left."""
    name = "CPU" if "CPU" in request or not request else next(iter(request))
    return node.available.get(name, 0.0) - request.get(name, 0.0)
