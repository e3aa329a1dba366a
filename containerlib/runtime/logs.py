"""A container's output as a log, in a file or in memory.

A detached container's output goes to a file in the CRI log format (see
:mod:`containerlib.runtime.logrecords`), written by :class:`LogWriter` and rotated once it
passes a size, as docker's json-file driver with ``max-size`` and ``max-file=2``. An
attached container keeps its output in a :class:`MemoryLog`. Both answer what
docker-logs(1) answers, with and without ``--follow``: :func:`read_log` and
:func:`follow_log` for a file, :meth:`MemoryLog.read` and :meth:`MemoryLog.follow` in
memory.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from containerlib._closing import Closing
from containerlib.errors import SpecError
from containerlib.runtime.logrecords import (
    STREAMS,
    Printer,
    Record,
    check_filters,
    check_stream,
    format_time,
    parse,
    parse_time,
    records_of,
    select,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "STREAMS",
    "LogWriter",
    "MemoryLog",
    "Record",
    "follow_log",
    "format_time",
    "parse",
    "parse_time",
    "read_log",
    "records_of",
    "select",
]

_READ = 1 << 20


class LogWriter(Closing):
    """Appends a container's output to a CRI log file.

    Each :meth:`write` goes to the file in one ``write(2)``: a reader sees a partial line
    as soon as it was written. With ``max_bytes``, a write that would take the file past
    it first renames the file to ``path + ".1"`` (replacing an older one) and starts a new
    file, as docker's json-file driver with ``max-size`` and ``max-file=2``.

    Args:
        path: the log file; made with mode 0600 if missing, appended to otherwise.
        max_bytes: the size past which the file is rotated; None for no limit.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with LogWriter(tmp + "/log") as log:
        ...         log.write("stdout", b"hi\\n", when=0.0)
        ...     read_log(tmp + "/log", timestamps=True)
        b'1970-01-01T00:00:00.000000000Z hi\\n'

    Raises:
        SpecError: ``max_bytes`` is not a positive number.
        OSError: the file cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int | None = None) -> None:
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0
        ):
            raise SpecError("max_bytes", f"must be a positive number of bytes, not {max_bytes!r}")
        self.path = os.fspath(path)
        self._max = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.path, flags, 0o600)

    def write(self, stream: str, data: bytes, when: float | None = None) -> None:
        """Append ``data``, a chunk of ``stream``'s output, as records.

        Args:
            stream: ``"stdout"`` or ``"stderr"``.
            data: the bytes as they were read; an unfinished line becomes a partial record.
            when: the time to record; now by default.

        Raises:
            SpecError: an unknown stream.
            ValueError: the writer is closed.
            OSError: the write failed (a full disk, say).
        """
        records = records_of(stream, data, time.time() if when is None else when)
        if not records:
            return
        head = f"{format_time(records[0].time)} {stream} ".encode()
        parts: list[bytes] = []
        for record in records:
            parts += (head, b"P " if record.partial else b"F ", record.data, b"\n")
        text = b"".join(parts)
        with self._lock:
            if self._fd is None:
                raise ValueError(f"write to the log {self.path!r}: it is closed")
            if self._max is not None and self._size and self._size + len(text) > self._max:
                self._rotate()
            view = memoryview(text)
            while view:
                view = view[os.write(self._fd, view) :]
            self._size += len(text)

    def _rotate(self) -> None:
        assert self._fd is not None
        # Someone may have removed it: a new one is started all the same.
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, self.path + ".1")
        fd = self._open()
        os.close(self._fd)
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def close(self) -> None:
        """Close the file; closing again does nothing."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _open_or_none(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


class _LogFiles:
    """Reads a log file, after the one rotated before it, and goes on reading it as it
    grows and is rotated."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._fd: int | None = None
        self._id: tuple[int, int] | None = None
        self._rest = b""

    def start(self) -> list[Record]:
        """The records of the rotated file and of the file, as they are now."""
        for attempt in range(3):
            current = _open_or_none(self._path)
            older = _open_or_none(self._path + ".1")
            if current is None or older is None:
                break
            if _identity(os.fstat(current)) != _identity(os.fstat(older)):
                break
            # Rotated between the two opens: what we took for the file is the old one.
            # (Still the same after three tries: two links to one file; read it once.)
            os.close(older)
            older = None
            if attempt < 2:
                os.close(current)
        records: list[Record] = []
        if older is not None:
            try:
                # An unfinished line at the end of a rotated file never will be finished.
                records += parse(_read_all(older))[0]
            finally:
                os.close(older)
        if current is not None:
            self._fd, self._id = current, _identity(os.fstat(current))
        return records + self.more()

    def more(self) -> list[Record]:
        """The records written since the last call, following a rotation."""
        records: list[Record] = []
        while True:
            # Look for a new file before reading the old one to its end: once the new one
            # exists, the writer is done with the old one, so nothing is left behind.
            try:
                now = _identity(os.stat(self._path))
            except FileNotFoundError:
                now = None
            if self._fd is not None:
                records += self._drain()
            if now is None or now == self._id:
                return records
            if self._fd is not None:
                os.close(self._fd)
            self._fd, self._id, self._rest = _open_or_none(self._path), None, b""
            if self._fd is None:
                return records
            self._id = _identity(os.fstat(self._fd))

    def _drain(self) -> list[Record]:
        assert self._fd is not None
        data = _read_all(self._fd)
        if not data:
            return []
        records, self._rest = parse(self._rest + data)
        return records

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, _READ):
        chunks.append(chunk)
    return b"".join(chunks)


