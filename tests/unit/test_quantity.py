from __future__ import annotations

import pytest

from flexvol.core.errors import InvalidInput
from flexvol.core.quantity import format_bytes, parse_quantity


@pytest.mark.parametrize(("text", "expected"), [
    ("1Gi", 1 << 30), ("512Mi", 512 << 20), ("2G", 2 * 10**9), ("1000000", 10**6),
    ("1.5Gi", 3 << 29), ("+1k", 1000), ("1e3", 1000), ("1E3", 1000), ("2e+2", 200),
    ("100m", 1), ("1e-3", 1), ("0.5", 1), ("0", 0), ("1Ki", 1024), ("3Ei", 3 << 60),
])
def test_valid_quantities(text: str, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", [
    "", " 1Gi", "1Gi ", "-1", "-1Gi", "1.5.5", ".", "Gi", "1GB", "1gi", "10Zi", "１６Mi",
    "1e", "1e+", "1ee3", "abc", "1 Gi", "0x10", "1_000",
])
def test_invalid_quantities_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_quantity(text)
    assert "size" in str(caught.value)


@pytest.mark.parametrize("text", ["1e400", "99999999999Ei", "1e31"])
def test_huge_quantities_are_refused_not_computed(text: str) -> None:
    with pytest.raises(InvalidInput, match="too large"):
        parse_quantity(text)


def test_format_bytes() -> None:
    assert format_bytes(1 << 30) == "1Gi"
    assert format_bytes(300 << 20) == "300Mi"
    assert format_bytes(1000) == "1000"
