"""Messages that tell borrowers when the owner of an object they wait for has died (issue 15 defect 5).

Pure data, registered with `wire` like protocol/messages.py (kept apart: that module is full). Who
sends what:

    driver/worker -> GCS   AnnounceOwner (once at start: this process's address, its worker id and node)
    borrower -> GCS        WatchOwners (tell me when any of these owners dies)
    GCS -> borrower        OwnersDied (these owners are gone: objects they own cannot be read any more)

The GCS hears of a process's end from its raylet (WorkersExited) or of a whole node's death.
"""

from __future__ import annotations

from kray.protocol.messages import message


@message(211)
class AnnounceOwner:
    worker_id: bytes
    address: str  # where the process serves GetObject: the owner address its ObjectRefs carry
    node_id: bytes


@message(212)
class WatchOwners:
    addresses: list[str]


@message(213)
class OwnersDied:
    addresses: list[str]
    reason: str
