"""The plan: everything a container's first process needs, computed before the fork.

A :class:`Plan` holds bytes, ints and paths only, so that the forked child can carry it out
without importing, allocating much or deciding anything. It is built from an OCI
:class:`~containerlib.spec.oci.Spec` by :mod:`containerlib.runtime.specconv` and travels
to the spawner process by pickle.
"""

from __future__ import annotations

import attrs

from containerlib.linux.cgroups import CgroupLimits

__all__ = ["DeviceStep", "MountStep", "Plan"]


@attrs.frozen(kw_only=True)
class MountStep:
    """One mount made inside the new root before ``pivot_root``.

    Attributes:
        target: the absolute path inside the container.
        source: a host path for bind mounts, else the file system's source name.
        fstype: ``b"proc"``, ``b"tmpfs"``, ...; None for bind mounts.
        flags: mount(2) flags of the first call.
        data: file-system options such as ``b"size=65536k"``.
        remount_flags: for bind mounts with flags (``ro``, ``nosuid``...), the flags of the
            second call (MS_REMOUNT | MS_BIND | ...) that applies them; None for none.
        propagation: MS_PRIVATE, MS_SLAVE, MS_SHARED or MS_UNBINDABLE (with MS_REC) or 0.
        is_file: the mount point is a file (a bind mount of a file), not a directory.
        cgroup: the mount is the container's cgroup file system; made only when the
            container has a cgroup2 directory, else an empty read-only tmpfs.
    """

    target: bytes
    source: bytes | None
    fstype: bytes | None
    flags: int
    data: bytes | None = None
    remount_flags: int | None = None
    propagation: int = 0
    is_file: bool = False
    cgroup: bool = False


@attrs.frozen(kw_only=True)
class DeviceStep:
    """A device node made in the container's ``/dev``."""

    path: bytes
    mode: int
    major: int
    minor: int
    uid: int = 0
    gid: int = 0


@attrs.frozen(kw_only=True)
class Plan:
    """All a container's first process does between clone(2) and execve(2)."""

    container_id: str
    rw_dir: str
    lowerdirs: tuple[str, ...]
    readonly_root: bool = False
    rootfs_propagation: int = 0
    clone_flags: int
    new_cgroupns: bool = False
    cgroup_path: str | None = None
    cgroup_limits: CgroupLimits = attrs.field(factory=CgroupLimits)
    mounts: tuple[MountStep, ...] = ()
    devices: tuple[DeviceStep, ...] = ()
    dev_symlinks: tuple[tuple[bytes, bytes], ...] = ()
    masked_paths: tuple[bytes, ...] = ()
    readonly_paths: tuple[bytes, ...] = ()
    hostname: bytes | None = None
    domainname: bytes | None = None
    sysctl: tuple[tuple[bytes, bytes], ...] = ()
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None
    rlimits: tuple[tuple[int, int, int], ...] = ()
    no_new_privileges: bool = False
    cap_bounding: int | None = None
    cap_effective: int = 0
    cap_permitted: int = 0
    cap_inheritable: int = 0
    cap_ambient: tuple[int, ...] = ()
    oom_score_adj: int | None = None
    cwd: bytes = b"/"
    args: tuple[bytes, ...]
    env: tuple[bytes, ...] = ()

    @property
    def rootfs(self) -> str:
        """Where the overlay is mounted, in the container's own mount namespace: beside
        the upper and work directories, so that no other directory has to be made."""
        return self.rw_dir + "/rootfs"
