"""User namespaces: id maps, subordinate id ranges, and writing a process's maps.

A container in a user namespace has its own uids and gids: its root is an unprivileged
user of the host. The maps say which host ids the container's ids are; each entry is
``(container_id, host_id, size)``, as in an OCI spec's ``linux.uidMappings`` and in
``/proc/PID/uid_map`` (user_namespaces(7)).

Who may write which maps:

- root (CAP_SETUID and CAP_SETGID here) writes any maps;
- any other user may map one id, its own, and only after denying ``setgroups(2)`` to the
  namespace (else a process could drop a group that a file's mode denies);
- wider maps for a non-root user go through ``newuidmap(1)`` and ``newgidmap(1)`` (the
  setuid helpers of shadow's ``uidmap`` package), which check ``/etc/subuid`` and
  ``/etc/subgid``.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = [
    "DEFAULT_SIZE",
    "RANGE_USER",
    "ROOT_DEFAULT_START",
    "IdMap",
    "check_map",
    "default_maps",
    "host_id",
    "map_text",
    "setgroups_allowed",
    "subordinate_ranges",
    "write_id_maps",
]

#: An id map: ``(container_id, host_id, size)`` entries.
IdMap = tuple[tuple[int, int, int], ...]

#: How many ids a container gets by default: 0 to 65535, the ids of a usual Linux system.
DEFAULT_SIZE: Final = 65536
#: Where root's containers start in host ids when /etc/subuid names no range for them:
#: the first id of the range systemd sets aside for containers (524288, 0x80000; see
#: systemd's "Users, Groups, UIDs and GIDs on systemd Systems"), above the ranges
#: ``useradd`` hands out to users (from 100000).
ROOT_DEFAULT_START: Final = 524288
#: The /etc/subuid user whose range root's containers take first, as Docker's
#: ``dockremap``.
RANGE_USER: Final = "containerlib"


def subordinate_ranges(user: str, uid: int, path: str = "/etc/subuid") -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges ``path`` (``/etc/subuid`` or ``/etc/subgid``) gives
    the user named ``user`` or numbered ``uid``, in file order; none if the file is
    missing. Lines that are not ``name:start:count`` are skipped, as shadow does.

    Example:
        >>> subordinate_ranges("nobody", 65534, "/nonexistent")
        []
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            found.append((start, count))
    return found


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def default_maps(
    size: int = DEFAULT_SIZE, subuid: str = "/etc/subuid", subgid: str = "/etc/subgid"
) -> tuple[IdMap, IdMap]:
    """The uid and gid maps a container gets from :meth:`Container.userns` without
    explicit ids, for the calling user.

    - root: the first range /etc/subuid and /etc/subgid give the user ``containerlib``
      (as Docker's ``dockremap``), else root's own, else ``size`` ids from 524288
      (:data:`ROOT_DEFAULT_START`);
    - another user: its own uid and gid as root, followed, when ``newuidmap`` and
      ``newgidmap`` are installed, by its first subordinate ranges as ids 1 and up (as
      podman maps them); only its own ids otherwise.
    """
    uid, gid = os.geteuid(), os.getegid()
    name = _user_name(uid)
    if uid == 0:
        maps = []
        for path in (subuid, subgid):
            ranges = subordinate_ranges(RANGE_USER, -1, path) or subordinate_ranges(name, uid, path)
            start, count = ranges[0] if ranges else (ROOT_DEFAULT_START, size)
            maps.append(((0, start, min(count, size)),))
        return maps[0], maps[1]
    uid_map: IdMap = ((0, uid, 1),)
    gid_map: IdMap = ((0, gid, 1),)
    if shutil.which("newuidmap") and shutil.which("newgidmap"):
        subuids = subordinate_ranges(name, uid, subuid)
        subgids = subordinate_ranges(name, uid, subgid)
        if subuids and subgids:
            uid_map += ((1, subuids[0][0], min(subuids[0][1], size - 1)),)
            gid_map += ((1, subgids[0][0], min(subgids[0][1], size - 1)),)
    return uid_map, gid_map


def host_id(id_map: IdMap, container_id: int) -> int | None:
    """The host id that ``container_id`` is in ``id_map``; None if it is not mapped.

    Example:
        >>> host_id(((0, 100000, 65536),), 33)
        100033
    """
    for inside, outside, size in id_map:
        if inside <= container_id < inside + size:
            return outside + container_id - inside
    return None


def map_text(id_map: Iterable[tuple[int, int, int]]) -> bytes:
    """``id_map`` as ``/proc/PID/uid_map`` takes it: one ``inside outside size`` line
    per entry.

    Example:
        >>> map_text([(0, 1000, 1), (1, 100000, 65535)])
        b'0 1000 1\\n1 100000 65535\\n'
    """
    return b"".join(b"%d %d %d\n" % entry for entry in id_map)


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _own_ids_only(id_map: IdMap, own: int) -> bool:
    return len(id_map) == 1 and id_map[0][1] == own and id_map[0][2] == 1


def _run_helper(helper: str, pid: int, id_map: IdMap) -> None:
    program = shutil.which(helper)
    if program is None:
        raise PermissionError(
            1,
            f"a non-root user can map only its own id without {helper}(1): install the "
            "uidmap package and give the user ranges in /etc/subuid and /etc/subgid",
        )
    args = [program, str(pid), *(str(n) for entry in id_map for n in entry)]
    done = subprocess.run(args, capture_output=True, check=False)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise PermissionError(1, f"{helper}: {why}")


def setgroups_allowed(gid_map: IdMap) -> bool:
    """Whether a user namespace with ``gid_map``, given its maps by this process (see
    :func:`write_id_maps`), allows setgroups(2)."""
    return os.geteuid() == 0 or not _own_ids_only(gid_map, os.getegid())


def write_id_maps(pid: int, uid_map: IdMap, gid_map: IdMap) -> bool:
    """Give the user namespace of process ``pid`` (made by this process's user, and
    without maps yet) the maps ``uid_map`` and ``gid_map``.

    Returns:
        Whether ``setgroups(2)`` stays allowed in the namespace: it is denied when a
        non-root user maps its own gid alone.

    Raises:
        OSError: the kernel or the helper refused the maps; PermissionError when a
            non-root user asks for ids it may not map, saying what would allow it.
    """
    proc = f"/proc/{pid}"
    if os.geteuid() == 0:
        _write(f"{proc}/uid_map", map_text(uid_map))
        _write(f"{proc}/gid_map", map_text(gid_map))
        return True
    setgroups = True
    if _own_ids_only(gid_map, os.getegid()):
        _write(f"{proc}/setgroups", b"deny")
        _write(f"{proc}/gid_map", map_text(gid_map))
        setgroups = False
    else:
        _run_helper("newgidmap", pid, gid_map)
    if _own_ids_only(uid_map, os.geteuid()):
        _write(f"{proc}/uid_map", map_text(uid_map))
    else:
        _run_helper("newuidmap", pid, uid_map)
    return setgroups


def check_map(id_map: Sequence[tuple[int, int, int]], field: str) -> str | None:
    """What is wrong with ``id_map`` for a container, or None: container id 0 must be
    mapped (the setup runs as the namespace's root), sizes positive, at most 340
    entries (the kernel's limit), and no two entries may overlap inside or outside."""
    if not id_map:
        return f"{field} is empty"
    if len(id_map) > 340:
        return f"{field} has {len(id_map)} entries; the kernel takes at most 340"
    for inside, outside, size in id_map:
        if size <= 0 or inside < 0 or outside < 0 or max(inside, outside) + size > 2**32 - 1:
            return f"{field} entry {(inside, outside, size)} is out of range"
    for column in (0, 1):
        spans = sorted((e[column], e[column] + e[2]) for e in id_map)
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start < end:
                return f"{field} has overlapping entries"
    if host_id(tuple(id_map), 0) is None:
        return f"{field} does not map id 0 (the container's root)"
    return None
