"""Copying files into and out of a running container: ``put``, ``get`` and ``path``.

The container's root file system is reached through ``/proc/PID/root`` of its first
process, and every path in it is resolved with openat2(2) and ``RESOLVE_IN_ROOT``: ``..``
and absolute symlinks stop at the container's root, as they would inside it, so a hostile
container cannot make a copy read or write a file of the host. Files the host writes
belong to the container's root user (the owner of its ``/``: the host uid that a user
namespace maps to root, or root).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from containerlib.errors import ContainerNotRunning, SpecError
from containerlib.linux import syscalls as sc

__all__ = ["get", "path", "put"]

_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS


def _absolute(where: str, field: str) -> str:
    if not isinstance(where, str) or not where.startswith("/") or "\0" in where:
        raise SpecError(field, f"must be an absolute path in the container, not {where!r}")
    return where


def _root(pid: int, cid: str, action: str) -> int:
    try:
        return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise ContainerNotRunning(cid, action) from None


def _open(root: int, where: str, flags: int, mode: int = 0) -> int:
    return sc.openat2(root, where.encode(), flags | os.O_CLOEXEC, _RESOLVE, mode)


def _make_dirs(root: int, where: str, owner: tuple[int, int]) -> None:
    """Make the directory ``where`` (and its parents) in the container if missing; each
    step resolves from the container's root, as the container would."""
    parts = [p for p in where.split("/") if p]
    for i in range(len(parts)):
        here = "/" + "/".join(parts[: i + 1])
        try:
            os.close(_open(root, here, os.O_PATH | os.O_DIRECTORY))
            continue
        except FileNotFoundError:
            pass
        parent = _open(root, "/" + "/".join(parts[:i]), os.O_PATH | os.O_DIRECTORY)
        try:
            os.mkdir(parts[i], 0o755, dir_fd=parent)
            os.chown(parts[i], *owner, dir_fd=parent, follow_symlinks=False)
        except FileExistsError:  # a symlink to nowhere in the container
            raise FileNotFoundError(
                errno.ENOENT, "a symlink to a directory the container does not have", here
            ) from None
        finally:
            os.close(parent)


def put(
    pid: int,
    cid: str,
    source: bytes | str | os.PathLike[str],
    dest: str,
    *,
    mode: int | None = None,
) -> None:
    """Write ``source`` at ``dest`` in the container of first process ``pid``: bytes as
    a file; a host file as a file (its mode kept); a host directory as a directory tree.
    Missing parent directories are made.

    Raises:
        SpecError: ``dest`` is not absolute, or ``source`` is neither bytes nor a host
            file or directory.
        ContainerNotRunning: the container has ended.
        OSError: the kernel refused (a read-only file system, a directory where a file
            goes...); ``..`` or a symlink never leads out of the container's root.
    """
    _absolute(dest, "put dest")
    dest = "/" + "/".join(p for p in dest.split("/") if p)
    if dest == "/":
        raise SpecError("put dest", "must name a file or directory, not /")
    root = _root(pid, cid, "put a file into")
    try:
        st = os.fstat(root)
        owner = (st.st_uid, st.st_gid)
        _make_dirs(root, dest.rpartition("/")[0], owner)
        if isinstance(source, bytes | bytearray | memoryview):
            _write(root, dest, bytes(source), 0o644 if mode is None else mode, owner)
        elif isinstance(source, str | os.PathLike):
            _copy(root, dest, Path(source), owner, mode)
        else:
            raise SpecError("put source", f"must be bytes or a host path, not {source!r}")
    finally:
        os.close(root)


def _write(root: int, dest: str, data: bytes, mode: int, owner: tuple[int, int]) -> None:
    fd = _open(root, dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchown(fd, *owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _copy(root: int, dest: str, source: Path, owner: tuple[int, int], mode: int | None) -> None:
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise SpecError("put source", f"{str(source)!r} does not exist on the host") from None
    if stat.S_ISREG(st.st_mode):
        kept = stat.S_IMODE(st.st_mode) if mode is None else mode
        _write(root, dest, source.read_bytes(), kept, owner)
        return
    parent_path, _, name = dest.rpartition("/")
    parent = _open(root, parent_path or "/", os.O_PATH | os.O_DIRECTORY)
    try:
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
                os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), name, dir_fd=parent)
            os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)
        else:
            raise SpecError("put source", f"{str(source)!r} is not a file, directory or symlink")
    finally:
        os.close(parent)
    if stat.S_ISDIR(st.st_mode):
        for child in sorted(source.iterdir()):
            _copy(root, f"{dest}/{child.name}", child, owner, None)


def get(pid: int, cid: str, where: str) -> bytes:
    """The content of the file ``where`` in the container of first process ``pid``.

    Raises:
        SpecError: ``where`` is not absolute.
        ContainerNotRunning: the container has ended.
        FileNotFoundError, IsADirectoryError: as for a file of the host.
    """
    _absolute(where, "get path")
    root = _root(pid, cid, "get a file from")
    try:
        fd = _open(root, where, os.O_RDONLY)
    finally:
        os.close(root)
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, "a directory, not a file", where)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def path(pid: int, cid: str, where: str) -> Path:
    """The host path of ``where`` in the container of first process ``pid``:
    ``/proc/PID/root/...``, valid while the container runs. It is checked to exist inside
    the container's root, but what the host does with it later follows symlinks as the
    host does: for a container that may be hostile, use :func:`get` and :func:`put`.

    Raises:
        SpecError: ``where`` is not absolute.
        ContainerNotRunning: the container has ended.
        FileNotFoundError: it does not exist in the container.
    """
    _absolute(where, "path")
    root = _root(pid, cid, "look into")
    try:
        os.close(_open(root, where, os.O_PATH))
    finally:
        os.close(root)
    return Path(f"/proc/{pid}/root") / where.lstrip("/")