def read_log(
    path: str | os.PathLike[str],
    *,
    stdout: bool = True,
    stderr: bool = True,
    since: float | None = None,
    until: float | None = None,
    tail: int | None = None,
    timestamps: bool = False,
) -> bytes:
    """What ``docker logs`` prints for the CRI log file ``path``: its rotated file
    ``path + ".1"`` first, then the file. The filters are those of :func:`select`; a
    line still being written is left out, and a missing file gives ``b""``.

    Raises:
        SpecError: ``since``, ``until`` or ``tail`` is out of range.
        OSError: a file exists but cannot be read.
    """
    check_filters(since, until, tail)
    files = _LogFiles(path)
    try:
        records = files.start()
    finally:
        files.close()
    return select(
        records,
        stdout=stdout,
        stderr=stderr,
        since=since,
        until=until,
        tail=tail,
        timestamps=timestamps,
    )


def follow_log(
    path: str | os.PathLike[str],
    *,
    stop: Callable[[], bool],
    poll: float = 0.05,
    stdout: bool = True,
    stderr: bool = True,
    since: float | None = None,
    until: float | None = None,
    tail: int | None = None,
    timestamps: bool = False,
) -> Iterator[bytes]:
    """What ``docker logs --follow`` prints for the CRI log file ``path``.

    Yields first what :func:`read_log` gives (``tail`` and ``since`` apply to what exists
    then), then what is appended, as it is appended, across rotations; ``until`` and the
    stream choice go on applying. Each piece is non-empty.

    Following ends once ``stop()`` returns True (or the clock has passed ``until``) and the
    file has been read to its end after that, so that the last lines the writer wrote
    before ``stop()`` turned True are never lost. A file that does not exist yet is
    waited for.

    Args:
        path: the log file.
        stop: asked every ``poll`` seconds; True when no more will be written (the
            container has ended and its output has been written).
        poll: seconds between two looks at the file.
        stdout, stderr, since, until, tail, timestamps: as for :func:`select`.

    Raises:
        SpecError: ``since``, ``until``, ``tail`` or ``poll`` is out of range.
        OSError: a file exists but cannot be read.
    """
    check_filters(since, until, tail)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not poll > 0:
        raise SpecError("poll", f"must be a positive number of seconds, not {poll!r}")
    return _follow(
        path,
        stop,
        poll,
        tail,
        Printer(stdout=stdout, stderr=stderr, since=since, until=until, timestamps=timestamps),
    )


def _follow(
    path: str | os.PathLike[str],
    stop: Callable[[], bool],
    poll: float,
    tail: int | None,
    printer: Printer,
) -> Iterator[bytes]:
    files = _LogFiles(path)
    try:
        out = printer.first(files.start(), tail)
        if out:
            yield out
        while True:
            ending = stop() or (printer.until is not None and time.time() >= printer.until)
            out = printer.print(printer.choose(files.more()))
            if out:
                yield out
            if ending:
                return
            time.sleep(poll)
    finally:
        files.close()


