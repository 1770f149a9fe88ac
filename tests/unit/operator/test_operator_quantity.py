"""quantity: Kubernetes quantities parse, round up like Quantity.Value(), and format canonically."""

from __future__ import annotations

import decimal

import pytest
from kray_operator import quantity


@pytest.mark.parametrize(
    "text, value",
    [
        ("500m", "0.5"), ("1", "1"), (2, "2"), (1.5, "1.5"), ("1.5", "1.5"), ("100n", "1E-7"),
        ("1Ki", "1024"), ("1Gi", "1073741824"), ("512Mi", "536870912"), ("1k", "1000"), ("2M", "2000000"),
        ("1e3", "1000"), ("1E-3", "0.001"), (".5", "0.5"), ("+3", "3"),
    ],
)
def test_parse(text, value) -> None:
    assert quantity.parse(text) == decimal.Decimal(value)


@pytest.mark.parametrize("text", ["two", "1GB", "", "1.2.3", "m", True, "--1"])
def test_invalid(text) -> None:
    with pytest.raises(quantity.QuantityError, match="invalid quantity"):
        quantity.parse(text)
    assert not quantity.is_valid(text)


@pytest.mark.parametrize("text, whole", [("500m", 1), ("1", 1), ("1001m", 2), ("1.5Gi", 1610612736), ("0", 0)])
def test_ceil_int(text, whole) -> None:
    assert quantity.ceil_int(text) == whole


def test_format() -> None:
    assert quantity.format_cpu(decimal.Decimal(2)) == "2"
    assert quantity.format_cpu(decimal.Decimal("1.5")) == "1500m"
    assert quantity.format_bytes(decimal.Decimal(3 * 2**30)) == "3Gi"
    assert quantity.format_bytes(decimal.Decimal(1536 * 2**20)) == "1536Mi"
    assert quantity.format_bytes(decimal.Decimal(100)) == "100"
    assert quantity.format_bytes(decimal.Decimal(0)) == "0"
    assert quantity.format_count(decimal.Decimal("0.5")) == "1"
    assert quantity.is_zero("0m") and not quantity.is_zero("1m")


@pytest.mark.parametrize(("value", "text"), [(1, "1"), (2.0, "2"), (1.5, "1.5"), (0.25, "0.25"), ("500m", "500m"),
                                             ("2Gi", "2Gi")])
def test_to_string(value, text) -> None:
    assert quantity.to_string(value) == text
    assert quantity.parse(text) == quantity.parse(value)


def test_strings_of_a_resource_list() -> None:
    assert quantity.strings({"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": 2}) == {
        "cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "2"}
    assert quantity.strings(None) == {}
    with pytest.raises(quantity.QuantityError):
        quantity.to_string(True)
