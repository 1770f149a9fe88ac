"""Ray's API modules beyond the core calls, on one shared local cluster: kray.actor (its names and
exit_actor), get_or_create, kray.util.list_named_actors, the runtime context's assigned resources in a
placement group, kray.internal.free and
kray.util.multiprocessing.Pool, checked against Ray's documented behaviour; plus a driver script in
Ray's doc style (tqdm_ray from tasks, a Pool that starts its own cluster).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import kray
import kray.actor
import kray.internal
import kray.util
import kray.util.state
import numpy as np
import pytest
from kray import exceptions
from kray.util.multiprocessing import Pool

from . import helpers, tasklib

MiB = helpers.MiB

cluster = helpers.module_cluster(num_cpus=4, object_store_memory=256 * MiB)
pytestmark = pytest.mark.usefixtures("cluster")


def _get(value: Any) -> Any:
    return kray.get(value, timeout=helpers.WAIT_S)


@kray.remote(max_restarts=3)
class Quitter:
    def __init__(self, marker: str) -> None:
        atexit.register(lambda: Path(marker).write_text("atexit ran"))

    def ping(self) -> str:
        return "pong"

    def quit(self) -> None:
        kray.actor.exit_actor()


@kray.remote
class AsyncQuitter:
    async def ping(self) -> str:
        return "pong"

    async def quit(self) -> None:
        kray.actor.exit_actor()


@kray.remote
class Named:
    def __init__(self, value: Any = None) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value


@kray.remote
def exit_in_a_task() -> None:
    kray.actor.exit_actor()


def test_kray_actor_exports_rays_names() -> None:
    assert kray.actor.ActorHandle is kray.ActorHandle
    assert isinstance(Named, kray.actor.ActorClass)
    handle = Named.remote()
    assert isinstance(handle, kray.actor.ActorHandle)
    assert isinstance(handle.get, kray.actor.ActorMethod)
    assert kray.actor.method is kray.method
    kray.kill(handle)


def test_exit_actor_ends_the_actor_for_good(tmp_path: Path) -> None:
    marker = tmp_path / "atexit"
    actor = Quitter.options(name="quitter").remote(str(marker))
    assert _get(actor.ping.remote()) == "pong"
    exiting = actor.quit.remote()
    queued = actor.ping.remote()
    for ref in (exiting, queued):
        with pytest.raises(exceptions.RayActorError):
            _get(ref)
    assert marker.read_text() == "atexit ran"
    # Not restarted, despite max_restarts=3; its name is free again. The death cause is Ray's for an
    # intended exit, not a kill.
    with pytest.raises(exceptions.ActorDiedError, match=r"INTENDED_USER_EXIT.*exit_actor\(\) is called") as died:
        _get(actor.ping.remote())
    assert "kray.kill" not in str(died.value)
    row = kray.util.state.get_actor(actor._actor_id.hex())
    assert row is not None and "exit_actor() is called" in row.death_cause["actor_died_error_context"]["error_message"]
    assert "quitter" not in kray.util.list_named_actors()
    with pytest.raises(ValueError, match="quitter"):
        kray.get_actor("quitter")


@kray.remote(max_restarts=1)
class SysExiter:
    def exit(self, code: Any) -> None:
        sys.exit(code)

    def pid(self) -> int:
        return os.getpid()


@kray.remote(max_retries=1)
def sys_exit_in_a_task(code: int) -> None:
    sys.exit(code)


def test_sys_exit_in_user_code_ends_the_worker_as_ray() -> None:
    # Code 0 in an actor: an intended exit, not restarted despite max_restarts=1.
    clean = SysExiter.remote()
    _get(clean.pid.remote())
    with pytest.raises(exceptions.ActorDiedError, match="INTENDED_USER_EXIT.*exit code 0"):
        _get(clean.exit.remote(0))
    with pytest.raises(exceptions.ActorDiedError, match="INTENDED_USER_EXIT"):
        _get(clean.pid.remote())
    # Any other code: a crash, so the actor restarts in a new process.
    crashing = SysExiter.remote()
    first = _get(crashing.pid.remote())
    with pytest.raises(exceptions.RayActorError):
        _get(crashing.exit.remote("bye"))
    assert _get(crashing.pid.remote()) != first
    kray.kill(crashing)
    # In a task: the worker dies; the task is retried, then fails with WorkerCrashedError.
    with pytest.raises(exceptions.WorkerCrashedError, match="exited with code 3"):
        _get(sys_exit_in_a_task.remote(3))


@kray.remote
class Creator:
    def make(self) -> tuple[Any, Any, int]:
        self.child = Named.remote("child")
        self.detached = Named.options(name="detached-child", lifetime="detached").remote("detached")
        return self.child, self.detached, os.getpid()


def test_an_actor_dies_with_the_process_that_created_it_unless_detached() -> None:
    creator = Creator.remote()
    child, detached, pid = _get(creator.make.remote())
    assert _get([child.get.remote(), detached.get.remote()]) == ["child", "detached"]
    os.kill(pid, signal.SIGKILL)

    def dead_child() -> Any:
        row = kray.util.state.get_actor(child._actor_id.hex())
        return row if row is not None and row.state == "DEAD" else None

    row = helpers.wait_until(dead_child, what="the child of a killed creator DEAD")
    assert "its owner has died" in row.death_cause["actor_died_error_context"]["error_message"]
    with pytest.raises(exceptions.ActorDiedError, match="its owner has died"):
        _get(child.get.remote())
    assert _get(detached.get.remote()) == "detached"  # a detached actor outlives its creator
    kray.kill(detached)


def test_an_actor_whose_handles_are_gone_dies_out_of_scope() -> None:
    actor = Named.remote()
    _get(actor.get.remote())
    actor_id = actor._actor_id.hex()
    del actor

    def dead_row() -> Any:
        row = kray.util.state.get_actor(actor_id)
        return row if row is not None and row.state == "DEAD" else None

    row = helpers.wait_until(dead_row, what="the released actor DEAD")
    assert row.death_cause["actor_died_error_context"]["error_message"] == (
        "The actor is dead because all references to the actor were removed.")


def test_exit_actor_in_an_async_actor_and_outside_actors() -> None:
    actor = AsyncQuitter.remote()
    assert _get(actor.ping.remote()) == "pong"
    with pytest.raises(exceptions.RayActorError):
        _get(actor.quit.remote())
    with pytest.raises(TypeError, match="outside an actor"):
        kray.actor.exit_actor()
    with pytest.raises(TypeError, match="outside an actor"):
        _get(exit_in_a_task.remote())


def test_get_or_create_returns_the_live_actor(actors: list[Any]) -> None:
    first = Named.options(name="greeter").get_or_create("Hi Alice")
    second = Named.options(name="greeter").get_or_create("Hi Dave")
    actors.append(first)
    assert _get(first.get.remote()) == "Hi Alice"
    assert _get(second.get.remote()) == "Hi Alice"
    assert first == second
    with pytest.raises(ValueError, match="needs the actor's name"):
        Named.get_or_create()


def test_list_named_actors_in_this_and_all_namespaces(actors: list[Any]) -> None:
    here = Named.options(name="listed-here").remote()
    there = Named.options(name="listed-there", namespace="elsewhere").remote()
    anonymous = Named.remote()
    doomed = Named.options(name="listed-killed").remote()
    actors += [here, there, anonymous, doomed]
    _get([a.get.remote() for a in (here, there, anonymous, doomed)])
    kray.kill(doomed)
    namespace = kray.get_runtime_context().namespace

    def killed_gone() -> bool:
        return "listed-killed" not in kray.util.list_named_actors()

    helpers.wait_until(killed_gone, what="the killed actor to leave the named list")
    names = kray.util.list_named_actors()
    assert "listed-here" in names and "listed-there" not in names
    assert all(isinstance(n, str) for n in names)
    everywhere = kray.util.list_named_actors(all_namespaces=True)
    assert {"name": "listed-here", "namespace": namespace} in everywhere
    assert {"name": "listed-there", "namespace": "elsewhere"} in everywhere
    assert not any(entry["name"] == "listed-killed" for entry in everywhere)
    with pytest.raises(TypeError, match="all_namespaces"):
        kray.util.list_named_actors(all_namespaces="yes")  # type: ignore[arg-type]


@kray.remote(num_cpus=1)
def context_in_task() -> tuple[dict[str, float], str | None]:
    context = kray.get_runtime_context()
    return context.get_assigned_resources(), context.get_placement_group_id()


def test_assigned_resources_in_a_placement_group_carry_their_own_names() -> None:
    from kray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = kray.util.placement_group([{"CPU": 1}])
    try:
        assert _get(group.ready())
        for index in (0, -1):  # one bundle, or any bundle of the group
            strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)
            resources, group_id = _get(context_in_task.options(scheduling_strategy=strategy).remote())
            assert resources == {"CPU": 1.0}, "as in Ray, not the bundle's CPU_group_<i>_<id> names"
            assert group_id == group.id.hex()
        assert _get(context_in_task.remote()) == ({"CPU": 1.0}, None)
    finally:
        kray.util.remove_placement_group(group)


@kray.remote
def slow_value(gate: str) -> int:
    tasklib.wait_for_file(gate)
    return 7


def test_internal_free_releases_the_memory_and_fails_later_gets(cluster: helpers.LocalCluster, tmp_path: Path) -> None:
    anchor = kray.put(np.zeros(MiB, dtype=np.uint8))  # keeps the session's directory in place
    big = kray.put(np.ones(32 * MiB, dtype=np.uint8))
    used = helpers.allocated_bytes(cluster.shm_dir())
    kray.internal.free([big])
    helpers.wait_until(lambda: helpers.allocated_bytes(cluster.shm_dir()) <= used - 32 * MiB,
                       what="the freed object's shared memory to be given back")
    with pytest.raises(exceptions.ObjectFreedError):
        _get(big)
    with pytest.raises(exceptions.ObjectFreedError):
        _get(_free_pending(tmp_path))
    assert _get(anchor).nbytes == MiB
    with pytest.raises(TypeError, match="ObjectRefs only"):
        kray.internal.free(["not a ref"])  # type: ignore[list-item]


def _free_pending(tmp_path: Path) -> Any:
    """A task's result freed before the task finished: the result is dropped when it arrives."""
    gate = tmp_path / "gate"
    ref = slow_value.remote(str(gate))
    kray.internal.free(ref)
    gate.touch()
    return ref


