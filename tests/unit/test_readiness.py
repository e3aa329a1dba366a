"""Readiness conditions and waits (containerlib.readiness) without a container: the
conditions' checks and descriptions, and wait_for driven by a fake container handle whose
output, exit and answers the test scripts. The real thing is in
tests/integration/test_readiness.py."""

from __future__ import annotations

import os
import pickle
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from containerlib import ContainerlibError
from containerlib.container import Result
from containerlib.errors import ContainerNotReady, ContainerNotRunning, SpecError
from containerlib.readiness import (
    AllOf,
    AnyOf,
    Check,
    Exec,
    File,
    Http,
    Log,
    Port,
    all_of,
    any_of,
    wait_for,
    wait_for_exec,
    wait_for_file,
    wait_for_http,
    wait_for_log,
    wait_for_port,
)

#: The far ends of the fakes' connections, closed after each test.
PEERS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_peers() -> Iterator[None]:
    yield
    while PEERS:
        PEERS.pop().close()


def _connection(answer: bytes) -> socket.socket:
    """Our end of a connection whose server answers ``answer`` and then closes its side
    (it goes on reading what is sent, as a server does)."""
    ours, theirs = socket.socketpair()
    theirs.sendall(answer)
    theirs.shutdown(socket.SHUT_WR)
    PEERS.append(theirs)
    return ours


class FakeBox:
    """A container handle as wait_for uses it. ``script`` is a list of steps, one taken
    at each look at whether it has ended: a step appends output (``("stdout", b"...")``),
    calls a function (``("call", f)``) or ends it (``("exit", code)``). ``answers`` are
    what connect() gives, in turn."""

    id = "0123456789abcdef"
    pid = None

    def __init__(self, *script: tuple[str, Any], answers: list[Any] | None = None) -> None:
        self.script = list(script)
        self.out = {"stdout": b"", "stderr": b""}
        self.exit_code: int | None = None
        self.answers = answers or []
        self.looks = 0
        self.whole_reads = 0
        self.execs: list[list[str]] = []
        self.exec_results: list[Result] = []

    def wait(self, timeout: float | None = None) -> Result:
        assert timeout == 0, "a wait must only look, never block"
        self.looks += 1
        if self.script and self.exit_code is None:
            kind, value = self.script.pop(0)
            if kind == "exit":
                self.exit_code = value
            elif kind == "call":
                value()
            else:
                self.out[kind] += value
        if self.exit_code is None:
            raise TimeoutError("still runs")
        return Result(
            exit_code=self.exit_code, stdout=self.out["stdout"], stderr=self.out["stderr"]
        )

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | None = None) -> bytes:
        if tail is not None:
            lines = (self.out["stdout"] + self.out["stderr"]).splitlines(keepends=True)
            return b"".join(lines[-tail:])
        self.whole_reads += 1
        return (self.out["stdout"] if stdout else b"") + (self.out["stderr"] if stderr else b"")

    def connect(self, port: int, timeout: float | None = 10.0) -> socket.socket:
        answer = self.answers.pop(0) if self.answers else ConnectionRefusedError(111, "refused")
        if isinstance(answer, BaseException):
            raise answer
        return _connection(answer)

    def exec(self, cmd: list[str], *, timeout: float | None = None) -> Result:
        if self.exit_code is not None:
            raise ContainerNotRunning(self.id, "exec")
        self.execs.append(cmd)
        return self.exec_results.pop(0)


def _fails(box: FakeBox, condition: Any, **kwargs: Any) -> ContainerNotReady:
    with pytest.raises(ContainerNotReady) as caught:
        wait_for(box, condition, **{"timeout": 0.05, "interval": 0.01, **kwargs})  # type: ignore[arg-type]
    return caught.value


