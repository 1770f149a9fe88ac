"""The GCS's placement groups: choose a node per bundle (scheduling.placement), reserve the bundles
on those nodes' raylets (all or nothing), answer waiters, and return the bundles on removal.

Runs on the GCS loop; talks only to raylets (ReserveBundle / ReturnBundle).
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Callable
from typing import Any

from kray import config
from kray.protocol import loop as loop_mod
from kray.protocol import messages
from kray.scheduling import placement, policy

log = logging.getLogger(__name__)

PENDING, CREATED, REMOVED = "PENDING", "CREATED", "REMOVED"


class GroupRecord:
    __slots__ = ("info", "reserving", "retry_timer", "waiters")

    def __init__(self, info: messages.PlacementGroupInfo) -> None:
        self.info = info
        self.waiters: list[tuple[loop_mod.Peer, int]] = []
        self.reserving = False
        self.retry_timer: list | None = None


class PlacementGroupManager:
    def __init__(self, loop: loop_mod.Loop, nodes: dict[bytes, messages.NodeInfo],
                 available: Callable[[bytes], dict[str, float]]) -> None:
        self.loop = loop
        self.nodes = nodes
        self.available = available
        self.groups: dict[bytes, GroupRecord] = {}
        self.removed: collections.deque[bytes] = collections.deque()  # oldest first
        on = loop.on
        on(messages.CreatePlacementGroup, self._on_create)
        on(messages.WaitPlacementGroup, self._on_wait)
        on(messages.RemovePlacementGroup, self._on_remove)
        on(messages.GetPlacementGroup, self._on_get)

    def demand(self) -> list[dict[str, float]]:
        """Bundles of groups that wait to be placed (for the autoscaler)."""
        return [dict(b) for g in self.groups.values() if g.info.state == PENDING for b in g.info.bundles]

    def pending(self) -> list[dict[str, Any]]:
        """Groups that wait to be placed, each with its strategy and bundles (for the autoscaler)."""
        return [{"strategy": g.info.strategy, "bundles": [dict(b) for b in g.info.bundles]}
                for g in self.groups.values() if g.info.state == PENDING]

    def _views(self) -> list[policy.NodeView]:
        return [policy.NodeView(n.node_id, n.raylet_address, n.resources, self.available(n.node_id), n.alive)
                for n in self.nodes.values()]

    # ------------------------------------------------------------ requests

    def _on_create(self, msg: messages.CreatePlacementGroup, payload: list, peer: loop_mod.Peer) -> None:
        info = msg.info
        if info.name and any(g.info.name == info.name and g.info.namespace == info.namespace
                             and g.info.state != REMOVED for g in self.groups.values()):
            peer.reply(msg.req_id, f"A placement group named {info.name!r} already exists.", ok=False)
            return
        record = GroupRecord(info)
        self.groups[info.pg_id] = record
        peer.reply(msg.req_id, info)
        self._try_place(record)

    def _on_wait(self, msg: messages.WaitPlacementGroup, payload: list, peer: loop_mod.Peer) -> None:
        record = self.groups.get(msg.pg_id)
        if record is None or record.info.state == REMOVED:
            peer.reply(msg.req_id, "the placement group was removed or never existed", ok=False)
        elif record.info.state == CREATED:
            peer.reply(msg.req_id, record.info)
        else:
            record.waiters.append((peer, msg.req_id))

    def _on_get(self, msg: messages.GetPlacementGroup, payload: list, peer: loop_mod.Peer) -> None:
        if msg.all:
            peer.reply(msg.req_id, [g.info for g in self.groups.values()])
            return
        for record in self.groups.values():
            info = record.info
            if (msg.pg_id and info.pg_id == msg.pg_id) or (
                msg.name and info.name == msg.name and info.namespace == msg.namespace and info.state != REMOVED
            ):
                peer.reply(msg.req_id, info)
                return
        peer.reply(msg.req_id, None)

    def _on_remove(self, msg: messages.RemovePlacementGroup, payload: list, peer: loop_mod.Peer) -> None:
        self._remove(msg.pg_id)
        peer.reply(msg.req_id, True)

    def end_job(self, job_id: int) -> None:
        """A job ended: its groups go, except detached ones (as in Ray)."""
        for pg_id, record in list(self.groups.items()):
            if record.info.job_id == job_id and not record.info.detached:
                self._remove(pg_id)

    def _remove(self, pg_id: bytes) -> None:
        record = self.groups.get(pg_id)
        if record is not None and record.info.state != REMOVED:
            was_created = record.info.state == CREATED
            record.info.state = REMOVED
            if was_created:
                self._return_bundles(record.info, range(len(record.info.bundles)))
            for waiter, req_id in record.waiters:
                waiter.reply(req_id, "the placement group was removed before it was created", ok=False)
            record.waiters.clear()
            self._keep_removed(pg_id)

    def _keep_removed(self, pg_id: bytes) -> None:
        """Remember a removed group for the state API, forgetting the oldest beyond the bound."""
        self.removed.append(pg_id)
        while len(self.removed) > max(0, config.REMOVED_PLACEMENT_GROUPS_KEPT):
            old = self.removed.popleft()
            record = self.groups.get(old)
            if record is not None and record.info.state == REMOVED:
                del self.groups[old]

    # ------------------------------------------------------------ placing

    def _try_place(self, record: GroupRecord) -> None:
        record.retry_timer = None
        info = record.info
        if info.state != PENDING or record.reserving:
            return
        choice = placement.place(info.bundles, info.strategy, self._views())
        if choice is None:
            self._retry_later(record)
            return
        record.reserving = True
        outcome: dict[int, bool] = {}
        pg_hex = info.pg_id.hex()
        for index, (bundle, node_id) in enumerate(zip(info.bundles, choice)):
            node = self.nodes[node_id]

            def on_reply(reply: Any, _p: list, index: int = index) -> None:
                outcome[index] = isinstance(reply, messages.Reply) and reply.ok and bool(reply.value)
                if len(outcome) == len(info.bundles):
                    self._reserved(record, choice, outcome)

            self.loop.request(
                node.raylet_address,
                functools.partial(messages.ReserveBundle, pg_hex=pg_hex, index=index, resources=dict(bundle)),
                on_reply, timeout=10.0,
            )

    def _reserved(self, record: GroupRecord, choice: list[bytes], outcome: dict[int, bool]) -> None:
        record.reserving = False
        info = record.info
        if info.state == REMOVED or not all(outcome.values()):
            # All or nothing: give back what was reserved and try again with fresher numbers.
            self._return_bundles(info, [i for i, ok in outcome.items() if ok], choice)
            if info.state == PENDING:
                self._retry_later(record)
            return
        info.nodes = list(choice)
        info.state = CREATED
        for peer, req_id in record.waiters:
            peer.reply(req_id, info)
        record.waiters.clear()

    def _return_bundles(self, info: messages.PlacementGroupInfo, indexes: Any, nodes: list[bytes] | None = None) -> None:
        nodes = nodes or info.nodes
        for index in indexes:
            node = self.nodes.get(nodes[index])
            if node is not None and node.alive:
                self.loop.connect(node.raylet_address).send(messages.ReturnBundle(info.pg_id.hex(), index))

    def _retry_later(self, record: GroupRecord) -> None:
        if record.retry_timer is None:
            record.retry_timer = self.loop.call_later(0.3, self._try_place, record)

    def node_added(self) -> None:
        for record in self.groups.values():
            if record.info.state == PENDING and record.retry_timer is None:
                self._try_place(record)
