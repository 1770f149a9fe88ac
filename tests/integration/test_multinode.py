"""Multi-node clusters: a head on 127.0.0.1 and nodes on 127.0.0.2 and 127.0.0.3, each started with the
real `kray start` CLI and its own KRAY_TEMP_DIR, driven from this test process with kray.init(address=...).

Where a task ran is read from the node id it reports, never inferred from timing; "at the same time" is
proven by gates (every task waits until all of them have started), and each wait has a generous bound.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kray
import numpy as np
import pytest
from kray import exceptions
from kray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from . import helpers, multinode
from .multinode import MultiNodeCluster

MB = 1000 * 1000
BIG_BYTES = 500 * MB
NODE_TIMEOUT_S = 3.0
# A dead node must be noticed within KRAY_NODE_TIMEOUT_S; the slack only absorbs a loaded 2-core machine.
DEATH_NOTICE_BOUND_S = NODE_TIMEOUT_S + 20.0
IPS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


# --- what tasks and actors run (shipped to workers by value, see conftest.py) -------------------


def _node_id() -> str:
    return kray.get_runtime_context().get_node_id()


@kray.remote
def where() -> str:
    return _node_id()


@kray.remote
def where_together(gate_dir: str, expected: int, timeout: float = 120.0) -> str:
    """Report this task's node once `expected` tasks (this one included) have started."""
    gate = Path(gate_dir)
    (gate / uuid.uuid4().hex).write_text(_node_id())
    deadline = time.monotonic() + timeout
    while len(list(gate.iterdir())) < expected:
        if time.monotonic() > deadline:
            started = len(list(gate.iterdir()))
            raise RuntimeError(f"only {started} of {expected} tasks ever ran at the same time")
        time.sleep(0.05)
    return _node_id()


@kray.remote
class Locator:
    def where(self) -> str:
        return _node_id()


@kray.remote(num_returns=2)
def make_big(nbytes: int) -> tuple[np.ndarray, int]:
    data = np.arange(nbytes // 8, dtype=np.uint64)
    return data, zlib.crc32(data)


@kray.remote(num_returns=2)
def produce(n: int) -> tuple[np.ndarray, str]:
    return np.arange(n, dtype=np.int64), _node_id()


@kray.remote
def consume(array: np.ndarray, nested: list) -> tuple[str, int, int]:
    inner = kray.get(nested[0], timeout=120)
    return _node_id(), int(array.sum()), int(inner.sum())


def _record_attempt(attempts_dir: str) -> int:
    """Record this attempt (with its node) and return how many attempts were recorded so far."""
    attempts = Path(attempts_dir)
    (attempts / f"{uuid.uuid4().hex}.json").write_text(json.dumps({"node": _node_id(), "pid": os.getpid()}))
    return len(list(attempts.glob("*.json")))


@kray.remote
def double_slowly_at_first(x: int, attempts_dir: str) -> tuple[int, str]:
    """The first attempt hangs (until its node is killed); a retry answers at once."""
    if _record_attempt(attempts_dir) == 1:
        time.sleep(600)
    return 2 * x, _node_id()


@kray.remote(num_returns=2)
def make_recorded(n: int, attempts_dir: str) -> tuple[np.ndarray, str]:
    _record_attempt(attempts_dir)
    return np.full(n, 7, dtype=np.int64), _node_id()


@kray.remote
def need(resource: str) -> str:
    return _node_id()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    """The shared cluster: 1 CPU per node; "gizmo" only on node 2, "widget" only on node 3."""
    with multinode.running(tmp_path_factory.mktemp("multinode"), num_cpus=1,
                           resources=[None, {"gizmo": 2}, {"widget": 1}]) as started:
        yield started


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Callable[..., MultiNodeCluster]]:
    """Start a cluster of a test's own; torn down (and leak-checked) after the test."""
    started: list[MultiNodeCluster] = []

    def start(**kwargs: Any) -> MultiNodeCluster:
        base = tmp_path / f"cluster{len(started)}"
        base.mkdir()
        one = MultiNodeCluster(base, **kwargs)
        started.append(one)
        return one.start()

    yield start
    errors = []
    for one in reversed(started):
        try:
            one.teardown()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "; ".join(errors)


