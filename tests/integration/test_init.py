"""Container.init(): a reaper as PID 1 (``docker run --init``), seen from inside and by
what the caller gets: the exit code, signals passed on, orphans reaped, and nothing of it
readable from inside."""

from __future__ import annotations

import time

import pytest

from containerlib import Container, Image
from containerlib.runtime import nativeinit
from tests.integration.conftest import ROOT

pytestmark = [
    pytest.mark.usefixtures("state"),
    pytest.mark.skipif(
        nativeinit.helper_path() is None, reason="init is the native helper (a C compiler)"
    ),
]

ORPHANS = "(sleep 0.1 &) ; (sleep 0.1 &) ; exec sleep 60"


def _zombies(box: object) -> int:
    from containerlib.container import RunningContainer

    assert isinstance(box, RunningContainer)
    out = box.exec(["ps", "-o", "stat"]).stdout.decode().split()
    return sum(1 for stat in out if stat.startswith("Z"))


def test_the_command_is_pid_2_and_its_exit_code_is_the_containers(image: Image) -> None:
    result = Container(image).init().run(["sh", "-c", "echo $$; exit 3"])
    assert (result.exit_code, result.stdout) == (3, b"2\n")
    killed = Container(image).init().run(["sh", "-c", "kill -9 $$"])
    assert killed.exit_code == 128 + 9


def test_orphans_are_reaped_with_init_and_not_without(image: Image) -> None:
    with Container(image).start(["sh", "-c", ORPHANS]) as plain:
        time.sleep(0.5)
        assert _zombies(plain) == 2  # PID 1 is a sleep that waits for no one
    with Container(image).init().start(["sh", "-c", ORPHANS]) as reaped:
        time.sleep(0.5)
        assert _zombies(reaped) == 0


def test_stop_ends_a_command_that_ignores_sigterm_as_pid_1(image: Image) -> None:
    # A shell as PID 1 has no SIGTERM handler, so the kernel drops the signal: stop
    # must wait out its grace time and kill. Under init, the shell is not PID 1.
    with Container(image).start(["sh", "-c", "sleep 60"]) as plain:
        time.sleep(0.2)
        assert plain.stop(timeout=0.5).exit_code == 128 + 9
    with Container(image).init().start(["sh", "-c", "sleep 60"]) as under_init:
        time.sleep(0.2)
        started = time.monotonic()
        assert under_init.stop(timeout=30).exit_code == 128 + 15
        assert time.monotonic() - started < 25  # well before the grace time ran out


def test_init_cannot_be_read_from_inside(image: Image) -> None:
    script = (
        "cat /proc/1/exe > /dev/null; cat /proc/1/environ; readlink -v /proc/1/fd/0; ls /proc/1/fd"
    )
    result = Container(image).init().run(["sh", "-c", script])
    # Rootless, not even its descriptors can be listed (the caller lacks CAP_SYS_PTRACE
    # in the host's user namespace); as root they can, and are stdio alone.
    assert result.stderr.count(b"Permission denied") == (3 if ROOT else 4), result.stderr
    if ROOT:
        assert result.stdout.split() == [b"0", b"1", b"2"]  # nothing but /dev/null
