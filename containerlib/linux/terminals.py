"""The window size of a terminal: the ``TIOCGWINSZ``/``TIOCSWINSZ`` ioctls.

The kernel keeps a size (rows and columns) with each pseudo-terminal, which programs in
it read (``stty size``, a shell's line editor) and which is 0x0 until someone sets it. A
process given a new terminal should find the size of the one the user looks at before
its first instruction runs; later changes reach it as ``SIGWINCH``. See tty_ioctl(4).
"""

from __future__ import annotations

import contextlib
import fcntl
import struct
import termios
from collections.abc import Iterable
from typing import Final

__all__ = ["DEFAULT_WINDOW_SIZE", "set_window_size", "window_size"]

#: ``(columns, rows)`` of a container's terminal when nothing gives it a size (docker's).
DEFAULT_WINDOW_SIZE: Final = (80, 24)


def window_size(fds: Iterable[int]) -> tuple[int, int] | None:
    """``(columns, rows)`` of the first of ``fds`` that is a terminal with a size; None
    when none is (a pipe, a file, a terminal still 0x0, a closed descriptor or -1)."""
    for fd in fds:
        if fd < 0:
            continue
        with contextlib.suppress(OSError):
            rows, columns, _, _ = struct.unpack(
                "HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
            )
            if rows and columns:
                return columns, rows
    return None


def set_window_size(fd: int, columns: int, rows: int) -> None:
    """Give the terminal ``fd`` the size ``columns`` x ``rows``; the processes in its
    foreground get ``SIGWINCH`` if that changed it.

    Raises:
        OSError: ``fd`` is not a terminal (``ENOTTY``), or is closed.
    """
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
