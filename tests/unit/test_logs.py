"""Container logs: CRI log files written and read back, and output kept in memory.

The expectations are written out by hand from the CRI log format and from what
``docker logs`` prints, not computed with the module's own helpers.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from containerlib.errors import SpecError
from containerlib.runtime.logs import (
    LogWriter,
    MemoryLog,
    Record,
    follow_log,
    format_time,
    parse,
    parse_time,
    read_log,
    records_of,
    select,
)

T0 = 1_796_074_201.0  # 2026-11-30T21:30:01Z
STAMP0 = "2026-11-30T21:30:01"

# Bytes with many newlines, spaces and tag-like text, so that lines split in every way.
_pieces = st.lists(
    st.sampled_from([b"a", b"\n", b" ", b"F ", b"P ", b"\xff\x00", b"\r", b"stdout "]),
    max_size=12,
).map(b"".join)
_chunks = st.lists(
    st.tuples(st.sampled_from(["stdout", "stderr"]), _pieces | st.binary(max_size=40)),
    max_size=30,
)


def _per_stream(chunks: list[tuple[str, bytes]], stream: str) -> bytes:
    return b"".join(data for name, data in chunks if name == stream)


@settings(max_examples=60, deadline=None)
@given(chunks=_chunks)
def test_file_round_trip_gives_each_stream_exactly(chunks: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ctr.log")
        with LogWriter(path) as writer:
            for i, (stream, data) in enumerate(chunks):
                writer.write(stream, data, when=T0 + i)
        assert read_log(path, stderr=False) == _per_stream(chunks, "stdout")
        assert read_log(path, stdout=False) == _per_stream(chunks, "stderr")
        # Both streams: the chunks as they were written, interleaved.
        assert read_log(path) == b"".join(data for _, data in chunks)


@settings(max_examples=60, deadline=None)
@given(chunks=_chunks)
def test_memory_round_trip_gives_each_stream_exactly(chunks: list[tuple[str, bytes]]) -> None:
    log = MemoryLog()
    for i, (stream, data) in enumerate(chunks):
        log.append(stream, data, when=T0 + i)
    log.close()
    assert log.read(stderr=False) == log.stdout == _per_stream(chunks, "stdout")
    assert log.read(stdout=False) == log.stderr == _per_stream(chunks, "stderr")
    assert log.read() == b"".join(data for _, data in chunks)


@settings(max_examples=200, deadline=None)
@given(when=st.floats(min_value=1e9, max_value=4e9))
def test_times_round_trip_through_the_file_text(when: float) -> None:
    records, rest = parse(Record(when, "stdout", b"x", False).encode())
    assert rest == b""
    assert records == [Record(when, "stdout", b"x", False)]


def test_record_line_is_the_cri_format() -> None:
    assert Record(T0 + 0.125, "stderr", b"a b", True).encode() == (
        f"{STAMP0}.125000000Z stderr P a b\n".encode()
    )
    # Near 1970 a float holds nanoseconds; in 2026 it holds about a quarter microsecond.
    assert format_time(0.123456789) == "1970-01-01T00:00:00.123456789Z"
    assert format_time(T0) == f"{STAMP0}.000000000Z"


def test_records_of_splits_at_newlines() -> None:
    assert records_of("stdout", b"one\n\ntwo\nthr", 5.0) == [
        Record(5.0, "stdout", b"one", False),
        Record(5.0, "stdout", b"", False),
        Record(5.0, "stdout", b"two", False),
        Record(5.0, "stdout", b"thr", True),
    ]
    assert records_of("stderr", b"\n", 1.0) == [Record(1.0, "stderr", b"", False)]
    assert records_of("stderr", b"", 1.0) == []


def test_records_of_names_a_bad_stream() -> None:
    with pytest.raises(SpecError, match=r"stream.*'stdin'"):
        records_of("stdin", b"x", 0.0)


def test_parse_reads_what_containerd_writes() -> None:
    text = (
        b"2016-10-06T00:17:09.669794202Z stdout F The content of the log entry 1\n"
        b"2016-10-06T00:17:09.669794203Z stdout P First line of log entry 2\n"
        b"2016-10-06T00:17:09.669794203Z stdout P Second line of the log entry 2\n"
        b"2016-10-06T00:17:10.113242941Z stderr F Last line of the log entry 2\n"
        b"2016-10-06T00:17:10Z stdout F \n"
        b"2016-10-06T01:17:10.5+01:00 stdout F offset\n"
        b"2016-10-06T00:17:11.1Z stdout F:x more tags\n"
        b"2016-10-06T00:17:12.0000"
    )
    records, rest = parse(text)
    assert [(r.stream, r.data, r.partial) for r in records] == [
        ("stdout", b"The content of the log entry 1", False),
        ("stdout", b"First line of log entry 2", True),
        ("stdout", b"Second line of the log entry 2", True),
        ("stderr", b"Last line of the log entry 2", False),
        ("stdout", b"", False),
        ("stdout", b"offset", False),
        ("stdout", b"more tags", False),
    ]
    assert records[0].time == 1475713029.669794202
    assert [r.time for r in records[4:7]] == [1475713030.0, 1475713030.5, 1475713031.1]
    assert rest == b"2016-10-06T00:17:12.0000"


@pytest.mark.parametrize(
    "line",
    [
        b"2016-10-06T00:17:09Z stdin F wrong stream",
        b"2016-10-06T00:17:09Z stdout X unknown tag",
        b"2016-13-06T00:17:09Z stdout F month 13",
        b"2016-10-06 00:17:09Z stdout F no T",
        b"2016-10-06T00:17:09.1234567890Z stdout F ten digits",
        b"2016-10-06T00:17:09 stdout F no zone",
        b"2016-10-06T00:17:09Z stdout",
        b"garbage",
        b"",
    ],
)
def test_a_corrupt_line_is_skipped(line: bytes) -> None:
    good = b"2016-10-06T00:17:09Z stdout F good\n"
    records, rest = parse(good + line + b"\n" + good)
    assert [r.data for r in records] == [b"good", b"good"]
    assert rest == b""


def test_parse_time_and_its_error() -> None:
    assert parse_time("1970-01-01T00:00:01.5Z") == 1.5
    with pytest.raises(SpecError, match=r"RFC 3339.*'yesterday'"):
        parse_time("yesterday")


# stdout: "a\n", "b" + "c\n" (a line in two records), stderr: "x\n", "y" (unfinished)
_MIXED = [
    Record(10.0, "stdout", b"a", False),
    Record(11.0, "stdout", b"b", True),
    Record(12.0, "stderr", b"x", False),
    Record(13.0, "stdout", b"c", False),
    Record(14.0, "stderr", b"y", True),
]


def _stamp(when: float) -> bytes:
    return format_time(when).encode() + b" "


def test_select_interleaves_streams_as_written() -> None:
    assert select(_MIXED) == b"a\nbx\nc\ny"
    assert select(_MIXED, stderr=False) == b"a\nbc\n"
    assert select(_MIXED, stdout=False) == b"x\ny"
    assert select(_MIXED, stdout=False, stderr=False) == b""


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (0, b""),
        (1, b"y"),  # the unfinished stderr line is the last line
        (2, b"bc\ny"),  # then the stdout line that ended at 13
        (3, b"bx\nc\ny"),
        (4, b"a\nbx\nc\ny"),
        (100, b"a\nbx\nc\ny"),
    ],
)
def test_tail_counts_lines_by_their_end(tail: int, expected: bytes) -> None:
    assert select(_MIXED, tail=tail) == expected


def test_tail_of_one_stream() -> None:
    assert select(_MIXED, stderr=False, tail=1) == b"bc\n"
    assert select(_MIXED, stdout=False, tail=1) == b"y"


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (11.0, None, b"bx\nc\ny"),  # since is inclusive
        (11.5, None, b"x\nc\ny"),  # the line's first part is before since
        (None, 12.0, b"a\nb"),  # until is exclusive
        (11.0, 13.0, b"bx\n"),
        (20.0, None, b""),
    ],
)
def test_since_and_until(since: float | None, until: float | None, expected: bytes) -> None:
    assert select(_MIXED, since=since, until=until) == expected


def test_timestamps_go_before_each_line_only() -> None:
    assert select(_MIXED, timestamps=True) == (
        _stamp(10) + b"a\n" + _stamp(11) + b"b" + _stamp(12) + b"x\nc\n" + _stamp(14) + b"y"
    )
    assert select(_MIXED, timestamps=True, stderr=False) == _stamp(10) + b"a\n" + _stamp(11) + (
        b"bc\n"
    )
    # A line cut by since gets the time of its first record that is shown.
    assert select(_MIXED, timestamps=True, since=12.5, stderr=False) == _stamp(13) + b"c\n"
    assert select(_MIXED, timestamps=True, tail=1) == _stamp(14) + b"y"
    assert format_time(14.0) == "1970-01-01T00:00:14.000000000Z"


@pytest.mark.parametrize("tail", [-1, 1.5, True])
def test_bad_tail_is_named(tail: object) -> None:
    with pytest.raises(SpecError, match="tail"):
        select(_MIXED, tail=tail)  # type: ignore[arg-type]


def test_since_must_be_a_number() -> None:
    with pytest.raises(SpecError, match=r"since.*'10m'"):
        select(_MIXED, since="10m")  # type: ignore[arg-type]


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert read_log(tmp_path / "none.log") == b""


def test_file_is_private_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    with LogWriter(path) as writer:
        writer.write("stdout", b"one\ntw", when=T0)
    with LogWriter(path) as writer:
        writer.write("stdout", b"o\n", when=T0 + 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        path.read_bytes()
        == (
            f"{STAMP0}.000000000Z stdout F one\n"
            f"{STAMP0}.000000000Z stdout P tw\n"
            "2026-11-30T21:30:02.000000000Z stdout F o\n"
        ).encode()
    )
    assert read_log(path, tail=1, timestamps=True) == f"{STAMP0}.000000000Z two\n".encode()


def test_write_after_close_is_an_error(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "ctr.log")
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match=r"ctr.log.*closed"):
        writer.write("stdout", b"x")


def test_a_corrupt_line_in_a_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    with LogWriter(path) as writer:
        writer.write("stdout", b"before\n", when=T0)
    with path.open("ab") as f:
        f.write(b"this is no record\n")
    with LogWriter(path) as writer:
        writer.write("stderr", b"after\n", when=T0)
    assert read_log(path) == b"before\nafter\n"


def test_a_line_being_written_is_not_read_yet(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_bytes(b"1970-01-01T00:00:01Z stdout F done\n1970-01-01T00:00:02Z stdout F hal")
    assert read_log(path) == b"done\n"


def _line(n: int) -> bytes:
    return f"line{n:02d}\n".encode()


# A record of "lineNN\n" takes 30 + 10 + 7 = 47 bytes: two fit in 100.
def test_rotation_keeps_one_older_file(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    with LogWriter(path, max_bytes=100) as writer:
        for n in range(1, 6):
            writer.write("stdout", _line(n), when=T0)
    assert path.stat().st_size == 47
    assert Path(f"{path}.1").stat().st_size == 94
    assert stat.S_IMODE(Path(f"{path}.1").stat().st_mode) == 0o600
    assert not Path(f"{path}.2").exists()
    assert read_log(path) == _line(3) + _line(4) + _line(5)
    assert read_log(path, tail=2) == _line(4) + _line(5)


def test_a_record_bigger_than_the_limit_still_goes_in(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    with LogWriter(path, max_bytes=10) as writer:
        writer.write("stdout", b"x" * 50 + b"\n", when=T0)
        writer.write("stdout", b"y\n", when=T0)
    assert read_log(path) == b"x" * 50 + b"\ny\n"
    assert Path(f"{path}.1").exists()


@pytest.mark.parametrize("max_bytes", [0, -5])
def test_bad_max_bytes_is_named(tmp_path: Path, max_bytes: int) -> None:
    with pytest.raises(SpecError, match="max_bytes"):
        LogWriter(tmp_path / "ctr.log", max_bytes=max_bytes)
    assert not (tmp_path / "ctr.log").exists()


def test_follow_yields_then_follows_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    done = threading.Event()
    with LogWriter(path, max_bytes=100) as writer:
        writer.write("stdout", _line(1), when=T0)
        lines = follow_log(path, stop=done.is_set, poll=0.01)
        assert next(lines) == _line(1)
        writer.write("stdout", _line(2), when=T0)
        writer.write("stdout", _line(3), when=T0)  # rotates before line 2 was read
        assert next(lines) == _line(2) + _line(3)
        writer.write("stdout", b"part", when=T0)
        assert next(lines) == b"part"  # a partial line is seen at once
        writer.write("stdout", b"ial\n" + _line(5), when=T0)  # rotates again
        assert next(lines) == b"ial\n" + _line(5)
        writer.write("stdout", _line(6), when=T0)
    done.set()
    assert list(lines) == [_line(6)]  # written before stop(): not lost


def test_follow_waits_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    done = threading.Event()
    lines = follow_log(path, stop=done.is_set, poll=0.01, timestamps=True)
    with LogWriter(path) as writer:
        writer.write("stderr", b"wai", when=T0)
        first = next(lines)
        writer.write("stderr", b"ted\n", when=T0 + 1)
    done.set()
    assert first + b"".join(lines) == f"{STAMP0}.000000000Z waited\n".encode()


def test_follow_keeps_filters_and_ends_at_until(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    with LogWriter(path) as writer:
        writer.write("stdout", b"early\n", when=100.0)
        writer.write("stderr", b"err\n", when=101.0)
        writer.write("stdout", b"late\n", when=200.0)
    # until is long past: following ends by itself, though stop() never says so.
    lines = follow_log(path, stop=lambda: False, poll=0.01, stderr=False, until=150.0)
    assert list(lines) == [b"early\n"]
    # tail applies to what is there at the start.
    assert list(follow_log(path, stop=lambda: True, tail=1, stdout=False)) == [b"err\n"]


def test_follow_with_a_writer_thread_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    done = threading.Event()
    chunks = [
        (("stdout", "stderr")[n % 3 == 0], f"{n}:{'x' * (n % 7)}\n{n}".encode())
        for n in range(2000)
    ]

    def write() -> None:
        with LogWriter(path) as writer:
            for stream, data in chunks:
                writer.write(stream, data)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        got = b"".join(follow_log(path, stop=done.is_set, poll=0.001, stderr=False))
    finally:
        thread.join()
    assert got == _per_stream(chunks, "stdout")


def test_follow_log_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="poll"):
        follow_log(tmp_path / "x", stop=lambda: True, poll=0)
    with pytest.raises(SpecError, match="tail"):
        follow_log(tmp_path / "x", stop=lambda: True, tail=-1)


def test_memory_log_filters_as_select() -> None:
    log = MemoryLog()
    log.append("stdout", b"a\nb", when=10.0)
    log.append("stderr", b"x\n", when=12.0)
    log.append("stdout", b"c\n", when=13.0)
    log.append("stderr", b"y", when=14.0)
    assert log.read() == b"a\nbx\nc\ny"
    assert log.read(tail=2) == b"bc\ny"
    assert log.read(since=12.0, until=14.0) == b"x\nc\n"
    assert log.read(timestamps=True, stdout=False) == _stamp(12) + b"x\n" + _stamp(14) + b"y"
    assert log.stdout == b"a\nbc\n"
    assert log.stdout == b"a\nbc\n"  # asked twice: the same
    log.append("stdout", b"d", when=15.0)  # after the chunks were joined
    assert log.stdout == b"a\nbc\nd"
    assert log.read(stderr=False, timestamps=True) == (
        _stamp(10) + b"a\n" + _stamp(10) + b"bc\n" + _stamp(15) + b"d"
    )


def test_memory_log_rejects_bad_use() -> None:
    log = MemoryLog()
    with pytest.raises(SpecError, match="'stdin'"):
        log.append("stdin", b"x")
    with pytest.raises(SpecError, match="'tty'"):
        log.reader("tty")
    assert not log.closed
    log.close()
    assert log.closed
    with pytest.raises(ValueError, match="closed"):
        log.append("stdout", b"x")


@pytest.fixture
def threads() -> Iterator[list[threading.Thread]]:
    started: list[threading.Thread] = []
    yield started
    for thread in started:
        thread.join()


def _later(threads: list[threading.Thread], log: MemoryLog, steps: list[tuple[str, bytes]]) -> None:
    def run() -> None:
        for stream, data in steps:
            log.append(stream, data)
        log.close()

    thread = threading.Thread(target=run)
    threads.append(thread)
    thread.start()


def test_memory_follow_gets_everything_until_closed(threads: list[threading.Thread]) -> None:
    log = MemoryLog()
    log.append("stdout", b"first\n")
    log.append("stdout", b"second\n")
    following = log.follow(tail=1)
    assert next(following) == b"second\n"
    steps = [("stdout", f"{n}\n".encode()) for n in range(500)] + [("stderr", b"no\n")]
    _later(threads, log, steps)
    assert b"".join(following) == b"".join(f"{n}\n".encode() for n in range(500)) + b"no\n"


def test_memory_follow_ends_at_until() -> None:
    log = MemoryLog()
    log.append("stdout", b"old\n", when=1.0)
    assert list(log.follow(until=2.0)) == [b"old\n"]  # the log is still open


def test_reader_reads_lines_across_chunks(threads: list[threading.Thread]) -> None:
    log = MemoryLog()
    log.append("stdout", b"ab")
    log.append("stderr", b"not this\n")
    log.append("stdout", b"c\nde")
    with log.reader("stdout") as out:
        assert out.readline() == b"abc\n"
        _later(threads, log, [("stdout", b"f"), ("stdout", b"\nlast")])
        assert out.readline() == b"def\n"  # waited for the rest of the line
        assert out.readline() == b"last"  # the log closed: end of file
        assert out.readline() == b""


def test_reader_read_and_iteration_wait_for_close(threads: list[threading.Thread]) -> None:
    log = MemoryLog()
    with log.reader("stderr") as err, log.reader("stderr") as again:
        _later(threads, log, [("stderr", b"1\n2"), ("stderr", b"\n3\n")])
        assert err.read() == b"1\n2\n3\n"
        assert list(again) == [b"1\n", b"2\n", b"3\n"]


def test_reader_starts_at_the_beginning_after_joining() -> None:
    log = MemoryLog()
    for piece in (b"x" * 10000, b"y" * 10000, b"z\n"):
        log.append("stdout", piece)
    assert len(log.stdout) == 20002
    log.close()
    with log.reader("stdout") as out:
        assert out.read(3) == b"xxx"
        assert out.read() == b"x" * 9997 + b"y" * 10000 + b"z\n"


def test_a_rotated_file_that_is_the_file_itself_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    with LogWriter(path) as writer:
        writer.write("stdout", b"once\n", when=T0)
    os.link(path, f"{path}.1")
    assert read_log(path) == b"once\n"
