"""Streaming a running container's stdio, its logs, terminals, events and the asyncio API,
on the real kernel."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from containerlib import Container, Image
from containerlib.errors import ContainerError, SpecError
from containerlib.runtime.records import start_time

from .conftest import needs_root

pytestmark = pytest.mark.usefixtures("state")


def test_stdin_and_stdout_stream_while_the_container_runs(image: Image) -> None:
    with Container(image).start(["cat"], interactive=True) as box:
        assert box.stdin is not None
        for word in (b"one", b"two"):
            box.stdin.write(word + b"\n")
            box.stdin.flush()
            # Read back before the container ends: the output streams.
            assert box.stdout.readline() == word + b"\n"
        box.stdin.close()  # end of file: cat ends
        result = box.wait(timeout=30)
    # The exit code and the whole output are there although the output was streamed.
    assert result.exit_code == 0
    assert result.stdout == b"one\ntwo\n"


def test_following_the_logs_of_a_running_container(image: Image) -> None:
    script = "echo ready; echo oops >&2; read line; echo got $line; exit 3"
    with Container(image).start(["sh", "-c", script], interactive=True) as box:
        chunks = box.logs(follow=True)
        seen = b""
        while seen.count(b"\n") < 2:
            seen += next(chunks)
        # Both lines came while the container waits for its input.
        assert sorted(seen.splitlines()) == [b"oops", b"ready"]
        assert box.stdin is not None
        box.stdin.write(b"go\n")
        box.stdin.close()
        rest = b"".join(chunks)
        assert rest == b"got go\n"
        assert box.wait().exit_code == 3
        assert box.logs(stderr=False, tail=1) == b"got go\n"
        assert box.logs(stdout=False) == b"oops\n"
        assert b"Z ready\n" in box.logs(timestamps=True)


def test_a_terminal_its_size_and_its_input(image: Image) -> None:
    script = "tty; stty size; read x; stty size; echo got $x"
    with Container(image).start(["sh", "-c", script], tty=True, interactive=True) as box:
        assert box.stdout.readline() == b"/dev/pts/0\r\n"
        assert box.stdout.readline() == b"24 80\r\n"
        box.resize(100, 40)
        assert box.stdin is not None
        box.stdin.write(b"hello\n")
        box.stdin.flush()
        result = box.wait(timeout=30)
    assert result.exit_code == 0
    # The terminal echoes the input; stderr goes to the terminal too.
    assert result.stdout.endswith(b"hello\r\n40 100\r\ngot hello\r\n")
    assert result.stderr == b""


def test_resize_without_a_terminal_is_refused(image: Image) -> None:
    with Container(image).start(["sleep", "30"]) as box:
        with_error = pytest.raises(SpecError, match="tty=True")
        with with_error:
            box.resize(80, 24)
    with Container(image).start(["sleep", "30"], tty=True) as box:
        with_error = pytest.raises(SpecError, match="not a terminal size")
        with with_error:
            box.resize(0, 24)


def test_exec_with_a_terminal(image: Image) -> None:
    with Container(image).start(["sleep", "30"]) as box:
        result = box.exec(["sh", "-c", "tty; echo err >&2"], tty=True)
        assert result.exit_code == 0
        assert result.stdout.startswith(b"/dev/pts/")
        assert result.stdout.endswith(b"\r\nerr\r\n")
        plain = box.exec(["sh", "-c", "tty"])
        assert plain.stdout == b"not a tty\n"


def test_detach_with_a_terminal_or_stdin_is_refused(image: Image) -> None:
    with pytest.raises(SpecError, match="detached"):
        Container(image).start(["true"], detach=True, tty=True)


def test_events_of_a_container(image: Image) -> None:
    with Container(image).start(["sh", "-c", "sleep 0.2; exit 2"]) as box:
        events = list(box.events())
    assert [e.kind for e in events] == ["started", "exited"]
    assert events[-1].exit_code == 2
    assert events[0].time <= events[1].time


@needs_root("cgroup memory limits")
def test_an_oom_kill_is_an_event(image: Image) -> None:
    script = "head -c 200m /dev/zero | tail; sleep 30"
    with Container(image).limit(mem="32M").start(["sh", "-c", script]) as box:
        events = box.events()
        assert next(events).kind == "started"
        assert next(events).kind == "oom"
        box.kill()
        last = list(events)[-1]
    assert (last.kind, last.exit_code) == ("exited", 137)


def test_run_async_gives_the_result(image: Image) -> None:
    async def main() -> tuple[bytes, int]:
        results = await asyncio.gather(
            Container(image).run_async(["echo", "a"]),
            Container(image).run_async(["sh", "-c", "exit 4"]),
        )
        return results[0].stdout, results[1].exit_code

    assert asyncio.run(main()) == (b"a\n", 4)


def test_run_async_checks_and_times_out(image: Image) -> None:
    async def main() -> None:
        with pytest.raises(ContainerError, match="exit code 1"):
            await Container(image).run_async(["false"], check=True)
        result = await Container(image).run_async(["sleep", "30"], timeout=0.2)
        assert result.timed_out
        assert result.exit_code == 137

    asyncio.run(main())


def test_start_async_exec_follow_and_events(image: Image) -> None:
    async def main() -> tuple[bytes, bytes, list[str]]:
        async with Container(image).start_async(
            ["sh", "-c", "echo one; sleep 0.2; echo two"]
        ) as box:
            said = await box.exec(["echo", "inside"])
            followed = b"".join([chunk async for chunk in box.follow()])
            kinds = [e.kind async for e in box.events()]
        return said.stdout, followed, kinds

    assert asyncio.run(main()) == (b"inside\n", b"one\ntwo\n", ["started", "exited"])


def test_a_cancelled_task_leaves_no_container(image: Image) -> None:
    async def main() -> int:
        box = await Container(image).start_async(["sleep", "60"])
        pid = box.pid
        task = asyncio.create_task(Container(image).run_async(["sleep", "60"]))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await box.__aexit__(None, None, None)
        return pid

    pid = asyncio.run(main())
    deadline = time.monotonic() + 10
    while start_time(pid) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or start_time(pid) is None
