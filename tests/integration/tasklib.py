"""What tasks of the integration tests call inside workers: counters, gates, time intervals.

Tiny on purpose: conftest.py ships this package to workers by value, so this module travels with
every task that uses it. Touches only files the test names (in its tmp_path).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path


def bump(path: str) -> int:
    """Add one to the counter kept in the file `path` and return the new count (one writer at a time)."""
    counter = Path(path)
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    return count


def count(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


def wait_for_file(path: str, timeout: float = 120.0) -> bool:
    """Block until `path` exists (a gate the test opens); False if it never appears."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def record_interval(directory: str, seconds: float) -> None:
    """Sleep `seconds` and record [start, end] wall-clock times of this call in `directory`."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    (Path(directory) / f"{os.getpid()}-{uuid.uuid4().hex}.json").write_text(json.dumps([start, end]))


def read_intervals(directory: Path) -> list[tuple[float, float]]:
    return [tuple(json.loads(p.read_text())) for p in sorted(directory.glob("*.json"))]  # type: ignore[misc]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that were open at the same instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:  # at equal times an end (-1) sorts before a start (+1)
        running += delta
        peak = max(peak, running)
    return peak
