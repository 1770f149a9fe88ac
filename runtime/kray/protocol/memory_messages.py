"""Messages of the debugging tools `kray memory` and `kray logs` (issue 16): who holds which object, and
the log files of each node.

Pure data, registered with `wire` like kray.protocol.messages (codes 241-249). Who sends what:

    state API -> GCS           ListOwners (Reply value: [{"worker_id", "address", "node_id"}] of live processes)
    state API -> driver/worker GetReferenceTable (Reply value: the process's references, see
                               kray.core.reference_table.snapshot)
    state API -> raylet        ListLogFiles (Reply value: [{"filename", "size", "mtime", "pid", "worker_id"}])
    state API -> raylet        ReadLogFile (Reply value: {"data": bytes, "offset": next offset, "size": n});
                               tail_lines >= 0 reads the last lines, else from `offset` on
"""

from __future__ import annotations

from kray.protocol.records import message


@message(241)
class ListOwners:
    req_id: int


@message(242)
class GetReferenceTable:
    req_id: int


@message(243)
class ListLogFiles:
    req_id: int


@message(244)
class ReadLogFile:
    req_id: int
    filename: str
    offset: int = 0
    tail_lines: int = -1
    max_bytes: int = 1 << 20
