"""Kernel calls that Python's standard library does not wrap, bound once through ctypes.

The functions here are thin: they call the C library (or ``syscall(2)`` where glibc has
no wrapper), and turn a ``-1`` into :class:`OSError` with the errno. They are bound when
this module is imported, so that a forked child can call them without importing or
allocating anything new. See mount(2), pivot_root(2), clone(2), unshare(2), prctl(2),
capset(2) and openat2(2).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import time
from typing import Final

__all__ = [
    "CLONE_NEWCGROUP",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWTIME",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "CLONE_PARENT",
    "MNT_DETACH",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "MS_SHARED",
    "MS_SLAVE",
    "MS_UNBINDABLE",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "SECCOMP_SET_MODE_FILTER",
    "capset",
    "clone",
    "close_range_cloexec",
    "idmapped_tree",
    "mount",
    "open_tree_clone",
    "openat2",
    "overlay_mount",
    "pivot_root",
    "prctl",
    "rename_noreplace",
    "seccomp_set_filter",
    "set_process_name",
    "setdomainname",
    "sethostname",
    "setns",
    "umount2",
    "unshare",
]

CLONE_NEWTIME: Final = 0x00000080
CLONE_PARENT: Final = 0x00008000
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000

MS_RDONLY: Final = 0x1
MS_NOSUID: Final = 0x2
MS_NODEV: Final = 0x4
MS_NOEXEC: Final = 0x8
MS_SYNCHRONOUS: Final = 0x10
MS_REMOUNT: Final = 0x20
MS_MANDLOCK: Final = 0x40
MS_DIRSYNC: Final = 0x80
MS_NOSYMFOLLOW: Final = 0x100
MS_NOATIME: Final = 0x400
MS_NODIRATIME: Final = 0x800
MS_BIND: Final = 0x1000
MS_MOVE: Final = 0x2000
MS_REC: Final = 0x4000
MS_SILENT: Final = 0x8000
MS_UNBINDABLE: Final = 1 << 17
MS_PRIVATE: Final = 1 << 18
MS_SLAVE: Final = 1 << 19
MS_SHARED: Final = 1 << 20
MS_RELATIME: Final = 1 << 21
MS_STRICTATIME: Final = 1 << 24

MNT_DETACH: Final = 2

RESOLVE_NO_XDEV: Final = 0x01
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_NO_SYMLINKS: Final = 0x04
RESOLVE_BENEATH: Final = 0x08
RESOLVE_IN_ROOT: Final = 0x10

PR_SET_PDEATHSIG: Final = 1
PR_SET_KEEPCAPS: Final = 8
PR_SET_NAME: Final = 15
PR_CAPBSET_READ: Final = 23
PR_CAPBSET_DROP: Final = 24
PR_SET_CHILD_SUBREAPER: Final = 36
PR_SET_NO_NEW_PRIVS: Final = 38
PR_SET_DUMPABLE: Final = 4
PR_CAP_AMBIENT: Final = 47
PR_CAP_AMBIENT_RAISE: Final = 2
PR_CAP_AMBIENT_CLEAR_ALL: Final = 4

_SYSCALLS: Final = {
    # name: (x86_64, aarch64)
    "clone": (56, 220),
    "pivot_root": (155, 41),
    "openat2": (437, 437),
    "close_range": (436, 436),
    "renameat2": (316, 276),
    "capget": (125, 90),
    "capset": (126, 91),
    "seccomp": (317, 277),
    "open_tree": (428, 428),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "mount_setattr": (442, 442),
}
_ARCH_INDEX: Final = {"x86_64": 0, "aarch64": 1}.get(platform.machine())


def _nr(name: str) -> int:
    if _ARCH_INDEX is None:
        raise OSError(38, f"containerlib does not know the syscall numbers of {platform.machine()}")
    return _SYSCALLS[name][_ARCH_INDEX]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_mount = _libc.mount
_mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_sethostname = _libc.sethostname
_sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_setdomainname = _libc.setdomainname
_setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def clone(flags: int) -> int:
    """Fork with ``clone(2)`` flags; returns 0 in the child and the child's pid in the parent.

    The child gets a copy of the address space like ``fork()``, but no at-fork handlers run,
    so it must only be used from a single-threaded process and the child must ``exec`` or
    ``_exit`` soon without touching locks.
    """
    return _check(
        _syscall(ctypes.c_long(_nr("clone")), ctypes.c_ulong(flags), None, None, None, None),
        "clone",
    )


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (unshare(2))."""
    _check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace of descriptor ``fd`` (setns(2); ``nstype``
    a CLONE_NEW* flag, or 0 for any). For a network namespace, only this thread moves.

    Raises:
        OSError: the kernel refused, with its errno.
    """
    if _setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def mount(
    source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None
) -> None:
    """mount(2); ``target`` may be ``/proc/self/fd/N`` to mount on an open directory."""
    _check(_mount(source, target, fstype, flags, data), "mount")


def umount2(target: bytes, flags: int) -> None:
    """umount2(2)."""
    _check(_umount2(target, flags), "umount2")


def pivot_root(new_root: bytes, put_old: bytes) -> None:
    """pivot_root(2): make ``new_root`` the root of the calling mount namespace."""
    _check(
        _syscall(
            ctypes.c_long(_nr("pivot_root")), ctypes.c_char_p(new_root), ctypes.c_char_p(put_old)
        ),
        "pivot_root",
    )


def sethostname(name: bytes) -> None:
    """sethostname(2) in the caller's UTS namespace."""
    _check(_sethostname(name, len(name)), "sethostname")


