"""The OCI runtime spec (v1.2) ``config.json`` as frozen, validated attrs classes.

A container bundle is a root filesystem plus a ``config.json`` that says which process to
run in it, as which user, with which mounts, namespaces, cgroup limits and security
settings (https://github.com/opencontainers/runtime-spec/blob/main/config.md). It is the
contract between containerlib's layers: the fluent API compiles to a :class:`Spec`, and the
runtime executes any :class:`Spec`, whoever wrote it.

Every class is ``@attrs.frozen(kw_only=True)`` with snake_case attributes, is checked when
built (bad values raise :class:`~containerlib.errors.SpecError` naming the field and the
value) and converts with ``from_dict``/``to_dict``. Keys the model does not know are kept
in ``extra`` and written back, and keys present in a loaded document are written back even
when they hold the default, so ``to_dict(from_dict(d)) == d`` for valid documents. Use
:func:`attrs.evolve` for changed copies.

The Linux parts live in :mod:`.oci_linux` and :mod:`.oci_resources` and are re-exported
here.

Example:
    >>> spec = Spec(process=Process(args=["echo", "hi"]), root=Root(path="rootfs"))
    >>> spec.to_dict()["process"]
    {'user': {'uid': 0, 'gid': 0}, 'args': ['echo', 'hi'], 'cwd': '/'}
    >>> Spec.from_json(spec.to_json()) == spec
    True
    >>> Spec.from_dict({"process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["a", 2]}})
    Traceback (most recent call last):
    ...
    containerlib.errors.SpecError: process.args[1]: must be a string, not int
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from containerlib.errors import SpecError
from containerlib.spec._frozen import FrozenDict
from containerlib.spec._oci_fields import (
    BOOL,
    I32,
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
    no_nul,
    non_empty,
    oci,
    one_of,
)
from containerlib.spec.oci_linux import (
    NAMESPACE_TYPES,
    SECCOMP_ACTIONS,
    SECCOMP_OPERATORS,
    Linux,
    LinuxDevice,
    LinuxIDMapping,
    LinuxNamespace,
    LinuxPersonality,
    LinuxSeccomp,
    LinuxSeccompArg,
    LinuxSyscall,
)
from containerlib.spec.oci_resources import (
    LinuxBlockIO,
    LinuxCPU,
    LinuxDeviceCgroup,
    LinuxHugepageLimit,
    LinuxInterfacePriority,
    LinuxMemory,
    LinuxNetwork,
    LinuxPids,
    LinuxRdma,
    LinuxResources,
    LinuxThrottleDevice,
    LinuxWeightDevice,
)

__all__ = [
    "NAMESPACE_TYPES",
    "OCI_VERSION",
    "SECCOMP_ACTIONS",
    "SECCOMP_OPERATORS",
    "Box",
    "Hook",
    "Hooks",
    "Linux",
    "LinuxBlockIO",
    "LinuxCPU",
    "LinuxCapabilities",
    "LinuxDevice",
    "LinuxDeviceCgroup",
    "LinuxHugepageLimit",
    "LinuxIDMapping",
    "LinuxIOPriority",
    "LinuxInterfacePriority",
    "LinuxMemory",
    "LinuxNamespace",
    "LinuxNetwork",
    "LinuxPersonality",
    "LinuxPids",
    "LinuxRdma",
    "LinuxResources",
    "LinuxSeccomp",
    "LinuxSeccompArg",
    "LinuxSyscall",
    "LinuxThrottleDevice",
    "LinuxWeightDevice",
    "Mount",
    "POSIXRlimit",
    "Process",
    "Root",
    "Scheduler",
    "Spec",
    "User",
]

OCI_VERSION = "1.2.0"
"""The version of the runtime spec this model follows; new specs carry it."""

_CAPABILITY = Str(matches(r"CAP_[A-Z0-9_]+", "a capability like 'CAP_CHOWN'"))
_CAPABILITIES = ListOf(_CAPABILITY)


@attrs.frozen(kw_only=True, repr=False)
class Box(OCIObject):
    """The size of the container's console, in characters."""

    height: int = attrs.field(metadata=oci("height", U32, required=True))
    width: int = attrs.field(metadata=oci("width", U32, required=True))


@attrs.frozen(kw_only=True, repr=False)
class User(OCIObject):
    """The user and groups the process runs as, as numeric ids."""

    uid: int = attrs.field(default=0, metadata=oci("uid", U32, required=True))
    gid: int = attrs.field(default=0, metadata=oci("gid", U32, required=True))
    umask: int | None = attrs.field(default=None, metadata=oci("umask", Opt(Int(0, 0o777))))
    additional_gids: tuple[int, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("additionalGids", ListOf(U32))
    )
    username: str | None = attrs.field(default=None, metadata=oci("username", Opt(STR)))


