"""A borrower's side of owner death (issue 15 defect 5): while this process waits for a borrowed
object, the GCS tells it if the object's owner dies, and every such object then holds OwnerDiedError,
so a `get` raises at once instead of waiting for ever.

Runs on the core worker's I/O thread. The process announces its own address to the GCS at start (it
is an owner too), watches each owner it fetches from (once per owner while it lives), and keeps the
outstanding GetObject requests per owner, to forget them when the owner is gone.
"""

from __future__ import annotations

import logging
from typing import Any

from kray import exceptions, serialization
from kray.core import bounded_tables, object_table
from kray.protocol import owner_messages

log = logging.getLogger(__name__)

# Dead owners remembered per process, so that dropped refs send them nothing.
DEAD_OWNERS_KEPT = 1000
# As Ray's OwnerDiedError says why the object cannot be read.
OWNER_EXITED = ("The object's owner has exited. This is the Python worker that first created the ObjectRef "
                "via `.remote()` or `kray.put()`")


class OwnerWatch:
    def __init__(self, core: Any) -> None:
        self.core = core
        self.watched: set[str] = set()  # owners the GCS watches for this process (alive as far as it knows)
        self.requests: dict[str, set[int]] = {}  # owner -> outstanding GetObject request ids
        core.loop.on(owner_messages.OwnersDied, self._on_owners_died)

    def announce(self) -> None:
        """Any thread: tell the GCS where this process serves its objects (borrowers watch that address)."""
        core = self.core
        core.send(core.gcs_address, owner_messages.AnnounceOwner(core.worker_id, core.address, core.node_id))

    def fetching(self, owner: str, req_id: int) -> None:
        """I/O thread: a GetObject to `owner` is outstanding; make sure its death would be heard."""
        self.requests.setdefault(owner, set()).add(req_id)
        if owner in self.core.objects.dead_owners:  # a new process at a dead one's address
            with self.core.objects.lock:
                self.core.objects.dead_owners.pop(owner, None)
        if owner not in self.watched and self.core.gcs_address:
            self.watched.add(owner)
            self.core.loop.connect(self.core.gcs_address).send(owner_messages.WatchOwners([owner]))

    def answered(self, owner: str, req_id: int) -> None:
        """I/O thread: the owner answered (or the request ended): nothing to forget for it any more."""
        ids = self.requests.get(owner)
        if ids is not None:
            ids.discard(req_id)
            if not ids:
                del self.requests[owner]

    def _on_owners_died(self, msg: owner_messages.OwnersDied, payload: list, peer: Any) -> None:
        dead = set(msg.addresses)
        self.core.borrower_watch.died(list(dead))  # the same channel tells an owner of its borrowers' deaths
        objects = self.core.objects
        with objects.lock:
            for owner in dead:
                objects.dead_owners[owner] = None
            while len(objects.dead_owners) > DEAD_OWNERS_KEPT:
                objects.dead_owners.popitem(last=False)
        for owner in dead:
            self.watched.discard(owner)
            for req_id in self.requests.pop(owner, ()):
                self.core.loop.forget(req_id)
            bounded_tables.peer_gone(self.core.loop, owner)
        with objects.lock:
            waiting = [(oid, entry.owner) for oid, entry in objects.entries.items()
                       if not entry.owned and entry.owner in dead and entry.state != object_table.READY]
        for oid, owner in waiting:
            error = exceptions.OwnerDiedError(oid.hex(), f"{OWNER_EXITED} ({msg.reason}).")
            objects.set_value(oid, object_table.ERROR, serialization.serialize(error)[0])
        if waiting:
            log.info("%d borrowed object(s) lost with their owner(s): %s", len(waiting), msg.reason)
