"""Human-friendly quantities, read the way the ``docker run`` flags read them.

Sizes are binary (``"1k"`` is 1024 bytes, as for ``docker run --memory``), CPU counts become
nano-CPUs (``"1.5"`` is 1.5 CPUs, as for ``--cpus``), and a CFS quota is derived from them
the way the kernel's bandwidth controller expects (see the kernel's
Documentation/scheduler/sched-bwc.rst). Errors are :class:`~containerlib.errors.SpecError`
naming the field and quoting the value.

Example:
    >>> parse_bytes("512M", "memory"), parse_bytes("1.5g", "memory")
    (536870912, 1610612736)
    >>> cpus_to_quota(parse_cpus("1.5", "cpus"))
    (150000, 100000)
    >>> parse_bytes("lots", "memory")
    Traceback (most recent call last):
    ...
    containerlib.errors.SpecError: memory: must be a size like '512m' or '1.5g', not 'lots'
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from containerlib.errors import SpecError

__all__ = ["cpus_to_quota", "parse_bytes", "parse_cpus", "parse_pids"]

_INT64_MAX = 2**63 - 1
_NANO = 10**9
MAX_CPUS = 1024
"""The most CPUs :func:`parse_cpus` accepts."""

# A number, an optional space, then a unit letter optionally followed by "b" or "ib", or a
# bare "b". The unit letters are powers of 1024, as in docker's RAMInBytes.
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?(?:([kmgtp])(?:i?b)?|b)?", re.IGNORECASE | re.ASCII)
_MULTIPLIERS = {None: 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_DECIMAL = re.compile(r"\d+(?:\.\d+)?|\.\d+", re.ASCII)


def parse_bytes(value: str | int, field: str) -> int:
    """Return the number of bytes ``value`` stands for.

    Accepts a non-negative integer, or a string like ``"1024"``, ``"1024b"``, ``"100k"``,
    ``"512M"``, ``"1.5g"``, ``"2gb"`` or ``"10MiB"``: a number, then optionally one of
    ``b k m g t p`` in either case, the letters optionally followed by ``b`` or ``ib``.
    Multiples are binary, and a fractional result is rounded down to whole bytes.

    Args:
        value: the size.
        field: the name of the setting, for the error message.

    Raises:
        SpecError: ``value`` is negative, not a size, or more than 2**63 - 1 bytes.

    Example:
        >>> parse_bytes("10MiB", "shm_size"), parse_bytes(4096, "shm_size")
        (10485760, 4096)
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(field, f"must be a size like '512m' or an integer, not {value!r}")
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.fullmatch(value)
        if m is None:
            raise SpecError(field, f"must be a size like '512m' or '1.5g', not {value!r}")
        unit = m.group(2).lower() if m.group(2) else None
        size = math.floor(Fraction(m.group(1)) * _MULTIPLIERS[unit])
    if size < 0:
        raise SpecError(field, f"must not be negative, not {value!r}")
    if size > _INT64_MAX:
        raise SpecError(field, f"must be at most {_INT64_MAX} bytes, not {value!r}")
    return size


def parse_cpus(value: str | float | int, field: str) -> int:
    """Return ``value`` CPUs as nano-CPUs (billionths of a CPU), like ``docker run --cpus``.

    Args:
        value: a positive number of CPUs up to :data:`MAX_CPUS`, as a number or a decimal
            string (``"1.5"``, ``".5"``, ``2``), with at most nine decimal places.
        field: the name of the setting, for the error message.

    Raises:
        SpecError: ``value`` is not a number, is zero or negative, NaN or infinite, more
            than :data:`MAX_CPUS`, or finer than a nano-CPU.

    Example:
        >>> parse_cpus("0.5", "cpus"), parse_cpus(2, "cpus")
        (500000000, 2000000000)
    """
    if isinstance(value, bool) or not isinstance(value, str | float | int):
        raise SpecError(field, f"must be a number of CPUs like '1.5', not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(field, f"must be a finite number of CPUs, not {value!r}")
    if isinstance(value, str):
        if _DECIMAL.fullmatch(value) is None:
            raise SpecError(field, f"must be a number of CPUs like '1.5', not {value!r}")
        amount = Fraction(value)
    else:
        # repr() of a float is the shortest decimal that reads back the same, so 0.1 is
        # taken as the 0.1 the caller wrote rather than its binary approximation.
        amount = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    if amount <= 0:
        raise SpecError(field, f"must be more than 0 CPUs, not {value!r}")
    if amount > MAX_CPUS:
        raise SpecError(field, f"must be at most {MAX_CPUS} CPUs, not {value!r}")
    nano = amount * _NANO
    if nano.denominator != 1:
        raise SpecError(field, f"must have at most 9 decimal places, not {value!r}")
    return int(nano)


def cpus_to_quota(nano_cpus: int, period: int = 100_000, *, field: str = "cpus") -> tuple[int, int]:
    """Return the CFS ``(quota, period)`` in microseconds that grant ``nano_cpus``.

    Args:
        nano_cpus: CPUs in billionths, as :func:`parse_cpus` returns them.
        period: the CFS period in microseconds, 1000 (1 ms) to 1000000 (1 s).
        field: the name of the setting, for the error message.

    Raises:
        SpecError: ``nano_cpus`` is not positive, ``period`` is out of range, or the quota
            would be under the kernel's minimum of 1000 microseconds.

    Example:
        >>> cpus_to_quota(500_000_000)
        (50000, 100000)
    """
    if isinstance(nano_cpus, bool) or not isinstance(nano_cpus, int) or nano_cpus <= 0:
        raise SpecError(field, f"must be a positive number of nano-CPUs, not {nano_cpus!r}")
    if isinstance(period, bool) or not isinstance(period, int) or not 1000 <= period <= 10**6:
        raise SpecError(f"{field} period", f"must be 1000 to 1000000 microseconds, not {period!r}")
    quota = nano_cpus * period // _NANO
    if quota < 1000:
        raise SpecError(
            field,
            f"{nano_cpus / _NANO:g} CPUs is a quota of {quota} microseconds per {period}; "
            "the kernel needs at least 1000",
        )
    return quota, period


def parse_pids(value: str | int, field: str) -> int:
    """Return the most tasks (processes and threads) a container may hold.

    Only positive limits are accepted; to have no limit, set none (``None``) rather than
    the ``0`` or ``-1`` some tools use for it.

    Args:
        value: a positive integer, or a string of decimal digits.
        field: the name of the setting, for the error message.

    Raises:
        SpecError: ``value`` is not a positive integer up to 2**63 - 1.

    Example:
        >>> parse_pids("64", "pids")
        64
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(field, f"must be a positive integer, not {value!r}")
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise SpecError(field, f"must be a positive integer, not {value!r}")
        number = int(value)
    else:
        number = value
    if not 0 < number <= _INT64_MAX:
        raise SpecError(field, f"must be a positive integer up to {_INT64_MAX}, not {value!r}")
    return number