@attrs.frozen(kw_only=True, repr=False)
class LinuxCapabilities(OCIObject):
    """The capability sets of the process (capabilities(7)), as ``CAP_*`` names."""

    bounding: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("bounding", _CAPABILITIES)
    )
    effective: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("effective", _CAPABILITIES)
    )
    inheritable: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("inheritable", _CAPABILITIES)
    )
    permitted: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("permitted", _CAPABILITIES)
    )
    ambient: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("ambient", _CAPABILITIES)
    )


@attrs.frozen(kw_only=True, repr=False)
class POSIXRlimit(OCIObject):
    """A resource limit set with setrlimit(2), such as ``RLIMIT_NOFILE``."""

    type: str = attrs.field(
        metadata=oci(
            "type", Str(matches(r"RLIMIT_[A-Z]+", "a limit like 'RLIMIT_NOFILE'")), required=True
        )
    )
    hard: int = attrs.field(metadata=oci("hard", U64, required=True))
    soft: int = attrs.field(metadata=oci("soft", U64, required=True))

    def _cross_check(self) -> None:
        if self.soft > self.hard:
            raise SpecError("soft", f"must not exceed hard ({self.hard}), not {self.soft}")


@attrs.frozen(kw_only=True, repr=False)
class Scheduler(OCIObject):
    """The scheduling policy and attributes of the process (sched_setattr(2))."""

    policy: str = attrs.field(
        metadata=oci(
            "policy",
            Str(
                one_of(
                    "SCHED_OTHER",
                    "SCHED_FIFO",
                    "SCHED_RR",
                    "SCHED_BATCH",
                    "SCHED_ISO",
                    "SCHED_IDLE",
                    "SCHED_DEADLINE",
                )
            ),
            required=True,
        )
    )
    nice: int | None = attrs.field(default=None, metadata=oci("nice", Opt(Int(-20, 19))))
    priority: int | None = attrs.field(default=None, metadata=oci("priority", Opt(I32)))
    flags: tuple[str, ...] = attrs.field(
        default=(),
        converter=as_tuple,
        metadata=oci(
            "flags", ListOf(Str(matches(r"SCHED_FLAG_[A-Z_]+", "a flag like 'SCHED_FLAG_RECLAIM'")))
        ),
    )
    runtime: int | None = attrs.field(default=None, metadata=oci("runtime", Opt(U64)))
    deadline: int | None = attrs.field(default=None, metadata=oci("deadline", Opt(U64)))
    period: int | None = attrs.field(default=None, metadata=oci("period", Opt(U64)))


@attrs.frozen(kw_only=True, repr=False)
class LinuxIOPriority(OCIObject):
    """The I/O scheduling class and priority (0 highest to 7) of the process (ioprio_set(2))."""

    class_: str = attrs.field(
        metadata=oci(
            "class",
            Str(one_of("IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE")),
            required=True,
        )
    )
    priority: int = attrs.field(metadata=oci("priority", Int(0, 7), required=True))


@attrs.frozen(kw_only=True, repr=False)
class Process(OCIObject):
    """The process to run in the container and how: user, environment, limits, security."""

    terminal: bool = attrs.field(default=False, metadata=oci("terminal", BOOL))
    console_size: Box | None = attrs.field(default=None, metadata=oci("consoleSize", Opt(Obj(Box))))
    user: User = attrs.field(default=User(), metadata=oci("user", Obj(User), required=True))
    args: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("args", ListOf(Str(no_nul)))
    )
    command_line: str | None = attrs.field(default=None, metadata=oci("commandLine", Opt(STR)))
    env: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("env", ListOf(Str(no_nul)))
    )
    cwd: str = attrs.field(default="/", metadata=oci("cwd", Str(no_nul), required=True))
    capabilities: LinuxCapabilities | None = attrs.field(
        default=None, metadata=oci("capabilities", Opt(Obj(LinuxCapabilities)))
    )
    rlimits: tuple[POSIXRlimit, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("rlimits", ListOf(Obj(POSIXRlimit)))
    )
    no_new_privileges: bool = attrs.field(default=False, metadata=oci("noNewPrivileges", BOOL))
    apparmor_profile: str | None = attrs.field(
        default=None, metadata=oci("apparmorProfile", Opt(STR))
    )
    oom_score_adj: int | None = attrs.field(
        default=None, metadata=oci("oomScoreAdj", Opt(Int(-1000, 1000)))
    )
    scheduler: Scheduler | None = attrs.field(
        default=None, metadata=oci("scheduler", Opt(Obj(Scheduler)))
    )
    selinux_label: str | None = attrs.field(default=None, metadata=oci("selinuxLabel", Opt(STR)))
    io_priority: LinuxIOPriority | None = attrs.field(
        default=None, metadata=oci("ioPriority", Opt(Obj(LinuxIOPriority)))
    )


