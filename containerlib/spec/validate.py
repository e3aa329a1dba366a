"""Whole-spec checks: the rules that tie several fields of a :class:`~.oci.Spec` together.

Each field was checked on its own when the spec was built; the checks here look at the spec
as a runtime will, before anything is created: a hostname is only settable in a new uts
namespace (namespaces(7)), id maps only make sense with a user namespace
(user_namespaces(7)), and a sysctl (sysctl(8)) may only be set when the container has its
own copy of it. Each rule is a small function; :func:`validate` runs them in order and
raises the first :class:`~containerlib.errors.SpecError`, whose field is a JSON path such
as ``linux.sysctl['vm.swappiness']``.

Example:
    >>> from containerlib.spec.defaults import default_spec
    >>> validate(default_spec())
    >>> import attrs
    >>> validate(attrs.evolve(default_spec(), linux=None))
    Traceback (most recent call last):
    ...
    containerlib.errors.SpecError: hostname: setting 'runc' needs a uts namespace
"""

from __future__ import annotations

from collections.abc import Callable

from containerlib.errors import SpecError
from containerlib.spec.oci import Linux, Spec

__all__ = [
    "CHECKS",
    "IPC_SYSCTLS",
    "ROOTFS_PROPAGATIONS",
    "check_cgroups_path",
    "check_hostname",
    "check_memory_swap",
    "check_mount_id_mappings",
    "check_namespaces_unique",
    "check_paths_absolute",
    "check_process",
    "check_root",
    "check_rootfs_propagation",
    "check_sysctl",
    "check_user_namespace",
    "validate",
]

ROOTFS_PROPAGATIONS = (
    "shared",
    "slave",
    "private",
    "unbindable",
    "rshared",
    "rslave",
    "rprivate",
    "runbindable",
)
"""The values ``linux.rootfsPropagation`` may take (mount_namespaces(7))."""

IPC_SYSCTLS = (
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
)
"""The ``kernel.*`` sysctls that belong to the ipc namespace (with ``fs.mqueue.*``)."""


def _has_namespace(spec: Spec, type: str) -> bool:
    return spec.linux is not None and spec.linux.namespace(type) is not None


def check_root(spec: Spec) -> None:
    """``root.path`` is given and not empty."""
    if spec.root is None:
        raise SpecError("root", "is required: the path of the root filesystem")
    if not spec.root.path:
        raise SpecError("root.path", "must not be empty")


def check_process(spec: Spec) -> None:
    """There is a process, its ``args`` are not empty and its ``cwd`` is absolute."""
    if spec.process is None:
        raise SpecError("process", "is required: the process to run")
    if not spec.process.args:
        raise SpecError("process.args", "must name the program to run, not be empty")
    if not spec.process.cwd.startswith("/"):
        raise SpecError("process.cwd", f"must be an absolute path, not {spec.process.cwd!r}")


def check_namespaces_unique(spec: Spec) -> None:
    """No namespace type is listed twice."""
    if spec.linux is None:
        return
    seen: dict[str, int] = {}
    for i, ns in enumerate(spec.linux.namespaces):
        if ns.type in seen:
            raise SpecError(
                f"linux.namespaces[{i}].type",
                f"{ns.type!r} is listed twice (also at linux.namespaces[{seen[ns.type]}])",
            )
        seen[ns.type] = i


def check_user_namespace(spec: Spec) -> None:
    """Id maps are given only with a user namespace, and a new user namespace has both."""
    linux = spec.linux or Linux()
    userns = linux.namespace("user")
    for name, mappings in (
        ("uidMappings", linux.uid_mappings),
        ("gidMappings", linux.gid_mappings),
    ):
        if mappings and userns is None:
            raise SpecError(
                f"linux.{name}",
                f"{len(mappings)} mapping(s) given, but there is no user namespace "
                "in linux.namespaces",
            )
        if not mappings and userns is not None and userns.path is None:
            raise SpecError(f"linux.{name}", "must not be empty for a new user namespace")


