"""An owner's side of borrower death (issue 15 defect 5): the owner knows which process borrows each of
its objects, asks the GCS to tell it when such a process dies, and then releases that process's borrows,
so an object whose only borrower was SIGKILLed is freed once the owner drops its own refs.

The GCS's owner registry (gcs/owners.py) already hears of every process's end (its raylet's
WorkersExited, its node's death) and tells watchers (OwnersDied): borrowers are watched there exactly as
owners are. Handlers run on the core worker's I/O thread; `add` may run on any thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kray.protocol import borrower_messages, owner_messages

log = logging.getLogger(__name__)


class BorrowerWatch:
    def __init__(self, core: Any) -> None:
        self.core = core
        # Borrowers the GCS watches for this process, alive as far as it knows (forgotten at their death).
        self.watched: set[str] = set()
        self._lock = threading.Lock()
        core.loop.on(borrower_messages.BorrowsAdded, lambda m, p, peer: self.add(m.object_ids, m.borrower))
        core.loop.on(borrower_messages.BorrowsRemoved,
                     lambda m, p, peer: core.objects.remove_borrowers(m.object_ids, m.borrower))

    def add(self, object_ids: list[bytes], borrower: str) -> None:
        """Count `borrower`'s borrows of objects this process owns; watch it from its first borrow on."""
        if not isinstance(borrower, str):
            raise TypeError("BorrowsAdded takes a str borrower address")
        core = self.core
        core.objects.add_borrowers(object_ids, borrower)
        if not borrower or borrower == core.address or not core.gcs_address:
            return
        with self._lock:
            if borrower in self.watched:
                return
            self.watched.add(borrower)
        # A borrower that died already is answered at once (the GCS remembers recent deaths).
        core.send(core.gcs_address, owner_messages.WatchOwners([borrower]))

    def died(self, addresses: list[str]) -> None:
        """I/O thread: these processes are gone; what they borrowed from here is released."""
        released = 0
        for address in addresses:
            with self._lock:
                self.watched.discard(address)
            released += self.core.objects.release_borrower(address)
        if released:
            log.info("released %d borrow(s) of dead borrower(s) %s", released, ", ".join(addresses))
            self.core.wake_flush()  # the objects freed by it go now
