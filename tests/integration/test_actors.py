"""Actors on one shared local cluster: remote classes and handles, ordering, state, resources, handles in
tasks and actors, num_returns, named actors and namespaces; and detached actors across drivers of a
cluster started with `kray start`.

One cluster for the module (4 CPUs, 1 GPU (declared, none needed), 2 units of a custom resource); every test kills the actors it made.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kray
import psutil
import pytest

from . import helpers, tasklib

CPUS = 4
cluster = helpers.module_cluster(num_cpus=CPUS, num_gpus=1, resources={"gizmo": 2})



@kray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def read(self) -> int:
        return self.value

    def pid(self) -> int:
        return os.getpid()

    def gpus(self) -> tuple[list[Any], str | None]:
        return kray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@kray.remote
class Recorder:
    """Remembers the order in which its calls ran."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def append(self, i: int) -> int:
        self.seen.append(i)
        return len(self.seen)

    def all(self) -> list[int]:
        return self.seen


@kray.remote
class KeyValue:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def keys(self) -> list[str]:
        return sorted(self.data)


@kray.remote
class Pairs:
    @kray.method(num_returns=2)
    def split(self, x: int) -> tuple[int, int]:
        return x // 10, x % 10

    def one(self) -> str:
        return "one"


@kray.remote
def use_counter(counter: Any, times: int) -> int:
    """A task that calls an actor through a handle it received as an argument."""
    last = 0
    for _ in range(times):
        last = kray.get(counter.incr.remote())
    return last


@kray.remote
def use_counters_in_list(handles: list[Any]) -> list[int]:
    return kray.get([h.incr.remote(100) for h in handles])