def check_mount_id_mappings(spec: Spec) -> None:
    """An id-mapped mount has both uid and gid mappings."""
    for i, mount in enumerate(spec.mounts):
        if bool(mount.uid_mappings) != bool(mount.gid_mappings):
            missing = "gidMappings" if mount.uid_mappings else "uidMappings"
            raise SpecError(
                f"mounts[{i}].{missing}",
                f"must be given too for the id-mapped mount at {mount.destination!r}",
            )


def check_hostname(spec: Spec) -> None:
    """A hostname or domain name is set only in a new uts namespace."""
    for name, value in (("hostname", spec.hostname), ("domainname", spec.domainname)):
        if value and not _has_namespace(spec, "uts"):
            raise SpecError(name, f"setting {value!r} needs a uts namespace")


def _sysctl_namespace(name: str) -> str | None:
    """Return the namespace type that owns sysctl ``name``, or None if it is global."""
    if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return "ipc"
    if name.startswith("net."):
        return "network"
    if name == "kernel.domainname":
        return "uts"
    return None


def check_sysctl(spec: Spec) -> None:
    """Each sysctl is namespaced, and the container has its own copy of that namespace."""
    if spec.linux is None:
        return
    for key in spec.linux.sysctl:
        field = f"linux.sysctl[{key!r}]"
        name = key.replace("/", ".")
        if name == "kernel.hostname":
            raise SpecError(field, "set the hostname field instead of 'kernel.hostname'")
        ns = _sysctl_namespace(name)
        if ns is None:
            raise SpecError(field, f"{key!r} is not namespaced: setting it would change the host")
        if not _has_namespace(spec, ns):
            raise SpecError(field, f"setting {key!r} needs a {ns} namespace")


def check_rootfs_propagation(spec: Spec) -> None:
    """``linux.rootfsPropagation`` is one of :data:`ROOTFS_PROPAGATIONS`."""
    value = spec.linux.rootfs_propagation if spec.linux else None
    if value and value not in ROOTFS_PROPAGATIONS:
        raise SpecError(
            "linux.rootfsPropagation",
            f"must be one of {', '.join(ROOTFS_PROPAGATIONS)}; not {value!r}",
        )


def check_paths_absolute(spec: Spec) -> None:
    """Masked and read-only paths are absolute."""
    if spec.linux is None:
        return
    for name, paths in (
        ("maskedPaths", spec.linux.masked_paths),
        ("readonlyPaths", spec.linux.readonly_paths),
    ):
        for i, path in enumerate(paths):
            if not path.startswith("/"):
                raise SpecError(f"linux.{name}[{i}]", f"must be an absolute path, not {path!r}")


def check_memory_swap(spec: Spec) -> None:
    """``memory.swap`` (memory plus swap) is -1 or at least ``memory.limit``."""
    resources = spec.linux.resources if spec.linux else None
    memory = resources.memory if resources else None
    if memory is None or memory.limit is None or memory.swap is None:
        return
    if memory.swap != -1 and memory.swap < memory.limit:
        raise SpecError(
            "linux.resources.memory.swap",
            f"must be -1 or at least memory.limit ({memory.limit}), not {memory.swap}"
            " (it counts memory plus swap)",
        )


def check_cgroups_path(spec: Spec) -> None:
    """``linux.cgroupsPath`` has no ``..`` component that could lead out of its parent."""
    path = spec.linux.cgroups_path if spec.linux else None
    if path and ".." in path.split("/"):
        raise SpecError("linux.cgroupsPath", f"must not contain '..', not {path!r}")


CHECKS: tuple[Callable[[Spec], None], ...] = (
    check_root,
    check_process,
    check_namespaces_unique,
    check_user_namespace,
    check_mount_id_mappings,
    check_hostname,
    check_sysctl,
    check_rootfs_propagation,
    check_paths_absolute,
    check_memory_swap,
    check_cgroups_path,
)
"""The checks :func:`validate` runs, in order."""


def validate(spec: Spec) -> None:
    """Check ``spec`` as a whole before a container is made from it.

    Raises:
        SpecError: the first rule of :data:`CHECKS` that ``spec`` breaks; ``field`` is the
            JSON path of the offending value.
    """
    for check in CHECKS:
        check(spec)