def ips_by_node_id() -> dict[str, str]:
    return {n["NodeID"]: n["NodeManagerAddress"] for n in kray.nodes()}


def node_id_of(ip: str) -> str:
    ids = [n["NodeID"] for n in kray.nodes() if n["NodeManagerAddress"] == ip and n["Alive"]]
    assert len(ids) == 1, f"expected one live node at {ip}, found {kray.nodes()}"
    return ids[0]


def wait_dead(node_id: str, bound: float) -> float:
    """Seconds until kray.nodes() shows `node_id` dead (fails after `bound` seconds)."""
    start = time.monotonic()
    helpers.wait_until(
        lambda: any(n["NodeID"] == node_id and not n["Alive"] for n in kray.nodes()),
        bound, f"kray.nodes() to show node {node_id[:12]} dead",
    )
    return time.monotonic() - start


def wait_for_attempts(attempts: Path, count: int) -> list[dict]:
    helpers.wait_until(lambda: len(list(attempts.glob("*.json"))) >= count, 120, f"{count} attempt(s) to start")
    return [json.loads(p.read_text()) for p in attempts.glob("*.json")]


# --- the cluster itself -------------------------------------------------------------------------


def test_nodes_lists_three_alive_nodes(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    nodes = kray.nodes()
    alive = [n for n in nodes if n["Alive"]]
    assert sorted(n["NodeManagerAddress"] for n in alive) == IPS, nodes
    assert len(alive) == 3 and len(nodes) == 3, nodes
    by_ip = {n["NodeManagerAddress"]: n for n in alive}
    assert by_ip["127.0.0.1"]["IsHead"] and not by_ip["127.0.0.2"]["IsHead"]
    assert by_ip["127.0.0.2"]["Resources"].get("gizmo") == 2.0
    assert by_ip["127.0.0.3"]["Resources"].get("widget") == 1.0
    assert all(n["Resources"]["CPU"] == 1.0 for n in alive)
    assert kray.cluster_resources()["CPU"] == 3.0


def test_kray_status_shows_every_node(cluster: MultiNodeCluster) -> None:
    env = cluster.node_env(cluster.nodes[0], cluster.token)
    result = cluster.run_cli(["status", f"--address={cluster.address}"], env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for ip in IPS:
        assert ip in result.stdout, result.stdout
    assert "gizmo" in result.stdout and "widget" in result.stdout, result.stdout


# --- scheduling across nodes ------------------------------------------------------------------


def test_task_needing_a_resource_of_one_node_spills_back_there(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    refs = [where.options(resources={"gizmo": 1}).remote() for _ in range(3)]
    ips = ips_by_node_id()
    assert {ips[n] for n in kray.get(refs, timeout=120)} == {"127.0.0.2"}


def test_tasks_that_do_not_fit_locally_spill_to_the_other_nodes(
    cluster: MultiNodeCluster, connect: Callable, tmp_path: Path
) -> None:
    """1 CPU per node: three 1-CPU tasks that must all run at once can only do so on three nodes."""
    connect(cluster)
    refs = [where_together.remote(str(tmp_path), 3) for _ in range(3)]
    ips = ips_by_node_id()
    placed = sorted(ips[n] for n in kray.get(refs, timeout=180))
    assert placed == IPS


def test_spread_touches_every_node(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    refs = [where.options(scheduling_strategy="SPREAD").remote() for _ in range(6)]
    ips = ips_by_node_id()
    placed = [ips[n] for n in kray.get(refs, timeout=120)]
    assert sorted(set(placed)) == IPS, placed


def test_node_affinity_hard_runs_on_that_node(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    for ip in IPS:
        target = node_id_of(ip)
        strategy = NodeAffinitySchedulingStrategy(target, soft=False)
        got = kray.get([where.options(scheduling_strategy=strategy).remote() for _ in range(2)], timeout=120)
        assert got == [target, target], f"hard affinity to {ip} ran on {[ips_by_node_id()[g] for g in got]}"


def test_node_affinity_soft_to_an_unknown_node_still_runs(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    strategy = NodeAffinitySchedulingStrategy(os.urandom(16).hex(), soft=True)
    got = kray.get(where.options(scheduling_strategy=strategy).remote(), timeout=120)
    assert got in {n["NodeID"] for n in kray.nodes() if n["Alive"]}


def test_node_affinity_soft_to_a_live_node_runs_there(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    target = node_id_of("127.0.0.3")
    strategy = NodeAffinitySchedulingStrategy(target, soft=True)
    assert kray.get(where.options(scheduling_strategy=strategy).remote(), timeout=120) == target


def test_actor_with_a_custom_resource_runs_on_the_node_that_has_it(
    cluster: MultiNodeCluster, connect: Callable
) -> None:
    connect(cluster)
    actor = Locator.options(resources={"widget": 1}).remote()
    assert ips_by_node_id()[kray.get(actor.where.remote(), timeout=120)] == "127.0.0.3"
    kray.kill(actor)


# --- objects across nodes -------------------------------------------------------------------------


def _rss_and_peak() -> tuple[int, int]:
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def test_500mb_object_made_on_node2_arrives_intact_without_a_double_copy(
    cluster: MultiNodeCluster, connect: Callable
) -> None:
    connect(cluster)
    big_ref, crc_ref = make_big.options(resources={"gizmo": 1}).remote(BIG_BYTES)
    expected_crc = kray.get(crc_ref, timeout=300)
    ready, _ = kray.wait([big_ref], timeout=300, fetch_local=False)
    assert ready, "the 500 MB object was never created on node 2"
    rss_before, _ = _rss_and_peak()
    peak_tracked = _reset_peak_rss()
    array = kray.get(big_ref, timeout=300)
    assert array.dtype == np.uint64 and array.nbytes == BIG_BYTES // 8 * 8
    assert int(array[0]) == 0 and int(array[-1]) == BIG_BYTES // 8 - 1
    assert zlib.crc32(array) == expected_crc, "the 500 MB object changed on its way from node 2"
    rss_after, peak = _rss_and_peak()
    growth = (peak if peak_tracked else rss_after) - rss_before
    del array
    assert growth < 1.5 * BIG_BYTES, (
        f"the driver's {'peak ' if peak_tracked else ''}RSS grew by {growth / MB:.0f} MB while getting a "
        f"{BIG_BYTES / MB:.0f} MB object: a full extra copy was made in the driver's memory"
    )


def test_ref_made_on_node3_is_passed_to_a_task_on_node2(cluster: MultiNodeCluster, connect: Callable) -> None:
    connect(cluster)
    n = 200_000  # 1.6 MB: above the inline threshold, so it lives in node 3's object store
    array_ref, made_on = produce.options(resources={"widget": 1}).remote(n)
    other_ref, _ = produce.options(resources={"widget": 1}).remote(n // 2)
    ips = ips_by_node_id()
    assert ips[kray.get(made_on, timeout=120)] == "127.0.0.3"
    ran_on, total, nested_total = kray.get(
        consume.options(resources={"gizmo": 1}).remote(array_ref, [other_ref]), timeout=120
    )
    assert ips[ran_on] == "127.0.0.2"
    assert total == n * (n - 1) // 2
    assert nested_total == (n // 2) * (n // 2 - 1) // 2


# --- security -----------------------------------------------------------------------------------


def test_driver_with_a_wrong_token_is_refused(
    cluster: MultiNodeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRAY_CLUSTER_TOKEN", "wrong")
    try:
        with pytest.raises(ConnectionError, match="(?i)token"):
            kray.init(address=cluster.address)
    finally:
        kray.shutdown()
    # The refusal left this process able to connect with the right token.
    monkeypatch.setenv("KRAY_CLUSTER_TOKEN", cluster.token)
    kray.init(address=cluster.address)
    try:
        assert len([n for n in kray.nodes() if n["Alive"]]) == 3
    finally:
        kray.shutdown()


def test_node_with_a_wrong_or_no_token_cannot_join(cluster: MultiNodeCluster) -> None:
    shm_before = helpers.shm_entries()
    wrong = cluster.try_join("wrong", "127.0.0.9")
    assert wrong.returncode != 0, wrong.stdout + wrong.stderr
    assert "token" in (wrong.stdout + wrong.stderr).lower(), wrong.stdout + wrong.stderr
    missing = cluster.try_join(None, "127.0.0.9")
    assert missing.returncode != 0, missing.stdout + missing.stderr
    assert "KRAY_CLUSTER_TOKEN" in missing.stdout + missing.stderr
    left = multinode.marked_processes(f"{cluster.cluster_id}:refused:")
    assert not left, f"a refused `kray start` left processes: {helpers.describe(left)}"
    assert not (helpers.shm_entries() - shm_before), "a refused `kray start` left /dev/shm entries"
    env = cluster.node_env(cluster.nodes[0], cluster.token)
    status = cluster.run_cli(["status", f"--address={cluster.address}"], env, timeout=60)
    assert "127.0.0.9" not in status.stdout, status.stdout


# --- nodes joining and leaving -------------------------------------------------------------------


def test_node_joining_late_runs_work_queued_before_it_came(
    start_cluster: Callable[..., MultiNodeCluster], connect: Callable
) -> None:
    late_cluster = start_cluster(num_cpus=1)
    connect(late_cluster)
    ref = need.options(resources={"late": 1}).remote("late")
    ready, _ = kray.wait([ref], timeout=2)
    assert not ready, "a task needing a resource no node has ran anyway"
    late_cluster.add_node(resources={"late": 1})
    assert ips_by_node_id()[kray.get(ref, timeout=120)] == "127.0.0.4"


def test_kray_stop_stops_one_node_and_then_leaves_nothing_running(
    start_cluster: Callable[..., MultiNodeCluster], connect: Callable
) -> None:
    stopping = start_cluster(num_cpus=1)
    connect(stopping)
    kray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(6)], timeout=120)
    third = node_id_of("127.0.0.3")
    assert all(node.processes() for node in stopping.nodes)
    result = stopping.stop_node(2)
    assert result.returncode == 0, result.stdout + result.stderr
    helpers.wait_until(lambda: not stopping.nodes[2].processes(), 60, "node 3's processes to exit after `kray stop`")
    helpers.wait_until(lambda: not stopping.nodes[2].shm_entries(), 60, "node 3's /dev/shm entries to go")
    assert stopping.nodes[0].processes() and stopping.nodes[1].processes(), "`kray stop` on node 3 stopped others"
    wait_dead(third, 60)
    stopped = next(n for n in kray.nodes() if n["NodeID"] == third)
    assert stopped["DeathReason"] == 1 and stopped["Resources"] == {}, stopped  # Ray's EXPECTED_TERMINATION
    assert "shut down" in stopped["DeathReasonMessage"], stopped
    assert kray.get(where.remote(), timeout=120) != third
    kray.shutdown()
    for index in (1, 0):
        result = stopping.stop_node(index)
        assert result.returncode == 0, result.stdout + result.stderr
    helpers.wait_until(lambda: not stopping.processes(), 60, "every kray process to exit after `kray stop`")
    helpers.wait_until(lambda: not stopping.shm_entries(), 60, "the cluster's /dev/shm entries to go")
    for node in stopping.nodes:
        assert node.address_file() is None, f"`kray stop` left {node.temp_dir}/kray_current_cluster"


# --- node failure ---------------------------------------------------------------------------------


def _failure_cluster(start_cluster: Callable[..., MultiNodeCluster]) -> MultiNodeCluster:
    """Head plus two nodes with "flaky" (so work avoids the head), noticing death after 3 s of silence."""
    return start_cluster(
        num_cpus=1, resources=[None, {"flaky": 1}, {"flaky": 1}],
        extra_env={"KRAY_NODE_TIMEOUT_S": f"{NODE_TIMEOUT_S:g}"},
    )


def test_task_on_a_killed_node_is_retried_on_another(
    start_cluster: Callable[..., MultiNodeCluster], connect: Callable, tmp_path: Path
) -> None:
    failing = _failure_cluster(start_cluster)
    connect(failing)
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    ref = double_slowly_at_first.options(max_retries=2, resources={"flaky": 1}).remote(21, str(attempts))
    first = wait_for_attempts(attempts, 1)[0]["node"]
    ips = ips_by_node_id()
    victim = IPS.index(ips[first])
    assert victim in (1, 2)
    failing.kill_node(victim)
    elapsed = wait_dead(first, DEATH_NOTICE_BOUND_S)
    value, ran_on = kray.get(ref, timeout=180)
    assert value == 42
    assert ran_on != first and ips[ran_on] == IPS[3 - victim], f"the retry ran on {ips.get(ran_on)}"
    assert len(list(attempts.glob("*.json"))) == 2
    alive = {n["NodeManagerAddress"] for n in kray.nodes() if n["Alive"]}
    assert alive == set(IPS) - {IPS[victim]}, f"noticed dead after {elapsed:.1f}s; alive: {alive}"
    dead = next(n for n in kray.nodes() if n["NodeID"] == first)
    assert dead["DeathReason"] == 2 and "heartbeat" in dead["DeathReasonMessage"], dead  # UNEXPECTED_TERMINATION


def test_actor_on_a_killed_node_restarts_on_another(
    start_cluster: Callable[..., MultiNodeCluster], connect: Callable
) -> None:
    failing = _failure_cluster(start_cluster)
    connect(failing)
    actor = Locator.options(max_restarts=1, resources={"flaky": 1}).remote()
    first = kray.get(actor.where.remote(), timeout=120)
    ips = ips_by_node_id()
    victim = IPS.index(ips[first])
    assert victim in (1, 2)
    failing.kill_node(victim)
    seen: list[str] = []
    deadline = time.monotonic() + 120
    second = None
    while second is None:
        try:
            second = kray.get(actor.where.remote(), timeout=30)
        except (exceptions.ActorError, exceptions.GetTimeoutError) as e:
            seen.append(type(e).__name__)
            assert time.monotonic() < deadline, f"the actor never answered after its node died; errors: {seen}"
            time.sleep(0.2)
    assert second != first and ips_by_node_id()[second] == IPS[3 - victim], (
        f"the actor answered from {ips_by_node_id().get(second)}, errors before that: {seen}"
    )
    kray.kill(actor)


def test_objects_of_a_killed_node_are_rebuilt_from_lineage_or_lost(
    start_cluster: Callable[..., MultiNodeCluster], connect: Callable, tmp_path: Path
) -> None:
    """Both objects are made on node 2 (soft affinity): the retryable one is made again elsewhere after
    node 2 dies, the other raises ObjectLostError; soft affinity to the dead node still runs."""
    failing = _failure_cluster(start_cluster)
    connect(failing)
    victim = node_id_of("127.0.0.2")
    on_victim = NodeAffinitySchedulingStrategy(victim, soft=True)
    rebuilt_attempts, lost_attempts = tmp_path / "rebuilt", tmp_path / "lost"
    rebuilt_attempts.mkdir()
    lost_attempts.mkdir()
    n = 100_000  # 800 kB: kept in node 2's object store, not inline with its owner
    rebuilt, rebuilt_on = make_recorded.options(
        max_retries=2, resources={"flaky": 1}, scheduling_strategy=on_victim
    ).remote(n, str(rebuilt_attempts))
    lost, lost_on = make_recorded.options(
        max_retries=0, resources={"flaky": 1}, scheduling_strategy=on_victim
    ).remote(n, str(lost_attempts))
    assert kray.get([rebuilt_on, lost_on], timeout=120) == [victim, victim]
    ready, _ = kray.wait([rebuilt, lost], num_returns=2, timeout=120, fetch_local=False)
    assert len(ready) == 2
    failing.kill_node(1)
    wait_dead(victim, DEATH_NOTICE_BOUND_S)
    array = kray.get(rebuilt, timeout=180)
    assert array.shape == (n,) and int(array.sum()) == 7 * n
    made_again_on = {a["node"] for a in wait_for_attempts(rebuilt_attempts, 2)}
    assert made_again_on == {victim, node_id_of("127.0.0.3")}
    with pytest.raises(exceptions.ObjectLostError):
        kray.get(lost, timeout=120)
    # Soft affinity to the dead node still runs, on a live node.
    ran_on = kray.get(where.options(scheduling_strategy=on_victim).remote(), timeout=120)
    assert ran_on != victim