def setdomainname(name: bytes) -> None:
    """setdomainname(2) in the caller's UTS namespace."""
    _check(_setdomainname(name, len(name)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)."""
    return _check(_prctl(option, arg2, arg3, arg4, arg5), "prctl")


def set_process_name(name: bytes) -> None:
    """Name the calling thread as ps and /proc/PID/comm show it (at most 15 bytes)."""
    buf = ctypes.create_string_buffer(name[:15])
    _check(_prctl(PR_SET_NAME, ctypes.addressof(buf), 0, 0, 0), "prctl(PR_SET_NAME)")


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def openat2(dirfd: int, path: bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the ``resolve`` restrictions.

    With ``RESOLVE_IN_ROOT``, ``..`` and absolute symlinks stop at ``dirfd`` as if it were
    ``/``, so nothing inside a container's rootfs can lead the lookup out of it.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    # EAGAIN: a rename or a mount anywhere on the host (the mount lock is global) raced a
    # ".." lookup; the kernel asks the caller to try again. At once, then with pauses.
    for tries in range(512):
        fd = _syscall(
            ctypes.c_long(_nr("openat2")),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0 or ctypes.get_errno() != errno.EAGAIN:
            break
        if tries >= 16:
            time.sleep(0.0001)
    return _check(fd, "openat2")


def rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``, failing with EEXIST if ``dst`` exists (renameat2(2))."""
    at_fdcwd = -100
    rename_noreplace_flag = 1
    _check(
        _syscall(
            ctypes.c_long(_nr("renameat2")),
            ctypes.c_int(at_fdcwd),
            ctypes.c_char_p(os.fsencode(src)),
            ctypes.c_int(at_fdcwd),
            ctypes.c_char_p(os.fsencode(dst)),
            ctypes.c_uint(rename_noreplace_flag),
        ),
        f"rename {src!r} to {dst!r}",
    )


def close_range_cloexec(first: int) -> None:
    """Mark every descriptor from ``first`` up close-on-exec (close_range(2))."""
    close_range_cloexec_flag = 1 << 2
    _check(
        _syscall(
            ctypes.c_long(_nr("close_range")),
            ctypes.c_uint(first),
            ctypes.c_uint(0xFFFFFFFF),
            ctypes.c_uint(close_range_cloexec_flag),
        ),
        "close_range",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


SECCOMP_SET_MODE_FILTER: Final = 1


def seccomp_set_filter(program: bytes, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER) with the BPF ``program`` (struct sock_filter
    entries, 8 bytes each): the calling thread's system calls are filtered from now on.
    Needs no_new_privs or CAP_SYS_ADMIN."""
    prog = _SockFprog(len(program) // 8, program)
    _check(
        _syscall(
            ctypes.c_long(_nr("seccomp")),
            ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
            ctypes.c_ulong(flags),
            ctypes.byref(prog),
        ),
        "seccomp",
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread, with 64-bit capability masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(
        _CapData(effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF),
        _CapData(effective >> 32, permitted >> 32, inheritable >> 32),
    )
    _check(
        _syscall(ctypes.c_long(_nr("capset")), ctypes.byref(header), ctypes.byref(data)), "capset"
    )


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def open_tree_clone(path: str, *, recursive: bool = False) -> int:
    """A detached copy of the mount at ``path`` (open_tree(2) with OPEN_TREE_CLONE; with
    ``recursive``, the mounts under it too), which keeps the propagation of the original
    (a copy of a shared mount is its peer). Returns the mount's descriptor (close-on-exec);
    a process in another mount namespace attaches it with move_mount(2)."""
    at_fdcwd, at_recursive, open_tree_clone = -100, 0x8000, 1
    flags = open_tree_clone | os.O_CLOEXEC | (at_recursive if recursive else 0)
    return _check(
        _syscall(
            ctypes.c_long(_nr("open_tree")),
            ctypes.c_int(at_fdcwd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_uint(flags),
        ),
        f"open_tree {path!r}",
    )


def idmapped_tree(path: str, userns_fd: int) -> int:
    """A detached copy of the mount at ``path`` (:func:`open_tree_clone`) whose
    file owners are seen through the id maps of the user namespace ``userns_fd``
    (mount_setattr(2) with MOUNT_ATTR_IDMAP, Linux 5.12+): a file of host uid 0 shows as
    the uid that namespace maps to container root. Returns the mount's descriptor
    (close-on-exec); a process in that namespace attaches it with move_mount(2).
    Needs CAP_SYS_ADMIN in the file system's user namespace; not every file system
    supports it (ext4, xfs, btrfs and tmpfs do)."""
    at_empty_path, mount_attr_idmap = 0x1000, 0x00100000
    fd = open_tree_clone(path)
    attr = _MountAttr(mount_attr_idmap, 0, 0, userns_fd)
    try:
        _check(
            _syscall(
                ctypes.c_long(_nr("mount_setattr")),
                ctypes.c_int(fd),
                ctypes.c_char_p(b""),
                ctypes.c_uint(at_empty_path),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"id-map the mount of {path!r}",
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsconfig(fs: int, command: int, key: bytes | None, value: bytes | None) -> int:
    return int(
        _syscall(
            ctypes.c_long(_nr("fsconfig")),
            ctypes.c_int(fs),
            ctypes.c_uint(command),
            ctypes.c_char_p(key),
            ctypes.c_char_p(value),
            ctypes.c_int(0),
        )
    )


def overlay_mount(lowerdirs: list[str], upperdir: str, workdir: str) -> int:
    """A new overlayfs mount, not attached anywhere yet (fsopen(2), fsconfig(2),
    fsmount(2)): returns its descriptor (close-on-exec), which a process attaches with
    move_mount(2), in its own mount namespace if it likes. ``lowerdirs`` are topmost
    first; each may be ``/proc/self/fd/N/...`` of a detached (id-mapped) mount that this
    process holds. Each layer is given alone (``lowerdir+``, Linux 6.7+), past the limit
    of one string; on older kernels all in one ``lowerdir``. The upper layer is not synced
    when the mount goes (``volatile``) where the kernel has that.

    Raises:
        OSError: the kernel refused; the message names the step.
    """
    set_flag, set_string, cmd_create = 0, 1, 6
    fs = _check(
        _syscall(ctypes.c_long(_nr("fsopen")), ctypes.c_char_p(b"overlay"), ctypes.c_uint(1)),
        "fsopen overlay",
    )
    try:
        for i, layer in enumerate(lowerdirs):
            if _fsconfig(fs, set_string, b"lowerdir+", os.fsencode(layer)) < 0:
                if i or ctypes.get_errno() != errno.EINVAL:
                    _check(-1, f"overlay lowerdir {layer!r}")
                joined = ":".join(lowerdirs).encode()
                _check(_fsconfig(fs, set_string, b"lowerdir", joined), "overlay lowerdir")
                break
        _check(_fsconfig(fs, set_string, b"upperdir", os.fsencode(upperdir)), "overlay upperdir")
        _check(_fsconfig(fs, set_string, b"workdir", os.fsencode(workdir)), "overlay workdir")
        _fsconfig(fs, set_flag, b"volatile", None)  # refused before Linux 5.10: fine
        _check(_fsconfig(fs, cmd_create, None, None), "create the overlay")
        return _check(
            _syscall(
                ctypes.c_long(_nr("fsmount")), ctypes.c_int(fs), ctypes.c_uint(1), ctypes.c_uint(0)
            ),
            "fsmount overlay",
        )
    finally:
        os.close(fs)
