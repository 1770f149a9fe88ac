"""The executor's per-task node metrics (kray.util.metrics.task_started/task_finished): each thread
bumps counters of its own without a lock, and a report sends what changed since the last one, summed
over threads, with RUNNING never below zero. No processes; threads only."""

from __future__ import annotations

import threading

from kray.util import metrics


def _fresh() -> metrics._Recorder:
    recorder = metrics._Recorder()
    recorder.scheduled = True  # no core worker here: nothing is sent, the changes are read directly
    return recorder


def _start(recorder: metrics._Recorder, name: str) -> None:
    counts = recorder.counts()
    counts[name] = counts.get(name, 0) + 1


def _end(recorder: metrics._Recorder, name: str, failed: bool) -> None:
    counts = recorder.counts()
    counts[(name, failed)] = counts.get((name, failed), 0) + 1


def test_counts_of_several_threads_are_summed_and_reported_as_changes() -> None:
    recorder = _fresh()

    def work(n: int, fail_every: int) -> None:
        for i in range(n):
            _start(recorder, "f")
            _end(recorder, "f", failed=(i % fail_every == 0))

    threads = [threading.Thread(target=work, args=(1000, 10)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert recorder.task_changes() == {("f", "FINISHED"): 3600, ("f", "FAILED"): 400}
    assert recorder.task_changes() == {}  # nothing new: nothing to report

    _start(recorder, "f")
    _start(recorder, "g")
    assert recorder.task_changes() == {("f", "RUNNING"): 1, ("g", "RUNNING"): 1}
    _end(recorder, "f", failed=False)
    assert recorder.task_changes() == {("f", "RUNNING"): -1, ("f", "FINISHED"): 1}


def test_a_call_may_start_on_one_thread_and_end_on_another() -> None:
    recorder = _fresh()
    _start(recorder, "Actor.call")  # an async actor's call: prepared on the main thread...
    ended = threading.Thread(target=_end, args=(recorder, "Actor.call", False))
    ended.start()  # ...and finished on the actor's event-loop thread
    ended.join()
    assert recorder.task_changes() == {("Actor.call", "FINISHED"): 1}


def test_an_end_without_a_start_counts_but_never_makes_running_negative() -> None:
    recorder = _fresh()
    _end(recorder, "f", failed=True)  # cancelled before it started
    _start(recorder, "f")
    assert recorder.task_changes() == {("f", "FAILED"): 1}
    _start(recorder, "f")
    assert recorder.task_changes() == {("f", "RUNNING"): 1}


def test_the_module_hooks_record_into_the_calling_threads_counts() -> None:
    before = metrics._recorder.counts().copy()
    metrics.task_started("hooked")
    metrics.task_finished("hooked", failed=False)
    counts = metrics._recorder.counts()
    assert counts["hooked"] == before.get("hooked", 0) + 1
    assert counts[("hooked", False)] == before.get(("hooked", False), 0) + 1
