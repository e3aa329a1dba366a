"""Default configurations as data: ``runc spec``'s template and Docker's security defaults.

:func:`default_spec` returns the ``config.json`` that ``runc spec`` (or
``runc spec --rootless``) writes, a small, locked-down starting point. The ``DEFAULT_*``
constants are what Docker applies to every container that is not privileged: the
capabilities a process keeps (capabilities(7)), and the /proc and /sys files it cannot read
(masked) or write (read-only), because they expose or control the host kernel.

Example:
    >>> spec = default_spec(args=("echo", "hi"), terminal=False)
    >>> spec.process.args, spec.root.path, [m.destination for m in spec.mounts][:3]
    (('echo', 'hi'), 'rootfs', ['/proc', '/dev', '/dev/pts'])
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from containerlib.errors import SpecError
from containerlib.spec.oci import (
    Linux,
    LinuxCapabilities,
    LinuxDeviceCgroup,
    LinuxIDMapping,
    LinuxNamespace,
    LinuxResources,
    Mount,
    POSIXRlimit,
    Process,
    Root,
    Spec,
    User,
)

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_ENV",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "default_mounts",
    "default_spec",
]

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""The 14 capabilities Docker leaves a container's process, in Docker's order."""

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
"""Paths Docker hides (an empty file or directory is mounted over them)."""

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
"""Paths Docker makes read-only."""

DEFAULT_ENV: tuple[str, ...] = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)
"""The environment of a process that was given none."""

# runc spec's own, shorter lists: the template leaves the fuller Docker set to the caller.
_RUNC_CAPABILITIES = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
_RUNC_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)
_NO_EXEC = ("nosuid", "noexec", "nodev")


def default_mounts(*, rootless: bool = False) -> tuple[Mount, ...]:
    """Return the mounts of ``runc spec``: /proc, a minimal /dev, /sys and its cgroups.

    Args:
        rootless: as ``runc spec --rootless``: /dev/pts without ``gid=5`` (the tty group
            may be unmapped) and /sys bind-mounted from the host, since a user namespace
            that does not own the network namespace cannot mount sysfs.
    """
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts.append("gid=5")
    if rootless:
        sys = Mount(
            destination="/sys", type="none", source="/sys", options=("rbind", *_NO_EXEC, "ro")
        )
    else:
        sys = Mount(destination="/sys", type="sysfs", source="sysfs", options=(*_NO_EXEC, "ro"))
    return (
        Mount(destination="/proc", type="proc", source="proc"),
        Mount(
            destination="/dev",
            type="tmpfs",
            source="tmpfs",
            options=("nosuid", "strictatime", "mode=755", "size=65536k"),
        ),
        Mount(destination="/dev/pts", type="devpts", source="devpts", options=tuple(devpts)),
        Mount(
            destination="/dev/shm",
            type="tmpfs",
            source="shm",
            options=(*_NO_EXEC, "mode=1777", "size=65536k"),
        ),
        Mount(destination="/dev/mqueue", type="mqueue", source="mqueue", options=_NO_EXEC),
        sys,
        Mount(
            destination="/sys/fs/cgroup",
            type="cgroup",
            source="cgroup",
            options=(*_NO_EXEC, "relatime", "ro"),
        ),
    )


def default_spec(
    *,
    rootless: bool = False,
    args: Sequence[str] = ("sh",),
    terminal: bool = True,
    host_uid: int | None = None,
    host_gid: int | None = None,
) -> Spec:
    """Return the spec ``runc spec`` writes (``runc spec --rootless`` with ``rootless``).

    It runs ``args`` as root in new pid, network, ipc, uts and mount namespaces with a
    read-only ``rootfs`` next to config.json, three capabilities, no new privileges, 1024
    open files, runc's masked and read-only paths, and no device access. The only
    difference from runc's output is ``ociVersion``, which is this model's version.

    Args:
        rootless: for a user without privileges, as ``runc spec --rootless``: a user
            namespace mapping root to ``host_uid``/``host_gid``, the host's network
            namespace, no device cgroup rules, and :func:`default_mounts` ``(rootless=True)``.
        args: the command to run.
        terminal: give the process a terminal; ``TERM=xterm`` is set only then.
        host_uid: the user root maps to when ``rootless``; the caller's effective uid if
            omitted.
        host_gid: likewise for the group.
    """
    if isinstance(args, str):
        raise SpecError("args", f"must be a list of strings, not the string {args!r}")
    env = DEFAULT_ENV + (("TERM=xterm",) if terminal else ())
    caps = _RUNC_CAPABILITIES
    process = Process(
        terminal=terminal,
        user=User(uid=0, gid=0),
        args=tuple(args),
        env=env,
        cwd="/",
        capabilities=LinuxCapabilities(bounding=caps, effective=caps, permitted=caps, ambient=caps),
        rlimits=(POSIXRlimit(type="RLIMIT_NOFILE", hard=1024, soft=1024),),
        no_new_privileges=True,
    )
    uid_mappings: tuple[LinuxIDMapping, ...] = ()
    gid_mappings: tuple[LinuxIDMapping, ...] = ()
    resources: LinuxResources | None = None
    if rootless:
        uid = os.geteuid() if host_uid is None else host_uid
        gid = os.getegid() if host_gid is None else host_gid
        uid_mappings = (LinuxIDMapping(container_id=0, host_id=uid, size=1),)
        gid_mappings = (LinuxIDMapping(container_id=0, host_id=gid, size=1),)
        namespaces = ("pid", "ipc", "uts", "mount", "user")
    else:
        resources = LinuxResources(devices=(LinuxDeviceCgroup(allow=False, access="rwm"),))
        namespaces = ("pid", "network", "ipc", "uts", "mount")
    linux = Linux(
        uid_mappings=uid_mappings,
        gid_mappings=gid_mappings,
        resources=resources,
        namespaces=tuple(LinuxNamespace(type=t) for t in namespaces),
        masked_paths=_RUNC_MASKED_PATHS,
        readonly_paths=DEFAULT_READONLY_PATHS,
    )
    return Spec(
        process=process,
        root=Root(path="rootfs", readonly=True),
        hostname="runc",
        mounts=default_mounts(rootless=rootless),
        linux=linux,
    )
