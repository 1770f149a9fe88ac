"""Serving chunks of this node's objects to processes on other nodes that fetch them (ReadObject).

Objects live in files (shared memory, or spilled to disk), so chunks are read on a small thread pool,
never on the raylet's loop: a multi-GB read must not stall its heartbeats. The reply goes back through
the loop, which owns the socket.
"""

from __future__ import annotations

import concurrent.futures
import os

from kray.object_store import shm
from kray.protocol import loop as loop_mod
from kray.protocol import messages
from kray.util import safe_names

# The most a ReadObject answers at once (fetchers ask for 8 MiB): a huge length never reads a whole file.
MAX_READ_CHUNK = 64 << 20


class ObjectReader:
    """Answers ReadObject requests for the objects of one node."""

    def __init__(self, loop: loop_mod.Loop, node: messages.NodeInfo) -> None:
        self.loop = loop
        self.node = node
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="object-read")

    def on_read_object(self, msg: messages.ReadObject, payload: list, peer: loop_mod.Peer) -> None:
        """Serve a chunk of an object file to a process on another node that fetches it."""
        if not safe_names.is_object_hex(msg.object_hex):
            peer.reply(msg.req_id, f"{msg.object_hex!r:.80} is not an object id", ok=False)
            return
        self._readers.submit(self._read_chunk, msg, peer)

    def _read_chunk(self, msg: messages.ReadObject, peer: loop_mod.Peer) -> None:
        """On a reader thread: read the chunk, then hand the reply to the loop (which owns the socket)."""
        for path in shm.object_paths(self.node.shm_dir, self.node.spill_dir, msg.object_hex):
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(max(0, int(msg.offset)))
                    chunk = f.read(max(0, min(int(msg.length), MAX_READ_CHUNK)))
            except FileNotFoundError:
                continue
            except (OSError, TypeError, ValueError) as e:
                self.loop.call_soon_threadsafe(peer.reply, msg.req_id, f"reading object {msg.object_hex}: {e}", False)
                return
            self.loop.call_soon_threadsafe(peer.send, messages.Reply(msg.req_id, True, size), [chunk])
            return
        self.loop.call_soon_threadsafe(
            peer.reply, msg.req_id, f"object {msg.object_hex} is not on node {self.node.node_id.hex()}", False)

    def shutdown(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)