def _square(x: int) -> int:
    return x * x


def _pid_after(x: int) -> int:
    time.sleep(0.01)
    return os.getpid()


def _set_tag(tag: str) -> None:
    os.environ["POOL_TAG"] = tag


def _tag(_: Any) -> str:
    return os.environ.get("POOL_TAG", "")


def _fails(x: int) -> int:
    if x == 3:
        raise ArithmeticError(f"bad item {x}")
    return x


def test_pool_runs_the_stdlib_api_on_actors() -> None:
    with Pool(processes=2) as pool:
        assert pool.map(_square, range(20)) == [x * x for x in range(20)]
        assert pool.map(_square, range(7), chunksize=3) == [x * x for x in range(7)]
        assert list(pool.imap(_square, range(6))) == [0, 1, 4, 9, 16, 25]
        assert sorted(pool.imap_unordered(_square, range(6))) == [0, 1, 4, 9, 16, 25]
        assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
        assert pool.apply(divmod, (7, 2)) == (3, 1)
        assert pool.apply(int, ("ff",), {"base": 16}) == 255
        got: list[Any] = []
        result = pool.apply_async(_square, (9,), callback=got.append)
        assert result.get(timeout=helpers.WAIT_S) == 81 and result.successful()
        helpers.wait_until(lambda: got == [81], what="apply_async's callback")
        mapped = pool.map_async(_square, [1, 2, 3])
        mapped.wait(helpers.WAIT_S)
        assert mapped.ready() and mapped.get() == [1, 4, 9]
        pids = set(pool.map(_pid_after, range(40), chunksize=1))
        assert 1 <= len(pids) <= 2 and os.getpid() not in pids
        with pytest.raises(ArithmeticError, match="bad item 3"):
            pool.map(_fails, range(5))
        errors: list[BaseException] = []
        failed = pool.map_async(_fails, [3], error_callback=errors.append)
        failed.wait(helpers.WAIT_S)
        assert not failed.successful()
        helpers.wait_until(lambda: len(errors) == 1, what="map_async's error_callback")
        assert isinstance(errors[0], ArithmeticError)


