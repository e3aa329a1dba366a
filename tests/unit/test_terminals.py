"""The window size of a real pseudo-terminal (pty(7); no root needed)."""

from __future__ import annotations

import os
import pty
from collections.abc import Iterator

import pytest

from containerlib.linux.terminals import set_window_size, window_size


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    master, other = pty.openpty()
    yield master, other
    os.close(master)
    os.close(other)


def test_a_new_terminal_has_no_size_until_one_is_set(terminal: tuple[int, int]) -> None:
    master, other = terminal
    assert window_size([other]) is None  # 0x0
    set_window_size(master, 132, 43)
    assert window_size([other]) == (132, 43)  # both ends see it


def test_the_first_descriptor_that_is_a_terminal_with_a_size_wins(
    terminal: tuple[int, int],
) -> None:
    _master, other = terminal
    r, w = os.pipe()
    try:
        assert window_size([r, w, other]) is None
        set_window_size(other, 100, 30)
        assert window_size([r, -1, other, w]) == (100, 30)
    finally:
        os.close(r)
        os.close(w)


def test_a_size_on_what_is_not_a_terminal_is_an_error() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(OSError, match="Inappropriate ioctl"):
            set_window_size(w, 80, 24)
    finally:
        os.close(r)
        os.close(w)
