"""Control groups: where a container's processes are counted and limited.

A cgroup is a directory in a cgroup file system; writing a pid to its ``cgroup.procs``
moves that process in, and the controller files beside it (``memory.limit_in_bytes`` on
v1, ``memory.max`` on v2) limit everything inside. Hosts come in three kinds: unified
(cgroup v2 only), hybrid (v1 controllers plus a cgroup2 mount without controllers) and
legacy (v1 only). One driver per kind hides that from callers. See cgroups(7).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

from containerlib.linux.cgroups._base import (
    Cgroup,
    CgroupDriver,
    CgroupLimits,
    CgroupStats,
    DeviceValue,
    Pressure,
    parse_pressure,
)
from containerlib.linux.cgroups.v1 import V1_CONTROLLERS, HybridDriver
from containerlib.linux.cgroups.v2 import UnifiedDriver

__all__ = [
    "V1_CONTROLLERS",
    "Cgroup",
    "CgroupDriver",
    "CgroupLimits",
    "CgroupStats",
    "DeviceValue",
    "HybridDriver",
    "Pressure",
    "UnifiedDriver",
    "parse_pressure",
    "probe",
]


def _cgroup_mounts(mountinfo: str) -> Iterator[tuple[str, str, list[str]]]:
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype in ("cgroup", "cgroup2"):
            yield fstype, _unescape(fields[4]), options


def _unescape(path: str) -> str:
    """A mount point as mountinfo writes it: space, tab, newline and backslash as octal
    escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def probe(mountinfo: str | None = None) -> CgroupDriver:
    """Pick the driver for this host by reading ``/proc/self/mountinfo``.

    Returns:
        :class:`UnifiedDriver` when cgroup2 is mounted with controllers and no v1
        memory controller exists; otherwise :class:`HybridDriver`. For a user other than
        root on a hybrid host, a :class:`UnifiedDriver` of the cgroup2 mount: the v1
        hierarchies are root's, while the cgroup2 one is where a user gets a subtree
        delegated to it (systemd's ``user@.service``), which places its containers and
        gives them ``cgroup.kill``, ``cgroup.freeze`` and ``cpu.stat``, if no limits.

    Raises:
        OSError: no cgroup file system is mounted at all (ENOENT).
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1: dict[str, str] = {}
    unified = None
    for fstype, where, options in _cgroup_mounts(mountinfo):
        if fstype == "cgroup2":
            unified = where
        else:
            for opt in options:
                # A hierarchy mounted twice (a bind mount) is used where it was first.
                if opt in V1_CONTROLLERS:
                    v1.setdefault(opt, where)
    if "memory" in v1 and unified and os.geteuid() != 0:
        return UnifiedDriver(root=unified)
    if "memory" in v1:
        roots = {os.path.dirname(p) for p in v1.values()}
        return HybridDriver(
            v1_root=roots.pop() if len(roots) == 1 else "/sys/fs/cgroup",
            unified_root=unified,
            mounts=tuple(v1.items()),
        )
    if unified:
        return UnifiedDriver(root=unified)
    raise OSError(errno.ENOENT, "no cgroup file system is mounted on this host")
