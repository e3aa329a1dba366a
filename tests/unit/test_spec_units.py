"""Sizes, CPU counts and pids limits, read as the ``docker run`` flags read them."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from containerlib.errors import SpecError
from containerlib.spec.units import cpus_to_quota, parse_bytes, parse_cpus, parse_pids

KiB, MiB, GiB, TiB, PiB = (1024**n for n in range(1, 6))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (4096, 4096),
        ("0", 0),
        ("1024", 1024),
        ("1024b", 1024),
        ("1024B", 1024),
        ("100k", 100 * KiB),
        ("100K", 100 * KiB),
        ("100kb", 100 * KiB),
        ("512m", 512 * MiB),
        ("512M", 536870912),
        ("512 m", 512 * MiB),
        ("1g", 1073741824),
        ("1G", GiB),
        ("1.5g", 3 * GiB // 2),
        ("2gb", 2 * GiB),
        ("2GB", 2 * GiB),
        ("10MiB", 10 * MiB),
        ("10mib", 10 * MiB),
        ("1t", TiB),
        ("1p", PiB),
        ("0.5k", 512),
        ("0.1k", 102),  # rounded down to whole bytes
        ("8191p", 8191 * PiB),
    ],
)
def test_parse_bytes_accepts(value: str | int, expected: int) -> None:
    assert parse_bytes(value, "memory") == expected


@pytest.mark.parametrize(
    "value",
    [
        "lots",
        "",
        " ",
        "-1",
        "-1m",
        "1.5.5g",
        ".5g",
        "1.g",
        "1x",
        "1i",
        "1gib2",
        "m",
        "1 gb ",
        "1_000",
        "١٢",  # digits, but not ASCII ones
        "8192p",  # 2**63 bytes: more than an int64 holds
        -1,
        2**63,
        True,
        False,
        1.5,
        None,
        b"1g",
    ],
)
def test_parse_bytes_rejects_with_field_and_value(value: Any) -> None:
    with pytest.raises(SpecError) as info:
        parse_bytes(value, "memory")
    assert info.value.field == "memory"
    assert repr(value) in str(info.value)


def test_parse_bytes_message() -> None:
    with pytest.raises(
        SpecError, match=r"^memory: must be a size like '512m' or '1.5g', not 'lots'$"
    ):
        parse_bytes("lots", "memory")


@given(st.integers(0, 2**30), st.sampled_from(["", "b", "k", "m", "g", "kb", "MiB", "G"]))
def test_parse_bytes_integers_with_any_suffix(number: int, suffix: str) -> None:
    unit = suffix[:1].lower() if suffix[:1].lower() != "b" else ""
    scale = {"": 1, "k": KiB, "m": MiB, "g": GiB}[unit]
    assert parse_bytes(f"{number}{suffix}", "size") == number * scale


@pytest.mark.parametrize(
    ("value", "nano"),
    [
        ("1", 10**9),
        ("1.5", 1_500_000_000),
        ("0.5", 500_000_000),
        (".5", 500_000_000),
        ("0.000000001", 1),
        ("1024", 1024 * 10**9),
        (2, 2 * 10**9),
        (0.1, 100_000_000),
        (1.25, 1_250_000_000),
    ],
)
def test_parse_cpus_accepts(value: str | float, nano: int) -> None:
    assert parse_cpus(value, "cpus") == nano


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "0.0",
        0,
        -1,
        "-1",
        "1024.5",
        1025,
        math.nan,
        math.inf,
        "nan",
        "inf",
        "1e3",
        "1/2",
        "two",
        "",
        "0.0000000001",
        True,
        None,
    ],
)
def test_parse_cpus_rejects_with_field_and_value(value: Any) -> None:
    with pytest.raises(SpecError) as info:
        parse_cpus(value, "cpus")
    assert info.value.field == "cpus"
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("nano", "period", "expected"),
    [
        (10**9, 100_000, (100_000, 100_000)),
        (1_500_000_000, 100_000, (150_000, 100_000)),
        (500_000_000, 50_000, (25_000, 50_000)),
        (10_000_000, 100_000, (1_000, 100_000)),
        (64 * 10**9, 1_000_000, (64_000_000, 1_000_000)),
    ],
)
def test_cpus_to_quota(nano: int, period: int, expected: tuple[int, int]) -> None:
    assert cpus_to_quota(nano, period) == expected


@pytest.mark.parametrize(
    ("nano", "period", "field", "fragment"),
    [
        (0, 100_000, "cpus", "not 0"),
        (-5, 100_000, "cpus", "not -5"),
        (1_000_000, 100_000, "cpus", "a quota of 100 microseconds"),
        (10**9, 999, "cpus period", "not 999"),
        (10**9, 1_000_001, "cpus period", "not 1000001"),
    ],
)
def test_cpus_to_quota_rejects(nano: int, period: int, field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        cpus_to_quota(nano, period)
    assert info.value.field == field
    assert fragment in str(info.value)


@given(st.integers(1, 1024 * 100).map(lambda n: n / 100))
def test_cpus_round_trip_through_quota(cpus: float) -> None:
    quota, period = cpus_to_quota(parse_cpus(cpus, "cpus"))
    assert quota == round(cpus * period)


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1), (64, 64), ("64", 64), (2**63 - 1, 2**63 - 1)]
)
def test_parse_pids_accepts(value: str | int, expected: int) -> None:
    assert parse_pids(value, "pids") == expected


@pytest.mark.parametrize(
    "value", [0, -1, "0", "-1", "", "many", "1.5", 1.0, True, None, 2**63, "٣"]
)
def test_parse_pids_rejects_with_field_and_value(value: Any) -> None:
    with pytest.raises(SpecError) as info:
        parse_pids(value, "pids")
    assert info.value.field == "pids"
    assert repr(value) in str(info.value)
