"""The runtime context and cluster views: `get_runtime_context`, `nodes`, `cluster_resources`,
`available_resources`.

Reads cluster state by asking the GCS and the raylets through the core worker.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kray import ids
from kray.api import runtime
from kray.protocol import messages, wire


class RuntimeContext:
    """Information about the current driver or task, as `ray.get_runtime_context()` gives it."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def get_job_id(self) -> str:
        return ids.job_id_hex(self._core.job_id)

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    def get_task_id(self) -> str | None:
        core = self._core
        if core.is_driver:
            return None
        return core.current_task_id.hex()

    def get_node_id(self) -> str:
        return self._core.node_id.hex()

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    def get_worker_id(self) -> str:
        return self._core.worker_id.hex()

    def get_actor_id(self) -> str | None:
        return self._core.actor_id.hex() if self._core.actor_id else None

    def get_task_name(self) -> str | None:
        return None if self._core.is_driver else self._core.current_task_name

    @property
    def namespace(self) -> str:
        return self._core.namespace

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources held by the current task or actor by their own names, as in Ray: inside a
        placement group, {"CPU": 1.0} rather than the bundle's CPU_group_0_<id> name."""
        if self._core.is_driver:
            return {}
        return _original_resource_names(self._core.assigned_resources)

    def get_node_ip_address(self) -> str:
        return self._core.node.ip

    def get_node_labels(self) -> dict[str, str]:
        return dict(self._core.node.labels)

    @property
    def gcs_address(self) -> str:
        """HOST:PORT of the cluster's GCS."""
        return self._core.gcs_address.removeprefix("tcp://")

    def get_actor_name(self) -> str | None:
        """The current actor's name ("" if it has none); None outside an actor."""
        options = self._actor_options()
        return None if options is None else options.name

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether the current actor was restarted after its process died (max_restarts)."""
        executor = self._core.executor
        if self._actor_options() is None:
            raise RuntimeError("was_current_actor_reconstructed is only available inside an actor.")
        return executor.actor_attempt > 0

    @property
    def current_actor(self) -> Any:
        """A handle to the current actor (inside an actor's methods and __init__)."""
        options = self._actor_options()
        if options is None:
            raise RuntimeError("current_actor is only available inside an actor.")
        from kray.api import actor

        return actor.ActorHandle(self._core.actor_id, options)

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerator ids assigned to the current task or actor, by resource name."""
        return {"GPU": [str(i) for i in self._core.gpu_ids]}

    def get_placement_group_id(self) -> str | None:
        """The id (hex) of the placement group the current task or actor runs in, if any."""
        for name in self._core.assigned_resources if not self._core.is_driver else ():
            if name.startswith("bundle_group_"):
                return name.rsplit("_", 1)[1]
        return None

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        """Whether tasks and actors created here go into the current placement group by default (True in
        a driver, as in Ray)."""
        return self._core.is_driver or bool(self._core.captured_group)

    def is_canceled(self) -> bool:
        """Whether kray.cancel was called on the current actor call (as in Ray, a running call of a
        regular or threaded actor is not interrupted: check this to stop early)."""
        executor = self._core.executor
        if self._core.is_driver or executor is None:
            raise RuntimeError("is_canceled() can only be called inside a task or an actor method, not in a driver.")
        if executor.actor is not None and executor.actor.loop is not None:
            raise RuntimeError("is_canceled() is not supported in async actors: a cancelled call gets "
                               "asyncio.CancelledError instead.")
        return bool(executor.is_canceled())

    def get_runtime_env_string(self) -> str:
        """The runtime_env of the current job, task or actor as JSON ("{}" for none); local
        packages appear as the gcs:// URIs they were uploaded to."""
        return self._core.runtime_env or "{}"

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The runtime_env of the current job, task or actor, as a dict."""
        return dict(json.loads(self.get_runtime_env_string()))

    def _actor_options(self) -> Any:
        executor = self._core.executor
        if self._core.is_driver or executor is None or not self._core.actor_id:
            return None
        return executor.actor_options

    def get(self) -> dict[str, Any]:
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(), "task_id": self.get_task_id(),
                "namespace": self.namespace}


_GROUP_RESOURCE = re.compile(r"^(.+)_group_(?:\d+_)?[0-9a-f]{28}$")


def _original_resource_names(assigned: dict[str, float]) -> dict[str, float]:
    """Placement-group resource names (CPU_group_<i>_<pg>, CPU_group_<pg>) back to the resource's own name;
    the group's bookkeeping `bundle` resource is left out."""
    out: dict[str, float] = {}
    for name, amount in assigned.items():
        match = _GROUP_RESOURCE.match(name)
        if match is None:
            out[name] = out.get(name, 0.0) + amount
        elif match.group(1) != "bundle":
            out[match.group(1)] = out.get(match.group(1), 0.0) + amount
    return out


def get_gpu_ids() -> list[int]:
    """The GPU indices assigned to the current task (empty in the driver), as Ray's get_gpu_ids."""
    return list(runtime.current_core().gpu_ids)


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(runtime.current_core())


def _node_infos() -> list[messages.NodeInfo]:
    core = runtime.current_core()
    nodes = core.call(core.gcs_address, lambda rid: messages.GetNodes(rid))
    for node in nodes:
        core.nodes.setdefault(node.node_id, node)
    return nodes


def nodes() -> list[dict[str, Any]]:
    """Every node of the cluster, dead ones included, in Ray's dict shape (a dead node has no Resources
    and says why it died in DeathReason, 1 expected or 2 unexpected, and DeathReasonMessage)."""
    out = []
    for node in _node_infos():
        port = int(node.raylet_address.rsplit(":", 1)[1])
        out.append({
            "NodeID": node.node_id.hex(),
            "Alive": node.alive,
            "alive": node.alive,
            "NodeManagerAddress": node.ip,
            "NodeManagerHostname": node.hostname,
            "NodeManagerPort": port,
            "ObjectManagerPort": port,
            "ObjectStoreSocketName": node.shm_dir,
            "RayletSocketName": node.raylet_address,
            "MetricsExportPort": node.metrics_export_port,
            "NodeName": node.ip,
            "RuntimeEnvAgentPort": 0,
            "DeathReason": 0 if node.alive else node.death_reason,
            "DeathReasonMessage": "" if node.alive else node.death_message,
            "Resources": dict(node.resources) if node.alive else {},
            "Labels": dict(node.labels),
            "IsHead": node.is_head,
        })
    return out


def cluster_resources() -> dict[str, float]:
    """Total resources of the live nodes."""
    total: dict[str, float] = {}
    for node in _node_infos():
        if node.alive:
            for name, amount in node.resources.items():
                total[name] = total.get(name, 0.0) + amount
    return total


def available_resources() -> dict[str, float]:
    """Resources not held by running tasks right now (names with nothing free are left out, as in Ray)."""
    core = runtime.current_core()
    free: dict[str, float] = {}
    for node in _node_infos():
        if not node.alive:
            continue
        stats = core.call(node.raylet_address, lambda rid: messages.GetNodeStats(rid))
        for name, amount in stats["available"].items():
            free[name] = free.get(name, 0.0) + amount
    return {k: v for k, v in free.items() if v > 0}


def node_ip_address() -> str:
    return wire.host_of(runtime.current_core().raylet_address)
