"""Docker's formats, for the ``containerlib`` commands that stand in for docker's: what
its options take (times, signals, volumes, variables) and how its tables write things
(durations, statuses, commands, sizes, columns). Pure functions, no I/O but for
:func:`parse_volume`'s look at the source.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import signal
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from containerlib.errors import SpecError

__all__ = [
    "bytes_size",
    "command_column",
    "env_variables",
    "human_duration",
    "parse_signal",
    "parse_time",
    "parse_volume",
    "status_column",
    "table",
]


def human_duration(seconds: float) -> str:
    """A duration as docker's tables write it.

    Example:
        >>> human_duration(5.2), human_duration(90), human_duration(3 * 86400)
        ('5 seconds', 'About a minute', '3 days')
    """
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = secs // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{int(seconds // 3600) // (24 * 365)} years"


def status_column(record: dict[str, Any], now: float) -> str:
    """``ps``'s STATUS of a container from what :meth:`DetachedContainer.inspect` gives.

    Example:
        >>> status_column({"status": "exited", "exit_code": 0, "finished": 1.0}, 121.0)
        'Exited (0) 2 minutes ago'
    """
    state = record.get("status")
    if state in ("running", "paused"):
        up = f"Up {human_duration(now - float(record.get('started', now)))}"
        return up + " (Paused)" if state == "paused" else up
    if state == "exited":
        ago = human_duration(now - float(record.get("finished") or now))
        return f"Exited ({record.get('exit_code')}) {ago} ago"
    if state == "dead":
        return "Dead"
    return "Created"


def command_column(command: Sequence[str], *, truncate: bool = True) -> str:
    """``ps``'s COMMAND: the arguments joined by spaces, cut to 20 characters, quoted.

    Example:
        >>> command_column(["sh", "-c", "echo up; sleep 60"])
        '"sh -c echo up; slee…"'
    """
    text = " ".join(command)
    if truncate and len(text) > 20:
        text = text[:19] + "…"
    return json.dumps(text, ensure_ascii=False)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float | None:
    """A Go duration (``1h30m``, ``10s``, ``1.5h``) in seconds; None if it is not one."""
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    return sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def parse_time(text: str, option: str, now: float) -> float:
    """A time as ``docker logs --since`` takes it, in seconds since the epoch: RFC 3339
    (``2026-11-29T21:30:00Z``), a date or local time (``2026-11-29``,
    ``2026-11-29T21:30:00``), seconds since the epoch (``1796074200.5``), or a duration
    before ``now`` (``10m``, ``1h30m``).

    Example:
        >>> parse_time("90s", "since", 1000.0), parse_time("1970-01-01T00:01:00Z", "until", 0)
        (910.0, 60.0)

    Raises:
        SpecError: none of these, naming ``option``.
    """
    from containerlib.runtime.logs import parse_time as rfc3339

    with contextlib.suppress(ValueError):
        return float(text)
    ago = _duration(text)
    if ago is not None:
        return now - ago
    with contextlib.suppress(SpecError):
        return rfc3339(text)
    with contextlib.suppress(ValueError):
        return datetime.datetime.fromisoformat(text).timestamp()
    raise SpecError(
        option,
        f"{text!r} is no time: give 2026-11-29T21:30:00Z, seconds since the epoch, "
        "or a duration such as 10m",
    )


def parse_signal(text: str) -> int:
    """A signal by name (``KILL``, ``SIGKILL``, ``kill``) or number (``9``).

    Example:
        >>> parse_signal("TERM") == parse_signal("sigterm") == parse_signal("15") == 15
        True

    Raises:
        SpecError: no such signal.
    """
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        with contextlib.suppress(AttributeError):
            return int(getattr(signal.Signals, name))
    raise SpecError("signal", f"{text!r} is not a signal: give a name such as TERM, or 15")


def parse_publish(text: str) -> tuple[str, int | None, int, Literal["tcp", "udp"]]:
    """``-p [IP:][HOST_PORT:]PORT[/PROTO]`` as ``(IP, HOST_PORT, PORT, PROTO)``: the
    host address is 127.0.0.1 unless given (docker's is every address: containerlib
    publishes on loopback unless asked), no host port picks a free one.

    Example:
        >>> parse_publish("8080:80")
        ('127.0.0.1', 8080, 80, 'tcp')
        >>> parse_publish("::1:5353:53/udp")
        ('::1', 5353, 53, 'udp')

    Raises:
        SpecError: not of that form.
    """
    rest, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise SpecError("publish", f"{text!r}: the protocol is tcp or udp, not {protocol!r}")
    host_ip, host_port = "127.0.0.1", None
    parts = rest.rsplit(":", 2)
    try:
        if len(parts) == 3:
            host_ip = parts[0].strip("[]")
            host_port = int(parts[1]) if parts[1] else None
        elif len(parts) == 2:
            host_port = int(parts[0])
        port = int(parts[-1])
    except ValueError:
        raise SpecError("publish", f"{text!r} is not [IP:][HOST_PORT:]PORT[/udp]") from None
    return host_ip, host_port, port, "udp" if protocol == "udp" else "tcp"


def parse_volume(text: str) -> tuple[str, str, bool]:
    """``-v SRC:DST[:OPTIONS]`` as ``(SRC, DST, read_only)``; OPTIONS is ``ro`` or ``rw``
    (the default, as docker's), comma-separated.

    Example:
        >>> parse_volume("/tmp:/data:ro")
        ('/tmp', '/data', True)

    Raises:
        SpecError: not of that form, a source that is no absolute host path (docker's
            named volumes) or does not exist, or an unknown option.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SpecError("volume", f"{text!r} is not SRC:DST[:ro]")
    source, target = parts[0], parts[1]
    read_only = False
    for option in parts[2].split(",") if len(parts) == 3 else ():
        if option not in ("ro", "rw"):
            raise SpecError("volume", f"{text!r}: unknown option {option!r} (ro or rw)")
        read_only = option == "ro"
    if not os.path.isabs(source):
        raise SpecError(
            "volume", f"{text!r}: the source must be an absolute host path (no named volumes)"
        )
    if not os.path.exists(source):
        raise SpecError("volume", f"{text!r}: the source {source!r} does not exist")
    if not os.path.isabs(target):
        raise SpecError("volume", f"{text!r}: the target must be an absolute path")
    return source, target, read_only


def env_variables(items: Iterable[str]) -> dict[str, str]:
    """``-e KEY=VALUE`` options as a dict; ``-e KEY`` passes this process's value on."""
    env = {}
    for item in items:
        key, eq, value = item.partition("=")
        env[key] = value if eq else os.environ.get(key, "")
    return env


def bytes_size(n: float) -> str:
    """Bytes in binary units, as docker stats writes memory.

    Example:
        >>> bytes_size(1536 * 1024), bytes_size(512)
        ('1.5MiB', '512B')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns as docker's (3 spaces between, at least 10 wide but the last)."""
    widths = [max(10, *(len(r[i]) for r in rows)) + 3 for i in range(len(rows[0]) - 1)]
    lines = ["".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1] for r in rows]
    return "\n".join(line.rstrip() for line in lines)
