"""Pulling an object file from another node into this node's store, in chunks; and background
pulls for `wait(fetch_local=True)`.

`pull` runs on the calling thread (LocalFetcher's, on daemon threads of its own); talks to the
remote raylet through the core worker's I/O thread and writes the copy into this node's
shared-memory directory (never holding the whole object in Python memory), then reports it sealed
to the local raylet.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

from kray import exceptions, serialization
from kray.protocol import messages

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 << 20
# How long a reader waits for an owner to say where a lost object lives now (it may be re-created first).
RELOCATE_TIMEOUT_S = 300.0


def pull(core: Any, node_id: bytes, hex_id: str, owner: str = "") -> None:
    """Copy object `hex_id` from node `node_id` into this node's store.

    A location can be stale (issue 15 defect 4): when that node is dead or the copy cannot be read
    there, the object's `owner` is asked where it lives now (it answers once a lost object has been
    re-created from its lineage, or with the error that it is lost) and the copy comes from there.
    """
    node = core.nodes.get(node_id)
    if owner and owner != core.address and node is not None and not node.alive:
        _pull_from_owners_location(core, hex_id, owner, node_id)
        return
    try:
        _pull_from(core, node_id, hex_id)
    except exceptions.ObjectLostError:
        if not owner or owner == core.address:
            raise
        _pull_from_owners_location(core, hex_id, owner, node_id)


def _pull_from_owners_location(core: Any, hex_id: str, owner: str, stale_node: bytes) -> None:
    object_id = bytes.fromhex(hex_id)
    try:
        value, payload = core.call_with_payload(
            owner, lambda rid: messages.GetObject(rid, object_id), timeout=RELOCATE_TIMEOUT_S)
    except exceptions.RaySystemError as e:
        raise exceptions.OwnerDiedError(hex_id, f"its copy on node {stale_node.hex()} is gone and its owner at "
                                        f"{owner} did not say where it lives now: {e}") from None
    ret = value.value
    if ret.kind == "error":
        raise serialization.deserialize(payload)
    if ret.kind != "shm" or ret.node_id == stale_node:
        raise exceptions.ObjectLostError(hex_id, f"its copy on node {stale_node.hex()} is gone and its owner "
                                         "knows no other")
    log.info("object %s moved from node %s to node %s; fetching it there", hex_id, stale_node.hex(), ret.node_id.hex())
    _pull_from(core, ret.node_id, hex_id)


def _pull_from(core: Any, node_id: bytes, hex_id: str) -> None:
    node = core.nodes.get(node_id)
    if node is None:
        for info in core.call(core.gcs_address, lambda rid: messages.GetNodes(rid)):
            core.nodes.setdefault(info.node_id, info)
        node = core.nodes.get(node_id)
    if node is None or not node.raylet_address:
        raise exceptions.ObjectLostError(hex_id, f"it lives on node {node_id.hex()}, which the cluster does not know")
    if not node.alive:  # first heard of just now, dead: its raylet would never answer (`pull` asks the owner)
        raise exceptions.ObjectLostError(hex_id, f"it lived on node {node_id.hex()}, which died")
    final = os.path.join(core.node.shm_dir, hex_id)
    tmp = f"{final}.fetch{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        offset, size = 0, None
        while size is None or offset < size:
            try:
                size, payload = core.call_with_payload(
                    node.raylet_address, lambda rid, o=offset: messages.ReadObject(rid, hex_id, o, CHUNK_BYTES)
                )
            except exceptions.RaySystemError as e:
                raise exceptions.ObjectLostError(hex_id, f"fetching it from node {node_id.hex()} failed: {e}") from None
            chunk = payload[0] if payload else b""
            if not chunk and offset < size:
                raise exceptions.ObjectLostError(hex_id, "its file on the remote node ended early")
            os.pwrite(fd, chunk, offset)
            offset += len(chunk)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, final)
    core.send(core.raylet_address, messages.ObjectSealed(hex_id, size or 0, primary=False))


class LocalFetcher:
    """Background copies of remote objects to this node, one at a time per object, a few at once.

    Used by `wait(fetch_local=True)`: its callers wait on the returned event (with their deadline)
    while the copy goes on, so that a later `wait` or `get` finds the object here. Starts daemon
    threads on first use.
    """

    THREADS = 4

    def __init__(self, core: Any) -> None:
        self.core = core
        self.lock = threading.Lock()
        self.in_progress: dict[str, threading.Event] = {}
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = 0

    def ensure_local(self, node_id: bytes, hex_id: str, owner: str) -> threading.Event:
        """Start copying `hex_id` from `node_id` unless a copy is under way; set once it ends."""
        with self.lock:
            done = self.in_progress.get(hex_id)
            if done is not None:
                return done
            done = self.in_progress[hex_id] = threading.Event()
            if self.threads < self.THREADS:
                self.threads += 1
                threading.Thread(target=self._run, name="kray-fetch", daemon=True).start()
        self.jobs.put((node_id, hex_id, owner, done))
        return done

    def _run(self) -> None:
        while True:
            node_id, hex_id, owner, done = self.jobs.get()
            try:
                pull(self.core, node_id, hex_id, owner)
                self.core.note_copy(bytes.fromhex(hex_id), owner)
            except Exception as e:  # noqa: BLE001 - a failed copy is reported by `get`, which fetches again
                log.debug("background fetch of %s failed: %s", hex_id, e)
            finally:
                with self.lock:
                    self.in_progress.pop(hex_id, None)
                done.set()


def refresh_stale_args(core: Any, spec: Any) -> None:
    """Before a task runs again (a retry, or a re-creation from lineage): an argument resolved to a copy
    on a node that has died since is passed by reference instead, so the worker asks the argument's
    owner where it lives now (and waits while it is re-created) rather than the dead node."""
    values = spec.arg_values
    for index, value in enumerate(values or ()):
        if value.kind != "shm":
            continue
        node = core.nodes.get(value.node_id)
        if node is not None and not node.alive:
            values[index] = messages.ArgValue("ref", value.object_id, value.owner)
