"""autoscaler.spec: the groups the policy sees, the JSON patch of a decision, the InfeasibleDemand condition."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
from kray_operator import models
from kray_operator.autoscaler import policy, spec
from kray_operator.builders import names, observed

CONTAINER = {"name": "k", "image": "i", "resources": {"limits": {"cpu": "2"}}}


def body(**group: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kray.io/v1", "kind": "RayCluster", "metadata": {"name": "c", "namespace": "n"},
        "spec": {
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {"idleTimeoutSeconds": 7, "upscalingMode": "Conservative"},
            "headGroupSpec": {"template": {"spec": {"containers": [CONTAINER]}}},
            "workerGroupSpecs": [
                {"groupName": "other", "template": {"spec": {"containers": [CONTAINER]}}},
                {"groupName": "g", "minReplicas": 1, "maxReplicas": 4, "template": {"spec": {"containers": [CONTAINER]}},
                 **group},
            ],
        },
    }


def worker(name: str, group: str = "g", deleting: bool = False, phase: str = "Running") -> observed.PodView:
    return observed.PodView(name=name, node_type=names.WORKER, group=group, phase=phase, ready=True, deleting=deleting)


def test_groups_and_options_from_the_spec() -> None:
    cluster = models.RayCluster.model_validate(body(replicas=2, idleTimeoutSeconds=9))
    assert spec.enabled(cluster.spec) and spec.options(cluster.spec) == ("Conservative", 7.0)
    pods = [worker("a"), worker("b", deleting=True), worker("c", phase="Failed"), worker("d", group="other")]
    g = spec.groups(cluster.spec, pods)[1]
    assert g == policy.Group("g", {"CPU": 2.0}, 1, 4, 2, ("a",), False, 9.0)
    cluster.spec.suspend = True
    assert not spec.enabled(cluster.spec)


def test_patch_sets_replicas_and_workers_to_delete_in_one_patch_guarded_by_tests() -> None:
    doc = body(replicas=3, scaleStrategy={"workersToDelete": []})
    decision = policy.Decision((policy.GroupChange("g", 1, ("a", "b")),), ())
    operations = spec.patch(doc, decision)
    assert [op["op"] for op in operations] == ["test", "test", "add", "add"]
    patched = jsonpatch.apply_patch(doc, operations)
    assert patched["spec"]["workerGroupSpecs"][1]["replicas"] == 1
    assert patched["spec"]["workerGroupSpecs"][1]["scaleStrategy"] == {"workersToDelete": ["a", "b"]}
    moved = body(replicas=2)
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, operations)
    # a group without replicas gets them (nothing to test)
    fresh = jsonpatch.apply_patch(body(), spec.patch(body(), policy.Decision((policy.GroupChange("g", 2),), ())))
    assert fresh["spec"]["workerGroupSpecs"][1]["replicas"] == 2


def test_infeasible_condition_is_written_once_and_cleared() -> None:
    decision = policy.Decision((), ("infeasible: {GPU: 1} fits no worker group",))
    message = spec.infeasible_message(decision)
    assert spec.conditions({}, "", "t0", 1) is None
    first = spec.conditions({"conditions": [{"type": "HeadPodReady", "status": "True"}]}, message, "t1", 1)
    assert first is not None and first[0]["type"] == "HeadPodReady"
    assert first[1] == {"type": "InfeasibleDemand", "status": "True", "reason": "InfeasibleDemand", "message": message,
                        "lastTransitionTime": "t1", "observedGeneration": 1}
    assert spec.conditions({"conditions": first}, message, "t2", 1) is None
    cleared = spec.conditions({"conditions": first}, "", "t3", 1)
    assert cleared is not None and cleared[1]["status"] == "False" and cleared[1]["lastTransitionTime"] == "t3"
    assert spec.conditions({"conditions": cleared}, "", "t4", 1) is None
