"""records.locked_dir: the lock of a directory that its last user removes (the
networks' state), on real directories, with threads as the other processes (flock
locks are per open file, so two opens in one process exclude each other)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from containerlib.runtime.records import locked_dir


def test_it_makes_the_directory_and_its_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    with locked_dir(str(path)) as there:
        assert there
        assert path.is_dir()
        assert path.stat().st_mode & 0o777 == 0o700


def test_without_create_a_missing_directory_is_nothing_to_do(tmp_path: Path) -> None:
    with locked_dir(str(tmp_path / "none"), create=False) as there:
        assert not there
    assert not (tmp_path / "none").exists()


def test_a_waiter_takes_the_new_directory_when_the_holder_removed_the_old(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state"
    waiting = threading.Event()
    seen: list[tuple[bool, int]] = []

    def waiter() -> None:
        waiting.set()
        with locked_dir(str(path)) as there:
            (path / "mine").write_text("written under the lock")
            seen.append((there, os.stat(path).st_ino))

    with locked_dir(str(path)):
        thread = threading.Thread(target=waiter)
        thread.start()
        waiting.wait()
        # Let the waiter open the old directory and block on its lock; then go, as the
        # last network does, taking the directory with it.
        thread.join(0.2)
        assert thread.is_alive()
        os.rmdir(path)
    thread.join()
    [(there, ino)] = seen
    assert there
    # Written into a directory that exists (not lost in the removed one).
    assert (path / "mine").read_text() == "written under the lock"
    assert os.stat(path).st_ino == ino


def test_without_create_a_directory_removed_while_waiting_is_nothing_to_do(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state"
    path.mkdir()
    seen: list[bool] = []

    def waiter() -> None:
        with locked_dir(str(path), create=False) as there:
            seen.append(there)

    with locked_dir(str(path)):
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(0.2)
        os.rmdir(path)
    thread.join()
    assert seen == [False]
    assert not path.exists()
