"""The dashboard page (`http://HEAD:8265/`) in a real headless Chromium, driven by Selenium, against a local
cluster running a known workload: a submitted job that keeps running, an actor, a task that failed, a
placement group and a task that waits for CPUs the cluster lacks. Each view must show them (with the job's
and the actor's logs); the page must pick up a new actor without a reload; the job's Stop button must stop
the job; the token login must refuse a wrong token and accept the right one.

Chromium and its driver come from Debian's packages (`tools/ensure_chromium.sh`, which `make test` runs);
without them the test fails and says so.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import kray
import pytest
from kray.job_submission import JobSubmissionClient
from kray.protocol import wire
from kray.util import placement_group, state
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from . import helpers

WAIT_S = 60
JOB_MARKER = "dashboard-job-says-hello"
ACTOR_MARKER = "dashboard-actor-says-hello"
FAILED_MESSAGE = "no such key in the dashboard workload"

cluster = helpers.module_cluster(num_cpus=2, include_dashboard=True)


@kray.remote(max_retries=0)
def broken() -> None:
    raise KeyError(FAILED_MESSAGE)


@kray.remote(num_cpus=3)
def too_big() -> int:
    return 0


@kray.remote
class Keeper:
    def pid(self) -> int:
        import os

        print(ACTOR_MARKER, flush=True)
        return os.getpid()


@pytest.fixture(scope="module")
def base(cluster: helpers.LocalCluster) -> str:
    return "http://" + kray.init(ignore_reinit_error=True).dashboard_url


@pytest.fixture(scope="module")
def workload(base: str) -> Iterator[dict[str, Any]]:
    token = wire.get_token()
    assert token, "the local cluster runs with a cluster token"
    jobs = JobSubmissionClient(base, headers={"Authorization": f"Bearer {token}"})
    entrypoint = (f"{shlex.quote(sys.executable)} -c "
                  + shlex.quote(f"import time; print({JOB_MARKER!r}, flush=True); time.sleep(600)"))
    job = jobs.submit_job(entrypoint=entrypoint)
    keeper = Keeper.options(name="dashboard-keeper").remote()
    keeper_pid = kray.get(keeper.pid.remote(), timeout=WAIT_S)
    with pytest.raises(KeyError):
        kray.get(broken.remote(), timeout=WAIT_S)
    group = placement_group([{"CPU": 0.5}], strategy="PACK")
    kray.get(group.ready(), timeout=WAIT_S)
    waiting = too_big.remote()
    helpers.wait_until(lambda: state.list_tasks(filters=[("name", "=", "broken"), ("state", "=", "FAILED")]),
                       what="the failed task's event")
    made = [keeper]
    yield {"token": token, "jobs": jobs, "job": job, "keeper": keeper, "keeper_pid": keeper_pid, "group": group,
           "made": made}
    kray.cancel(waiting)
    for handle in made:
        kray.kill(handle)
    if jobs.get_job_status(job) in ("PENDING", "RUNNING"):
        jobs.stop_job(job)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("Chromium and chromedriver are not installed: run tools/ensure_chromium.sh (make test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Wait (up to WAIT_S) until `condition(driver)` is truthy; elements redrawn meanwhile are looked up again."""
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.2,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(condition)
    except TimeoutException:
        status = driver.find_element("id", "status").text
        raise AssertionError(f"the page never showed {what} (status line: {status!r})") from None


def text_of(css: str) -> Callable[[Any], str]:
    """A condition: the text of the element `css` (empty while it is absent)."""
    def read(driver: Any) -> str:
        found = driver.find_elements("css selector", css)
        return str(found[0].text) if found else ""

    return read


def wait_text(driver: Any, css: str, *needles: str) -> str:
    def shown(d: Any) -> str | None:
        text = text_of(css)(d)
        return text if all(n in text for n in needles) else None

    return str(wait_for(driver, shown, f"{' and '.join(map(repr, needles))} in {css}"))


@pytest.fixture
def page(browser: Any, base: str, workload: dict[str, Any]) -> Any:
    """The page, signed in with the token given once in the URL's fragment (it then leaves the address bar)."""
    browser.get(base + "/static/dashboard.css")  # any page of the head's origin, to clear its cookies
    browser.delete_all_cookies()  # signed out: the fragment's token alone must sign the page in
    browser.get(f"{base}/#token={workload['token']}")
    wait_for(browser, lambda d: workload["token"] not in d.current_url, "the token out of the address bar")
    wait_for(browser, lambda d: d.find_element("id", "views").is_displayed(), "the signed-in page")
    return browser


def open_view(driver: Any, name: str) -> None:
    driver.find_element("id", f"nav-{name}").click()
    wait_for(driver, lambda d: d.find_element("id", f"view-{name}").is_displayed(), f"the {name} view")


