"""Kubernetes resource quantities ("500m", "2", "1Gi", "1e3"): parsing, rounding and formatting.

Pure functions on strings and numbers; no I/O.
"""

from __future__ import annotations

import decimal
import re

Quantity = str | int | float

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "": decimal.Decimal(1),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
}
_PATTERN = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exp>[+-]?\d+))?$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse(value: Quantity) -> decimal.Decimal:
    """Return the exact value of a quantity such as "500m" (0.5), "1Gi" (1073741824) or 2."""
    if isinstance(value, bool):
        raise QuantityError(f"invalid quantity {value!r}: write a number such as 500m, 2 or 1Gi")
    if isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(value, float):
        return decimal.Decimal(repr(value))
    match = _PATTERN.match(str(value).strip())
    if match is None:
        raise QuantityError(
            f"invalid quantity {value!r}: write a number with an optional suffix, such as 500m, 2, 1Gi or 512M"
        )
    number = decimal.Decimal(match.group("num"))
    if match.group("exp") is not None:
        return number.scaleb(int(match.group("exp")))
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL[suffix]


def to_string(value: Quantity) -> str:
    """The quantity as the string Kubernetes' API types expect: 1 -> "1", 1.5 -> "1.5", "2Gi" unchanged.

    YAML turns `cpu: 1` into an integer; the API server accepts it, but the kubernetes client's typed
    request bodies do not, so the operator writes every quantity as a string.
    """
    if isinstance(value, bool):
        raise QuantityError(f"invalid quantity {value!r}: write a number such as 500m, 2 or 1Gi")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def strings(table: dict[str, Quantity] | None) -> dict[str, str]:
    """A resource list (limits, requests, overhead) with every quantity as a string."""
    return {name: to_string(value) for name, value in (table or {}).items()}


def is_valid(value: Quantity) -> bool:
    """Whether `value` parses as a quantity."""
    try:
        parse(value)
    except QuantityError:
        return False
    return True


def ceil_int(value: Quantity) -> int:
    """The quantity rounded up to a whole number, as Kubernetes' Quantity.Value() does ("500m" -> 1)."""
    return int(parse(value).to_integral_value(rounding=decimal.ROUND_CEILING))


def is_zero(value: Quantity) -> bool:
    """Whether the quantity is zero ("0", "0m", 0)."""
    return parse(value) == 0


def format_cpu(value: decimal.Decimal) -> str:
    """Render CPUs canonically: whole numbers as "2", fractions in millicores as "1500m"."""
    if value == value.to_integral_value():
        return str(int(value))
    millis = (value * 1000).to_integral_value(rounding=decimal.ROUND_CEILING)
    return f"{int(millis)}m"


def format_bytes(value: decimal.Decimal) -> str:
    """Render a byte count with the largest binary suffix that divides it ("3Gi", "1536Mi", "100")."""
    whole = int(value.to_integral_value(rounding=decimal.ROUND_CEILING))
    if whole == 0:
        return "0"
    for suffix, factor in sorted(_BINARY.items(), key=lambda item: -item[1]):
        if whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


def format_count(value: decimal.Decimal) -> str:
    """Render a count of devices (GPUs, TPUs) as a whole number, rounding up."""
    return str(int(value.to_integral_value(rounding=decimal.ROUND_CEILING)))