def test_pool_initializer_close_join_terminate_and_bad_input() -> None:
    pool = Pool(processes=2, initializer=_set_tag, initargs=("ready",))
    assert set(pool.map(_tag, range(8), chunksize=1)) == {"ready"}
    pending = pool.map_async(_square, range(10))
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(_square, [1])
    pool.join()
    assert pending.get(timeout=helpers.WAIT_S) == [x * x for x in range(10)]

    other = Pool(processes=1)
    other.terminate()
    with pytest.raises(ValueError, match="Pool not running"):
        other.apply(_square, (2,))
    with pytest.raises(ValueError, match="only 4 CPUs"):
        Pool(processes=64)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Pool(processes=1, maxtasksperchild=5)
    with pytest.raises(ValueError, match="close\\(\\) or terminate\\(\\)"):
        running = Pool(processes=1)
        try:
            running.join()
        finally:
            running.terminate()


DOC_STYLE_SCRIPT = """
    import sys
    import time

    import kray as ray
    from kray.experimental.tqdm_ray import tqdm
    from kray.util.multiprocessing import Pool

    def square(x):
        return x * x

    with Pool(processes=2) as pool:  # starts a local cluster of 2 CPUs, as Ray's Pool does
        print("POOL", sum(pool.map(square, range(100))), flush=True)

    @ray.remote
    def work(name):
        for _ in tqdm(range(30), desc=name, flush_interval_s=0.05):
            time.sleep(0.005)
        return name

    print("DONE", ray.get([work.remote("task 1"), work.remote("task 2")]), flush=True)
    sys.stdin.read()
    ray.shutdown()
"""


def test_tqdm_ray_progress_from_tasks_reaches_the_driver(tmp_path: Path) -> None:
    with helpers.DriverProcess(DOC_STYLE_SCRIPT, tmp_path, "doc_style") as driver:
        driver.wait_for(r"^POOL 328350$", timeout=120)
        driver.wait_for(r"^DONE \['task 1', 'task 2'\]$")
        for name in ("task 1", "task 2"):
            driver.wait_for(r"^\(work pid=\d+(, ip=[^)]*)?\) " + name + r": 100%\|#+\| 30/30 ")