@attrs.frozen(kw_only=True, repr=False)
class Root(OCIObject):
    """The container's root filesystem: a path on the host, relative to the bundle or not."""

    path: str = attrs.field(metadata=oci("path", STR, required=True))
    readonly: bool = attrs.field(default=False, metadata=oci("readonly", BOOL))


@attrs.frozen(kw_only=True, repr=False)
class Mount(OCIObject):
    """A filesystem to mount at ``destination`` inside the container (mount(8) options)."""

    destination: str = attrs.field(metadata=oci("destination", Str(absolute_path), required=True))
    type: str | None = attrs.field(default=None, metadata=oci("type", Opt(STR)))
    source: str | None = attrs.field(default=None, metadata=oci("source", Opt(STR)))
    options: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("options", ListOf(STR))
    )
    uid_mappings: tuple[LinuxIDMapping, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("uidMappings", ListOf(Obj(LinuxIDMapping)))
    )
    gid_mappings: tuple[LinuxIDMapping, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("gidMappings", ListOf(Obj(LinuxIDMapping)))
    )


@attrs.frozen(kw_only=True, repr=False)
class Hook(OCIObject):
    """A program the runtime runs at a point of the container's life."""

    path: str = attrs.field(metadata=oci("path", Str(absolute_path), required=True))
    args: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("args", ListOf(Str(no_nul)))
    )
    env: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("env", ListOf(Str(no_nul)))
    )
    timeout: int | None = attrs.field(default=None, metadata=oci("timeout", Opt(Int(1, 2**63 - 1))))


_HOOKS = ListOf(Obj(Hook))


@attrs.frozen(kw_only=True, repr=False)
class Hooks(OCIObject):
    """The hooks of each point of the lifecycle (``prestart`` is deprecated by the spec)."""

    prestart: tuple[Hook, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("prestart", _HOOKS)
    )
    create_runtime: tuple[Hook, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("createRuntime", _HOOKS)
    )
    create_container: tuple[Hook, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("createContainer", _HOOKS)
    )
    start_container: tuple[Hook, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("startContainer", _HOOKS)
    )
    poststart: tuple[Hook, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("poststart", _HOOKS)
    )
    poststop: tuple[Hook, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("poststop", _HOOKS)
    )


@attrs.frozen(kw_only=True, repr=False)
class Spec(OCIObject):
    """A whole ``config.json``.

    Only the types and ranges of single fields are checked when it is built; rules that
    tie fields together (a hostname needs a uts namespace…) are checked by
    :func:`containerlib.spec.validate.validate`.
    """

    oci_version: str = attrs.field(
        default=OCI_VERSION, metadata=oci("ociVersion", Str(non_empty), required=True)
    )
    process: Process | None = attrs.field(default=None, metadata=oci("process", Opt(Obj(Process))))
    root: Root | None = attrs.field(default=None, metadata=oci("root", Opt(Obj(Root))))
    hostname: str | None = attrs.field(default=None, metadata=oci("hostname", Opt(STR)))
    domainname: str | None = attrs.field(default=None, metadata=oci("domainname", Opt(STR)))
    mounts: tuple[Mount, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("mounts", ListOf(Obj(Mount)))
    )
    hooks: Hooks | None = attrs.field(default=None, metadata=oci("hooks", Opt(Obj(Hooks))))
    annotations: FrozenDict[str, str] = attrs.field(
        default=FrozenDict(),
        converter=as_frozendict,
        metadata=oci("annotations", MapOf(STR, non_empty)),
    )
    linux: Linux | None = attrs.field(default=None, metadata=oci("linux", Opt(Obj(Linux))))

    @classmethod
    def from_json(cls, text: str | bytes) -> Spec:
        """Parse a ``config.json`` document.

        Raises:
            SpecError: the text is not JSON, or does not describe a valid spec.
        """
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as e:
            if isinstance(e, SpecError):
                raise
            raise SpecError("", f"config.json is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def to_json(self, indent: int | str | None = None) -> str:
        """Return the ``config.json`` text; ``indent="\\t"`` writes it as runc does."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise SpecError("", f"config.json is not valid JSON: {name} is not a number in JSON")
