"""The GCS's registry of object owners, so that a borrower waiting for an object whose owner died gets
OwnerDiedError instead of waiting for ever (issue 15 defect 5; Ray's borrowers learn it from the
owner's failed connection and the GCS's worker-failure channel).

Every driver and worker announces its address (AnnounceOwner); a borrower that starts fetching from an
owner asks to be told of its death (WatchOwners). When the owner's raylet reports the process gone
(WorkersExited) or the owner's node dies, every watcher gets OwnersDied. All tables are bounded: live
processes only, plus the most recent deaths (a watch that arrives after the death is answered at once).
The registry also answers ListOwners (the live processes' addresses), which `kray memory` asks each
for its references. Runs on the GCS's loop; no I/O besides sending on its peers.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from kray.protocol import loop as loop_mod
from kray.protocol import memory_messages, owner_messages

log = logging.getLogger(__name__)

# Deaths remembered for watches that arrive late (a borrower that starts fetching after the owner died).
RECENT_DEATHS_KEPT = 10_000


class OwnerRegistry:
    def __init__(self, loop: loop_mod.Loop, recent_kept: int = RECENT_DEATHS_KEPT) -> None:
        self.loop = loop
        self.recent_kept = recent_kept
        self.owners: dict[bytes, tuple[str, bytes, bytes | None]] = {}  # worker id -> (address, node id, identity)
        self.watchers: dict[str, dict[bytes | None, loop_mod.Peer]] = {}  # owner address -> watching peers
        self.watching: dict[bytes | None, set[str]] = {}  # a watcher's identity -> owner addresses it watches
        self.recent_deaths: collections.OrderedDict[str, str] = collections.OrderedDict()  # address -> reason
        loop.on(owner_messages.AnnounceOwner, self._on_announce)
        loop.on(owner_messages.WatchOwners, self._on_watch)
        loop.on(memory_messages.ListOwners, lambda msg, payload, peer: peer.reply(msg.req_id, [
            {"worker_id": w.hex(), "address": a, "node_id": n.hex()} for w, (a, n, _) in self.owners.items()]))

    def _on_announce(self, msg: owner_messages.AnnounceOwner, payload: list, peer: loop_mod.Peer) -> None:
        if not isinstance(msg.address, str) or not msg.address:
            raise TypeError("AnnounceOwner takes a non-empty str address")
        self.owners[msg.worker_id] = (msg.address, msg.node_id, peer.identity)
        self.recent_deaths.pop(msg.address, None)  # a new process that got a dead one's port

    def _on_watch(self, msg: owner_messages.WatchOwners, payload: list, peer: loop_mod.Peer) -> None:
        dead: dict[str, list[str]] = {}
        for address in msg.addresses:
            if not isinstance(address, str):
                raise TypeError("WatchOwners takes a list of str addresses")
            reason = self.recent_deaths.get(address)
            if reason is not None:
                dead.setdefault(reason, []).append(address)
                continue
            self.watchers.setdefault(address, {})[peer.identity] = peer
            self.watching.setdefault(peer.identity, set()).add(address)
        for reason, addresses in dead.items():
            peer.send(owner_messages.OwnersDied(addresses, reason))

    def identities_of(self, worker_ids: list[bytes]) -> dict[bytes | None, str]:
        """The connection identities of these live processes, with their addresses."""
        known = (self.owners.get(worker_id) for worker_id in worker_ids)
        return {entry[2]: entry[0] for entry in known if entry is not None}

    def workers_exited(self, worker_ids: list[bytes]) -> None:
        """Processes ended (their raylet said so): their watchers hear it, their own watches go."""
        for worker_id in worker_ids:
            known = self.owners.pop(worker_id, None)
            if known is None:
                continue
            address, _node_id, identity = known
            self._died(address, f"the owner process at {address} exited")
            self._forget_watcher(identity)

    def node_died(self, node_id: bytes, reason: str) -> None:
        """Every owner on a dead node is dead (its raylet cannot report them)."""
        gone = [(worker_id, address, identity) for worker_id, (address, node, identity) in self.owners.items()
                if node == node_id]
        for worker_id, address, identity in gone:
            del self.owners[worker_id]
            self._died(address, f"the owner process at {address} was on node {node_id.hex()}, which died: {reason}")
            self._forget_watcher(identity)

    def _died(self, address: str, reason: str) -> None:
        self.recent_deaths[address] = reason
        self.recent_deaths.move_to_end(address)
        while len(self.recent_deaths) > self.recent_kept:
            self.recent_deaths.popitem(last=False)
        peers = self.watchers.pop(address, {})
        for identity, peer in peers.items():
            watched = self.watching.get(identity)
            if watched is not None:
                watched.discard(address)
                if not watched:
                    del self.watching[identity]
            peer.send(owner_messages.OwnersDied([address], reason))
        if peers:
            log.info("owner %s died; told %d borrower(s)", address, len(peers))

    def _forget_watcher(self, identity: bytes | None) -> None:
        for address in self.watching.pop(identity, ()):
            peers = self.watchers.get(address)
            if peers is not None:
                peers.pop(identity, None)
                if not peers:
                    del self.watchers[address]

    def sizes(self) -> dict[str, Any]:
        """Table sizes, for the bounded-tables checks."""
        return {"owners": len(self.owners), "owner_watchers": len(self.watchers),
                "owner_watching": len(self.watching), "recent_owner_deaths": len(self.recent_deaths)}