# -- conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Log("(unclosed"), "pattern"),
        (lambda: Log(""), "pattern"),
        (lambda: Log(42), "pattern"),
        (lambda: Log("x", stream="stdin"), "stream"),
        (lambda: Log("x", count=0), "count"),
        (lambda: Log("x", count=True), "count"),
        (lambda: Port(0), "port"),
        (lambda: Port(65536), "port"),
        (lambda: Port("80"), "port"),
        (lambda: Port(True), "port"),
        (lambda: Http(80, "health"), "path"),
        (lambda: Http(80, "/a b"), "path"),
        (lambda: Http(80, "/\r\nX-Evil: 1"), "path"),
        (lambda: Http(80, "/", status=99), "status"),
        (lambda: Exec("pg_isready"), "cmd"),
        (lambda: Exec([]), "cmd"),
        (lambda: Exec(["a", 1]), "cmd"),
        (lambda: File("tmp/ready"), "path"),
        (lambda: File("/a\0b"), "path"),
        (all_of, "conditions"),
        (lambda: any_of(Port(80), "ready"), "conditions"),
        (lambda: Check("ready"), "check"),
    ],
)
def test_a_bad_condition_is_a_spec_error_naming_the_field(make: Any, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        make()
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"interval": 0}, "interval"),
        ({"interval": -0.1}, "interval"),
    ],
)
def test_a_bad_timeout_or_interval_is_a_spec_error_before_anything_is_tried(
    kwargs: dict[str, Any], field: str
) -> None:
    box = FakeBox()
    with pytest.raises(SpecError) as caught:
        wait_for(box, Port(80), **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert box.looks == 0


def test_something_else_than_a_condition_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        wait_for(FakeBox(), "port 80")  # type: ignore[arg-type]
    assert caught.value.field == "condition"


def test_conditions_describe_themselves() -> None:
    assert str(Log("ready")) == "a line matching 'ready' on stdout or stderr"
    assert str(Log(b"ready", stream="stderr", count=2)) == "2 lines matching 'ready' on stderr"
    assert str(Port(80)) == "port 80 to accept a connection"
    assert str(Http(80, "/health", 204)) == "GET /health on port 80 to answer 204"
    assert str(Exec(["pg_isready"])) == "['pg_isready'] to exit with code 0"
    assert str(File("/tmp/x")) == "file '/tmp/x' to exist"
    either = Port(1) | Port(2)
    assert str(Log("a") & either) == (
        "a line matching 'a' on stdout or stderr and"
        " (port 1 to accept a connection or port 2 to accept a connection)"
    )


def test_composition_flattens_and_keeps_the_order() -> None:
    a, b, c = Port(1), Port(2), Port(3)
    assert a & b & c == AllOf((a, b, c)) == all_of(a, all_of(b, c))
    assert a | b | c == AnyOf((a, b, c)) == any_of(any_of(a, b), c)
    assert (a & b) | c == AnyOf((AllOf((a, b)), c))
    with pytest.raises(TypeError):
        _ = a & "ready"  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = a | 80  # type: ignore[operator]


def test_conditions_are_values_that_pickle_and_hash() -> None:
    condition = Log(re.compile(rb"\d+ ready", re.I), count=2) & (Http(80) | File("/r"))
    again = pickle.loads(pickle.dumps(condition))
    assert again == condition
    assert hash(again) == hash(condition)
    assert Log("x") == Log(re.compile("x"))


# -- the log condition ------------------------------------------------------------------------


def test_a_log_wait_reads_the_output_as_it_comes_and_counts_lines() -> None:
    box = FakeBox(
        ("stdout", b"boot\nrea"),
        ("stdout", b"dy 1\n"),
        ("stderr", b"ready 2\n"),
        ("stdout", b"never looked at\n"),
    )
    wait_for_log(box, r"^ready \d$", count=2, timeout=60, interval=0.001)
    assert box.looks == 3  # met as soon as the second line came, not later


def test_a_log_wait_on_one_stream_ignores_the_other() -> None:
    box = FakeBox(("stderr", b"ready\n"), ("stdout", b"ready\n"))
    wait_for_log(box, "ready", stream="stdout", timeout=60, interval=0.001)
    assert box.looks == 2


def test_a_line_being_written_counts_and_a_terminal_line_end_is_one() -> None:
    wait_for_log(FakeBox(("stdout", b"ok\r\nprompt> ")), "^prompt> $", timeout=60)
    wait_for_log(FakeBox(("stdout", b"ok\r\n")), "^ok$", timeout=60)


def test_bytes_and_text_patterns() -> None:
    out = ("stdout", "caf\u00e9 open\n".encode() + b"\xff\xfe binary\n")
    wait_for_log(FakeBox(out), "café open$", timeout=60)
    wait_for_log(FakeBox(out), b"^\xff\xfe", timeout=60)
    wait_for_log(FakeBox(out), re.compile("CAFÉ", re.I), timeout=60)


@given(st.lists(st.binary(max_size=12), max_size=12), st.integers(1, 4))
def test_the_count_does_not_depend_on_how_the_output_is_cut(
    pieces: list[bytes], count: int
) -> None:
    whole = b"".join(pieces)
    expected = sum(1 for line in whole.split(b"\n") if b"x" in line.removesuffix(b"\r"))
    box = FakeBox(*[("stdout", p) for p in pieces], ("exit", 0))
    condition = Log(b"x", count=count)
    if expected >= count:
        wait_for(box, condition, timeout=60, interval=0.0001)
    else:
        assert _fails(box, condition, timeout=60, interval=0.0001).exit_code == 0


# -- waiting: exits, timeouts, what the error says ----------------------------------------------


def test_a_container_that_exits_first_fails_at_the_next_look() -> None:
    box = FakeBox(("stderr", b"no config\n"), ("exit", 2))
    error = _fails(box, Port(80), timeout=600)
    assert box.looks == 2
    assert error.exit_code == 2
    assert error.logs == b"no config\n"
    assert error.condition == Port(80)
    text = str(error)
    assert text.startswith("container 0123456789ab exited with code 2 after ")
    assert "before it was ready: waited for port 80 to accept a connection" in text
    assert "port 80 to accept a connection: refused" in text
    assert text.endswith("its last line of output:\n    no config")


def test_output_written_before_the_exit_is_searched_before_failing() -> None:
    box = FakeBox(("stdout", b"done\n"), ("exit", 0))
    wait_for_log(box, "done", timeout=600, interval=0.001)


def test_a_timeout_names_only_the_parts_not_met_and_why() -> None:
    lines = b"".join(b"line %d\n" % i for i in range(30))
    box = FakeBox(("stdout", lines + b"ready\n"))
    error = _fails(box, Log("ready") & Port(80) & Log("^line", count=40))
    assert isinstance(error, TimeoutError)
    assert isinstance(error, ContainerlibError)
    assert error.exit_code is None
    assert error.waited >= 0.05
    assert error.condition == Port(80) & Log("^line", count=40)
    assert error.reasons == (
        "port 80 to accept a connection: refused",
        "40 lines matching '^line' on stdout or stderr: 30 of 40 lines matched so far",
    )
    assert error.logs.splitlines() == [b"line %d" % i for i in range(11, 30)] + [b"ready"]
    text = str(error)
    assert text.startswith("container 0123456789ab is not ready after ")
    assert "line 10" not in text
    assert "    line 29\n    ready" in text
    again = pickle.loads(pickle.dumps(error))
    assert (again.condition, again.logs, again.reasons, str(again)) == (
        error.condition,
        error.logs,
        error.reasons,
        str(error),
    )


def test_any_of_is_met_by_any_part_and_names_all_when_none_is() -> None:
    box = FakeBox(answers=[ConnectionRefusedError(111, "refused"), b"HTTP/1.0 200 OK\r\n\r\n"])
    wait_for(box, Port(80) | Http(81), timeout=60, interval=0.001)
    error = _fails(FakeBox(("stdout", b"hi\n")), Port(80) | Log("ready"))
    assert error.condition == Port(80) | Log("ready")
    assert len(error.reasons) == 2


def test_a_part_of_all_of_met_once_stays_met() -> None:
    # The port accepts once only; the log line comes later.
    box = FakeBox(("stdout", b""), ("stdout", b""), ("stdout", b"ready\n"), answers=[b""])
    wait_for(box, Port(80) & Log("ready"), timeout=60, interval=0.001)


def test_no_output_says_so() -> None:
    assert str(_fails(FakeBox(), Port(80))).endswith("\nit wrote no output")


# -- http and exec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", "it answered 503 Service Unavailable"),
        (b"HTTP/1.0 404\r\n", "it answered 404"),
        (b"", "the connection was closed with no answer"),
        (b"SSH-2.0-OpenSSH\r\n", "the answer is not HTTP: b'SSH-2.0-OpenSSH\\r\\n'"),
    ],
)
def test_an_http_answer_that_is_not_the_status_says_what_it_was(answer: bytes, why: str) -> None:
    box = FakeBox(answers=[answer] * 1000)
    error = _fails(box, Http(80))
    assert error.reasons == (f"GET / on port 80 to answer 200: {why}",)


