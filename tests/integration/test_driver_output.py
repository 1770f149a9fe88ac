"""What a driver prints: worker stdout/stderr with the `(name pid=N)` prefix, and the infeasible-task warning.

Both arrive asynchronously, so each test runs a driver script in a subprocess (its own local
cluster) and reads that driver's output until the expected line appears.
"""

from __future__ import annotations

from pathlib import Path

from . import helpers

PREFIX = r"^\({name} pid={pid}(, ip=[^)]*)?\) "

PRINTER = """
    import os
    import sys

    import kray

    kray.init(num_cpus=1)

    def say(text):
        # One write: print() writes the text and the newline separately, and a worker's line that the
        # driver prints meanwhile would land between them.
        sys.stdout.write(text + "\\n")
        sys.stdout.flush()

    @kray.remote
    def shout(tag):
        print(f"hello-from-task {tag}")
        print(f"oops-from-task {tag}", file=sys.stderr)
        return os.getpid()

    say(f"TASK PID {kray.get(shout.remote('a'))}")
    say(f"RENAMED PID {kray.get(shout.options(name='renamed').remote('b'))}")

    @kray.remote
    class Talker:
        def talk(self):
            print("hello-from-actor")
            return os.getpid()

    talker = Talker.remote()
    say(f"ACTOR PID {kray.get(talker.talk.remote())}")
    sys.stdin.read()  # stay up until the test has read the streamed lines
    kray.shutdown()
"""


def test_worker_output_reaches_the_driver_with_the_task_prefix(tmp_path: Path) -> None:
    with helpers.DriverProcess(PRINTER, tmp_path, "printer") as driver:
        pid = driver.wait_for(r"^TASK PID (\d+)$", timeout=120).group(1)
        driver.wait_for(PREFIX.format(name="shout", pid=pid) + r"hello-from-task a$", "stdout")
        driver.wait_for(PREFIX.format(name="shout", pid=pid) + r"oops-from-task a$", "stderr")
        renamed_pid = driver.wait_for(r"^RENAMED PID (\d+)$").group(1)
        driver.wait_for(PREFIX.format(name="renamed", pid=renamed_pid) + r"hello-from-task b$", "stdout")
        actor_pid = driver.wait_for(r"^ACTOR PID (\d+)$").group(1)
        # As in Ray, an actor's output carries its class name.
        driver.wait_for(PREFIX.format(name="Talker", pid=actor_pid) + r"hello-from-actor$", "stdout")
        rc = driver.finish()
    assert rc == 0, driver.output()


INFEASIBLE = """
    import sys

    import kray

    kray.init(num_cpus=1)

    @kray.remote
    def never():
        return 1

    ref = never.options(num_cpus=64).remote()
    ready, not_ready = kray.wait([ref], timeout=1)
    print(f"WAITED {len(ready)} {len(not_ready)}", flush=True)
    sys.stdin.read()
    ready, not_ready = kray.wait([ref], timeout=0.1)
    print(f"STILL {len(ready)} {len(not_ready)}", flush=True)
    kray.cancel(ref)
    kray.shutdown()
"""


def test_infeasible_task_warns_and_stays_pending(tmp_path: Path) -> None:
    with helpers.DriverProcess(INFEASIBLE, tmp_path, "infeasible") as driver:
        driver.wait_for(r"^WAITED 0 1$", timeout=120)
        # Ray words it "No available node types can fulfill resource request {'CPU': 64.0}".
        warning = driver.wait_for(r"(?i)infeasible|cannot be scheduled|unschedulable|fulfill", "any")
        line = warning.string
        assert "CPU" in line and "64" in line, f"the warning should name what was asked for: {line!r}"
        rc = driver.finish()
    assert rc == 0, driver.output()
    driver.wait_for(r"^STILL 0 1$")


INFEASIBLE_ACTOR = """
    import sys

    import kray
    from kray.util.state import list_actors

    kray.init(num_cpus=1)

    @kray.remote(num_cpus=1, resources={"nowhere": 2})
    class Unplaceable:
        def ping(self):
            return 1

    actor = Unplaceable.remote()
    ready, not_ready = kray.wait([actor.ping.remote()], timeout=1)
    print(f"WAITED {len(ready)} {len(not_ready)}", flush=True)
    print("STATES", [a["state"] for a in list_actors()], flush=True)
    sys.stdin.read()
    kray.kill(actor)
    kray.shutdown()
"""


def test_infeasible_actor_warns_and_stays_pending(tmp_path: Path) -> None:
    with helpers.DriverProcess(INFEASIBLE_ACTOR, tmp_path, "infeasible_actor") as driver:
        driver.wait_for(r"^WAITED 0 1$", timeout=120)
        driver.wait_for(r"^STATES \['PENDING_CREATION'\]$")
        line = driver.wait_for(r"(?i)infeasible|cannot be scheduled", "stderr").string
        assert "Unplaceable" in line and "nowhere" in line, f"the warning should name the actor and its needs: {line!r}"
        rc = driver.finish()
    assert rc == 0, driver.output()
