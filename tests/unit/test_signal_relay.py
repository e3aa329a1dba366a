"""SignalRelay with real signals sent to this process (no root, no container): what
comes before the target is known waits for it, and a signal that lands while the main
thread is blocked in the relay's wait (here: in another thread, which does not interrupt
the main thread's select) is passed on at once, not when the wait ends."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from containerlib.runtime.signals import SignalRelay, to_pidfd

#: System calls in which a thread waits (select, poll, wait4...), by machine.
BLOCKING = {
    "x86_64": {7, 23, 61, 232, 247, 270, 271, 281},
    "aarch64": {22, 72, 73, 95, 260},
}.get(os.uname().machine)


def blocked_in_a_wait(tid: int) -> bool:
    """Whether thread ``tid`` of this process is in one of the :data:`BLOCKING` calls."""
    assert BLOCKING is not None
    with open(f"/proc/self/task/{tid}/syscall") as f:
        number = f.read().split()[0]
    return number.isdigit() and int(number) in BLOCKING


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    os.close(r)
    os.close(w)


def test_signals_before_the_target_wait_for_it_in_order() -> None:
    got: list[int] = []
    with SignalRelay([signal.SIGUSR1, signal.SIGUSR2]) as relay:
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert got == []
        relay.send_to(got.append)
        assert got == [signal.SIGUSR2, signal.SIGUSR1]
        os.kill(os.getpid(), signal.SIGUSR1)
        assert got == [signal.SIGUSR2, signal.SIGUSR1, signal.SIGUSR1]
        relay.drop()
        os.kill(os.getpid(), signal.SIGUSR1)
    assert got == [signal.SIGUSR2, signal.SIGUSR1, signal.SIGUSR1]


def test_the_handlers_and_the_wakeup_fd_are_restored() -> None:
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    theirs = signal.set_wakeup_fd(w)
    try:
        with SignalRelay([signal.SIGUSR1]):
            assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_IGN, previous)
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
        assert signal.set_wakeup_fd(w) == w
    finally:
        signal.set_wakeup_fd(theirs)
        signal.signal(signal.SIGUSR1, previous)
        os.close(r)
        os.close(w)


def test_a_failed_installation_leaves_nothing_installed() -> None:
    # Signal 0 fails signal.signal: nothing of the relay stays.
    before = signal.getsignal(signal.SIGUSR1)
    with (
        pytest.raises(ValueError, match="signal number out of range"),
        SignalRelay([signal.SIGUSR1, 0]),
    ):
        pass
    assert signal.getsignal(signal.SIGUSR1) == before
    assert signal.set_wakeup_fd(-1) == -1


@pytest.mark.skipif(BLOCKING is None, reason="system call numbers known for x86_64, aarch64")
def test_a_signal_in_another_thread_reaches_the_target_while_the_wait_blocks(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    main = threading.main_thread().native_id
    assert main is not None

    def signal_once_main_waits() -> None:
        while not blocked_in_a_wait(main):
            time.sleep(0.001)
        # Delivered to this thread: the main thread's select goes on, undisturbed.
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    got: list[int] = []

    def target(sig: int) -> None:
        got.append(sig)
        os.write(w, b"x")  # what the target does ends the wait

    with SignalRelay([signal.SIGUSR1]) as relay:
        relay.send_to(target)
        thread = threading.Thread(target=signal_once_main_waits)
        thread.start()
        try:
            # Without the wakeup descriptor the handler would run only once the wait
            # has ended: here, after its timeout.
            assert relay.wait([r], timeout=60)
        finally:
            thread.join()
    assert got == [signal.SIGUSR1]


def test_wait_says_whether_a_descriptor_is_ready_or_the_timeout_passed(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    with SignalRelay([signal.SIGUSR1]) as relay:
        assert not relay.wait([r], timeout=0)
        os.write(w, b"x")
        assert relay.wait([r], timeout=0)


def test_without_signals_nothing_is_installed_and_any_thread_may_wait(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    results: list[bool] = []

    def in_a_thread() -> None:
        with SignalRelay(()) as relay:
            results.append(relay.wait([r], timeout=0))
            os.write(w, b"x")
            results.append(relay.wait([r]))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert results == [False, True]


def test_to_pidfd_signals_a_child_and_ignores_one_that_has_ended() -> None:
    with subprocess.Popen(["sleep", "60"]) as child:
        pidfd = os.pidfd_open(child.pid)
        try:
            to_pidfd(pidfd)(signal.SIGTERM)
            assert child.wait(timeout=30) == -signal.SIGTERM
            to_pidfd(pidfd)(signal.SIGTERM)  # reaped: ignored
        finally:
            os.close(pidfd)