def test_an_http_status_is_read_even_when_it_comes_in_pieces() -> None:
    ours, theirs = socket.socketpair()
    PEERS.append(theirs)
    box = FakeBox()
    box.connect = lambda port, timeout=None: ours  # type: ignore[method-assign]
    theirs.sendall(b"HTTP/1.1 2")
    theirs.sendall(b"04 No Content\r\n\r\n")
    wait_for_http(box, 80, "/x?y=1", status=204, timeout=60)
    assert ours.fileno() == -1  # closed after the answer
    request = theirs.recv(4096)
    assert request.startswith(b"GET /x?y=1 HTTP/1.0\r\nHost: localhost:80\r\n")
    assert request.endswith(b"\r\n\r\n")


def test_an_exec_wait_runs_the_command_until_it_succeeds() -> None:
    box = FakeBox()
    box.exec_results = [
        Result(exit_code=1, stdout=b"", stderr=b"no\n"),
        Result(exit_code=0, stdout=b"", stderr=b""),
    ]
    wait_for_exec(box, ["pg_isready", "-q"], timeout=60, interval=0.001)
    assert box.execs == [["pg_isready", "-q"], ["pg_isready", "-q"]]
    box = FakeBox()
    box.exec_results = [Result(exit_code=3, stdout=b"", stderr=b"starting\nnot yet\n")] * 1000
    error = _fails(box, Exec(["check"]))
    assert error.reasons == ("['check'] to exit with code 0: exit code 3: not yet",)


