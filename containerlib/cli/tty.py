"""``containerlib run -t``: a terminal for a container run from the command line.

With ``-t`` the container's first process gets a new pseudo-terminal as its stdin, stdout
and stderr, made inside the container; the terminal's master end comes to this process
over a console socket, as with runc's ``--console-socket`` (see pty(7)). This module copies
between that master and the user's own terminal: what the user types goes in (with
``-i``), what the container writes comes out. The user's terminal is put in raw mode
meanwhile, so that Ctrl-C, Ctrl-Z and the like reach the container as bytes and its own
terminal turns them into signals, as with ``docker run -it``; and its size follows the
user's (SIGWINCH).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import termios
import threading
import tty
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from containerlib.linux.terminals import DEFAULT_WINDOW_SIZE, set_window_size, window_size

if TYPE_CHECKING:
    from containerlib import Container

__all__ = ["TerminalRelay", "run_in_terminal", "terminal_size"]

#: The size of a terminal when the user's own has none (as the library's default).
DEFAULT_SIZE: Final = DEFAULT_WINDOW_SIZE
#: How long the output of a container that has ended may take to come out (seconds).
DRAIN_SECONDS: Final = 2.0
#: End of file, as a terminal in canonical mode reads it (Ctrl-D).
_EOF: Final = b"\x04"
_CHUNK: Final = 1 << 16


def terminal_size(fds: Sequence[int] = (1, 0)) -> tuple[int, int]:
    """``(columns, rows)`` of the first of ``fds`` that is a terminal with a size;
    :data:`DEFAULT_SIZE` when none is."""
    return window_size(fds) or DEFAULT_SIZE


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class TerminalRelay:
    """Copies between the user's terminal (this process's stdin and stdout) and a
    container's, whose master end comes on :meth:`console`.

    Use it as a context manager around the run: on entry it starts copying (in a thread,
    as the run blocks this one) and, with ``interactive`` and a terminal as stdin, puts
    that terminal in raw mode; on exit it waits for the last of the output and restores
    the terminal.

    Args:
        interactive: copy this process's stdin to the container (``-i``).
        stdin, stdout: this process's descriptors to copy from and to.
    """

    def __init__(self, *, interactive: bool, stdin: int = 0, stdout: int = 1) -> None:
        self._interactive = interactive
        self._stdin = stdin
        self._stdout = stdout
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._master = -1
        self._saved_mode: list[Any] | None = None
        self._saved_winch: object = None
        self._thread = threading.Thread(target=self._relay, name="clib-tty", daemon=True)

    def console(self) -> int:
        """The console socket to send with the container's request."""
        return self._theirs.fileno()

    def __enter__(self) -> Self:
        if self._interactive and os.isatty(self._stdin):
            self._saved_mode = termios.tcgetattr(self._stdin)
            tty.setraw(self._stdin, termios.TCSANOW)
        self._saved_winch = signal.signal(signal.SIGWINCH, self._resize)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The container has ended: its terminal's master reads end of file once the last
        # output is read. A relay still waiting (for a master that never came, or for a
        # process outside that keeps the terminal open) is told to stop.
        self._theirs.close()
        self._thread.join(DRAIN_SECONDS)
        os.write(self._wake_w, b"x")
        self._thread.join()
        signal.signal(signal.SIGWINCH, self._saved_winch)  # type: ignore[arg-type]
        if self._saved_mode is not None:
            termios.tcsetattr(self._stdin, termios.TCSADRAIN, self._saved_mode)
        for fd in (self._wake_r, self._wake_w, self._master):
            if fd >= 0:
                os.close(fd)
        self._master = -1
        self._ours.close()

    def _resize(self, _sig: int = 0, _frame: object = None) -> None:
        if self._master >= 0:
            columns, rows = terminal_size((self._stdout, self._stdin))
            with contextlib.suppress(OSError):
                set_window_size(self._master, columns, rows)

    def _relay(self) -> None:
        ready = select.select([self._ours.fileno(), self._wake_r], [], [])[0]
        if self._wake_r in ready:
            return
        _msg, fds, _flags, _addr = socket.recv_fds(self._ours, 64, 1)
        if not fds:
            return  # the container failed before it had a terminal: its error says why
        self._master = fds[0]
        # It came with the size ours had when the request went (see start_exec and
        # _run_in_this_process); ours may have changed since.
        self._resize()
        reading = [self._master, self._wake_r]
        if self._interactive:
            reading.append(self._stdin)
        while True:
            ready = select.select(reading, [], [])[0]
            if self._master in ready:
                try:
                    data = os.read(self._master, _CHUNK)
                except OSError:  # EIO: no process has the terminal open any more
                    data = b""
                if not data:
                    return
                _write_all(self._stdout, data)
            if self._stdin in ready:
                data = os.read(self._stdin, _CHUNK)
                # End of our input is end of file for the container's terminal.
                with contextlib.suppress(OSError):
                    _write_all(self._master, data or _EOF)
                if not data:
                    reading.remove(self._stdin)
            if self._wake_r in ready:
                return


def run_in_terminal(
    container: Container,
    cmd: Sequence[str] | None,
    *,
    interactive: bool,
    timeout: float | None,
    forward: tuple[int, ...],
) -> tuple[int, bool, bool]:
    """Run ``container`` from this process with a terminal (``run -t``) relayed to this
    process's stdio; returns its exit code, whether it ran out of memory and whether
    ``timeout`` passed.

    Raises:
        SpecError: bad input; nothing was created.
        ContainerSetupError: a step of the setup failed; nothing is left behind.
    """
    with TerminalRelay(interactive=interactive) as relay:
        result = container._run_in_this_process(
            cmd,
            timeout=timeout,
            forward=forward,
            console=relay.console(),
            console_size=terminal_size(),
        )
    return result.exit_code, result.oom_killed, result.timed_out
