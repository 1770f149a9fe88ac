"""What a driver does when the node it is attached to leaves the cluster: every pending and future
get, wait, task and actor call fails with NodeDiedError instead of waiting for ever.

Runs on the core worker's I/O thread; watches the node's raylet process by a pidfd (no polling)
and hears of the node's death from the GCS (NodeDied).
"""

from __future__ import annotations

import logging
from typing import Any

from kray import exceptions, serialization
from kray.core import object_table
from kray.util import process_watch

log = logging.getLogger(__name__)


class NodeWatch:
    """The attached node's fate. `lost` is None while the node serves this process, else the error
    that every call now raises."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.lost: exceptions.NodeDiedError | None = None

    def check(self) -> None:
        """User thread: raise at once when the node is gone (no new work can run or be fetched)."""
        if self.lost is not None:
            raise self.lost

    def watch_raylet(self) -> None:
        """I/O thread: notice the node's raylet process ending (whatever the GCS knows or says)."""
        node = self.core.node
        if not node.pid or not _is_raylet(node.pid, node.node_id):
            return  # not visible from here (another machine or pid namespace): NodeDied still tells
        process_watch.on_exit(self.core.loop, node.pid, lambda: self.node_lost(
            f"its raylet process (pid={node.pid}) exited"))

    def node_lost(self, reason: str) -> None:
        """I/O thread: fail everything pending and refuse what comes next."""
        if self.lost is not None:
            return
        node = self.core.node
        self.lost = exceptions.NodeDiedError(
            f"The node {node.node_id.hex()} ({node.ip}) that this driver is attached to has left the cluster: "
            f"{reason}. Its tasks, actor calls and objects cannot be reached through it; start the driver "
            "again on a live node (kray.shutdown(), then kray.init())."
        )
        log.error("%s", self.lost)
        submitter = self.core.submitter
        for record in list(submitter.tasks.values()):
            if not record.done:
                submitter._finish_with_error(record, self.lost)
        for queue in submitter.queues.values():
            for req_id in queue.requests:
                self.core.loop.forget(req_id)
            queue.requests.clear()
            queue.pending.clear()
            queue.leases.clear()
        submitter.leases.clear()
        self.fail_unready()

    def fail_unready(self) -> None:
        """Every object not ready yet (results, borrowed values being fetched) now holds the error."""
        frames = serialization.serialize(self.lost)[0]
        objects = self.core.objects
        with objects.lock:
            unready = [oid for oid, entry in objects.entries.items() if entry.state != object_table.READY]
        for oid in unready:
            objects.set_value(oid, object_table.ERROR, list(frames))


def _is_raylet(pid: int, node_id: bytes) -> bool:
    """Whether `pid` is this node's raylet (and not another process that has the number here)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return node_id.hex().encode() in f.read()
    except OSError:
        return False
