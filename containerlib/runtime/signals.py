"""Passing the signals a foreground command gets on to the process it waits for.

``containerlib run``, ``containerlib exec`` and ``containerlib-runtime run``/``exec``
stand in for a container's process, as ``docker run`` does: a signal sent to them is
meant for it. Two things make that racy in CPython, and this module handles both:

- The handlers must be in place before the process starts: it may write its first
  output, and whoever reads it send the command a signal, before the command knows the
  process's pid. Caught by the default disposition, that signal ends the command and
  leaves the process running (or, ignored since the command's start, is lost). So the
  relay is installed first, and keeps what comes early until it has a target.
- CPython runs a Python handler only between two bytecodes of the main thread. A signal
  that lands just before a blocking ``select()`` or ``waitpid()`` (or in another thread,
  as a terminal relay's) runs its handler only when that call returns, that is when the
  process has ended anyway. So the wait also watches the wakeup descriptor
  (:func:`signal.set_wakeup_fd`), which the C-level handler writes to at once.

See signal(7) and the ``signal`` module's notes on handlers and threads.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, Final, Protocol, Self

__all__ = ["FORWARDED", "SignalRelay", "to_pidfd"]

#: The signals a foreground command passes on to its process, as ``docker run`` does.
FORWARDED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


class SignalRelay:
    """Passes ``signals`` that this process gets on to a target, while it is installed
    (a context manager; in the main thread, as :func:`signal.signal` wants). Those that
    come before :meth:`send_to` has named the target wait for it, in order.

    Without ``signals`` it installs nothing (and may be used in any thread): :meth:`wait`
    is then a plain ``select()``.

    Args:
        signals: the signal numbers to pass on.

    Example:
        >>> import os, signal
        >>> got = []
        >>> with SignalRelay([signal.SIGUSR1]) as relay:
        ...     os.kill(os.getpid(), signal.SIGUSR1)  # no target yet: it waits
        ...     relay.send_to(got.append)
        >>> got == [signal.SIGUSR1]
        True
    """

    def __init__(self, signals: Iterable[int]) -> None:
        self._signals = tuple(signals)
        self._send: Callable[[int], None] | None = None
        self._pending: list[int] = []
        self._saved: dict[int, Any] = {}
        self._saved_wakeup = -1
        self._wakeup: socket.socket | None = None
        self._woken: socket.socket | None = None

    def __enter__(self) -> Self:
        if not self._signals:
            return self
        self._wakeup, self._woken = socket.socketpair()
        for end in (self._wakeup, self._woken):
            end.setblocking(False)
        try:
            self._saved_wakeup = signal.set_wakeup_fd(
                self._woken.fileno(), warn_on_full_buffer=False
            )
            for sig in self._signals:
                self._saved[sig] = signal.signal(sig, self._relay)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
        if self._woken is not None:
            signal.set_wakeup_fd(self._saved_wakeup)
        for end in (self._wakeup, self._woken):
            if end is not None:
                end.close()
        self._wakeup = self._woken = None

    def _relay(self, sig: int, _frame: FrameType | None) -> None:
        if self._send is None:
            self._pending.append(sig)
        else:
            self._send(sig)

    def send_to(self, send: Callable[[int], None]) -> None:
        """From now on pass each signal to ``send`` (as it comes, in the main thread);
        those that came before go first.

        Args:
            send: sends a signal to the target; it should ignore a target that has
                ended (``ProcessLookupError``).
        """
        self._send = send
        while self._pending:
            send(self._pending.pop(0))

    def drop(self) -> None:
        """Drop the signals that come from now on: the target has ended, or the
        descriptor :meth:`send_to` was given is about to be closed."""
        self.send_to(_dropped)

    def wait(self, fds: Sequence[int | _HasFileno], timeout: float | None = None) -> bool:
        """Block until one of ``fds`` is readable, passing on the signals that come
        meanwhile as they come.

        Args:
            fds: descriptors (or objects with ``fileno()``) to wait for.
            timeout: seconds to wait at most; None waits as long as it takes.

        Returns:
            True when one of ``fds`` is readable, False when ``timeout`` passed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        watched: list[int | _HasFileno] = list(fds)
        if self._wakeup is not None:
            watched.append(self._wakeup)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = select.select(watched, [], [], left)[0]
            if not ready:
                return False
            if self._wakeup is not None and self._wakeup in ready:
                # The handler runs before the next bytecode, so before the next select.
                with contextlib.suppress(BlockingIOError):
                    self._wakeup.recv(64)
                ready.remove(self._wakeup)
            if ready:
                return True


def to_pidfd(pidfd: int) -> Callable[[int], None]:
    """A target for :meth:`SignalRelay.send_to`: the process of ``pidfd``; one that has
    ended is ignored. Call :meth:`SignalRelay.drop` before closing ``pidfd``."""

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, sig)

    return send


def _dropped(_sig: int) -> None:
    pass
