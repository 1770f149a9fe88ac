"""The GCS's judgement of node liveness: when each node was last heard of, and a second means
(its raylet's process where the GCS can see it, else a ping) before a silent node is declared dead.

Runs on the GCS loop; reads /proc for raylets on this machine and sends pings to raylets' heartbeat threads.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from kray import config
from kray.protocol import loop as loop_mod
from kray.protocol import messages

log = logging.getLogger(__name__)

CHECK_PERIOD_S = 0.5

# A silent node whose raylet process is seen running is busy, not dead; past this many node
# timeouts of silence it is declared dead all the same (its heartbeat thread must be wedged).
BUSY_GRACE_TIMEOUTS = 6

GONE, STOPPED, RUNNING, UNSEEN = "gone", "stopped", "running", "unseen"


class NodeLiveness:
    """Tracks heartbeats and decides when a node is dead.

    A node is suspect after NODE_TIMEOUT_S / 2 of silence. Then: a raylet process on this machine that
    is gone is dead at once; one that runs is busy and stays alive; one that is stopped (SIGSTOP) or
    that this GCS cannot see is pinged, and declared dead once silent for NODE_TIMEOUT_S. Time during
    which the GCS itself could not run (its own check came late) counts against no node.
    """

    def __init__(
        self, loop: loop_mod.Loop, nodes: dict[bytes, messages.NodeInfo],
        on_dead: Callable[[messages.NodeInfo, str], None],
    ) -> None:
        self.loop = loop
        self.nodes = nodes
        self.on_dead = on_dead
        self.last_seen: dict[bytes, float] = {}
        self.peers: dict[bytes, loop_mod.Peer] = {}  # each raylet's heartbeat thread
        self._pinged: dict[bytes, float] = {}
        self._warned: set[bytes] = set()  # busy nodes already logged during their current silence
        self._last_check = time.monotonic()
        self._hostname = socket.gethostname()
        self._local_ips: set[str] | None = None  # read the first time a node falls silent
        loop.call_every(CHECK_PERIOD_S, self.check)

    def seen(self, node_id: bytes, peer: loop_mod.Peer | None = None) -> None:
        self.last_seen[node_id] = time.monotonic()
        self._pinged.pop(node_id, None)
        self._warned.discard(node_id)
        if peer is not None:
            self.peers[node_id] = peer

    def forget(self, node_id: bytes) -> None:
        self.last_seen.pop(node_id, None)
        self.peers.pop(node_id, None)
        self._pinged.pop(node_id, None)
        self._warned.discard(node_id)

    def check(self) -> None:
        now = time.monotonic()
        stalled = now - self._last_check - CHECK_PERIOD_S
        self._last_check = now
        if stalled > CHECK_PERIOD_S:
            # This GCS itself did not run for that long (its loop was busy or the machine starved it):
            # a heartbeat may be waiting in its socket, so that time is nobody's silence.
            for node_id in self.last_seen:
                self.last_seen[node_id] += stalled
        timeout = config.NODE_TIMEOUT_S
        for node in list(self.nodes.values()):
            if not node.alive:
                continue
            silent = now - self.last_seen.get(node.node_id, now)
            if silent <= timeout / 2:
                continue
            state = self.process_state(node)
            if state == GONE:
                self.on_dead(node, f"no heartbeat for {silent:.0f}s and its raylet process (pid={node.pid}) is gone")
            elif state == RUNNING and silent <= timeout * BUSY_GRACE_TIMEOUTS:
                if silent > timeout and node.node_id not in self._warned:
                    self._warned.add(node.node_id)
                    log.warning("node %s has been silent for %.0fs, but its raylet process runs: busy, not dead",
                                node.node_id.hex(), silent)
            elif silent > timeout:
                self.on_dead(node, f"no heartbeat for {silent:.0f}s")
            else:
                self._ping(node, now)

    def _ping(self, node: messages.NodeInfo, now: float) -> None:
        """Ask the node's heartbeat thread for a heartbeat now (it answers unless the node is gone)."""
        peer = self.peers.get(node.node_id)
        last = self._pinged.get(node.node_id, 0.0)
        if peer is None or now - last < config.NODE_TIMEOUT_S / 8:
            return
        self._pinged[node.node_id] = now
        peer.send(messages.NodePing(node.node_id))

    def process_state(self, node: messages.NodeInfo) -> str:
        """GONE, STOPPED or RUNNING for a raylet on this machine, by /proc; UNSEEN for other machines."""
        if self._local_ips is None:
            self._local_ips = _local_ips()
        if not node.pid or node.hostname != self._hostname or not _is_local(node.ip, self._local_ips):
            return UNSEEN
        try:
            with open(f"/proc/{node.pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{node.pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return GONE
        if node.node_id.hex().encode() not in cmdline:
            return GONE  # the pid now belongs to another process
        fields = stat.rsplit(b")", 1)[-1].split()
        state = fields[0] if fields else b"?"
        if state in (b"Z", b"X", b"x"):
            return GONE
        if state in (b"T", b"t"):
            return STOPPED
        return RUNNING


def _local_ips() -> set[str]:
    import psutil  # only when a node fell silent: the GCS starts without it

    try:
        return {addr.address for addrs in psutil.net_if_addrs().values() for addr in addrs}
    except OSError:
        return set()


def _is_local(ip: str, local_ips: set[str]) -> bool:
    return ip in local_ips or ip.startswith("127.")