def test_login_refuses_a_wrong_token_and_accepts_the_cluster_token(browser: Any, base: str,
                                                                  workload: dict[str, Any]) -> None:
    browser.get(base + "/")
    browser.delete_all_cookies()
    browser.get(base + "/")
    wait_for(browser, lambda d: d.find_element("id", "login").is_displayed(), "the login prompt")
    assert not browser.find_element("id", "views").is_displayed()
    browser.find_element("id", "token-input").send_keys("not-the-token")
    browser.find_element("id", "login-button").click()
    wait_text(browser, "#login-error", "refused")
    field = browser.find_element("id", "token-input")
    field.clear()
    field.send_keys(workload["token"])
    browser.find_element("id", "login-button").click()
    wait_text(browser, "#overview-nodes", "1 alive")
    cookie = browser.get_cookie("ray-authentication-token")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read the token
    # The API itself still refuses a request without the token; the open static route serves only its folder.
    for path, code in (("/api/jobs/", 401), ("/api/dashboard/nodes", 401), ("/static/..%2Fapp.py", 404),
                       ("/static/%2E%2E/page_routes.py", 404)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=30)
        assert refused.value.code == code, path


def test_overview_shows_nodes_resources_and_pending_demand(page: Any) -> None:
    open_view(page, "overview")
    wait_text(page, "#overview-nodes", "1 alive, 0 dead")
    wait_text(page, "#overview-CPU", "/ 2 used")
    wait_text(page, "#overview-object-store", "used")
    wait_text(page, "#demand-table", "CPU: 3")


def test_jobs_view_shows_the_running_job_with_its_logs_and_stop_stops_it(page: Any,
                                                                         workload: dict[str, Any]) -> None:
    job = workload["job"]
    open_view(page, "jobs")
    row = f'#jobs tr[data-id="{job}"]'
    wait_text(page, row, "RUNNING", "SUBMISSION")
    wait_for(page, lambda d: d.find_element("css selector", row + " button.logs").click() or True, "the Logs button")
    wait_text(page, "#job-logs", JOB_MARKER)
    wait_for(page, lambda d: d.find_element("css selector", row + " button.stop").click() or True, "the Stop button")
    wait_text(page, row, "STOPPED")
    assert workload["jobs"].get_job_status(job) == "STOPPED"
    assert not page.find_elements("css selector", row + " button.stop")


def test_actors_view_shows_actors_their_logs_and_picks_up_a_new_one_without_reload(page: Any,
                                                                        workload: dict[str, Any]) -> None:
    open_view(page, "actors")
    actor_id = state.list_actors(filters=[("name", "=", "dashboard-keeper")])[0].actor_id
    row = f'#actors tr[data-id="{actor_id}"]'
    text = wait_text(page, row, "Keeper", "dashboard-keeper", "ALIVE", str(workload["keeper_pid"]))
    assert " 0 " in f" {text} "  # no restarts
    wait_for(page, lambda d: d.find_element("css selector", row + " button.logs").click() or True, "the Logs button")
    wait_text(page, "#actor-logs", ACTOR_MARKER)
    page.execute_script("window.stillTheSamePage = true")
    late = Keeper.options(name="late-arrival").remote()
    workload["made"].append(late)
    wait_text(page, "#actors", "late-arrival")
    assert page.execute_script("return window.stillTheSamePage") is True


def test_tasks_view_shows_the_summary_and_the_failed_task_with_its_error(page: Any) -> None:
    open_view(page, "tasks")
    wait_text(page, '#task-summary tr[data-id="broken"]', "FAILED: 1")
    wait_text(page, "#task-summary", "Keeper.pid", "FINISHED")
    failed = wait_text(page, "#failed-tasks", "broken", "TASK_EXECUTION_EXCEPTION", FAILED_MESSAGE)
    assert "Traceback" in failed


def test_placement_groups_view_shows_the_group_and_its_bundle(page: Any, workload: dict[str, Any]) -> None:
    open_view(page, "placement-groups")
    wait_text(page, f'#placement-groups tr[data-id="{workload["group"].id.hex()}"]', "CREATED", "CPU: 0.5")


def test_nodes_view_shows_worker_processes_with_cpu_and_memory(page: Any, workload: dict[str, Any]) -> None:
    open_view(page, "nodes")
    node_id = state.list_nodes()[0].node_id
    row = wait_text(page, f'#nodes tr[data-id="{node_id}"]', "ALIVE", "(head)", "% of")
    # The machine's memory, used of total: "940.3 MiB / 23.5 GiB" on a quiet machine, GiB / GiB on a busy one.
    assert re.search(r"\d B / |\d [KMGT]iB / \d", row), row
    worker = f'#workers-{node_id} tr[data-id="{workload["keeper_pid"]}"]'
    text = wait_text(page, worker, "%", "iB")
    assert "leased" in text, text  # the actor's worker