def test_a_port_wait_that_the_container_refuses_gives_up() -> None:
    error = _fails(FakeBox(), Port(5432))
    assert error.reasons == ("port 5432 to accept a connection: refused",)
    wait_for_port(FakeBox(answers=[b""]), 5432, timeout=60)


# -- files: looked up through /proc/PID/root (here, this process's own root) ------------------


def test_a_file_wait_is_met_once_the_file_exists(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    box = FakeBox(("stdout", b""), ("call", marker.touch))
    box.pid = os.getpid()  # type: ignore[assignment]
    wait_for_file(box, str(marker), timeout=60, interval=0.001)
    assert box.looks == 2


def test_a_dangling_or_looping_link_is_no_file(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for name in ("dangling", "loop", "nowhere/below"):
        box = FakeBox()
        box.pid = os.getpid()  # type: ignore[assignment]
        error = _fails(box, File(f"{tmp_path}/{name}"))
        assert error.reasons == (f"file '{tmp_path}/{name}' to exist: it does not exist",)


def test_a_file_wait_on_a_container_with_no_process_says_it_does_not_run() -> None:
    error = _fails(FakeBox(), File("/tmp"))
    assert error.reasons == ("file '/tmp' to exist: the container does not run",)


# -- a check of your own ----------------------------------------------------------------------


def test_a_check_is_retried_until_it_returns_true_and_exceptions_mean_not_yet() -> None:
    tries: list[object] = []

    def replies(box: object) -> object:
        tries.append(box)
        if len(tries) == 1:
            raise ConnectionResetError("reset by peer")
        return len(tries) == 3

    box = FakeBox()
    wait_for(box, Check(replies), timeout=60, interval=0.001)
    assert tries == [box, box, box]


def test_a_check_that_never_passes_says_what_it_last_did() -> None:
    assert _fails(FakeBox(), Check(lambda box: 0, name="the cache warm")).reasons == (
        "the cache warm to return true: it returned 0",
    )

    def broken(box: object) -> bool:
        raise KeyError("x")

    assert _fails(FakeBox(), Check(broken)).reasons == ("broken() to return true: KeyError: 'x'",)
