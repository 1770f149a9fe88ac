"""Exception classes defined in a driver's `__main__` work in options, and a message a process cannot
decode fails what it carries instead of vanishing (issue 15, defect 11).

Each test runs a driver script in its own interpreter (the class must live in its `__main__`), which
starts and stops its own local cluster.
"""

from __future__ import annotations

from pathlib import Path

from . import helpers

RETRY_MAIN_ERROR = """
import kray

class FlakyError(Exception):
    pass

@kray.remote(max_retries=3)
def flaky(path):
    import os
    attempts = int(open(path).read()) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(attempts))
    if attempts < 3:
        raise FlakyError(f"attempt {attempts}")
    return attempts

@kray.remote(max_retries=3)
def always_other():
    raise ValueError("not retried")

@kray.remote
class Flaky:
    def __init__(self):
        self.calls = 0

    @kray.method(max_task_retries=2, retry_exceptions=[FlakyError])
    def third_time_lucky(self):
        self.calls += 1
        if self.calls < 3:
            raise FlakyError(f"call {self.calls}")
        return self.calls

kray.init(num_cpus=1)
print("ACTOR-RESULT", kray.get(Flaky.remote().third_time_lucky.remote(), timeout=60))
print("RESULT", kray.get(flaky.options(retry_exceptions=[FlakyError]).remote("attempts.txt"), timeout=60))
try:
    kray.get(always_other.options(retry_exceptions=[FlakyError]).remote(), timeout=60)
except ValueError as e:
    print("NOT-RETRIED", type(e).__name__)
try:
    kray.get(flaky.options(retry_exceptions=[FlakyError], max_retries=0).remote("other.txt"), timeout=60)
except FlakyError as e:
    print("CAUGHT-AS-MAIN-CLASS", isinstance(e, FlakyError))
kray.shutdown()
"""


def test_retry_exceptions_with_a_class_of_main(tmp_path: Path) -> None:
    with helpers.DriverProcess(RETRY_MAIN_ERROR, tmp_path, "retry_main") as driver:
        driver.wait_for(r"^ACTOR-RESULT 3$", timeout=120)
        driver.wait_for(r"^RESULT 3$")
        driver.wait_for(r"^NOT-RETRIED RayTaskError\(ValueError\)$")
        driver.wait_for(r"^CAUGHT-AS-MAIN-CLASS True$")
        assert driver.finish() == 0, driver.output()


UNDECODABLE_SPEC = """
import kray
from kray.api import runtime

class OnlyInMain(Exception):
    pass

@kray.remote(max_retries=0)
def add(a, b):
    return a + b

kray.init(num_cpus=1)
core = runtime.current_core()
function_id, blob = add._shared.get()
# Bypass the API (which pickles option values by value): a task spec whose header names a class that
# the worker cannot import. The worker must fail the task, not drop the message.
[ref] = core.submitter.submit(function_id, blob, "add", (1, 2), {}, 1, {"CPU": 1.0}, 0, [OnlyInMain])
try:
    kray.get(ref, timeout=60)
except kray.exceptions.GetTimeoutError:
    print("HUNG")
except kray.exceptions.RaySystemError as e:
    print("FAILED-CLEARLY", str(e).replace(chr(10), " "))
print("AFTER", kray.get(add.remote(1, 2), timeout=60))
kray.shutdown()
"""


def test_a_task_whose_message_cannot_be_decoded_fails_at_the_caller(tmp_path: Path) -> None:
    with helpers.DriverProcess(UNDECODABLE_SPEC, tmp_path, "undecodable") as driver:
        line = driver.wait_for(r"^(FAILED-CLEARLY|HUNG)(.*)$", timeout=120)
        assert line.group(1) == "FAILED-CLEARLY", driver.output()
        assert "OnlyInMain" in line.group(2) and "add" in line.group(2), line.group(0)
        driver.wait_for(r"^AFTER 3$")
        assert driver.finish() == 0, driver.output()
