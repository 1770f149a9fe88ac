"""Bounds on the submitter's tables that would otherwise grow with churn (issue 15 defect 9).

- Per-shape task queues: a driver that uses many shapes over its life (placement-group bundles, node
  affinities, runtime_envs) keeps one queue per shape. Once there are more than QUEUES_KEPT, the idle
  ones (nothing pending, no lease, no lease request) are dropped when a new shape arrives; a busy
  queue is never touched, and a dropped shape gets a fresh queue when it is used again.
- Actors this process called: the call queue of a dead actor is kept (a late call on its handle fails
  at once) for the DEAD_ACTOR_QUEUES_KEPT most recent deaths; an older one's handle subscribes again and
  hears from the GCS that the actor is dead.
- Connections (cached DEALER sockets): a returned lease's worker, a dead actor's worker and a dead
  owner are disconnected, so the cache holds the peers this process works with now, not every
  process it ever talked to.

Runs on the core worker's I/O thread; no I/O besides closing sockets.
"""

from __future__ import annotations

import collections
from typing import Any

# Call queues of dead actors kept per process (Ray's GCS keeps 100,000 dead actors; a process needs fewer).
DEAD_ACTOR_QUEUES_KEPT = 1000
# How long a connection closed to a live peer keeps sending what was queued on it.
LINGER_MS = 1000
# Idle per-shape queues are swept once there are more than this many (a sweep is O(queues), and rare).
QUEUES_KEPT = 256


def sweep_idle_queues(submitter: Any, kept: int = QUEUES_KEPT) -> int:
    """Before a new shape's queue is added: drop idle queues if there are too many; returns how many."""
    queues = submitter.queues
    if len(queues) < kept:
        return 0
    idle = [key for key, queue in queues.items()
            if not queue.pending and not queue.leases and not queue.requests and queue.backlog_timer is None]
    for key in idle:
        del queues[key]
    return len(idle)


def lease_returned(submitter: Any, lease: Any) -> None:
    """A lease went back to its raylet: stop caching the connection to its worker (workers come and go
    in the raylet's pool; the next lease of this one connects again). Kept while this process still
    uses it: another lease of the same worker, or a GetObject waiting for the worker as an owner."""
    address = lease.address
    if any(other.address == address for other in submitter.leases.values()):
        return
    if submitter.core.owner_watch.requests.get(address):
        return
    close_gently(submitter.loop, address)


def close_gently(loop: Any, address: str) -> None:
    """Drop the cached connection to `address`, letting what was queued on it go out first (the peer
    is alive: a borrower's last BorrowsRemoved may still be on its way)."""
    sock = loop._peers.pop(address, None)
    loop._peer_objs.pop(address, None)
    if sock is not None:
        loop.poller.unregister(sock)
        loop._readers.pop(sock, None)
        sock.close(linger=LINGER_MS)


def peer_gone(loop: Any, address: str) -> None:
    """A process this one talked to is dead (an actor's worker, an owner): drop the cached connection."""
    if address:
        loop.disconnect(address)


class DeadActors:
    """The most recently dead actors whose call queues an ActorSubmitter keeps, oldest first."""

    def __init__(self, kept: int = DEAD_ACTOR_QUEUES_KEPT) -> None:
        self.kept = kept
        self.order: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def died(self, actor_submitter: Any, actor_id: bytes, last_address: str) -> None:
        """`actor_id` is dead: drop the connection to its worker and the oldest dead queues beyond the bound."""
        peer_gone(actor_submitter.loop, last_address)
        self.order[actor_id] = None
        self.order.move_to_end(actor_id)
        while len(self.order) > self.kept:
            old, _ = self.order.popitem(last=False)
            state = actor_submitter.actors.get(old)
            if state is not None and state.info is not None and state.info.state == "DEAD" and not state.queue:
                del actor_submitter.actors[old]
