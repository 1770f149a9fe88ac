"""Placement groups: reserve bundles of resources across nodes (PACK, SPREAD, STRICT_PACK,
STRICT_SPREAD) and schedule tasks and actors into them, as ray.util.placement_group does.

Talks to the GCS through the driver's core worker; `ready()` is an ObjectRef this process owns,
set when the GCS reports the group created.
"""

from __future__ import annotations

import os
from typing import Any

from kray import exceptions, ids, serialization
from kray.api import runtime
from kray.core import object_table, refs
from kray.protocol import messages
from kray.scheduling import placement


class PlacementGroupID:
    def __init__(self, binary: bytes) -> None:
        self._binary = binary

    def binary(self) -> bytes:
        return self._binary

    def hex(self) -> str:
        return self._binary.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._binary == self._binary

    def __hash__(self) -> int:
        return hash(self._binary)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self.hex()})"


class PlacementGroup:
    """A handle to a placement group; pass it to PlacementGroupSchedulingStrategy."""

    def __init__(self, pg_id: bytes, bundles: list[dict[str, float]], strategy: str = "PACK") -> None:
        self.id = PlacementGroupID(pg_id)
        self.bundle_specs = [dict(b) for b in bundles]
        self.strategy = strategy

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> refs.ObjectRef:
        """An ObjectRef that becomes ready (True) once every bundle is reserved."""
        core = runtime.current_core()
        oid = ids.put_object_id(core.task_ids.next(), 1)
        core.objects.new_owned(oid)
        ref = refs.ObjectRef(oid, core.address)
        pg_id = self.id.binary()

        def on_reply(reply: Any, payload: list) -> None:
            if isinstance(reply, messages.Reply) and reply.ok:
                core.objects.set_value(oid, object_table.INLINE, serialization.serialize(True)[0])
            else:
                error = exceptions.RayError(f"placement group {pg_id.hex()} will not be ready: {getattr(reply, 'value', reply)}")
                core.objects.set_value(oid, object_table.ERROR, serialization.serialize(error)[0])

        core.loop.call_soon_threadsafe(
            core.loop.request, core.gcs_address, lambda rid: messages.WaitPlacementGroup(rid, pg_id), on_reply, 10**9
        )
        return ref

    def wait(self, timeout_seconds: float = 30) -> bool:
        """True once the group is created; False if it is not created within the timeout."""
        from kray.api import objects

        ready, _ = objects.wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlacementGroup, (self.id.binary(), self.bundle_specs, self.strategy))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def placement_group(
    bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "", lifetime: str | None = None,
    _max_cpu_fraction_per_node: float | None = None, _soft_target_node_id: str | None = None,
    bundle_label_selector: list[dict[str, str]] | None = None,
) -> PlacementGroup:
    """Reserve `bundles` (a list of resource dicts) with `strategy`; returns at once (see `ready()`).

    A group is removed when the job that created it ends, unless lifetime="detached" (then it stays
    until remove_placement_group), as in Ray.
    """
    if _max_cpu_fraction_per_node not in (None, 1, 1.0):
        raise ValueError("_max_cpu_fraction_per_node is not supported by kray (it is deprecated in Ray too); leave it out.")
    if _soft_target_node_id is not None:
        raise ValueError("_soft_target_node_id is not supported by kray; leave it out.")
    if bundle_label_selector:
        raise ValueError("bundle_label_selector is not supported by kray (nodes have no labels); leave it out.")
    if not isinstance(bundles, list) or not bundles:
        raise ValueError("placement_group() needs a non-empty list of bundles, e.g. [{'CPU': 1}, {'CPU': 1}].")
    clean = []
    for bundle in bundles:
        if not isinstance(bundle, dict) or not bundle:
            raise ValueError(f"Each bundle must be a non-empty dict of resources, got {bundle!r}.")
        if any(not isinstance(v, (int, float)) or v < 0 for v in bundle.values()) or sum(bundle.values()) <= 0:
            raise ValueError(f"Bundle {bundle!r} must ask for a positive amount of at least one resource.")
        clean.append({k: float(v) for k, v in bundle.items() if v})
    if strategy not in placement.STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy!r}; use one of {', '.join(placement.STRATEGIES)}.")
    if lifetime not in (None, "detached"):
        raise ValueError("lifetime must be None or 'detached'.")
    core = runtime.current_core()
    info = messages.PlacementGroupInfo(os.urandom(14), clean, strategy, name, core.namespace, job_id=core.job_id,
                                       detached=lifetime == "detached")
    try:
        core.call(core.gcs_address, lambda rid: messages.CreatePlacementGroup(rid, info))
    except exceptions.RaySystemError as e:
        raise ValueError(str(e).split("failed: ", 1)[-1]) from None
    return PlacementGroup(info.pg_id, clean, strategy)


def remove_placement_group(pg: PlacementGroup) -> None:
    """Give the group's bundles back to their nodes."""
    core = runtime.current_core()
    core.call(core.gcs_address, lambda rid: messages.RemovePlacementGroup(rid, pg.id.binary()))


def get_placement_group(name: str) -> PlacementGroup:
    core = runtime.current_core()
    info = core.call(core.gcs_address, lambda rid: messages.GetPlacementGroup(rid, b"", name, core.namespace))
    if info is None:
        raise ValueError(f"Failed to look up placement group with name: {name}")
    return PlacementGroup(info.pg_id, info.bundles, info.strategy)


def placement_group_table(pg: PlacementGroup | None = None) -> dict[str, Any]:
    """State of one group (or of all groups, keyed by id), in Ray's field names."""
    core = runtime.current_core()
    infos = core.call(core.gcs_address, lambda rid: messages.GetPlacementGroup(rid, all=True))

    def row(info: messages.PlacementGroupInfo) -> dict[str, Any]:
        return {
            "placement_group_id": info.pg_id.hex(), "name": info.name, "strategy": info.strategy,
            "state": info.state, "bundles": dict(enumerate(info.bundles)),
            "bundles_to_node_id": {i: n.hex() for i, n in enumerate(info.nodes)},
        }

    if pg is not None:
        match = next((i for i in infos if i.pg_id == pg.id.binary()), None)
        return row(match) if match is not None else {}
    return {info.pg_id.hex(): row(info) for info in infos}


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the current task or actor was scheduled into; None in a driver or outside any group."""
    core = runtime.current_core()
    if core.is_driver:
        return None
    from kray.api import context

    pg_hex = context.get_runtime_context().get_placement_group_id()
    if not pg_hex:
        return None
    info = core.call(core.gcs_address, lambda rid: messages.GetPlacementGroup(rid, bytes.fromhex(pg_hex)))
    if info is None:
        return None
    return PlacementGroup(info.pg_id, info.bundles, info.strategy)
