"""Readiness conditions: what :func:`containerlib.readiness.wait_for` waits for.

Conditions are frozen values that describe a check and do nothing themselves: the code
that tries them against a container is in :mod:`containerlib.readiness.probes`. So a
condition can be built once, shared between tests and threads, compared, pickled, and
waited for on many containers. ``a & b`` is :func:`all_of`, ``a | b`` is :func:`any_of`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from containerlib.errors import SpecError

if TYPE_CHECKING:
    from containerlib.readiness import Box

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
]

# The request target: printable ASCII but space (percent-encode the rest), so that no
# header can be slipped into the request.
_HTTP_PATH = re.compile(r"/[!-~]*")


class Condition:
    """Something about a running container that
    :func:`~containerlib.readiness.wait_for` waits for.

    Conditions are frozen values that hold no state of a wait, so one can be shared
    between tests and threads and waited for on many containers. ``a & b`` is
    :func:`all_of`, ``a | b`` is :func:`any_of`.

    Example:
        >>> str(Port(5432) & (Port(5433) | File("/run/ready")))
        "port 5432 to accept a connection and (port 5433 to accept a connection or file \
'/run/ready' to exist)"
    """

    __slots__ = ()

    def __and__(self, other: object) -> AllOf:
        if not isinstance(other, Condition):
            return NotImplemented
        return all_of(self, other)

    def __or__(self, other: object) -> AnyOf:
        if not isinstance(other, Condition):
            return NotImplemented
        return any_of(self, other)


def _compile(value: object) -> re.Pattern[str] | re.Pattern[bytes]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str | bytes):
        raise SpecError(
            "pattern", f"must be a str, bytes or compiled regular expression, not {value!r}"
        )
    if not value:
        raise SpecError("pattern", "must not be empty: it would match any line")
    try:
        return re.compile(value)
    except re.error as e:
        raise SpecError("pattern", f"{value!r} is not a regular expression: {e}") from None


def _check_stream(value: object) -> str:
    if value not in ("stdout", "stderr", "both"):
        raise SpecError("stream", f"must be 'stdout', 'stderr' or 'both', not {value!r}")
    return str(value)


def _check_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError("count", f"must be a number of lines, 1 or more, not {value!r}")
    return value


def _check_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise SpecError("port", f"must be a TCP port from 1 to 65535, not {value!r}")
    return value


def _check_http_path(value: object) -> str:
    if not isinstance(value, str) or not _HTTP_PATH.fullmatch(value):
        raise SpecError(
            "path",
            f"must start with '/' and hold printable ASCII but space (percent-encode the"
            f" rest), not {value!r}",
        )
    return value


def _check_status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise SpecError("status", f"must be an HTTP status from 100 to 599, not {value!r}")
    return value


def _check_cmd(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise SpecError(
            "cmd", f"must be a list of arguments, not the string {value!r} (use ['sh', '-c', ...])"
        )
    if not isinstance(value, Sequence) or not value:
        raise SpecError("cmd", f"must be a non-empty list of arguments, not {value!r}")
    if not all(isinstance(arg, str) and "\0" not in arg for arg in value):
        raise SpecError("cmd", f"every argument must be a string without NUL, not {value!r}")
    return tuple(value)


def _check_file_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise SpecError("path", f"must be an absolute path in the container, not {value!r}")
    return value


def _pattern_text(pattern: re.Pattern[str] | re.Pattern[bytes]) -> str:
    text = pattern.pattern
    return repr(text.decode(errors="replace") if isinstance(text, bytes) else text)


@attrs.frozen
class Log(Condition):
    """The container has written lines that match ``pattern``, from its start on (not
    only lines written after the wait began).

    Each line is searched on its own (:func:`re.search`, without its line end), so
    ``^`` and ``$`` mean its start and end; the line being written, not yet ended, counts
    as well. A ``str`` pattern is searched in the line decoded as UTF-8, a ``bytes`` one in
    the raw bytes. With a terminal (``tty=True``) all output is stdout.

    Args:
        pattern: a regular expression (``re.escape`` a literal text with special
            characters), as ``str``, ``bytes`` or compiled.
        stream: ``"stdout"``, ``"stderr"`` or ``"both"`` (the default: many servers log
            to stderr, and testcontainers searches both).
        count: how many matching lines (in both streams together, with ``"both"``).

    Raises:
        SpecError: an empty or invalid pattern, an unknown stream, a count below 1.

    Example:
        >>> Log(r"ready to accept connections", count=2)
        Log(pattern=re.compile('ready to accept connections'), stream='both', count=2)
    """

    pattern: re.Pattern[str] | re.Pattern[bytes] = attrs.field(converter=_compile)
    stream: str = attrs.field(default="both", kw_only=True, converter=_check_stream)
    count: int = attrs.field(default=1, kw_only=True, converter=_check_count)

    def __str__(self) -> str:
        lines = "a line" if self.count == 1 else f"{self.count} lines"
        streams = "stdout or stderr" if self.stream == "both" else self.stream
        return f"{lines} matching {_pattern_text(self.pattern)} on {streams}"


@attrs.frozen
class Port(Condition):
    """A TCP connection to ``port`` on the container's loopback succeeds, made from
    inside its network namespace (``box.connect``), published or not.

    A server listening on all addresses, or on 127.0.0.1, is reached; one bound to
    another address only (its bridge address, say) is not.

    Raises:
        SpecError: a port outside 1 to 65535.

    Example:
        >>> str(Port(6379))
        'port 6379 to accept a connection'
    """

    port: int = attrs.field(converter=_check_port)

    def __str__(self) -> str:
        return f"port {self.port} to accept a connection"


@attrs.frozen
class Http(Condition):
    """An HTTP/1.0 ``GET path`` to ``port``, sent through a connection made as
    :class:`Port` makes it, is answered with ``status``.

    Redirects are not followed: a 301 is a 301.

    Args:
        port: the container's port.
        path: the request target, ``/`` and printable ASCII (percent-encoded).
        status: the status the answer must have.

    Raises:
        SpecError: a bad port, path or status.

    Example:
        >>> str(Http(8080, "/health"))
        'GET /health on port 8080 to answer 200'
    """

    port: int = attrs.field(converter=_check_port)
    path: str = attrs.field(default="/", converter=_check_http_path)
    status: int = attrs.field(default=200, converter=_check_status)

    def __str__(self) -> str:
        return f"GET {self.path} on port {self.port} to answer {self.status}"


@attrs.frozen
class Exec(Condition):
    """``cmd``, run in the container as :meth:`~RunningContainer.exec` runs it, exits
    with code 0 (a health check such as ``pg_isready``).

    Each try may run until the wait's deadline; it is killed then.

    Raises:
        SpecError: ``cmd`` is empty, a string, or holds something else than strings.

    Example:
        >>> str(Exec(["pg_isready", "-q"]))
        "['pg_isready', '-q'] to exit with code 0"
    """

    cmd: tuple[str, ...] = attrs.field(converter=_check_cmd)

    def __str__(self) -> str:
        return f"{list(self.cmd)!r} to exit with code 0"


@attrs.frozen
class File(Condition):
    """``path`` exists in the container (as ``test -e`` says: a symbolic link counts if
    what it points to exists).

    The path is looked up from the host, through ``/proc/PID/root`` of the container's
    first process, with openat2(2) ``RESOLVE_IN_ROOT``: ``..`` and absolute symbolic
    links resolve inside the container's root, as for the container, never to the
    host's files; the container's own mounts (a tmpfs on /run, say) are seen. This costs
    no process per try and needs no ``test`` program in the image (a distroless one has
    none), where an exec of ``test -e`` would start a process in the container at every
    poll. The lookup has this process's permissions, not the container user's.

    Raises:
        SpecError: a path that is not absolute.

    Example:
        >>> str(File("/var/run/postgresql/.s.PGSQL.5432"))
        "file '/var/run/postgresql/.s.PGSQL.5432' to exist"
    """

    path: str = attrs.field(converter=_check_file_path)

    def __str__(self) -> str:
        return f"file {self.path!r} to exist"


def _check_function(value: object) -> Callable[[Box], object]:
    if not callable(value):
        raise SpecError("check", f"must be a function of the container, not {value!r}")
    return value


@attrs.frozen
class Check(Condition):
    """``check(box)`` returns a true value: a test of your own (testcontainers'
    ``@wait_container_is_ready`` around a function).

    An exception it raises counts as "not yet", as testcontainers retries on one; the
    last one is in the error if the wait gives up. It runs in the calling thread and
    should not block past the wait's timeout.

    Args:
        check: a function of the container handle.
        name: what it checks, for messages; the function's name by default.

    Raises:
        SpecError: ``check`` is not callable.

    Example:
        >>> def answers(box):
        ...     with box.connect(6379) as sock:
        ...         sock.sendall(b"PING\\r\\n")
        ...         return sock.recv(7) == b"+PONG\\r\\n"
        >>> str(Check(answers))
        'answers() to return true'
    """

    check: Callable[[Box], object] = attrs.field(converter=_check_function)
    name: str | None = attrs.field(default=None, kw_only=True)

    def __str__(self) -> str:
        name = self.name or f"{getattr(self.check, '__name__', repr(self.check))}()"
        return f"{name} to return true"


def _nested(condition: Condition) -> str:
    return f"({condition})" if isinstance(condition, AllOf | AnyOf) else str(condition)


def _check_parts(value: object) -> tuple[Condition, ...]:
    parts = tuple(value) if isinstance(value, Sequence) else ()
    if not parts or not all(isinstance(c, Condition) for c in parts):
        raise SpecError("conditions", f"must be one or more conditions, not {value!r}")
    return parts


@attrs.frozen
class AllOf(Condition):
    """Every one of ``conditions`` is met (:func:`all_of`, ``a & b``).

    Each part is tried at every poll until it has been met once; a part met stays met,
    so the parts need not all hold at the same instant.

    Example:
        >>> from containerlib.readiness import Log, Port
        >>> ready = Port(80) & Log("listening")
        >>> type(ready).__name__, len(ready.conditions)
        ('AllOf', 2)
    """

    conditions: tuple[Condition, ...] = attrs.field(converter=_check_parts)

    def __str__(self) -> str:
        return " and ".join(_nested(c) for c in self.conditions)


@attrs.frozen
class AnyOf(Condition):
    """At least one of ``conditions`` is met (:func:`any_of`, ``a | b``); they are tried
    in order at each poll.

    Example:
        >>> from containerlib.readiness import File, Log
        >>> ready = Log("ready") | File("/run/app.pid")
        >>> type(ready).__name__, len(ready.conditions)
        ('AnyOf', 2)
    """

    conditions: tuple[Condition, ...] = attrs.field(converter=_check_parts)

    def __str__(self) -> str:
        return " or ".join(_nested(c) for c in self.conditions)


def all_of(*conditions: Condition) -> AllOf:
    """A condition met once every one of ``conditions`` has been met (``a & b``).

    Nested ``all_of`` are flattened.

    Raises:
        SpecError: no condition, or something that is not one.

    Example:
        >>> all_of(Port(80), Log("ready")) == Port(80) & Log("ready")
        True
    """
    return AllOf(_flatten(conditions, AllOf))


def any_of(*conditions: Condition) -> AnyOf:
    """A condition met as soon as one of ``conditions`` is met (``a | b``).

    Nested ``any_of`` are flattened.

    Raises:
        SpecError: no condition, or something that is not one.

    Example:
        >>> str(any_of(File("/run/ready"), Port(80)))
        "file '/run/ready' to exist or port 80 to accept a connection"
    """
    return AnyOf(_flatten(conditions, AnyOf))


def _flatten(conditions: tuple[Condition, ...], kind: type[AllOf | AnyOf]) -> tuple[Condition, ...]:
    flat: list[Condition] = []
    for c in _check_parts(conditions):
        flat += c.conditions if isinstance(c, kind) else (c,)
    return tuple(flat)
