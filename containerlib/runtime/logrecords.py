"""Log records: the CRI log file format, and what ``docker logs`` prints from records.

The format is the one the kubelet reads and containerd and CRI-O write (the Kubernetes
"CRI container log format"), one record a line::

    2026-11-29T21:30:01.123456789Z stdout F hello

the time in UTC with nanoseconds, the stream, a tag ``F`` when the content ends a line of
the container's output or ``P`` when the line goes on in the stream's next record, then
the content as raw bytes up to the ``\\n`` that ends the record. :func:`select` chooses and
prints records as docker-logs(1) does with ``--since``, ``--until``, ``--tail`` and ``-t``.
:mod:`containerlib.runtime.logs` keeps records in files and in memory.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import math
import re
import time
from collections.abc import Iterable

import attrs

from containerlib.errors import SpecError

__all__ = [
    "STREAMS",
    "Printer",
    "Record",
    "check_filters",
    "check_stream",
    "format_time",
    "parse",
    "parse_time",
    "records_of",
    "select",
]

#: The streams a log holds, by name.
STREAMS = ("stdout", "stderr")

_TIME = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))"
)
_STREAM_OF = {b"stdout": "stdout", b"stderr": "stderr"}


@attrs.frozen
class Record:
    """One record of a log: a piece of one stream's output, written at one time.

    Attributes:
        time: when it was written, in seconds since the epoch.
        stream: ``"stdout"`` or ``"stderr"``.
        data: the bytes, without the ``\\n`` that ends a full line.
        partial: the line goes on in the stream's next record (tag ``P``); False when
            ``data`` is a whole line, or the end of one (tag ``F``).
    """

    time: float
    stream: str
    data: bytes
    partial: bool

    def encode(self) -> bytes:
        """The record as one line of a CRI log file.

        Example:
            >>> Record(0.5, "stdout", b"hi", False).encode()
            b'1970-01-01T00:00:00.500000000Z stdout F hi\\n'
        """
        tag = b" P " if self.partial else b" F "
        return b"".join(
            (format_time(self.time).encode(), b" ", self.stream.encode(), tag, self.data, b"\n")
        )


def check_stream(stream: str) -> None:
    """Raises :class:`SpecError` unless ``stream`` is ``"stdout"`` or ``"stderr"``."""
    if stream not in STREAMS:
        raise SpecError("stream", f"must be 'stdout' or 'stderr', not {stream!r}")


@functools.lru_cache(maxsize=256)
def _second(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))


def format_time(when: float) -> str:
    """``when`` (seconds since the epoch) as RFC 3339 in UTC with nanoseconds.

    Example:
        >>> format_time(1796074201.25)
        '2026-11-30T21:30:01.250000000Z'
    """
    secs = math.floor(when)
    ns = round((when - secs) * 1e9)
    if ns >= 1_000_000_000:
        secs, ns = secs + 1, ns - 1_000_000_000
    return f"{_second(secs)}.{ns:09d}Z"


@functools.lru_cache(maxsize=1024)
def _epoch(year: bytes, month: bytes, day: bytes, h: bytes, m: bytes, s: bytes) -> int | None:
    fields = (int(year), int(month), int(day), int(h), int(m), int(s))
    try:
        datetime.datetime(*fields)
    except ValueError:
        return None
    return calendar.timegm(fields)


def _time_of(text: bytes) -> float | None:
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, h, m, s, fraction, zone, sign, zh, zm = match.groups()
    secs = _epoch(year, month, day, h, m, s)
    if secs is None:
        return None
    if zone != b"Z":
        offset = int(zh) * 3600 + int(zm) * 60
        secs -= offset if sign == b"+" else -offset
    if fraction is None:
        return float(secs)
    return secs + int(fraction.ljust(9, b"0")) / 1e9


def parse_time(text: str | bytes) -> float:
    """An RFC 3339 time (``2026-11-29T21:30:01.5Z``, or with an offset such as
    ``+01:00``) as seconds since the epoch.

    Example:
        >>> parse_time("1970-01-01T01:00:00.5+01:00")
        0.5

    Raises:
        SpecError: ``text`` is no RFC 3339 time.
    """
    raw = text.encode() if isinstance(text, str) else text
    when = _time_of(raw)
    if when is None:
        raise SpecError(
            "time", f"must be an RFC 3339 time such as '2026-11-29T21:30:01Z', not {text!r}"
        )
    return when


def records_of(stream: str, data: bytes, when: float) -> list[Record]:
    """Split a chunk read from ``stream`` into records: each line that ends in the chunk
    a full record, a rest after the last ``\\n`` a partial one.

    Example:
        >>> [(r.data, r.partial) for r in records_of("stdout", b"a\\nbc", 0.0)]
        [(b'a', False), (b'bc', True)]

    Raises:
        SpecError: ``stream`` is neither ``"stdout"`` nor ``"stderr"``.
    """
    check_stream(stream)
    lines = data.split(b"\n")
    rest = lines.pop()
    records = [Record(when, stream, line, False) for line in lines]
    if rest:
        records.append(Record(when, stream, rest, True))
    return records


def _parse_line(line: bytes) -> Record | None:
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    stream = _STREAM_OF.get(parts[1])
    # Tags may one day carry more than P or F, joined by ':' (as the kubelet reads them).
    tag = parts[2].split(b":", 1)[0]
    if stream is None or tag not in (b"F", b"P"):
        return None
    when = _time_of(parts[0])
    if when is None:
        return None
    return Record(when, stream, parts[3] if len(parts) == 4 else b"", tag == b"P")


def parse(data: bytes) -> tuple[list[Record], bytes]:
    """The records in ``data``, the text of a CRI log file or a piece of one.

    Returns:
        The records of the complete lines, and the incomplete line after the last
        ``\\n`` (a writer was writing it), to be given again with what follows it. A line
        that is no record (a bad time, an unknown stream or tag) is left out.

    Example:
        >>> records, rest = parse(b"1970-01-01T00:00:01Z stderr F oops\\n1970")
        >>> records, rest
        ([Record(time=1.0, stream='stderr', data=b'oops', partial=False)], b'1970')
    """
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].split(b"\n")[:-1]:
        record = _parse_line(line)
        if record is not None:
            records.append(record)
    return records, data[end:]


def _tail(records: list[Record], n: int) -> list[Record]:
    # Walk back from the end. A line is the records of one stream up to and including an
    # F record, or the partial records at the end of the stream; lines count in the order
    # in which they ended, and each chosen line is kept whole, whatever came in between.
    chosen = 0
    taking: set[str] = set()
    seen: set[str] = set()
    kept: list[Record] = []
    for record in reversed(records):
        if not record.partial or record.stream not in seen:
            seen.add(record.stream)
            if chosen < n:
                chosen += 1
                taking.add(record.stream)
            else:
                taking.discard(record.stream)
                if not taking:
                    break
        if record.stream in taking:
            kept.append(record)
    kept.reverse()
    return kept


def check_filters(since: float | None, until: float | None, tail: int | None) -> None:
    """Raises :class:`SpecError` naming the filter of :func:`select` that is out of range."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SpecError(name, f"must be seconds since the epoch, not {value!r}")
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise SpecError("tail", f"must be a number of lines, 0 or more, not {tail!r}")


