"""RFC 3339 UTC times as Kubernetes writes them ("2025-01-01T00:00:00Z") to and from Unix seconds.

Pure calendar arithmetic (proleptic Gregorian, days from 1970-01-01), so that the pure builders can
compute deadlines without reading a clock; the caller passes "now" in; no I/O.
"""

from __future__ import annotations

import re

_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$"
)
_DAY_S = 86400


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a Gregorian date."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The Gregorian (year, month, day) of a day count since 1970-01-01."""
    days += 719468
    era = (days if days >= 0 else days - 146096) // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def parse(text: str) -> float:
    """Unix seconds of an RFC 3339 time; ValueError when `text` is not one."""
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time like 2025-01-01T00:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    seconds = _days_from_civil(year, month, day) * _DAY_S + hour * 3600 + minute * 60 + second
    fraction = float(m.group(7)) if m.group(7) else 0.0
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds + fraction


def parse_or_none(text: str | None) -> float | None:
    """parse(), or None for an empty or malformed value."""
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        return None


def format(seconds: float) -> str:
    """The RFC 3339 UTC time, to the second, of Unix `seconds`."""
    whole = int(seconds // 1)
    days, rest = divmod(whole, _DAY_S)
    year, month, day = _civil_from_days(days)
    return f"{year:04d}-{month:02d}-{day:02d}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}Z"
