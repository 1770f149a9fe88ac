"""tqdm_ray: a tqdm-like progress bar usable inside tasks and actors, as `ray.experimental.tqdm_ray`.

Writes one progress line at a time to stdout (at most every `flush_interval_s`, and when it
closes); a worker's stdout reaches the driver through kray's log streaming, prefixed with the
task's name, pid and ip, so the driver shows every remote bar's progress.
"""

from __future__ import annotations

import builtins
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

_BAR_WIDTH = 20


def safe_print(*args: Any, **kwargs: Any) -> None:
    """print() that leaves the progress lines readable (here, a plain print to stdout, flushed)."""
    kwargs.setdefault("flush", True)
    builtins.print(*args, **kwargs)


class tqdm:
    """A progress bar: wrap an iterable, or call `update(n)`; `close()` (or leaving a `with`) prints the last line."""

    def __init__(self, iterable: Iterable[Any] | None = None, desc: str | None = None, total: int | None = None,
                 unit: str | None = None, position: int | None = None, flush_interval_s: float = 1.0,
                 **tqdm_kwargs: Any) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        if total is not None and (not isinstance(total, (int, float)) or total < 0):
            raise ValueError(f"total must be a non-negative number, got {total!r}.")
        if not isinstance(flush_interval_s, (int, float)) or flush_interval_s < 0:
            raise ValueError(f"flush_interval_s must be a non-negative number of seconds, got {flush_interval_s!r}.")
        self._iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.unit = unit or "it"
        self.position = position
        self.n = 0
        self._flush_interval_s = float(flush_interval_s)
        self._started = time.monotonic()
        self._last_print = 0.0
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise TypeError("This tqdm was created without an iterable; call update(n) instead of iterating it.")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> tqdm:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count `n` more units done."""
        self.n += n
        if not self._closed and time.monotonic() - self._last_print >= self._flush_interval_s:
            self.refresh()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        if refresh:
            self.refresh()

    def refresh(self) -> None:
        """Print the bar's line now."""
        self._last_print = time.monotonic()
        sys.stdout.write(self.format_line() + "\n")
        sys.stdout.flush()

    def format_line(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        prefix = f"{self.desc}: " if self.desc else ""
        timing = f"[{elapsed:.1f}s, {rate:.2f}{self.unit}/s]"
        if self.total:
            done = min(self.n / self.total, 1.0)
            filled = int(done * _BAR_WIDTH)
            bar = "#" * filled + " " * (_BAR_WIDTH - filled)
            return f"{prefix}{done * 100:3.0f}%|{bar}| {self.n}/{self.total} {timing}"
        return f"{prefix}{self.n}{self.unit} {timing}"

    def close(self) -> None:
        """Print the final line; later updates are not shown."""
        if not self._closed:
            self._closed = True
            self.refresh()
