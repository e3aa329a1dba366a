"""Readiness waits (containerlib.readiness) on real busybox containers: servers that
become ready after a delay are waited for by each condition, attached and detached;
compositions; waits that give up, or whose container exits first, say why and carry the
container's last lines of output.

Nothing here asserts how fast something is. A container that exits first is waited for
with a 600 s timeout: the test ends only because the exit is noticed.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest

import containerlib
from containerlib import Container, Image
from containerlib.errors import ContainerNotReady, SpecError
from containerlib.readiness import (
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

pytestmark = pytest.mark.usefixtures("state")

PORT = 8080
#: Ready after a second: a marker file, a page served by httpd, and a line on stderr.
LATE_SERVER = (
    "echo starting; sleep 1; mkdir -p /srv/www; echo hello > /srv/www/index.html;"
    f" httpd -p {PORT} -h /srv/www; touch /tmp/ready; echo 'listening on {PORT}' >&2;"
    " exec sleep 600"
)
#: Far longer than any wait here takes: a wait that reaches it has missed what it awaited.
NEVER = 600.0


@pytest.fixture
def late_server(image: Image) -> Iterator[containerlib.RunningContainer]:
    with Container(image).start(["sh", "-c", LATE_SERVER]) as box:
        yield box


def test_each_condition_waits_for_a_server_that_is_ready_late(
    late_server: containerlib.RunningContainer,
) -> None:
    box = late_server
    wait_for_log(box, rf"^listening on {PORT}$", stream="stderr", timeout=NEVER)
    # The line was written once the server was up: so every other condition holds now.
    assert box.logs(stdout=False) == f"listening on {PORT}\n".encode()
    wait_for_port(box, PORT, timeout=NEVER)
    wait_for_http(box, PORT, "/index.html", timeout=NEVER)
    wait_for_exec(box, ["test", "-e", "/tmp/ready"], timeout=NEVER)
    wait_for_file(box, "/tmp/ready", timeout=NEVER)
    with box.connect(PORT) as sock:
        sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        assert b"hello" in b"".join(iter(lambda: sock.recv(4096), b""))


def test_a_port_wait_is_met_only_once_the_server_listens(
    late_server: containerlib.RunningContainer,
) -> None:
    wait_for_port(late_server, PORT, timeout=NEVER)
    # Ready means ready: the file the shell made before httpd started is there.
    assert late_server.exec(["cat", "/srv/www/index.html"]).stdout == b"hello\n"


def test_an_http_wait_compares_the_status(late_server: containerlib.RunningContainer) -> None:
    wait_for_http(late_server, PORT, "/index.html", timeout=NEVER)
    wait_for_http(late_server, PORT, "/missing", status=404, timeout=NEVER)
    with pytest.raises(ContainerNotReady) as caught:
        wait_for_http(late_server, PORT, "/missing", timeout=1)
    assert "it answered 404" in str(caught.value)
    assert caught.value.exit_code is None


def test_a_log_wait_counts_lines_and_searches_what_was_written_before(image: Image) -> None:
    cmd = ["sh", "-c", "echo ready; echo ready; echo 'not ready' >&2; exec sleep 600"]
    with Container(image).start(cmd) as box:
        wait_for_log(box, b"^ready$", count=2, stream="stdout", timeout=NEVER)
        # All written already: a new wait looks at the output from its start.
        wait_for_log(box, "ready", count=3, timeout=NEVER)
        with pytest.raises(ContainerNotReady) as caught:
            wait_for_log(box, "^ready$", count=3, timeout=0.5)
    assert "2 of 3 lines matched so far" in str(caught.value)


def test_a_line_not_ended_yet_is_searched_too(image: Image) -> None:
    with Container(image).start(["sh", "-c", "printf 'prompt> '; exec sleep 600"]) as box:
        wait_for_log(box, "prompt> $", timeout=NEVER)


def test_all_of_waits_for_every_part_and_any_of_for_one(
    late_server: containerlib.RunningContainer,
) -> None:
    box = late_server
    wait_for(
        box,
        all_of(Log("starting"), Port(PORT), File("/tmp/ready"), Http(PORT, "/index.html")),
        timeout=NEVER,
    )
    # Nothing listens on PORT + 1, nor will: any_of is met by its other part.
    wait_for(box, Port(PORT + 1) | File("/tmp/ready"), timeout=NEVER)
    wait_for(box, any_of(Exec(["false"]), Log("listening") & Port(PORT)), timeout=NEVER)


def test_a_check_of_ones_own_talks_to_the_container(
    late_server: containerlib.RunningContainer,
) -> None:
    def serves_hello(box: containerlib.RunningContainer) -> bool:
        with box.connect(PORT) as sock:
            sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            return b"hello" in b"".join(iter(lambda: sock.recv(4096), b""))

    wait_for(late_server, Check(serves_hello), timeout=NEVER)


def test_a_condition_never_met_gives_up_with_the_last_lines_of_output(image: Image) -> None:
    script = "for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exec sleep 600"
    with Container(image).start(["sh", "-c", script]) as box:
        wait_for_log(box, "oops", timeout=NEVER)
        with pytest.raises(ContainerNotReady) as caught:
            wait_for(box, Log("ready") & Port(PORT), timeout=1, interval=0.2)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.exit_code is None
    assert error.waited >= 1
    assert error.condition == Log("ready") & Port(PORT)
    lines = error.logs.decode().splitlines()
    assert len(lines) == 20
    assert lines[-1] == "oops"
    assert lines[0] == "line 12"
    text = str(error)
    assert f"container {box.id[:12]} is not ready after" in text
    assert "a line matching 'ready' on stdout or stderr: no line matched yet" in text
    assert f"port {PORT} to accept a connection: connect to 127.0.0.1:{PORT}" in text
    assert "Connection refused" in text
    assert "line 11" not in text
    assert "    line 30\n    oops" in text
    assert pickle.loads(pickle.dumps(error)).logs == error.logs


def test_only_the_parts_not_met_are_named(late_server: containerlib.RunningContainer) -> None:
    with pytest.raises(ContainerNotReady) as caught:
        wait_for(late_server, Log("starting") & File("/nowhere"), timeout=0.5)
    assert caught.value.condition == File("/nowhere")
    assert "file '/nowhere' to exist: it does not exist" in str(caught.value)


def test_a_container_that_exits_first_fails_the_wait_at_once(image: Image) -> None:
    cmd = ["sh", "-c", "echo cannot start >&2; sleep 0.5; exit 3"]
    with Container(image).start(cmd) as box, pytest.raises(ContainerNotReady) as caught:
        wait_for_port(box, PORT, timeout=NEVER)
    error = caught.value
    assert error.exit_code == 3
    assert error.logs == b"cannot start\n"
    assert error.waited < NEVER
    assert "exited with code 3" in str(error)
    assert "cannot start" in str(error)


def test_output_written_just_before_the_exit_still_counts(image: Image) -> None:
    with Container(image).start(["sh", "-c", "echo done; exit 0"]) as box:
        box.wait()
        wait_for_log(box, "^done$", timeout=NEVER)
        with pytest.raises(ContainerNotReady) as caught:
            wait_for_log(box, "^never$", timeout=NEVER)
    assert caught.value.exit_code == 0


def test_a_failing_exec_says_how_it_failed(image: Image) -> None:
    box = Container(image).start(["sleep", "600"])
    with box, pytest.raises(ContainerNotReady) as caught:
        wait_for_exec(box, ["sh", "-c", "echo not yet >&2; exit 2"], timeout=0.5)
    assert "exit code 2: not yet" in str(caught.value)


def test_a_file_is_looked_up_inside_the_container_only(image: Image) -> None:
    # A symbolic link to an absolute path resolves in the container's root, as in
    # the container; the host's /etc/os-release does not count.
    script = "ln -s /etc/os-release /tmp/host-file; ln -s /bin/sh /tmp/shell; exec sleep 600"
    with Container(image).start(["sh", "-c", script]) as box:
        wait_for_file(box, "/tmp/shell", timeout=NEVER)
        assert box.exec(["test", "-e", "/etc/os-release"]).exit_code == 1
        with pytest.raises(ContainerNotReady):
            wait_for_file(box, "/tmp/host-file", timeout=0.5)
        with pytest.raises(ContainerNotReady):
            wait_for_file(box, "/tmp/../../etc/os-release", timeout=0.5)


def test_waits_work_on_a_detached_container(
    image: Image, roots: dict[str, str], adopter: None
) -> None:
    box = Container(image).start(["sh", "-c", LATE_SERVER], detach=True)
    try:
        wait_for(
            box,
            Log(f"listening on {PORT}", stream="stderr") & Http(PORT, "/index.html"),
            timeout=NEVER,
        )
        wait_for_port(box, PORT, timeout=NEVER)
        wait_for_file(box, "/tmp/ready", timeout=NEVER)
        wait_for_exec(box, ["test", "-e", "/tmp/ready"], timeout=NEVER)
        wait_for_log(box, "^starting$", stream="stdout", timeout=NEVER)
    finally:
        box.remove(force=True)


def test_a_detached_container_that_exits_first_fails_the_wait(
    image: Image, roots: dict[str, str], adopter: None
) -> None:
    box = Container(image).start(["sh", "-c", "echo bye; exit 5"], detach=True)
    try:
        with pytest.raises(ContainerNotReady) as caught:
            wait_for(box, Port(PORT) | Log("never"), timeout=NEVER)
    finally:
        box.remove(force=True)
    assert caught.value.exit_code == 5
    assert caught.value.logs == b"bye\n"


def test_bad_arguments_are_spec_errors_and_nothing_is_tried(image: Image) -> None:
    calls = {
        "timeout": lambda box: wait_for_port(box, PORT, timeout=-1),
        "interval": lambda box: wait_for_port(box, PORT, interval=0),
        "pattern": lambda box: wait_for_log(box, "(unclosed"),
        "port": lambda box: wait_for_port(box, 0),
        "path": lambda box: wait_for_http(box, PORT, "no-slash"),
        "cmd": lambda box: wait_for_exec(box, "test -e /tmp"),
    }
    with Container(image).start(["sh", "-c", "echo up; exec sleep 600"]) as box:
        for field, call in calls.items():
            with pytest.raises(SpecError) as caught:
                call(box)
            assert caught.value.field == field
        # Nothing was tried on the container, which runs on.
        assert box.exec(["true"]).exit_code == 0


def test_the_waits_are_methods_of_both_container_kinds(image: Image) -> None:
    with Container(image).start(["sh", "-c", LATE_SERVER]) as box:
        box.wait_for_log(f"listening on {PORT}", timeout=NEVER)
        box.wait_for(Port(PORT) & File("/tmp/ready"), timeout=NEVER)
        box.wait_for_http(PORT, "/index.html", timeout=NEVER)
        box.kill()
    detached = Container(image).start(["sh", "-c", LATE_SERVER], detach=True)
    try:
        detached.wait_for_port(PORT, timeout=NEVER)
        detached.wait_for_file("/tmp/ready", timeout=NEVER)
        detached.wait_for_exec(["test", "-e", "/tmp/ready"], timeout=NEVER)
        with pytest.raises(ContainerNotReady, match="starting"):
            detached.wait_for_log("never printed", timeout=0.5)
    finally:
        detached.remove(force=True)
