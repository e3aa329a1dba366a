"""Readiness waits: block until a started container is ready to be used.

A container that has started is not yet a server that answers: its process must open its
files, bind its port, perhaps print "ready". :func:`wait_for` polls a :class:`Condition`
every ``interval`` seconds until it is met, the ``timeout`` passes, or the container ends,
in the calling thread (no thread is started for a wait). Conditions compose: ``a & b``
(:func:`all_of`) and ``a | b`` (:func:`any_of`). When a wait gives up, or the container
ends first (which is noticed at the next poll, not at the timeout), it raises
:class:`~containerlib.errors.ContainerNotReady`, which names what was not met, why its
last try failed, how long it waited, the exit code, and the container's last lines of
output.

The port and HTTP conditions connect from inside the container's network namespace
(``connect``), so they work on every network mode and rootless, published or not; the
file condition looks into the container's root through ``/proc/PID/root`` with
openat2(2) ``RESOLVE_IN_ROOT``, as the container would resolve the path.

Example:
    >>> from containerlib.readiness import Http, Log, wait_for
    >>> with Container(image).start(["httpd", "-f", "-p", "80"]) as box:  # doctest: +SKIP
    ...     wait_for(box, Http(80, "/") & Log("listening"), timeout=30)
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from containerlib.errors import ContainerNotReady, SpecError
from containerlib.readiness.conditions import (
    AllOf,
    AnyOf,
    Check,
    Condition,
    Exec,
    File,
    Http,
    Log,
    Port,
    all_of,
    any_of,
)
from containerlib.readiness.probes import Watch, probe

if TYPE_CHECKING:
    from typing import TypeAlias

    from containerlib.container import RunningContainer
    from containerlib.detached import DetachedContainer

    #: What a wait takes: a started container, attached or detached.
    Box: TypeAlias = RunningContainer | DetachedContainer

__all__ = [
    "AllOf",
    "AnyOf",
    "Check",
    "Condition",
    "Exec",
    "File",
    "Http",
    "Log",
    "Port",
    "all_of",
    "any_of",
    "wait_for",
    "wait_for_exec",
    "wait_for_file",
    "wait_for_http",
    "wait_for_log",
    "wait_for_port",
]


def _check_seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise SpecError(name, f"must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def wait_for(
    box: Box, condition: Condition, *, timeout: float = 60.0, interval: float = 0.1
) -> None:
    """Wait until ``condition`` is met in the started container ``box``.

    The condition is tried at once, then every ``interval`` seconds. Before each try the
    container is looked at: if it has ended and the condition is still not met (a
    :class:`Log` condition is tried on all of its output first), the wait fails then,
    not at the timeout. Nothing runs in the background: the wait polls in the calling
    thread, and leaves nothing open.

    Args:
        box: a :class:`~containerlib.RunningContainer` or a
            :class:`~containerlib.DetachedContainer`.
        condition: what to wait for: :class:`Log`, :class:`Port`, :class:`Http`,
            :class:`Exec`, :class:`File`, :class:`Check`, or a composition of them.
        timeout: seconds after which the wait gives up. A try under way then (a connect,
            an exec) is given what is left of the time, at least a twentieth of a second.
        interval: seconds between two tries.

    Raises:
        SpecError: a bad timeout, interval or condition; nothing was tried.
        ContainerNotReady: the condition was not met within ``timeout``, or the
            container ended first; it says what was not met, why, and the container's
            last lines of output.

    Example:
        >>> box = Container(image).start(["sh", "-c", "sleep 1; httpd -f -p 80"])  # doctest: +SKIP
        >>> wait_for(box, Port(80) & Log("httpd"), timeout=10)  # doctest: +SKIP
    """
    timeout = _check_seconds("timeout", timeout)
    interval = _check_seconds("interval", interval)
    if not isinstance(condition, Condition):
        raise SpecError("condition", f"must be a readiness Condition, not {condition!r}")
    start = time.monotonic()
    deadline = start + timeout
    watch = Watch(box)
    with watch.closing:
        tries = probe(condition, watch)
        while True:
            # Looked at before the try: once the container has ended, its output is all
            # there, so a condition it met before it ended is not missed.
            ended, exit_code = watch.ended()
            watch.refresh()
            if tries.ready(deadline):
                return
            now = time.monotonic()
            if ended or now >= deadline:
                raise ContainerNotReady(
                    box.id,
                    tries.unmet(),
                    now - start,
                    watch.last_lines(),
                    exit_code,
                    tuple(tries.reasons()),
                    ended=ended,
                )
            time.sleep(min(interval, deadline - now))


def wait_for_log(
    box: Box,
    pattern: str | bytes | re.Pattern[str] | re.Pattern[bytes],
    *,
    stream: Literal["stdout", "stderr", "both"] = "both",
    count: int = 1,
    timeout: float = 60.0,
    interval: float = 0.1,
) -> None:
    """Wait until the container has written ``count`` lines matching ``pattern``
    (:class:`Log`; see :func:`wait_for` for ``timeout``, ``interval`` and the errors).

    Example:
        >>> wait_for_log(box, r"database system is ready", count=2)  # doctest: +SKIP
    """
    wait_for(box, Log(pattern, stream=stream, count=count), timeout=timeout, interval=interval)


def wait_for_port(box: Box, port: int, *, timeout: float = 60.0, interval: float = 0.1) -> None:
    """Wait until ``port`` accepts a TCP connection inside the container (:class:`Port`;
    see :func:`wait_for`).

    Example:
        >>> wait_for_port(box, 6379, timeout=10)  # doctest: +SKIP
    """
    wait_for(box, Port(port), timeout=timeout, interval=interval)


def wait_for_http(
    box: Box,
    port: int,
    path: str = "/",
    status: int = 200,
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
) -> None:
    """Wait until ``GET path`` on ``port`` is answered with ``status`` (:class:`Http`;
    see :func:`wait_for`).

    Example:
        >>> wait_for_http(box, 8080, "/health")  # doctest: +SKIP
    """
    wait_for(box, Http(port, path, status), timeout=timeout, interval=interval)


def wait_for_exec(
    box: Box, cmd: Sequence[str], *, timeout: float = 60.0, interval: float = 0.1
) -> None:
    """Wait until ``cmd``, run in the container, exits with code 0 (:class:`Exec`; see
    :func:`wait_for`).

    Example:
        >>> wait_for_exec(box, ["pg_isready", "-U", "postgres"])  # doctest: +SKIP
    """
    wait_for(box, Exec(cmd), timeout=timeout, interval=interval)


def wait_for_file(box: Box, path: str, *, timeout: float = 60.0, interval: float = 0.1) -> None:
    """Wait until ``path`` exists in the container (:class:`File`; see :func:`wait_for`).

    Example:
        >>> wait_for_file(box, "/tmp/ready")  # doctest: +SKIP
    """
    wait_for(box, File(path), timeout=timeout, interval=interval)
