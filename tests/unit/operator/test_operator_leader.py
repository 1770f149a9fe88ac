"""Unit tests of the pure part of leader election: who may write the Lease, and what is written."""

from __future__ import annotations

import datetime

import pytest
from kray_operator import leader

NOW = datetime.datetime(2026, 12, 2, 8, 0, 0, 123456, tzinfo=datetime.timezone.utc)
ME = leader.ElectionConfig("ops", "kray-operator", "pod-a_1")


def _lease(holder: str, transitions: int = 0) -> dict:
    return {"metadata": {"name": "kray-operator", "namespace": "ops", "resourceVersion": "42"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": transitions,
                     "acquireTime": "2026-12-02T07:00:00.000000Z", "renewTime": "2026-12-02T07:59:59.000000Z"}}


def test_no_lease_yet_is_created_for_us() -> None:
    wanted = leader.claim(None, ME, expired=False, now=NOW)
    assert wanted is not None and "resourceVersion" not in wanted["metadata"]
    spec = wanted["spec"]
    assert spec["holderIdentity"] == "pod-a_1" and spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"] == "2026-12-02T08:00:00.123456Z"


def test_a_live_lease_of_another_replica_is_left_alone() -> None:
    assert leader.claim(_lease("pod-b_7"), ME, expired=False, now=NOW) is None


def test_an_expired_or_released_lease_is_taken_over() -> None:
    taken = leader.claim(_lease("pod-b_7", transitions=2), ME, expired=True, now=NOW)
    assert taken is not None and taken["metadata"]["resourceVersion"] == "42"
    assert taken["spec"]["holderIdentity"] == "pod-a_1" and taken["spec"]["leaseTransitions"] == 3
    released = leader.claim(_lease("", transitions=3), ME, expired=False, now=NOW)
    assert released is not None and released["spec"]["leaseTransitions"] == 3


def test_renewing_our_own_lease_keeps_its_acquire_time() -> None:
    renewed = leader.claim(_lease("pod-a_1", transitions=1), ME, expired=False, now=NOW)
    assert renewed is not None
    assert renewed["spec"]["acquireTime"] == "2026-12-02T07:00:00.000000Z"
    assert renewed["spec"]["renewTime"] == "2026-12-02T08:00:00.123456Z"
    assert renewed["spec"]["leaseTransitions"] == 1


def test_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        leader.ElectionConfig("ops", "x", "me", lease_duration_s=5, renew_deadline_s=5, retry_period_s=1)