@kray.remote
class Caller:
    """An actor that calls another actor through a handle."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def bump_target(self, by: int) -> int:
        return kray.get(self.target.incr.remote(by))

    def bump_other(self, other: Any) -> int:
        return kray.get(other.incr.remote(1000))


def wait_for_resource(name: str, value: float) -> None:
    helpers.wait_until(
        lambda: kray.available_resources().get(name, 0.0) == value,
        what=f"available {name} to be {value} (now {kray.available_resources().get(name, 0.0)})",
    )


# --- classes, handles, calls --------------------------------------------------------------------


def test_remote_class_and_method_calls_return_refs(cluster, actors) -> None:
    counter = Counter.remote()
    actors.append(counter)
    ref = counter.incr.remote()
    assert isinstance(ref, kray.ObjectRef)
    assert kray.get(ref, timeout=helpers.WAIT_S) == 1
    assert kray.get(counter.incr.remote(5), timeout=helpers.WAIT_S) == 6
    assert kray.get(counter.incr.remote(by=4), timeout=helpers.WAIT_S) == 10


def test_constructor_arguments_and_options(cluster, actors) -> None:
    started = Counter.remote(41)
    configured = Counter.options(num_cpus=0, max_concurrency=1).remote(start=100)
    actors += [started, configured]
    assert kray.get(started.incr.remote(), timeout=helpers.WAIT_S) == 42
    assert kray.get(configured.incr.remote(), timeout=helpers.WAIT_S) == 101
    # An ObjectRef passed to the constructor or a method arrives as its value, also one a call returned.
    from_ref = Counter.remote(kray.put(7))
    actors.append(from_ref)
    assert kray.get(from_ref.read.remote(), timeout=helpers.WAIT_S) == 7
    assert kray.get(from_ref.incr.remote(kray.put(3)), timeout=helpers.WAIT_S) == 10
    assert kray.get(from_ref.incr.remote(started.read.remote()), timeout=helpers.WAIT_S) == 52


def test_calling_a_class_or_method_without_remote_raises_type_error(cluster, actors) -> None:
    with pytest.raises(TypeError, match=r"\.remote\("):
        Counter()
    counter = Counter.remote()
    actors.append(counter)
    with pytest.raises(TypeError, match=r"\.remote\("):
        counter.incr()
    with pytest.raises(TypeError):
        Counter.options(num_cpus=0)()
    # The failed direct calls did not reach the actor.
    assert kray.get(counter.read.remote(), timeout=helpers.WAIT_S) == 0


def test_kill_of_something_else_than_an_actor_raises(cluster) -> None:
    with pytest.raises((ValueError, TypeError)):
        kray.kill(kray.put(1))


def test_calling_a_missing_method_raises_attribute_error(cluster, actors) -> None:
    counter = Counter.remote()
    actors.append(counter)
    with pytest.raises(AttributeError):
        counter.no_such_method.remote()


def test_ray_ready_is_every_actors_built_in_method(cluster, actors) -> None:
    counter = Counter.remote(5)
    actors.append(counter)
    assert kray.get(counter.__ray_ready__.remote(), timeout=helpers.WAIT_S) is True
    assert kray.get(counter.read.remote(), timeout=helpers.WAIT_S) == 5  # the actor is untouched


def test_calls_from_one_caller_run_in_submission_order(cluster, actors) -> None:
    recorder = Recorder.remote()
    actors.append(recorder)
    n = 10_000
    refs = [recorder.append.remote(i) for i in range(n)]
    # Each call saw exactly the calls submitted before it.
    assert kray.get(refs, timeout=600) == list(range(1, n + 1))
    assert kray.get(recorder.all.remote(), timeout=helpers.WAIT_S) == list(range(n))


@kray.remote
def released_by(gate: str, value: int) -> int:
    tasklib.wait_for_file(gate)
    return value


def test_order_holds_when_an_earlier_calls_argument_is_ready_later(cluster, actors, tmp_path: Path) -> None:
    recorder = Recorder.remote()
    actors.append(recorder)
    kray.get(recorder.all.remote(), timeout=helpers.WAIT_S)
    gate = tmp_path / "gate"
    first = recorder.append.remote(released_by.remote(str(gate), -1))  # its argument is not ready yet
    later = [recorder.append.remote(i) for i in range(3)]
    ready, _ = kray.wait([later[0]], timeout=0.5)
    assert not ready, "a later call ran before an earlier one whose argument was pending"
    gate.touch()
    assert kray.get([first, *later], timeout=helpers.WAIT_S) == [1, 2, 3, 4]
    assert kray.get(recorder.all.remote(), timeout=helpers.WAIT_S) == [-1, 0, 1, 2]


def test_state_persists_across_calls(cluster, actors) -> None:
    store = KeyValue.remote()
    actors.append(store)
    kray.get([store.set.remote("a", 1), store.set.remote("b", [1, 2])], timeout=helpers.WAIT_S)
    kray.get(store.set.remote("a", {"x": 3}), timeout=helpers.WAIT_S)
    assert kray.get(store.get.remote("a"), timeout=helpers.WAIT_S) == {"x": 3}
    assert kray.get(store.get.remote("b"), timeout=helpers.WAIT_S) == [1, 2]
    assert kray.get(store.keys.remote(), timeout=helpers.WAIT_S) == ["a", "b"]
    # Two actors of one class keep separate state, each in a process of its own.
    other = KeyValue.remote()
    actors.append(other)
    assert kray.get(other.keys.remote(), timeout=helpers.WAIT_S) == []


def test_actor_exits_when_its_last_handle_is_dropped(cluster) -> None:
    counter = Counter.remote()
    pid = kray.get(counter.pid.remote(), timeout=helpers.WAIT_S)
    copy = counter
    del counter
    # One handle left: the actor lives on.
    assert kray.get(copy.incr.remote(), timeout=helpers.WAIT_S) == 1
    del copy
    helpers.wait_until(lambda: not _running(pid), what="the actor to exit once no handle to it was left")


def test_actor_exits_when_the_handle_it_lent_a_task_is_back_and_dropped(cluster) -> None:
    counter = Counter.remote()
    pid = kray.get(counter.pid.remote(), timeout=helpers.WAIT_S)
    assert kray.get(use_counter.remote(counter, 2), timeout=helpers.WAIT_S) == 2
    # The task that borrowed the handle has finished: dropping the driver's handle ends the actor, as in Ray.
    del counter
    helpers.wait_until(lambda: not _running(pid), what="the actor to exit once no handle to it was left")


def test_named_actor_exits_when_its_last_handle_is_dropped(cluster) -> None:
    named = Counter.options(name="test-dropped-named").remote()
    pid = kray.get(named.pid.remote(), timeout=helpers.WAIT_S)
    del named
    # As in Ray: a name does not keep a non-detached actor alive (lifetime="detached" does).
    helpers.wait_until(lambda: not _running(pid), what="the named actor to exit once no handle to it was left")


def test_each_actor_has_a_dedicated_process(cluster, actors) -> None:
    first, second = Counter.remote(), Counter.remote()
    actors += [first, second]
    pids = kray.get([first.pid.remote(), second.pid.remote(), first.pid.remote()], timeout=helpers.WAIT_S)
    assert pids[0] == pids[2], "one actor's calls ran in two processes"
    assert pids[0] != pids[1], "two actors shared a process"
    assert os.getpid() not in pids


# --- resources ----------------------------------------------------------------------------------


def test_resources_are_held_for_the_actors_lifetime(cluster, actors) -> None:
    wait_for_resource("CPU", CPUS)
    wait_for_resource("gizmo", 2)
    holder = Counter.options(num_cpus=1, resources={"gizmo": 1}).remote()
    actors.append(holder)
    assert kray.get(holder.incr.remote(), timeout=helpers.WAIT_S) == 1
    wait_for_resource("CPU", CPUS - 1)
    wait_for_resource("gizmo", 1)
    # Still held between calls, and after many of them.
    kray.get([holder.incr.remote() for _ in range(20)], timeout=helpers.WAIT_S)
    assert kray.available_resources().get("CPU") == CPUS - 1
    assert kray.available_resources().get("gizmo") == 1
    # Released when the actor dies.
    kray.kill(holder)
    wait_for_resource("CPU", CPUS)
    wait_for_resource("gizmo", 2)


def test_gpus_are_held_for_the_actors_lifetime(cluster, actors) -> None:
    wait_for_resource("GPU", 1)
    holder = Counter.options(num_gpus=1).remote()
    actors.append(holder)
    ids, visible = kray.get(holder.gpus.remote(), timeout=helpers.WAIT_S)
    assert [int(i) for i in ids] == [0]
    assert visible == "0"
    wait_for_resource("GPU", 0)
    kray.get([holder.incr.remote() for _ in range(5)], timeout=helpers.WAIT_S)
    assert kray.available_resources().get("GPU", 0.0) == 0
    kray.kill(holder)
    wait_for_resource("GPU", 1)


def test_actor_without_num_cpus_holds_no_cpu_while_alive(cluster, actors) -> None:
    # As in Ray: an actor needs 1 CPU to be placed but holds 0 CPUs for running by default.
    wait_for_resource("CPU", CPUS)
    idle = [Counter.remote() for _ in range(CPUS + 1)]
    actors += idle
    assert kray.get([a.incr.remote() for a in idle], timeout=helpers.WAIT_S) == [1] * (CPUS + 1)
    assert kray.available_resources().get("CPU") == CPUS


def test_actors_holding_all_cpus_leave_none_for_tasks_until_killed(cluster, actors) -> None:
    wait_for_resource("CPU", CPUS)
    holders = [Counter.options(num_cpus=2).remote() for _ in range(CPUS // 2)]
    actors += holders
    kray.get([h.incr.remote() for h in holders], timeout=helpers.WAIT_S)
    wait_for_resource("CPU", 0)

    @kray.remote(num_cpus=1)
    def needs_a_cpu() -> str:
        return "ran"

    ref = needs_a_cpu.remote()
    ready, _ = kray.wait([ref], timeout=1.0)
    assert not ready, "a task ran although actors held every CPU"
    kray.kill(holders[0])
    assert kray.get(ref, timeout=helpers.WAIT_S) == "ran"


# --- handles in tasks and actors ----------------------------------------------------------------


def test_handle_passed_to_a_task(cluster, actors) -> None:
    counter = Counter.remote()
    actors.append(counter)
    assert kray.get(use_counter.remote(counter, 3), timeout=helpers.WAIT_S) == 3
    # The task's calls changed the one actor the driver sees.
    assert kray.get(counter.read.remote(), timeout=helpers.WAIT_S) == 3
    # Handles nested in a list travel too.
    other = Counter.remote()
    actors.append(other)
    assert kray.get(use_counters_in_list.remote([counter, other]), timeout=helpers.WAIT_S) == [103, 100]


def test_handle_passed_to_another_actor(cluster, actors) -> None:
    target = Counter.remote()
    caller = Caller.remote(target)
    actors += [target, caller]
    assert kray.get(caller.bump_target.remote(5), timeout=helpers.WAIT_S) == 5
    assert kray.get(target.incr.remote(), timeout=helpers.WAIT_S) == 6
    other = Counter.remote()
    actors.append(other)
    assert kray.get(caller.bump_other.remote(other), timeout=helpers.WAIT_S) == 1000
    assert kray.get(other.read.remote(), timeout=helpers.WAIT_S) == 1000


def test_method_num_returns(cluster, actors) -> None:
    pairs = Pairs.remote()
    actors.append(pairs)
    tens, ones = pairs.split.remote(42)
    assert isinstance(tens, kray.ObjectRef) and isinstance(ones, kray.ObjectRef)
    assert kray.get([tens, ones], timeout=helpers.WAIT_S) == [4, 2]
    assert kray.get(pairs.one.remote(), timeout=helpers.WAIT_S) == "one"
    # Method options override the decorator for one call.
    whole = pairs.split.options(num_returns=1).remote(42)
    assert kray.get(whole, timeout=helpers.WAIT_S) == (4, 2)


# --- named actors -------------------------------------------------------------------------------


def test_named_actor_is_found_by_name(cluster, actors) -> None:
    named = Counter.options(name="test-named-counter").remote()
    actors.append(named)
    kray.get(named.incr.remote(10), timeout=helpers.WAIT_S)
    found = kray.get_actor("test-named-counter")
    assert kray.get(found.incr.remote(), timeout=helpers.WAIT_S) == 11
    assert found == named
    with pytest.raises(ValueError):
        Counter.options(name="test-named-counter").remote()


def test_get_actor_of_a_missing_name_raises_value_error(cluster) -> None:
    with pytest.raises(ValueError):
        kray.get_actor("no-actor-has-this-name")
    with pytest.raises(ValueError):
        kray.get_actor("no-actor-has-this-name", namespace="nowhere")


def test_get_if_exists_returns_the_existing_actor(cluster, actors) -> None:
    first = Counter.options(name="test-get-if-exists", get_if_exists=True).remote(5)
    actors.append(first)
    assert kray.get(first.incr.remote(), timeout=helpers.WAIT_S) == 6
    # The constructor's arguments of a second call are ignored: the existing actor is returned.
    second = Counter.options(name="test-get-if-exists", get_if_exists=True).remote(500)
    assert kray.get(second.incr.remote(), timeout=helpers.WAIT_S) == 7
    assert kray.get(first.pid.remote(), timeout=helpers.WAIT_S) == kray.get(second.pid.remote(), timeout=helpers.WAIT_S)
    with pytest.raises(ValueError, match="name"):
        Counter.options(get_if_exists=True).remote()


def test_namespaces_separate_names(cluster, actors) -> None:
    in_a = Counter.options(name="shared-name", namespace="ns-a").remote(1)
    in_b = Counter.options(name="shared-name", namespace="ns-b").remote(2)
    actors += [in_a, in_b]
    found_a = kray.get_actor("shared-name", namespace="ns-a")
    found_b = kray.get_actor("shared-name", namespace="ns-b")
    assert kray.get(found_a.read.remote(), timeout=helpers.WAIT_S) == 1
    assert kray.get(found_b.read.remote(), timeout=helpers.WAIT_S) == 2
    with pytest.raises(ValueError):
        kray.get_actor("shared-name")  # not in this driver's namespace
    with pytest.raises(ValueError):
        kray.get_actor("shared-name", namespace="ns-c")


def test_named_actor_is_found_from_a_task(cluster, actors) -> None:
    named = Counter.options(name="test-named-from-task", namespace="task-ns").remote()
    actors.append(named)

    @kray.remote
    def find_and_bump() -> int:
        return kray.get(kray.get_actor("test-named-from-task", namespace="task-ns").incr.remote(3))

    assert kray.get(find_and_bump.remote(), timeout=helpers.WAIT_S) == 3
    assert kray.get(named.read.remote(), timeout=helpers.WAIT_S) == 3


def test_name_is_freed_when_the_actor_is_killed(cluster) -> None:
    named = Counter.options(name="test-freed-name").remote()
    kray.get(named.incr.remote(), timeout=helpers.WAIT_S)
    kray.kill(named)

    def name_free() -> bool:
        try:
            kray.get_actor("test-freed-name")
        except ValueError:
            return True
        return False

    helpers.wait_until(name_free, what="the killed actor's name to be released")
    again = Counter.options(name="test-freed-name").remote(9)
    try:
        assert kray.get(kray.get_actor("test-freed-name").read.remote(), timeout=helpers.WAIT_S) == 9
    finally:
        kray.kill(again)


# --- detached actors across drivers of a `kray start` cluster -----------------------------------

# Module constants, so that the same test can drive another Ray-compatible CLI.
CLI = [str(Path(sys.executable).with_name("kray"))]
TEMP_DIR_ENV = "KRAY_TEMP_DIR"

CREATOR = """
    import os
    import kray

    @kray.remote
    class Keeper:
        def __init__(self):
            self.value = 0

        def set(self, value):
            self.value = value
            return os.getpid()

        def get(self):
            return self.value, os.getpid()

    kray.init(address="auto", namespace="kept")
    keeper = Keeper.options(name="keeper", lifetime="detached").remote()
    pid = kray.get(keeper.set.remote(42), timeout=60)
    ephemeral = Keeper.options(name="ephemeral").remote()
    ephemeral_pid = kray.get(ephemeral.set.remote(1), timeout=60)
    print(f"DETACHED PID {pid}", flush=True)
    print(f"EPHEMERAL PID {ephemeral_pid}", flush=True)
    kray.shutdown()
    print("CREATOR DONE", flush=True)
