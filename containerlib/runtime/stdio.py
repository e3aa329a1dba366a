"""A container's standard streams, as pipes that the owner feeds and drains.

:class:`Pipes` makes the three pipes, hands the container's ends to the spawner and keeps
the owner's ends; :meth:`Pipes.pump` moves bytes in both directions with one selector, so
a container that writes 100 MB to stdout while it waits for stdin never deadlocks.
"""

from __future__ import annotations

import errno
import os
import selectors
import time

__all__ = ["Pipes"]

_CHUNK = 1 << 16


class Pipes:
    """stdin, stdout and stderr of one container.

    Args:
        input: bytes to write to the container's stdin, then close it; None gives the
            container ``/dev/null``.
    """

    def __init__(self, input: bytes | None = None) -> None:
        self._input = memoryview(input) if input is not None else None
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._sel = selectors.DefaultSelector()
        self._theirs: list[int] = []
        self._open: list[int] = []
        try:
            if input is None:
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
        except BaseException:
            self.close()
            raise

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
                except InterruptedError:
                    continue
                if chunk:
                    (self.stdout if key.data == "stdout" else self.stderr).extend(chunk)
                else:
                    self._close(fd)
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
        """Close every descriptor still open."""
        for fd in list(self._open):
            self._close(fd)
        self.release_theirs()
        self._sel.close()
