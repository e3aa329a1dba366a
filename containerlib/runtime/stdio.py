"""A container's standard streams, as pipes that the owner feeds and drains.

:class:`Pipes` makes the three pipes, hands the container's ends to the spawner and keeps
the owner's ends; :meth:`Pipes.pump` moves bytes in both directions with one selector, so
a container that writes 100 MB to stdout while it waits for stdin never deadlocks. What
the container writes goes to a :class:`~containerlib.runtime.logs.MemoryLog`, which other
threads can read and follow while the pump runs.
"""

from __future__ import annotations

import errno
import io
import os
import selectors
import time

from containerlib.errors import SpecError
from containerlib.runtime.logs import MemoryLog

__all__ = ["Pipes"]

_CHUNK = 1 << 16


class Pipes:
    """stdin, stdout and stderr of one container.

    Args:
        input: bytes that :meth:`pump` writes to the container's stdin, then closes it;
            None gives the container ``/dev/null``.
        interactive: the container's stdin is a pipe whose other end the caller takes
            with :meth:`take_stdin`, to write to and close when it wants.

    Attributes:
        log: what the container wrote to stdout and stderr, closed when both have ended
            (or when the pipes are closed).

    Raises:
        SpecError: ``input`` and ``interactive`` were both given.
    """

    def __init__(self, input: bytes | None = None, *, interactive: bool = False) -> None:
        if interactive and input is not None:
            raise SpecError(
                "input",
                "cannot be given with interactive=True: the caller writes the container's"
                " stdin itself (Pipes.take_stdin)",
            )
        self._input = memoryview(input) if input is not None else None
        self.log = MemoryLog()
        self._stdin: int | None = None
        self._outputs = 0
        self._sel = selectors.DefaultSelector()
        self._theirs: list[int] = []
        self._open: list[int] = []
        try:
            if interactive:
                r, w = os.pipe2(os.O_CLOEXEC)
                self._theirs.append(r)
                self._open.append(w)
                self._stdin = w
            elif input is None:
                stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                self._theirs.append(stdin)
            else:
                r, w = os.pipe2(os.O_CLOEXEC)
                self._theirs.append(r)
                self._open.append(w)
                os.set_blocking(w, False)
                if input:
                    self._sel.register(w, selectors.EVENT_WRITE, "stdin")
                else:
                    self._close(w)
            for name in ("stdout", "stderr"):
                r, w = os.pipe2(os.O_CLOEXEC)
                self._theirs.append(w)
                self._open.append(r)
                self._sel.register(r, selectors.EVENT_READ, name)
                self._outputs += 1
        except BaseException:
            self.close()
            raise

    @property
    def stdout(self) -> bytes:
        """All the container wrote to stdout so far."""
        return self.log.stdout

    @property
    def stderr(self) -> bytes:
        """All the container wrote to stderr so far."""
        return self.log.stderr

    def take_stdin(self) -> io.BufferedWriter:
        """The writing end of the container's stdin, with ``interactive=True``.

        The caller owns it from now on: closing it gives the container end of file. A
        write after the container has closed its stdin raises :class:`BrokenPipeError`.

        Raises:
            ValueError: the pipes are not interactive, or the end was taken already.
        """
        if self._stdin is None:
            raise ValueError(
                "take_stdin: the container's stdin is no pipe to write to"
                " (Pipes(interactive=True) makes one) or it was taken already"
            )
        fd, self._stdin = self._stdin, None
        self._open.remove(fd)
        return open(fd, "wb")

    def attach_terminal(self, master: int) -> None:
        """The container's stdio is a terminal whose master end is ``master`` (this
        object owns it from now on): what it writes is read from there as stdout, and
        ``input``, or the end :meth:`take_stdin` gives, goes there. Call it before
        :meth:`pump`."""
        self._open.append(master)
        os.set_blocking(master, False)
        self._sel.register(master, selectors.EVENT_READ, "stdout")
        self._outputs += 1
        # Writes go through a copy: one descriptor is registered with the selector once.
        writer = os.dup(master)
        self._open.append(writer)
        if self._stdin is not None:  # interactive: the caller writes to the terminal
            self._close(self._stdin)
            self._stdin = writer
            os.set_blocking(writer, True)
            return
        for key in list(self._sel.get_map().values()):
            if key.data == "stdin":  # the input goes to the terminal instead
                self._close(key.fd)
                self._sel.register(writer, selectors.EVENT_WRITE, "stdin")
                return
        self._close(writer)

    @property
    def theirs(self) -> tuple[int, int, int]:
        """The container's ends: stdin, stdout, stderr."""
        return (self._theirs[0], self._theirs[1], self._theirs[2])

    def release_theirs(self) -> None:
        """Close the container's ends here, once the spawner has its own copies."""
        for fd in self._theirs:
            os.close(fd)
        self._theirs = []

    @property
    def done(self) -> bool:
        """Both output streams reached end of file and the input is written."""
        return not self._sel.get_map()

    def pump(self, deadline: float | None = None) -> bool:
        """Move bytes until both outputs end or ``deadline`` (time.monotonic) passes.

        Returns:
            True when the streams are done, False when the deadline came first.
        """
        while self._sel.get_map():
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            events = self._sel.select(timeout)
            if not events and deadline is not None and time.monotonic() >= deadline:
                return False
            for key, _ in events:
                fd = key.fd
                if key.data == "stdin":
                    self._feed(fd)
                    continue
                try:
                    chunk = os.read(fd, _CHUNK)
                except (InterruptedError, BlockingIOError):
                    continue
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    chunk = b""  # a terminal whose other end has closed
                if chunk:
                    self.log.append(key.data, chunk)
                else:
                    self._close(fd)
                    self._outputs -= 1
                    if not self._outputs:
                        self.log.close()
        return True

    def _feed(self, fd: int) -> None:
        assert self._input is not None
        try:
            n = os.write(fd, self._input[:_CHUNK])
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            n = len(self._input)  # the container closed its stdin: drop the rest
        self._input = self._input[n:]
        if not self._input:
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd in self._sel.get_map():
            self._sel.unregister(fd)
        if fd in self._open:
            self._open.remove(fd)
            os.close(fd)

    def close(self) -> None:
        """Close every descriptor still open (not a stdin end already taken), and the
        log: no more output will come."""
        for fd in list(self._open):
            self._close(fd)
        self._stdin = None
        self.release_theirs()
        self._sel.close()
        self.log.close()
