"""Messages of the metrics path (kept out of messages.py, which is full): user-metric and task-state
updates from a worker or driver to its raylet, and the head raylet's question for the GCS's
cluster-level counts. Registered with `wire` on import, as messages.py's are.

    driver/worker -> raylet   ReportMetrics (batched, at most one a second, only when something changed)
    head raylet -> GCS        GetClusterMetrics (answered with gcs.metrics.cluster_counts)
    other raylets -> GCS      GetSessionName (the cluster's: Ray's SessionName label is one per cluster)
"""

from __future__ import annotations

import os

from kray.protocol.messages import message

# One update: (kind, name, description, tag_keys, boundaries, tags, value).
#   kind "counter": value is the increase since the last report
#   kind "gauge": value is the last value set
#   kind "histogram": value is (bucket counts since the last report, sum of observations, count)
# tags is a tuple of (key, value) pairs in tag_keys order.
Update = tuple


@message(150)
class ReportMetrics:
    """driver/worker -> its raylet: user metric updates and task state changes since the last report."""

    worker_id: bytes
    updates: list
    # (task name, state) -> change in the number of tasks in that state (RUNNING, FINISHED, FAILED)
    task_states: dict


@message(151)
class GetClusterMetrics:
    """head raylet -> GCS: nodes, actors, placement groups and jobs by state (a dict of counts)."""

    req_id: int


@message(152)
class GetSessionName:
    """raylet -> GCS: the cluster's session name, the head node's (a str, "" while no head is known)."""

    req_id: int


def session_name_of(spill_dir: str) -> str:
    """The session a node belongs to, from its spill directory (SESSION_DIR/spill/NODE)."""
    return os.path.basename(os.path.dirname(os.path.dirname(spill_dir.rstrip(os.sep))))
