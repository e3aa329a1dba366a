"""Removing directory trees that a user other than root may find hard to remove.

Root removes the contents of any directory. Anyone else, even the owner, needs write and
search permission on a directory to empty it, and trees made by a container or by
overlayfs often hold directories without them: ``/proc`` is ``0555`` in most images, and
overlayfs leaves ``work/work`` and ``work/incompat/volatile`` mode ``0000`` in the work
directory of a rootless container.
"""

from __future__ import annotations

import os
import shutil
import stat

__all__ = ["make_writable", "remove_tree"]


def make_writable(path: str | os.PathLike[str]) -> None:
    """Give the owner ``rwx`` on every directory in the tree ``path``, never following a
    symlink; what someone removes meanwhile is skipped, as is what this user does not own
    (its mode cannot be changed: the removal then fails, naming it)."""
    pending = [os.fspath(path)]
    while pending:
        directory = pending.pop()
        try:
            st = os.lstat(directory)
            if not stat.S_ISDIR(st.st_mode):
                continue  # a symlink or a file: removed as it is
            if st.st_mode & 0o700 != 0o700:
                os.chmod(directory, stat.S_IMODE(st.st_mode) | 0o700)
            with os.scandir(directory) as entries:
                pending += [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            continue
        except PermissionError:
            continue


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and what it holds; someone removing it at the same time is fine.
    A tree this user cannot empty for want of permission on its directories is made
    writable (:func:`make_writable`) and removed again.

    Raises:
        OSError: a file could not be removed, with its path.
    """

    def gone_already(function: object, name: str, info: tuple[type, BaseException, object]) -> None:
        if not isinstance(info[1], FileNotFoundError):
            raise info[1]

    try:
        shutil.rmtree(path, onerror=gone_already)
    except PermissionError:
        if os.geteuid() == 0:
            raise
        make_writable(path)
        shutil.rmtree(path, onerror=gone_already)
