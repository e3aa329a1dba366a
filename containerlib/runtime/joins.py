"""Namespaces a container joins instead of making: a pod's shared network namespace, or
an OCI ``linux.namespaces[].path``.

A namespace is named by a file: ``/proc/PID/ns/net`` of a process in it, or a bind mount
of that file (``ip netns add`` makes them under ``/run/netns``). Opening the file gives a
descriptor that setns(2) moves a process into; the namespace lives as long as a process,
a descriptor or a bind mount holds it. Only namespaces a process can join and still be
set up as a container are allowed here: network, UTS and IPC (a PID namespace would hold
only the process's children, a mount namespace would replace the rootfs). See
setns(2), namespaces(7) and ioctl_ns(2).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import Final

from containerlib.errors import ContainerSetupError
from containerlib.linux import syscalls as sc
from containerlib.runtime.plan import Plan

__all__ = ["JOINABLE", "joined_flags", "open_namespaces"]

#: The namespaces a container may join by path, by their clone(2) flag: the OCI names.
JOINABLE: Final = {
    sc.CLONE_NEWNET: "network",
    sc.CLONE_NEWUTS: "uts",
    sc.CLONE_NEWIPC: "ipc",
}

#: ioctl(2) on a namespace file: its CLONE_NEW* type (ioctl_ns(2), Linux 4.11).
_NS_GET_NSTYPE: Final = 0xB703


def joined_flags(plan: Plan) -> int:
    """The CLONE_NEW* flags of the namespaces ``plan`` joins by path: with its
    ``clone_flags``, all the namespaces its container has of its own (an exec joins
    those of the container's first process)."""
    flags = 0
    for flag, _path in plan.namespace_paths:
        flags |= flag
    return flags


def open_namespaces(plan: Plan) -> list[int]:
    """Open the namespaces ``plan`` joins, in the order of ``namespace_paths``, checking
    that each file is a namespace of its kind. The caller closes the descriptors.

    Raises:
        ContainerSetupError: a path does not exist, cannot be opened, or is not a
            namespace of the kind asked (naming the path); none is left open.
    """
    fds: list[int] = []
    try:
        for flag, path in plan.namespace_paths:
            kind = JOINABLE.get(flag, hex(flag))
            step = f"open the {kind} namespace {path!r}"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ContainerSetupError(step, e.errno or errno.EIO, plan.container_id) from None
            fds.append(fd)
            try:
                actual = fcntl.ioctl(fd, _NS_GET_NSTYPE)
            except OSError:
                actual = 0  # not a namespace file at all (ENOTTY)
            if actual != flag:
                other = f"a {JOINABLE.get(actual, 'different')} namespace"
                raise ContainerSetupError(
                    step,
                    errno.EINVAL,
                    plan.container_id,
                    f"it is {other}" if actual else "it is not a namespace file",
                )
    except BaseException:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    return fds
