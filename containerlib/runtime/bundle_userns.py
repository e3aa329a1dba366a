"""User namespaces for OCI bundles: the first process cloned into one, and its maps and
rootfs.

A process that exec(2)s in a new user namespace before the namespace has its id maps
loses every capability (user_namespaces(7)), so the native helper clones it
(``clib-init --forker``) and no exec follows. The maps are written from outside
(``/proc/PID/uid_map``). A bundle's rootfs is a host directory: bound as it is when the
container's root owns it, else seen through an id-mapped mount (mount_setattr(2),
``MOUNT_ATTR_IDMAP``) in which the files of host uid 0 belong to the container's root.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

from containerlib.errors import ContainerSetupError
from containerlib.linux import syscalls as sc
from containerlib.linux.userns import host_id, write_id_maps
from containerlib.runtime.plan import Plan
from containerlib.runtime.warm import Warm

__all__ = ["clone_in_user_namespace", "enter_user_namespace"]


def clone_in_user_namespace(helper: str, flags: int, detached: bool) -> Warm:
    """A warm process in new namespaces with a new user namespace, cloned by the native
    helper (``clib-init --forker``, started here and ended at once): a process that
    exec'd there before its maps were written would lose every capability. It is this
    process's child (CLONE_PARENT); ``detached``, it does not die with this process.

    Raises:
        OSError: the helper could not be started or the clone failed.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    argv = [helper, "--forker", str(theirs.fileno())] + (["--detached"] if detached else [])
    with theirs:
        try:
            forker = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
    try:
        # One request (the clone flags, no cgroup) and its answer: the pid, or -errno,
        # with our end of the new process's socket (see forker_main in _init.c).
        ours.send(flags.to_bytes(8, sys.byteorder))
        data, got, _flags, _addr = socket.recv_fds(ours, 8, 1)
    finally:
        ours.close()  # the forker ends
        forker.wait()
    pid = int.from_bytes(data, sys.byteorder, signed=True) if len(data) == 8 else 0
    if pid < 0:
        raise OSError(-pid, f"clone the container's process: {os.strerror(-pid)}")
    if pid == 0 or not got:
        for fd in got:
            os.close(fd)
        raise OSError(errno.EPIPE, "the forker process ended without an answer")
    return Warm(pid, socket.socket(fileno=got[0]), flags, native=True)


def enter_user_namespace(warm: Warm, plan: Plan) -> tuple[bool, int | None]:
    """Write the id maps of ``warm``'s user namespace; return whether it allows
    setgroups(2) and, when the rootfs needs one, an id-mapped mount of it (a detached
    mount's descriptor, for the process to attach; the caller closes it).

    The rootfs needs none when the container's root owns it (its files were made for the
    mapping, or the mapping is the identity); root's runtime id-maps any other, so that a
    file of host uid 0 shows as the container's root's. A non-root caller cannot, and
    gets its rootfs as it is.

    Raises:
        ContainerSetupError: the maps could not be written, or the mount not made.
    """
    cid = plan.container_id
    try:
        setgroups = write_id_maps(warm.pid, plan.uid_map, plan.gid_map)
    except OSError as e:
        detail = e.strerror if e.strerror and e.strerror != os.strerror(e.errno or 0) else ""
        raise ContainerSetupError(
            "write the id maps of the user namespace", e.errno or errno.EPERM, cid, detail
        ) from None
    rootfs = plan.lowerdirs[0]
    owner = (host_id(plan.uid_map, 0), host_id(plan.gid_map, 0))
    st = os.stat(rootfs)
    if os.geteuid() != 0 or (st.st_uid, st.st_gid) == owner:
        return setgroups, None
    try:
        userns_fd = os.open(f"/proc/{warm.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return setgroups, sc.idmapped_tree(rootfs, userns_fd)
        finally:
            os.close(userns_fd)
    except OSError as e:
        raise ContainerSetupError(
            f"id-map the rootfs {rootfs}", e.errno or errno.EIO, cid, e.strerror or ""
        ) from None