class Printer:
    """Chooses records and prints them as ``docker logs`` does, piece after piece: it
    keeps which streams are in the middle of a line, so that a line continued in the next
    piece gets no second timestamp. :func:`select` is one piece; following is several.

    Args:
        stdout, stderr, since, until, timestamps: as for :func:`select`.
    """

    def __init__(
        self,
        *,
        stdout: bool,
        stderr: bool,
        since: float | None,
        until: float | None,
        timestamps: bool,
    ) -> None:
        self.streams = frozenset(s for s, on in zip(STREAMS, (stdout, stderr), strict=True) if on)
        self.since = since
        self.until = until
        self._timestamps = timestamps
        self._mid_line: set[str] = set()

    def wants(self, when: float, stream: str) -> bool:
        """A record of ``stream`` written at ``when`` passes the stream and time filters."""
        return (
            stream in self.streams
            and (self.since is None or when >= self.since)
            and (self.until is None or when < self.until)
        )

    def choose(self, records: Iterable[Record]) -> list[Record]:
        """The records that pass the filters."""
        return [r for r in records if self.wants(r.time, r.stream)]

    def print(self, records: Iterable[Record]) -> bytes:
        """The output for ``records``, chosen already, that follow those printed before."""
        out: list[bytes] = []
        for record in records:
            if self._timestamps and record.stream not in self._mid_line:
                out.append(format_time(record.time).encode() + b" ")
            out.append(record.data)
            if record.partial:
                self._mid_line.add(record.stream)
            else:
                out.append(b"\n")
                self._mid_line.discard(record.stream)
        return b"".join(out)

    def first(self, records: Iterable[Record], tail: int | None) -> bytes:
        """The output for the first piece: chosen, then the last ``tail`` lines."""
        chosen = self.choose(records)
        return self.print(chosen if tail is None else _tail(chosen, tail))


def select(
    records: Iterable[Record],
    *,
    stdout: bool = True,
    stderr: bool = True,
    since: float | None = None,
    until: float | None = None,
    tail: int | None = None,
    timestamps: bool = False,
) -> bytes:
    """What ``docker logs`` prints for ``records``.

    The chosen streams come interleaved in the order in which they were written; a full
    record ends with ``\\n``, a partial one does not.

    Args:
        records: in the order they were written.
        stdout: print the container's stdout.
        stderr: print the container's stderr.
        since: only records written at or after this time (seconds since the epoch).
        until: only records written before this time.
        tail: only the last ``tail`` lines. A line is one stream's records up to and
            including a full one, or the partial records that end the stream; lines
            count in the order in which their last record was written. 0 gives nothing.
        timestamps: put the time of a line's first record, RFC 3339 in UTC with
            nanoseconds, and a space before the line, as ``docker logs -t``.

    Example:
        >>> records = records_of("stdout", b"a\\nb\\n", 1.0) + records_of("stderr", b"c", 2.0)
        >>> select(records, tail=2, timestamps=True)
        b'1970-01-01T00:00:01.000000000Z b\\n1970-01-01T00:00:02.000000000Z c'

    Raises:
        SpecError: ``since``, ``until`` or ``tail`` is out of range.
    """
    check_filters(since, until, tail)
    printer = Printer(stdout=stdout, stderr=stderr, since=since, until=until, timestamps=timestamps)
    return printer.first(records, tail)
