"""A container's writable layer on the host: made, thrown away, removed.

``<data root>/containers/<id>`` holds the overlay's ``upper`` and ``work`` directories
and the ``rootfs`` directory the overlay is mounted on (in the container's own mount
namespace). Its name is the container's: making it is what claims the id.

The upper and work directories of a container's overlay live under the data root, on a
disk file system, where each ``mkdir`` and ``rmdir`` costs a tenth of a millisecond or
more. So they are made ahead of time in ``<data root>/pool`` and renamed into place, and
thrown away by a rename into ``<data root>/trash``, to be removed when nothing waits.

Each writable layer made by a spawner holds ``owner``: a hard link to the spawner's owner
file in ``<data root>/owners``, on which the spawner holds a ``flock`` for its lifetime
(see :mod:`containerlib.runtime.stale`). A layer whose owner file nobody holds locked was
left by a spawner that was killed, and ``prune()`` removes it.
"""

from __future__ import annotations

import contextlib
import itertools
import os

from containerlib.linux.trees import remove_tree

__all__ = [
    "MARKER",
    "OWNERS",
    "make_rw_layout",
    "new_rw_dir",
    "owner_file",
    "remove_dir",
    "remove_rw",
    "set_owner",
    "trash_path",
]

#: The directory of the owner files, in the data root.
OWNERS = "owners"
#: The name of the owner's mark in a writable layer: a hard link to its owner file.
MARKER = "owner"
#: The name of this process's owner file, once it makes writable layers for a spawner
#: (see set_owner); inherited by the processes it forks (its janitor).
_owner: str | None = None

_serial = itertools.count(1)
#: What overlayfs leaves in an empty writable layer, deepest first.
_RW_LAYOUT = (
    "work/work",
    "work/index",
    "work/incompat/volatile",
    "work/incompat",
    "work",
    "upper",
    "rootfs",
)
#: The container's /etc/hosts, /etc/hostname and /etc/resolv.conf, bind-mounted into it
#: (see containerlib.network.etcfiles): made empty with the layout, filled at its start.
_ETC_FILES = ("hosts", "hostname", "resolv.conf")


def set_owner(name: str | None) -> None:
    """Mark the writable layers this process (and its forks) makes from now on as owned
    by the owner file ``name`` in ``<data root>/owners`` (None: mark none)."""
    global _owner
    _owner = name


def owner_file(data_root: str, name: str) -> str:
    """The path of the owner file ``name`` of ``data_root``."""
    return os.path.join(data_root, OWNERS, name)


def remove_dir(path: str, known: tuple[str, ...] = ()) -> None:
    """Remove ``path``; try the ``known`` empty subdirectories first, deepest first, as
    plain rmdir calls, which is most of the time all there is and much cheaper than a walk."""
    try:
        for sub in known:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(path, sub))
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        with contextlib.suppress(OSError):
            remove_tree(path)


def remove_rw(rw_dir: str) -> None:
    """Remove a writable layer, whatever the container wrote to it."""
    for name in (*_ETC_FILES, MARKER):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(rw_dir, name))
    remove_dir(rw_dir, _RW_LAYOUT)


def _unique(directory: str, stem: str) -> str:
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    return os.path.join(directory, f"{stem}.{os.getpid()}.{next(_serial)}")


def new_rw_dir(containers: str) -> str:
    """Make an empty writable layer (``upper`` and ``work``) in the pool beside
    ``containers`` (``<data root>/pool``), to be renamed to ``containers/<id>``."""
    path = _unique(os.path.join(os.path.dirname(containers), "pool"), "rw")
    make_rw_layout(path)
    return path


def make_rw_layout(path: str) -> None:
    """Make ``path`` with the overlay's ``upper`` and ``work`` directories, the
    ``rootfs`` mount point, the container's empty /etc files and, once :func:`set_owner`
    named one, the owner's mark; ``path`` must not exist (FileExistsError). ``path`` is
    two levels below the data root (``containers/<id>``, ``pool/<name>``)."""
    os.mkdir(path, 0o700)
    os.mkdir(path + "/upper", 0o755)
    os.mkdir(path + "/work", 0o700)
    os.mkdir(path + "/rootfs", 0o700)
    for name in _ETC_FILES:
        os.close(
            os.open(f"{path}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        )
    if _owner is not None:
        # Last: a layer without its mark is one being made, which prune leaves alone.
        # Without an owner file (it could not be made), the layer goes unmarked.
        with contextlib.suppress(OSError):
            data_root = os.path.dirname(os.path.dirname(path))
            os.link(owner_file(data_root, _owner), f"{path}/{MARKER}")


def trash_path(rw_dir: str) -> str:
    """A new name in ``<data root>/trash`` for the writable layer ``rw_dir``."""
    data_root = os.path.dirname(os.path.dirname(rw_dir))
    return _unique(os.path.join(data_root, "trash"), os.path.basename(rw_dir))
