"""Pipes: a container's stdin, stdout and stderr, fed and drained by one selector.

A real ``cat`` (or shell) stands in for the container: it gets the container's ends of the
pipes exactly as the spawner hands them over, and the test reads what the owner would see.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from containerlib.errors import SpecError
from containerlib.runtime.stdio import Pipes

MiB = 1 << 20


def _start(pipes: Pipes, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    stdin, stdout, stderr = pipes.theirs
    proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr)
    pipes.release_theirs()  # the "container" has its copies now, as after spawner.start
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _run(
    procs: list[subprocess.Popen[bytes]], argv: Sequence[str], input: bytes | None
) -> tuple[Pipes, subprocess.Popen[bytes]]:
    pipes = Pipes(input)
    proc = _start(pipes, argv)
    procs.append(proc)
    return pipes, proc


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "data",
    [b"hello\n", b"no newline at the end", bytes(range(256)) * 64, b"\0\0\xff\n\r\n"],
    ids=["line", "no-newline", "all-bytes", "binary"],
)
def test_input_round_trips_through_cat(procs: list[subprocess.Popen[bytes]], data: bytes) -> None:
    pipes, proc = _run(procs, ["cat"], data)
    assert pipes.pump() is True
    assert pipes.done
    assert proc.wait() == 0
    assert bytes(pipes.stdout) == data
    assert bytes(pipes.stderr) == b""
    pipes.close()


def test_ten_megabytes_each_way_do_not_deadlock(procs: list[subprocess.Popen[bytes]]) -> None:
    # cat writes back while it still reads: a pump that wrote all input before reading
    # would block once both pipe buffers are full.
    data = os.urandom(10 * MiB)
    pipes, proc = _run(procs, ["cat"], data)
    assert pipes.pump(time.monotonic() + 60) is True
    assert proc.wait() == 0
    assert len(pipes.stdout) == len(data)
    assert bytes(pipes.stdout) == data
    pipes.close()


def test_stdout_and_stderr_are_kept_apart(procs: list[subprocess.Popen[bytes]]) -> None:
    script = "cat; printf 'to stderr' >&2; printf 'more out'"
    pipes, proc = _run(procs, ["sh", "-c", script], b"in->out ")
    assert pipes.pump() is True
    assert proc.wait() == 0
    assert bytes(pipes.stdout) == b"in->out more out"
    assert bytes(pipes.stderr) == b"to stderr"
    pipes.close()


def test_no_input_gives_dev_null(procs: list[subprocess.Popen[bytes]]) -> None:
    pipes, proc = _run(procs, ["cat"], None)
    assert pipes.pump(time.monotonic() + 30) is True  # cat reads end of file at once
    assert proc.wait() == 0
    assert bytes(pipes.stdout) == b""
    pipes.close()


def test_no_input_stdin_is_dev_null_itself() -> None:
    pipes = Pipes(None)
    try:
        st = os.fstat(pipes.theirs[0])
        null = os.stat(os.devnull)
        assert (st.st_dev, st.st_ino, st.st_rdev) == (null.st_dev, null.st_ino, null.st_rdev)
    finally:
        pipes.close()


def test_empty_input_is_end_of_file_at_once(procs: list[subprocess.Popen[bytes]]) -> None:
    pipes, proc = _run(procs, ["sh", "-c", "cat; echo done"], b"")
    assert pipes.pump(time.monotonic() + 30) is True
    assert proc.wait() == 0
    assert bytes(pipes.stdout) == b"done\n"
    pipes.close()


def test_pump_returns_false_at_the_deadline_while_the_writer_lives(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    pipes, proc = _run(procs, ["sh", "-c", "echo started; exec sleep 30"], None)
    limit = time.monotonic() + 30
    while pipes.stdout != b"started\n" and time.monotonic() < limit:
        pipes.pump(time.monotonic() + 0.05)
    t0 = time.monotonic()
    assert pipes.pump(t0 + 0.3) is False
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 5
    assert bytes(pipes.stdout) == b"started\n"  # what came before the deadline is kept
    assert not pipes.done
    proc.kill()
    assert pipes.pump(time.monotonic() + 30) is True  # the kill closed the pipes
    pipes.close()


def test_pump_deadline_while_the_reader_does_not_read_stdin(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    # The container never reads its stdin: the pipe fills up and the pump must not block.
    pipes, proc = _run(procs, ["sleep", "30"], b"x" * (4 * MiB))
    assert pipes.pump(time.monotonic() + 0.3) is False
    proc.kill()
    assert pipes.pump(time.monotonic() + 30) is True
    pipes.close()


def test_reader_that_exits_early_does_not_raise(procs: list[subprocess.Popen[bytes]]) -> None:
    # head reads a little and exits: writing the rest of the input meets EPIPE.
    pipes, proc = _run(procs, ["head", "-c", "5"], b"y" * (8 * MiB))
    assert pipes.pump(time.monotonic() + 30) is True
    assert proc.wait() == 0
    assert bytes(pipes.stdout) == b"yyyyy"
    pipes.close()


def test_reader_that_never_reads_and_exits_does_not_raise(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    pipes, proc = _run(procs, ["true"], b"z" * (2 * MiB))
    assert pipes.pump(time.monotonic() + 30) is True
    assert proc.wait() == 0
    pipes.close()


@pytest.mark.parametrize("input", [None, b"", b"data"], ids=["none", "empty", "data"])
def test_close_leaves_no_descriptor_open(input: bytes | None) -> None:
    before = _open_fds()
    pipes = Pipes(input)
    assert _open_fds() != before
    pipes.close()
    assert _open_fds() == before


def test_release_then_close_leaves_no_descriptor_open(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    before = _open_fds()
    pipes, proc = _run(procs, ["cat"], b"abc")
    pipes.pump(time.monotonic() + 30)
    proc.wait()
    pipes.close()
    assert _open_fds() == before


def test_theirs_are_not_inherited_by_other_children() -> None:
    # The container's ends are close-on-exec: another child of the owner must not keep a
    # pipe open, or the owner would never see end of file.
    pipes = Pipes(b"data")
    try:
        for fd in pipes.theirs:
            assert os.get_inheritable(fd) is False
    finally:
        pipes.close()


def test_output_goes_to_the_log(procs: list[subprocess.Popen[bytes]]) -> None:
    pipes, proc = _run(procs, ["sh", "-c", "echo out; echo err >&2; printf 'no end'"], None)
    assert not pipes.log.closed
    assert pipes.pump(time.monotonic() + 30) is True
    assert proc.wait() == 0
    assert pipes.log.closed  # both outputs ended
    assert pipes.stdout == b"out\nno end"
    assert pipes.stderr == b"err\n"
    assert pipes.log.read(stderr=False, tail=1) == b"no end"
    assert pipes.log.read(stdout=False) == b"err\n"
    pipes.close()


def test_interactive_stdin_is_written_by_the_caller(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    pipes = Pipes(interactive=True)
    proc = _start(pipes, ["sh", "-c", "echo a; echo b >&2; cat"])
    procs.append(proc)
    pump = threading.Thread(target=pipes.pump)
    pump.start()
    try:
        with pipes.log.reader("stdout") as out:
            assert out.readline() == b"a\n"  # the container runs while we hold its stdin
            with pipes.take_stdin() as stdin:
                stdin.write(b"typed\nno newline")
            assert out.read() == b"typed\nno newline"  # closing stdin ended cat
    finally:
        pump.join()
    assert proc.wait() == 0
    assert pipes.stdout == b"a\ntyped\nno newline"
    assert pipes.stderr == b"b\n"
    assert pipes.log.closed
    pipes.close()


def test_log_follows_the_container_in_order(procs: list[subprocess.Popen[bytes]]) -> None:
    # Each line waits for one from stdin, so the order of stdout and stderr is known.
    script = "echo one; read x; echo two >&2; read x; echo three"
    pipes = Pipes(interactive=True)
    procs.append(_start(pipes, ["sh", "-c", script]))
    stdin = pipes.take_stdin()
    pump = threading.Thread(target=pipes.pump)
    pump.start()
    got = []
    try:
        for piece in pipes.log.follow():
            got.append(piece)
            if not stdin.closed:
                stdin.write(b"go\n")
                stdin.flush()
            if len(got) == 2:
                stdin.close()
    finally:
        stdin.close()
        pump.join()
    assert b"".join(got) == b"one\ntwo\nthree\n"
    assert pipes.log.read(stdout=False) == b"two\n"
    pipes.close()


def test_input_and_interactive_together_are_refused() -> None:
    before = _open_fds()
    with pytest.raises(SpecError, match=r"input.*interactive"):
        Pipes(b"data", interactive=True)
    assert _open_fds() == before


@pytest.mark.parametrize("input", [None, b"data"], ids=["none", "data"])
def test_take_stdin_needs_interactive(input: bytes | None) -> None:
    pipes = Pipes(input)
    try:
        with pytest.raises(ValueError, match="interactive=True"):
            pipes.take_stdin()
    finally:
        pipes.close()


def test_take_stdin_once() -> None:
    pipes = Pipes(interactive=True)
    try:
        stdin = pipes.take_stdin()
        with pytest.raises(ValueError, match="taken already"):
            pipes.take_stdin()
        stdin.close()
    finally:
        pipes.close()


@pytest.mark.parametrize("take", [False, True], ids=["kept", "taken"])
def test_interactive_close_leaves_no_descriptor_open(take: bool) -> None:
    before = _open_fds()
    pipes = Pipes(interactive=True)
    assert os.get_inheritable(pipes.theirs[0]) is False
    stdin = pipes.take_stdin() if take else None
    pipes.close()
    assert pipes.log.closed
    if stdin is not None:
        assert _open_fds() != before  # the caller owns it now
        stdin.close()
    assert _open_fds() == before