class _Chunks:
    """One stream's bytes, kept as the chunks they came in, joined once when asked for."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ends: list[int] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self.ends.append(self.size)

    def joined(self) -> bytes:
        if len(self.chunks) > 1:
            # One copy is kept, and the log's records point into it from now on.
            self.chunks, self.ends = [b"".join(self.chunks)], [self.size]
        return self.chunks[0] if self.chunks else b""

    def at(self, pos: int) -> tuple[bytes, int]:
        """The chunk that holds offset ``pos`` and where ``pos`` is in it."""
        i = bisect.bisect_right(self.ends, pos)
        return self.chunks[i], pos - (self.ends[i - 1] if i else 0)

    def slice(self, start: int, end: int) -> bytes:
        # A slice is always a chunk as it was added, so it lies within one chunk.
        chunk, offset = self.at(start)
        return chunk[offset : offset + end - start]


class _Event:
    __slots__ = ("end", "start", "stream", "time")

    def __init__(self, when: float, stream: str, start: int, end: int) -> None:
        self.time = when
        self.stream = stream
        self.start = start
        self.end = end


class MemoryLog:
    """A container's output kept in memory, safe to use from several threads.

    One thread appends what it reads from the container's pipes; others read and follow,
    with the filters of :func:`select`. Records are made only when :meth:`read` or
    :meth:`follow` asks for them: appending is cheap, and so is :attr:`stdout` at the end.

    Example:
        >>> log = MemoryLog()
        >>> log.append("stdout", b"one\\ntw", when=1.0)
        >>> log.append("stdout", b"o\\n", when=2.0)
        >>> log.close()
        >>> log.stdout, log.read(tail=1, timestamps=True)
        (b'one\\ntwo\\n', b'1970-01-01T00:00:01.000000000Z two\\n')
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._events: list[_Event] = []
        self._streams = {name: _Chunks() for name in STREAMS}
        self._closed = False

    def append(self, stream: str, data: bytes, when: float | None = None) -> None:
        """Add ``data``, a chunk of ``stream``'s output, and wake the followers.

        Args:
            stream: ``"stdout"`` or ``"stderr"``.
            data: the bytes as they were read.
            when: the time to record; now by default.

        Raises:
            SpecError: an unknown stream.
            ValueError: the log is closed.
        """
        check_stream(stream)
        if not data:
            return
        chunks = self._streams[stream]
        with self._cond:
            if self._closed:
                raise ValueError(f"append to the {stream} of a closed log")
            # The time is taken under the lock: a follower that has seen the clock pass
            # ``until`` will not see an earlier record after that.
            stamp = time.time() if when is None else when
            start = chunks.size
            chunks.add(bytes(data))
            self._events.append(_Event(stamp, stream, start, chunks.size))
            self._cond.notify_all()

    def close(self) -> None:
        """The container's output has ended: followers and readers get the end of it."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def stdout(self) -> bytes:
        """All of stdout so far, in order."""
        with self._cond:
            return self._streams["stdout"].joined()

    @property
    def stderr(self) -> bytes:
        """All of stderr so far, in order."""
        with self._cond:
            return self._streams["stderr"].joined()

    def _take(self, start: int, printer: Printer) -> tuple[list[tuple[float, str, bytes]], int]:
        # Under the lock: the chunks the printer wants among the events from ``start``.
        chosen = [
            (e.time, e.stream, self._streams[e.stream].slice(e.start, e.end))
            for e in self._events[start:]
            if printer.wants(e.time, e.stream)
        ]
        return chosen, len(self._events)

    @staticmethod
    def _records(chunks: list[tuple[float, str, bytes]]) -> list[Record]:
        records: list[Record] = []
        for when, stream, data in chunks:
            records += records_of(stream, data, when)
        return records

    def read(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        since: float | None = None,
        until: float | None = None,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> bytes:
        """What ``docker logs`` prints for the output so far; the filters are those of
        :func:`select`.

        Raises:
            SpecError: ``since``, ``until`` or ``tail`` is out of range.
        """
        check_filters(since, until, tail)
        printer = Printer(
            stdout=stdout, stderr=stderr, since=since, until=until, timestamps=timestamps
        )
        with self._cond:
            chunks, _ = self._take(0, printer)
        return printer.first(self._records(chunks), tail)

    def follow(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        since: float | None = None,
        until: float | None = None,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> Iterator[bytes]:
        """What ``docker logs --follow`` prints: what :meth:`read` gives now, then the
        output as it comes, until the log is closed (or the clock passes ``until``).
        Each piece is non-empty.

        Raises:
            SpecError: ``since``, ``until`` or ``tail`` is out of range.
        """
        check_filters(since, until, tail)
        printer = Printer(
            stdout=stdout, stderr=stderr, since=since, until=until, timestamps=timestamps
        )
        return self._follow(printer, tail)

    def _follow(self, printer: Printer, tail: int | None) -> Iterator[bytes]:
        with self._cond:
            chunks, seen = self._take(0, printer)
            ended = self._closed
        out = printer.first(self._records(chunks), tail)
        if out:
            yield out
        while not ended:
            with self._cond:
                while len(self._events) == seen and not self._closed:
                    if printer.until is None:
                        self._cond.wait()
                        continue
                    left = printer.until - time.time()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                chunks, seen = self._take(seen, printer)
                ended = self._closed or (printer.until is not None and time.time() >= printer.until)
            out = printer.print(self._records(chunks))
            if out:
                yield out

    def reader(self, stream: str) -> io.BufferedReader:
        """A file open for reading on ``stream`` from its start. ``read()``,
        ``readline()`` and iteration wait for more output until the log is closed, then
        give end of file.

        Raises:
            SpecError: an unknown stream.
        """
        check_stream(stream)
        return io.BufferedReader(_StreamReader(self, stream))

    def _wait_at(self, stream: str, pos: int) -> tuple[bytes, int] | None:
        """The chunk of ``stream`` at ``pos`` and the offset in it, once there is one;
        None at the end of a closed log."""
        chunks = self._streams[stream]
        with self._cond:
            while chunks.size <= pos:
                if self._closed:
                    return None
                self._cond.wait()
            return chunks.at(pos)


class _StreamReader(io.RawIOBase):
    """The raw file under :meth:`MemoryLog.reader`."""

    def __init__(self, log: MemoryLog, stream: str) -> None:
        super().__init__()
        self._log = log
        self._stream = stream
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        target = memoryview(buffer).cast("B")
        if not len(target):
            return 0
        found = self._log._wait_at(self._stream, self._pos)
        if found is None:
            return 0
        chunk, offset = found
        n = min(len(target), len(chunk) - offset)
        target[:n] = memoryview(chunk)[offset : offset + n]
        self._pos += n
        return n
