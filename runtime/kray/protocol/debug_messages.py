"""Protocol additions of issue 15 defect 9 (tables that must not only grow), registered with `wire` like
protocol/messages.py (kept apart: that module is full).

    any -> GCS        GetTableSizes (answered with a Reply whose value is {table name: number of entries}),
                      so that tests and people can see that churn leaves the tables flat
    raylet -> owner   Reply(req_id, ok=False, LEASE_REQUEST_CANCELLED) to a RequestLease withdrawn with
                      CancelLeaseRequest before it was granted, so that the owner stops waiting for it
"""

from __future__ import annotations

from kray.protocol.messages import message

LEASE_REQUEST_CANCELLED = "lease request cancelled"


@message(214)
class GetTableSizes:
    req_id: int
