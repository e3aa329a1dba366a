"""The state of detached containers on disk: ``<run root>/<id>/``.

Small, for the command lines and ``containerlib.list()``, which read it without starting
anything: see :mod:`containerlib.runtime.keeper` for the process that writes it.

- ``container.json``: the record (:func:`read_record`); :func:`status` tells from it and
  from ``/proc`` whether the container is ``creating``, ``running``, ``exited`` or ``dead``;
- ``container.log``: its output, in the CRI log format (:mod:`containerlib.runtime.logs`);
- ``keeper.sock``: where its keeper takes ``exec`` and ``wait`` requests while it runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from typing import Any, Final

import attrs

from containerlib.errors import ContainerSetupError, SpawnerError
from containerlib.linux.cgroups import CgroupStats, Pressure
from containerlib.runtime.messages import recv_message

__all__ = [
    "LOG_FILE",
    "SOCKET",
    "STATE_FILE",
    "alive",
    "connect",
    "frozen",
    "locked",
    "locked_dir",
    "read_record",
    "remove_state",
    "socket_path",
    "start_time",
    "stats_from_dict",
    "stats_to_dict",
    "status",
    "sweep_removing",
    "wait_for_start",
    "write_record",
]

STATE_FILE: Final = "container.json"
LOG_FILE: Final = "container.log"
SOCKET: Final = "keeper.sock"


# -- the record on disk ------------------------------------------------------------------


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot); None if it is gone or
    a zombie. With the pid, it names a process for good: pids are reused, start times of
    one pid are not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(b")")[2].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs."""
    return pid is not None and started is not None and start_time(pid) == started


def read_record(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The container's record, None if there is none (or it is being replaced)."""
    try:
        with open(os.path.join(state_dir, STATE_FILE), "rb") as f:
            record: dict[str, Any] = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return record


def write_record(state_dir: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Replace the container's record at once (readers see the old or the new one)."""
    path = os.path.join(state_dir, STATE_FILE)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def status(record: dict[str, Any]) -> str:
    """``creating``, ``running``, ``exited`` or ``dead`` (the keeper, or the caller that
    was creating it, is gone and the record does not say how the container ended)."""
    kept = record.get("status")
    if kept == "exited":
        return "exited"
    if alive(record.get("keeper_pid"), record.get("keeper_start_time")):
        return "running" if kept == "running" else "creating"
    if kept == "creating" and alive(record.get("creator_pid"), record.get("creator_start_time")):
        return "creating"
    return "dead"


def frozen(procs_files: list[str]) -> bool:
    """Whether the cgroup of these ``cgroup.procs`` files is frozen (v1 freezer or v2)."""
    for path in procs_files:
        where = os.path.dirname(path)
        with contextlib.suppress(OSError), open(os.path.join(where, "freezer.state")) as f:
            if f.read().strip() == "FROZEN":
                return True
        with contextlib.suppress(OSError), open(os.path.join(where, "cgroup.events")) as f:
            if "frozen 1" in f.read().splitlines():
                return True
    return False


def stats_to_dict(stats: CgroupStats) -> dict[str, Any]:
    """The figures as JSON can hold them."""
    return attrs.asdict(stats)


def stats_from_dict(data: dict[str, Any] | None) -> CgroupStats:
    """The figures of :func:`stats_to_dict` back (none for None)."""
    if not data:
        return CgroupStats()
    fields = dict(data)
    for name in ("cpu_pressure", "memory_pressure", "io_pressure"):
        if fields.get(name) is not None:
            fields[name] = Pressure(**fields[name])
    known = {a.name for a in attrs.fields(CgroupStats)}
    return CgroupStats(**{k: v for k, v in fields.items() if k in known})


@contextlib.contextmanager
def locked(run_root: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of the state root: one start at a time picks a name."""
    # The directory itself: a lock file would be one more thing left on the host.
    fd = os.open(run_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked_dir(path: str, *, create: bool = True) -> Iterator[bool]:
    """Hold the lock of the directory ``path``, which its last user removes (the
    networks' state): made first with ``create`` (mode 0700, its parents too), and
    taken again if it was removed while this process waited for it (a removed
    directory has no links), so that two processes never hold locks of two
    directories at one path. Yields True, or False without ``create`` when there is
    no directory (nothing to do) and then holds no lock."""
    while True:
        if create:
            with contextlib.suppress(FileNotFoundError):  # a parent removed meanwhile
                os.makedirs(path, mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                continue
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:  # its last user removed it while we waited
                continue
            yield True
            return
        finally:
            os.close(fd)


#: How a state directory is renamed while it is removed (``.removing-<id>-<pid>``).
REMOVING_PREFIX: Final = ".removing-"


def _remove_state(state_dir: str) -> None:
    # Out of its id's way at once: the container is gone the moment it is no longer
    # found (its status "removed"), and nothing is left at its path then.
    parent, cid = os.path.split(os.path.normpath(state_dir))
    moved = os.path.join(parent, f"{REMOVING_PREFIX}{cid}-{os.getpid()}")
    try:
        os.rename(state_dir, moved)
        state_dir = moved
    except FileNotFoundError:
        return  # removed by another
    except OSError:
        pass  # removed where it is
    _delete_state(state_dir)


def _delete_state(state_dir: str) -> None:
    for name in (STATE_FILE, LOG_FILE, LOG_FILE + ".1", SOCKET):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(state_dir, name))
    with contextlib.suppress(OSError):
        for entry in os.listdir(state_dir):  # a record being replaced (container.json.PID)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(state_dir, entry))
        os.rmdir(state_dir)


def remove_state(state_dir: str | os.PathLike[str]) -> None:
    """Remove a container's state directory and what is in it."""
    _remove_state(os.fspath(state_dir))


def sweep_removing(run_root: str) -> list[str]:
    """Remove the state directories in ``run_root`` that a process killed while it
    removed them left under their ``.removing-`` names; returns their paths."""
    swept = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(run_root):
            pid = entry.rpartition("-")[2]
            if entry.startswith(REMOVING_PREFIX) and pid.isdigit() and start_time(int(pid)) is None:
                path = os.path.join(run_root, entry)
                _delete_state(path)
                swept.append(path)
    return swept


# -- talking to one ------------------------------------------------------------------------


def connect(state_dir: str | os.PathLike[str]) -> socket.socket | None:
    """A connection to the container's keeper; None when it no longer serves."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        with socket_path(state_dir) as path:
            sock.connect(path)
    except OSError as e:
        sock.close()
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
            return None
        raise
    return sock


@contextlib.contextmanager
def socket_path(state_dir: str | os.PathLike[str]) -> Iterator[str]:
    """The keeper's socket as a path short enough for a unix socket address (108 bytes):
    through a descriptor of the state directory, whatever its length."""
    fd = os.open(state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET}"
    finally:
        os.close(fd)


def wait_for_start(channel: socket.socket, cid: str) -> int:
    """Read the keeper's first answer; returns the container's pid.

    Raises:
        ContainerSetupError: the container could not be made (nothing is left).
        SpawnerError: the keeper ended before it answered.
    """
    msg = recv_message(channel)
    if msg is None:
        raise SpawnerError(f"the keeper of container {cid[:12]} ended before it started it")
    reply, fds = msg
    for fd in fds:
        os.close(fd)
    if reply[0] == "error":
        error = reply[1]
        if isinstance(error, BaseException):
            raise error
        raise ContainerSetupError("start the keeper", errno.EIO, cid, str(error))
    return int(reply[1])
