"""Where the state API's rows come from: requests to the cluster's GCS (and to each node's raylet),
answered as rows in Ray's column names.

Synchronous (kray.protocol.client); callable from a driver, the CLI, or the head's HTTP server (on a
thread). The GCS is the one `kray.init()` connected to, else `address` ("auto", "HOST:PORT"), else the
cluster recorded on this machine or KRAY_ADDRESS; the cluster token comes from KRAY_CLUSTER_TOKEN or
that record, as `kray status` finds them.
"""

from __future__ import annotations

import json
from typing import Any

from kray import config, ids
from kray.protocol import client, messages, wire
from kray.protocol import task_event_messages as tem

TIMEOUT_S = 30.0


class StateSource:
    """The cluster one state query reads."""

    def __init__(self, gcs_address: str, timeout: float = TIMEOUT_S) -> None:
        self.gcs = gcs_address
        self.timeout = timeout

    def _gcs(self, make: Any) -> Any:
        return client.request(self.gcs, make, timeout=self.timeout)

    # ------------------------------------------------------------ GCS tables

    def nodes(self) -> list[dict[str, Any]]:
        infos = {n.node_id.hex(): n for n in self._gcs(lambda rid: messages.GetNodes(rid))}
        state = self._gcs(lambda rid: messages.GetClusterState(rid))
        rows = []
        for node in state["nodes"]:
            info = infos.get(node["node_id"])
            rows.append({
                "node_id": node["node_id"],
                "node_ip": node["ip"],
                "is_head_node": bool(node["is_head"]),
                "state": "ALIVE" if node["alive"] else "DEAD",
                "state_message": None if node["alive"] else getattr(info, "death_message", None),
                "node_name": node["ip"],
                "resources_total": node["resources_total"],
                "labels": node.get("labels", {}),
                "resources_available": node.get("resources_available", {}),
                "start_time_ms": None,
                "end_time_ms": None,
            })
        return rows

    def actors(self) -> list[dict[str, Any]]:
        rows = []
        for i in self._gcs(lambda rid: messages.ListActors(rid)):
            cause = i.death_cause or None
            rows.append({
                "actor_id": i.actor_id.hex(), "class_name": i.options.class_name, "state": i.state,
                "job_id": ids.job_id_hex(i.job_id), "name": i.options.name or "",
                "node_id": i.node_id.hex(), "pid": i.pid or 0,
                "ray_namespace": i.options.namespace, "serialized_runtime_env": None,
                "required_resources": None,
                "death_cause": cause if cause is None or isinstance(cause, dict)
                else {"actor_died_error_context": {"error_message": str(cause)}},
                "is_detached": i.options.detached, "placement_group_id": None, "repr_name": "",
                "num_restarts": i.num_restarts, "num_restarts_due_to_lineage_reconstruction": 0,
            })
        return rows

    def tasks(self, filters: list[tuple[str, str, Any]], limit: int) -> tuple[list[dict[str, Any]], int, int]:
        """Task attempts matching `filters` (at most `limit`), the number that matched, and the number dropped."""
        answer = self._gcs(lambda rid: tem.GetTaskEvents(rid, list(filters), limit))
        return answer["rows"], answer["total"], answer["num_dropped"]

    def placement_groups(self) -> list[dict[str, Any]]:
        rows = []
        for g in self._gcs(lambda rid: messages.GetPlacementGroup(rid, all=True)):
            rows.append({
                "placement_group_id": g.pg_id.hex(), "name": g.name, "creator_job_id": ids.job_id_hex(g.job_id),
                "state": g.state, "bundles": [{"bundle_id": {"placement_group_id": g.pg_id.hex(), "bundle_index": i},
                                              "node_id": g.nodes[i].hex() if i < len(g.nodes) else None,
                                              "unit_resources": dict(b)} for i, b in enumerate(g.bundles)],
                "is_detached": g.detached, "stats": None, "strategy": g.strategy,
            })
        return rows

    def jobs(self) -> list[dict[str, Any]]:
        from kray.jobs import manager, records

        state = self._gcs(lambda rid: messages.GetClusterState(rid))
        found = []
        for key in self._gcs(lambda rid: messages.KvKeys(rid, manager.RECORD_PREFIX)):
            raw = self._gcs(lambda rid, key=key: messages.KvGet(rid, key))
            if raw:
                found.append(records.JobDetails.loads(raw).to_json())
        by_submission = {j.get("submission_id"): j for j in state["jobs"]}
        for job in found:
            driver = by_submission.get(job.get("submission_id"))
            if driver is not None and not job.get("job_id"):
                job["job_id"] = ids.job_id_hex(driver["job_id"])
        for j in state["jobs"]:
            if not j.get("submission_id") and j.get("namespace") != manager.SUPERVISOR_NAMESPACE:
                found.append(records.driver_job(j, ids.job_id_hex(j["job_id"])).to_json())
        return sorted(found, key=lambda j: j.get("start_time") or 0)

    # ------------------------------------------------------------ per node (each raylet)

    def node_stats(self) -> list[tuple[messages.NodeInfo, dict[str, Any]]]:
        out = []
        for node in self._gcs(lambda rid: messages.GetNodes(rid)):
            if not node.alive:
                continue
            try:
                stats = client.request(node.raylet_address, lambda rid: messages.GetNodeStats(rid), timeout=self.timeout)
            except (client.NoReply, client.TokenRefused):
                continue
            out.append((node, stats))
        return out

    def workers(self) -> list[dict[str, Any]]:
        rows = []
        for node, stats in self.node_stats():
            for w in stats.get("worker_list", []):
                rows.append({
                    "worker_id": w["worker_id"], "is_alive": True, "worker_type": "WORKER", "exit_type": None,
                    "node_id": node.node_id.hex(), "ip": node.ip, "pid": w["pid"], "exit_detail": None,
                    "worker_launch_time_ms": w.get("start_time_ms"), "worker_launched_time_ms": w.get("start_time_ms"),
                    "start_time_ms": w.get("start_time_ms"), "end_time_ms": None, "debugger_port": None,
                    "num_paused_threads": None, "state": w.get("state"), "job_id": w.get("job_id"),
                })
        return rows

    def objects(self) -> list[dict[str, Any]]:
        rows = []
        for node, stats in self.node_stats():
            for o in stats.get("object_list", []):
                rows.append({
                    "object_id": o["object_id"], "object_size": o["size"], "task_status": "FINISHED",
                    "attempt_number": 0,
                    "reference_type": "PINNED_IN_OBJECT_STORE" if o.get("primary") else "CACHED_COPY",
                    "call_site": "disabled", "type": "WORKER", "pid": None, "ip": node.ip,
                    "node_id": node.node_id.hex(), "spilled": bool(o.get("spilled")),
                    "job_id": ids.job_id_hex(o["job_id"]) if o.get("job_id") else None,
                })
        # Small objects live in their owners' memory, not in a store: one row per process holding one.
        from kray.util import memory_state

        return rows + memory_state.inline_object_rows(memory_state.reference_tables(self)[0])


def resolve(address: str | None = None, timeout: float = TIMEOUT_S) -> StateSource:
    """The cluster to read: the connected driver's, else `address`, else this machine's (see the module doc)."""
    from kray.api import local_cluster, runtime

    if address in (None, "", "auto") and runtime.is_initialized():
        return StateSource(runtime.current_core().gcs_address, timeout)
    given = None if address in (None, "", "auto") else str(address).removeprefix("tcp://")
    if given and given.startswith(("http://", "https://")):
        raise ValueError(f"address {address!r} is a dashboard URL; kray's state API takes the GCS address "
                         "(HOST:PORT, default port 6379) or 'auto'")
    found = local_cluster.read_live_address() or {}
    gcs = f"tcp://{given}" if given else found.get("gcs_address") or (
        f"tcp://{config.ADDRESS}" if config.ADDRESS else None)
    token = config.cluster_token() or (found.get("token") if gcs and found.get("gcs_address") == gcs else None)
    if not gcs:
        raise ConnectionError("No running kray cluster found: start one (`kray start --head`), connect with "
                              "kray.init(), or pass address='HOST:PORT'.")
    wire.set_token(token)
    return StateSource(gcs, timeout)


def dumps(rows: Any) -> str:
    return json.dumps(rows, default=str)
