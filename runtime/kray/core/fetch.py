"""Pulling an object file from another node into this node's store, in chunks.

Runs on the calling user thread; talks to the remote raylet through the core worker's I/O thread
and writes the copy into this node's shared-memory directory (never holding the whole object in
Python memory), then reports it sealed to the local raylet.
"""

from __future__ import annotations

import os
from typing import Any

from kray import exceptions
from kray.protocol import messages

CHUNK_BYTES = 8 << 20


def pull(core: Any, node_id: bytes, hex_id: str) -> None:
    """Copy object `hex_id` from node `node_id` into this node's store."""
    node = core.nodes.get(node_id)
    if node is None:
        for info in core.call(core.gcs_address, lambda rid: messages.GetNodes(rid)):
            core.nodes.setdefault(info.node_id, info)
        node = core.nodes.get(node_id)
    if node is None or not node.raylet_address:
        raise exceptions.ObjectLostError(hex_id, f"it lives on node {node_id.hex()}, which the cluster does not know")
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
    core.send(core.raylet_address, messages.ObjectSealed(hex_id, size or 0))
