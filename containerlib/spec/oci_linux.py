"""The ``linux`` part of the OCI runtime spec: namespaces, id maps, devices, seccomp.

A container is an ordinary process placed in new namespaces (namespaces(7)): its own
process ids, mounts, network stack, hostname, IPC objects, user ids (user_namespaces(7),
with the id maps below), cgroup view and clocks. Its system calls can be filtered by a
seccomp program (seccomp(2)), and the cgroup limits live in :mod:`.oci_resources`.

Example:
    >>> linux = Linux(namespaces=[LinuxNamespace(type="pid"), LinuxNamespace(type="mount")])
    >>> linux.to_dict()
    {'namespaces': [{'type': 'pid'}, {'type': 'mount'}]}
"""

from __future__ import annotations

import attrs

from containerlib.errors import SpecError
from containerlib.spec._frozen import FrozenDict
from containerlib.spec._oci_fields import (
    I64,
    STR,
    U32,
    U64,
    Int,
    ListOf,
    MapOf,
    Obj,
    OCIObject,
    Opt,
    Str,
    absolute_path,
    as_frozendict,
    as_tuple,
    matches,
    non_empty,
    oci,
    one_of,
)
from containerlib.spec.oci_resources import LinuxResources

__all__ = [
    "NAMESPACE_TYPES",
    "SECCOMP_ACTIONS",
    "SECCOMP_OPERATORS",
    "Linux",
    "LinuxDevice",
    "LinuxIDMapping",
    "LinuxNamespace",
    "LinuxPersonality",
    "LinuxSeccomp",
    "LinuxSeccompArg",
    "LinuxSyscall",
]

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
"""The namespace types of the spec, in the names it uses (``network``, not ``net``)."""

SECCOMP_ACTIONS = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
)
"""What a seccomp rule can do with a matching system call."""

SECCOMP_OPERATORS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)
"""How a seccomp rule compares a system call argument."""


@attrs.frozen(kw_only=True, repr=False)
class LinuxNamespace(OCIObject):
    """A namespace to create (``path`` omitted) or to join (``path`` to its nsfs file)."""

    type: str = attrs.field(metadata=oci("type", Str(one_of(*NAMESPACE_TYPES)), required=True))
    path: str | None = attrs.field(default=None, metadata=oci("path", Opt(Str(absolute_path))))


@attrs.frozen(kw_only=True, repr=False)
class LinuxIDMapping(OCIObject):
    """``size`` ids from ``container_id`` inside map to ids from ``host_id`` outside."""

    container_id: int = attrs.field(metadata=oci("containerID", U32, required=True))
    host_id: int = attrs.field(metadata=oci("hostID", U32, required=True))
    size: int = attrs.field(metadata=oci("size", Int(1, 2**32 - 1), required=True))


@attrs.frozen(kw_only=True, repr=False)
class LinuxDevice(OCIObject):
    """A device node to create in the container (``type`` c, b, u or p for a FIFO)."""

    path: str = attrs.field(metadata=oci("path", Str(absolute_path), required=True))
    type: str = attrs.field(metadata=oci("type", Str(one_of("c", "b", "u", "p")), required=True))
    major: int | None = attrs.field(default=None, metadata=oci("major", Opt(I64)))
    minor: int | None = attrs.field(default=None, metadata=oci("minor", Opt(I64)))
    file_mode: int | None = attrs.field(default=None, metadata=oci("fileMode", Opt(Int(0, 0o7777))))
    uid: int | None = attrs.field(default=None, metadata=oci("uid", Opt(U32)))
    gid: int | None = attrs.field(default=None, metadata=oci("gid", Opt(U32)))

    def _cross_check(self) -> None:
        if self.type != "p":
            for name in ("major", "minor"):
                if getattr(self, name) is None:
                    raise SpecError(name, f"is required for a device of type {self.type!r}")


@attrs.frozen(kw_only=True, repr=False)
class LinuxSeccompArg(OCIObject):
    """A condition on system call argument ``index`` (0 to 5)."""

    index: int = attrs.field(metadata=oci("index", Int(0, 5), required=True))
    value: int = attrs.field(metadata=oci("value", U64, required=True))
    value_two: int = attrs.field(default=0, metadata=oci("valueTwo", U64))
    op: str = attrs.field(metadata=oci("op", Str(one_of(*SECCOMP_OPERATORS)), required=True))


@attrs.frozen(kw_only=True, repr=False)
class LinuxSyscall(OCIObject):
    """A seccomp rule: what ``action`` to take for the system calls in ``names``."""

    names: tuple[str, ...] = attrs.field(
        converter=as_tuple, metadata=oci("names", ListOf(Str(non_empty)), required=True)
    )
    action: str = attrs.field(metadata=oci("action", Str(one_of(*SECCOMP_ACTIONS)), required=True))
    errno_ret: int | None = attrs.field(default=None, metadata=oci("errnoRet", Opt(U32)))
    args: tuple[LinuxSeccompArg, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("args", ListOf(Obj(LinuxSeccompArg)))
    )

    def _cross_check(self) -> None:
        if not self.names:
            raise SpecError("names", "must name at least one system call")