"""

FINDER = """
    import time
    import kray

    kray.init(address="auto")
    keeper = kray.get_actor("keeper", namespace="kept")
    value, pid = kray.get(keeper.get.remote(), timeout=60)
    print(f"FOUND {value} PID {pid}", flush=True)
    # The creator's job ended, so its non-detached actor died and its name was released.
    deadline = time.monotonic() + 60
    while True:
        try:
            kray.get_actor("ephemeral", namespace="kept")
        except ValueError:
            print("EPHEMERAL GONE", flush=True)
            break
        if time.monotonic() > deadline:
            print("EPHEMERAL STILL THERE", flush=True)
            break
        time.sleep(0.2)
    kray.shutdown()
    print("FINDER DONE", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_processes(port: int, extra: list[int]) -> list[psutil.Process]:
    """Processes of the `kray start` cluster: those naming its GCS port, `extra`, and their descendants."""
    names_port = re.compile(rf"[:= ]{port}\b")
    roots: list[psutil.Process] = []
    for proc in psutil.process_iter():
        try:
            if proc.pid in extra or names_port.search(" ".join(proc.cmdline())):
                roots.append(proc)
        except psutil.Error:
            pass
    found: dict[int, psutil.Process] = {}
    for root in roots:
        found[root.pid] = root
        try:
            found.update((p.pid, p) for p in root.children(recursive=True))
        except psutil.Error:
            pass
    found.pop(os.getpid(), None)
    return list(found.values())


def _running(pid: int) -> bool:
    try:
        return bool(helpers.alive([psutil.Process(pid)]))
    except psutil.NoSuchProcess:
        return False


def test_detached_actor_outlives_its_driver_and_is_found_by_another(monkeypatch) -> None:
    temp_dir = tempfile.mkdtemp(prefix="kray-detached-")  # short: socket paths live under it
    monkeypatch.setenv(TEMP_DIR_ENV, temp_dir)
    monkeypatch.delenv("KRAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = _free_port()
    workdir = Path(temp_dir) / "drivers"
    workdir.mkdir()
    start = subprocess.run(
        [*CLI, "start", "--head", "--port", str(port), "--num-cpus", "2",
         "--dashboard-port", str(_free_port()), "--metrics-export-port", str(_free_port())],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert start.returncode == 0, f"`start --head` failed:\n{start.stdout}\n{start.stderr}"
    pids: dict[str, int] = {}
    watched: list[psutil.Process] = []
    try:
        with helpers.DriverProcess(CREATOR, workdir, "creator") as creator:
            pids["detached"] = int(creator.wait_for(r"DETACHED PID (\d+)", timeout=120).group(1))
            pids["ephemeral"] = int(creator.wait_for(r"EPHEMERAL PID (\d+)").group(1))
            creator.wait_for("CREATOR DONE")
            assert creator.finish() == 0, creator.output()
        assert _running(pids["detached"]), "the detached actor died with its driver"
        with helpers.DriverProcess(FINDER, workdir, "finder") as finder:
            found = finder.wait_for(r"FOUND (\d+) PID (\d+)", timeout=120)
            assert found.group(1) == "42", "the detached actor lost its state"
            assert int(found.group(2)) == pids["detached"], "the second driver reached another process"
            finder.wait_for("EPHEMERAL (GONE|STILL THERE)", timeout=120)
            finder.wait_for("FINDER DONE")
            assert finder.finish() == 0, finder.output()
            assert "EPHEMERAL GONE" in finder.output(), "a non-detached named actor outlived its driver"
        helpers.wait_until(lambda: not _running(pids["ephemeral"]), what="the non-detached actor to exit")
        # Still alive after the second driver disconnected too.
        assert _running(pids["detached"]), "the detached actor died when the second driver disconnected"
    finally:
        watched = _cluster_processes(port, list(pids.values()))
        stop = subprocess.run([*CLI, "stop"], check=False, capture_output=True, text=True, timeout=120)
        try:
            helpers.wait_until(lambda: not helpers.alive(watched), what="the cluster's processes to exit")
        except AssertionError:
            left = helpers.alive(watched)
            for proc in left:  # ours: started by this test's `start`
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass
            raise AssertionError(f"processes left after `stop`: {helpers.describe(left)}") from None
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
    assert stop.returncode == 0, f"`stop` failed:\n{stop.stdout}\n{stop.stderr}"
    assert len(watched) >= 3, f"expected the GCS, the raylet and the detached actor, found {helpers.describe(watched)}"
    assert not helpers.alive(_cluster_processes(port, [])), "a process naming the cluster's port is left"