@attrs.frozen(kw_only=True, repr=False)
class LinuxSeccomp(OCIObject):
    """A seccomp filter: ``default_action`` unless one of ``syscalls`` matches first."""

    default_action: str = attrs.field(
        metadata=oci("defaultAction", Str(one_of(*SECCOMP_ACTIONS)), required=True)
    )
    default_errno_ret: int | None = attrs.field(
        default=None, metadata=oci("defaultErrnoRet", Opt(U32))
    )
    architectures: tuple[str, ...] = attrs.field(
        default=(),
        converter=as_tuple,
        metadata=oci(
            "architectures",
            ListOf(
                Str(matches(r"SCMP_ARCH_[A-Z0-9_]+", "an architecture like 'SCMP_ARCH_X86_64'"))
            ),
        ),
    )
    flags: tuple[str, ...] = attrs.field(
        default=(),
        converter=as_tuple,
        metadata=oci(
            "flags",
            ListOf(
                Str(
                    matches(
                        r"SECCOMP_FILTER_FLAG_[A-Z0-9_]+", "a flag like 'SECCOMP_FILTER_FLAG_LOG'"
                    )
                )
            ),
        ),
    )
    listener_path: str | None = attrs.field(
        default=None, metadata=oci("listenerPath", Opt(Str(absolute_path)))
    )
    listener_metadata: str | None = attrs.field(
        default=None, metadata=oci("listenerMetadata", Opt(STR))
    )
    syscalls: tuple[LinuxSyscall, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("syscalls", ListOf(Obj(LinuxSyscall)))
    )

    def _cross_check(self) -> None:
        if self.default_action == "SCMP_ACT_NOTIFY":
            raise SpecError("default_action", "must not be 'SCMP_ACT_NOTIFY'")
        if self.listener_path is None:
            for i, rule in enumerate(self.syscalls):
                if rule.action == "SCMP_ACT_NOTIFY":
                    raise SpecError(
                        f"syscalls[{i}].action", "'SCMP_ACT_NOTIFY' needs a listener_path"
                    )


@attrs.frozen(kw_only=True, repr=False)
class LinuxPersonality(OCIObject):
    """The execution domain set with personality(2): ``LINUX`` or ``LINUX32``."""

    domain: str = attrs.field(
        metadata=oci("domain", Str(one_of("LINUX", "LINUX32")), required=True)
    )
    flags: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("flags", ListOf(STR))
    )


@attrs.frozen(kw_only=True, repr=False)
class Linux(OCIObject):
    """Linux-specific configuration. Fields the model does not cover (``intelRdt``,
    ``timeOffsets``) are kept in ``extra`` and written back unchanged.
    """

    uid_mappings: tuple[LinuxIDMapping, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("uidMappings", ListOf(Obj(LinuxIDMapping)))
    )
    gid_mappings: tuple[LinuxIDMapping, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("gidMappings", ListOf(Obj(LinuxIDMapping)))
    )
    sysctl: FrozenDict[str, str] = attrs.field(
        default=FrozenDict(), converter=as_frozendict, metadata=oci("sysctl", MapOf(STR, non_empty))
    )
    resources: LinuxResources | None = attrs.field(
        default=None, metadata=oci("resources", Opt(Obj(LinuxResources)))
    )
    cgroups_path: str | None = attrs.field(default=None, metadata=oci("cgroupsPath", Opt(STR)))
    namespaces: tuple[LinuxNamespace, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("namespaces", ListOf(Obj(LinuxNamespace)))
    )
    devices: tuple[LinuxDevice, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("devices", ListOf(Obj(LinuxDevice)))
    )
    seccomp: LinuxSeccomp | None = attrs.field(
        default=None, metadata=oci("seccomp", Opt(Obj(LinuxSeccomp)))
    )
    rootfs_propagation: str | None = attrs.field(
        default=None, metadata=oci("rootfsPropagation", Opt(STR))
    )
    masked_paths: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("maskedPaths", ListOf(STR))
    )
    readonly_paths: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("readonlyPaths", ListOf(STR))
    )
    mount_label: str | None = attrs.field(default=None, metadata=oci("mountLabel", Opt(STR)))
    personality: LinuxPersonality | None = attrs.field(
        default=None, metadata=oci("personality", Opt(Obj(LinuxPersonality)))
    )

    def namespace(self, type: str) -> LinuxNamespace | None:
        """Return the namespace entry of ``type`` (``"user"``, ``"network"``…), if any."""
        return next((ns for ns in self.namespaces if ns.type == type), None)
