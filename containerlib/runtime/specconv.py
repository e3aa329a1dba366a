"""Conversion of an OCI runtime :class:`~containerlib.spec.oci.Spec` into a :class:`Plan`.

This is the one place where the OCI spec meets the kernel: mount option strings become
mount(2) flags, capability names become masks, namespace types become clone(2) flags.
Everything that can be decided here is, so that the forked child only carries it out.
What the runtime does not do yet is refused with a :class:`SpecError` naming the field,
never silently dropped.
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Sized
from typing import Final

import attrs

from containerlib.errors import SpecError
from containerlib.linux import syscalls as sc
from containerlib.linux.capabilities import mask
from containerlib.linux.cgroups import CgroupLimits, DeviceValue
from containerlib.linux.userns import IdMap, check_map, host_id
from containerlib.runtime.ids import ID_PATTERN, check_id
from containerlib.runtime.joins import JOINABLE
from containerlib.runtime.plan import DeviceStep, HookStep, MountStep, Plan
from containerlib.spec import oci
from containerlib.spec.validate import validate

__all__ = [
    "ID_PATTERN",
    "INIT_ANNOTATION",
    "MOUNT_OPTIONS",
    "SET_HOME_ANNOTATION",
    "USER_ANNOTATION",
    "Roots",
    "cgroup_limits",
    "check_id",
    "hook_steps",
    "mount_flags",
    "plan_from_spec",
]


DEFAULT_RUN_ROOT: Final = "/run/containerlib"
DEFAULT_DATA_ROOT: Final = "/var/lib/containerlib"
DEFAULT_CGROUP_PARENT: Final = "containerlib"
#: Where a user other than root keeps container state when ``XDG_RUNTIME_DIR`` is unset:
#: ``<this>/containerlib-<uid>``.
DEFAULT_ROOTLESS_RUN_PARENT: Final = "/tmp"


def _xdg_dir(name: str) -> str | None:
    """The XDG base directory variable ``name``; unset, empty or relative counts as
    unset, as the XDG Base Directory Specification asks."""
    value = os.environ.get(name, "")
    return value if os.path.isabs(value) else None


def _rootless_run_root(uid: int) -> str:
    """``$XDG_RUNTIME_DIR/containerlib``, else ``/tmp/containerlib-<uid>``, made ``0700``
    if missing and refused unless it is the caller's own directory that no one else can
    write (anyone can make that name in ``/tmp`` first)."""
    if (runtime_dir := _xdg_dir("XDG_RUNTIME_DIR")) is not None:
        return os.path.join(runtime_dir, "containerlib")
    path = os.path.join(DEFAULT_ROOTLESS_RUN_PARENT, f"containerlib-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o722 != 0o700:
            raise SpecError(
                "CONTAINERLIB_RUN_ROOT",
                f"the default {path!r} is not a directory of uid {uid} that only it can "
                f"write (owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)}); "
                "set CONTAINERLIB_RUN_ROOT or XDG_RUNTIME_DIR",
            ) from None
    return path


def _rootless_data_root() -> str:
    """``$XDG_DATA_HOME/containerlib``, else ``~/.local/share/containerlib``."""
    if (data_home := _xdg_dir("XDG_DATA_HOME")) is not None:
        return os.path.join(data_home, "containerlib")
    home = os.path.expanduser("~")
    if not os.path.isabs(home):
        raise SpecError(
            "CONTAINERLIB_DATA_ROOT", "no home directory to default to: set CONTAINERLIB_DATA_ROOT"
        )
    return os.path.join(home, ".local", "share", "containerlib")


@attrs.frozen(kw_only=True)
class Roots:
    """Where containerlib keeps what it makes on the host.

    Attributes:
        run: per-container state (small, removed when the container ends).
        data: writable layers and the image cache.
        cgroup_parent: the cgroup under which each container gets ``<parent>/<id>``.
    """

    run: str = DEFAULT_RUN_ROOT
    data: str = DEFAULT_DATA_ROOT
    cgroup_parent: str = DEFAULT_CGROUP_PARENT

    @classmethod
    def from_env(cls) -> Roots:
        """The roots from ``CONTAINERLIB_RUN_ROOT``, ``CONTAINERLIB_DATA_ROOT`` and
        ``CONTAINERLIB_CGROUP_PARENT``, else the defaults for the caller.

        Root gets ``/run/containerlib`` and ``/var/lib/containerlib``. Any other user
        (rootless use) gets, as podman does, its XDG base directories:
        ``$XDG_RUNTIME_DIR/containerlib`` for state and ``$XDG_DATA_HOME/containerlib``,
        else ``~/.local/share/containerlib``, for images and layers.

        Without ``XDG_RUNTIME_DIR`` (no login session, as under ``su`` or in cron) state
        goes to ``/tmp/containerlib-<uid>``, made ``0700`` here so that it is the user's
        before anything uses it (``/tmp`` is sticky: no one else can then remove or
        replace it). podman (``containers/storage``, ``homedir.RuntimeDir``) tries
        ``/run/user/<uid>`` first and then ``$TMPDIR/storage-run-<uid>``; containerlib
        does neither: systemd-logind removes ``/run/user/<uid>`` when the user's last
        session ends, taking the state of detached containers with it, and ``$TMPDIR``
        may differ between the processes of one user, who must all find the same
        containers. As podman does, an existing ``/tmp/containerlib-<uid>`` is used only
        if it is the user's own directory that no one else can write: anyone may create
        that name in ``/tmp`` first.

        Raises:
            SpecError: a root is not an absolute path, there is no home directory for
                the data root, or ``/tmp/containerlib-<uid>`` belongs to someone else.
        """
        env = os.environ
        uid = os.geteuid()
        run = env.get("CONTAINERLIB_RUN_ROOT")
        if run is None:
            run = DEFAULT_RUN_ROOT if uid == 0 else _rootless_run_root(uid)
        data = env.get("CONTAINERLIB_DATA_ROOT")
        if data is None:
            data = DEFAULT_DATA_ROOT if uid == 0 else _rootless_data_root()
        roots = cls(
            run=run,
            data=data,
            cgroup_parent=env.get("CONTAINERLIB_CGROUP_PARENT", DEFAULT_CGROUP_PARENT),
        )
        for name in ("run", "data"):
            if not os.path.isabs(getattr(roots, name)):
                raise SpecError(f"CONTAINERLIB_{name.upper()}_ROOT", "must be an absolute path")
        return roots


_NAMESPACE_FLAGS: Final = {
    "pid": sc.CLONE_NEWPID,
    "network": sc.CLONE_NEWNET,
    "mount": sc.CLONE_NEWNS,
    "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS,
    "time": sc.CLONE_NEWTIME,
    "user": sc.CLONE_NEWUSER,
}

# option: (flags to set, flags to clear)
_FLAG_OPTIONS: Final = {
    "ro": (sc.MS_RDONLY, 0),
    "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0),
    "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0),
    "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0),
    "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0),
    "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0),
    "mand": (sc.MS_MANDLOCK, 0),
    "nomand": (0, sc.MS_MANDLOCK),
    "noatime": (sc.MS_NOATIME, 0),
    "atime": (0, sc.MS_NOATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0),
    "diratime": (0, sc.MS_NODIRATIME),
    "relatime": (sc.MS_RELATIME, 0),
    "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0),
    "nostrictatime": (0, sc.MS_STRICTATIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0),
    "symfollow": (0, sc.MS_NOSYMFOLLOW),
    "bind": (sc.MS_BIND, 0),
    "rbind": (sc.MS_BIND | sc.MS_REC, 0),
}
_PROPAGATION: Final = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# runc's own options that are not for the kernel; accepted and ignored.
_IGNORED_OPTIONS: Final = frozenset({"tmpcopyup", "defaults"})

#: The devices every container gets in its /dev, as Docker and runc give them.
DEFAULT_DEVICES: Final = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_DEV_SYMLINKS: Final = (
    (b"/proc/self/fd", b"fd"),
    (b"/proc/self/fd/0", b"stdin"),
    (b"/proc/self/fd/1", b"stdout"),
    (b"/proc/self/fd/2", b"stderr"),
    (b"pts/ptmx", b"ptmx"),
)
#: The mount options that are flags or propagation, which the runtime understands; any
#: other is passed to the file system as data.
MOUNT_OPTIONS: Final = frozenset({*_FLAG_OPTIONS, *_PROPAGATION})
_MOUNT_FLAG_BITS: Final = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


def mount_flags(options: tuple[str, ...], field: str) -> tuple[int, int, bytes | None]:
    """Split OCI mount options into (mount flags, propagation flags, file-system data)."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            on, off = _FLAG_OPTIONS[opt]
            flags = (flags | on) & ~off
        elif opt in _PROPAGATION:
            propagation = _PROPAGATION[opt]
        elif opt in _IGNORED_OPTIONS:
            continue
        elif opt in ("idmap", "ridmap"):
            raise SpecError(field, f"option {opt!r} is not supported yet")
        else:
            data.append(opt)
    return flags, propagation, ",".join(data).encode() if data else None


def _mount_step(m: oci.Mount, field: str, cgroup_mount: bool) -> MountStep:
    flags, propagation, data = mount_flags(m.options, f"{field}.options")
    target = m.destination.encode()
    is_bind = m.type == "bind" or bool(flags & sc.MS_BIND)
    if is_bind:
        source = m.source or ""
        if not os.path.isabs(source):
            raise SpecError(
                f"{field}.source", f"a bind mount needs an absolute host path, not {source!r}"
            )
        try:
            st = os.stat(source)
        except FileNotFoundError:
            raise FileNotFoundError(
                2, f"{field}.source: bind mount source {source!r} does not exist"
            ) from None
        extra = flags & ~(sc.MS_BIND | sc.MS_REC)
        return MountStep(
            target=target,
            source=source.encode(),
            fstype=None,
            flags=sc.MS_BIND | (flags & sc.MS_REC),
            remount_flags=(sc.MS_REMOUNT | sc.MS_BIND | extra) if extra else None,
            propagation=propagation,
            is_file=not stat.S_ISDIR(st.st_mode),
        )
    if m.type in {"cgroup", "cgroup2"}:
        return MountStep(
            target=target,
            source=b"cgroup",
            fstype=b"cgroup2",
            flags=flags | sc.MS_RDONLY if "ro" in m.options else flags,
            propagation=propagation,
            cgroup=True,
        )
    if not m.type:
        raise SpecError(f"{field}.type", "a mount that is not a bind mount needs a type")
    return MountStep(
        target=target,
        source=(m.source or m.type).encode(),
        fstype=m.type.encode(),
        flags=flags,
        data=data,
        propagation=propagation,
    )


def hook_steps(hooks: tuple[oci.Hook, ...]) -> tuple[HookStep, ...]:
    """The OCI hooks that the container's first process runs itself (``createContainer``
    and ``startContainer``), as it gets them: ``path``, ``args`` (the path alone when
    there are none), ``env`` (the whole environment) and ``timeout`` (0 for none).

    Example:
        >>> hook_steps((oci.Hook(path="/bin/h", args=("h", "x"), timeout=3),))
        (HookStep(path=b'/bin/h', args=(b'h', b'x'), env=(), timeout=3),)

    Raises:
        SpecError: a timeout does not fit the plan (more than 2**32 - 1 seconds).
    """
    steps = []
    for i, h in enumerate(hooks):
        if h.timeout is not None and h.timeout >= 2**32:
            raise SpecError(f"hooks[{i}].timeout", f"{h.timeout} seconds is too long")
        steps.append(
            HookStep(
                path=h.path.encode(),
                args=tuple(a.encode() for a in h.args),
                env=tuple(e.encode() for e in h.env),
                timeout=h.timeout or 0,
            )
        )
    return tuple(steps)


def _unsupported(spec: oci.Spec) -> None:
    linux = spec.linux
    checks: list[tuple[str, object]] = [("hooks", spec.hooks)]
    if spec.process is not None:
        checks += [
            ("process.apparmorProfile", spec.process.apparmor_profile),
            ("process.selinuxLabel", spec.process.selinux_label),
            ("process.ioPriority", spec.process.io_priority),
            ("process.scheduler", spec.process.scheduler),
        ]
    if linux is not None:
        checks += [
            ("linux.seccomp.listenerPath", linux.seccomp and linux.seccomp.listener_path),
            ("linux.personality", linux.personality),
        ]
        res = linux.resources
        if res is not None:
            checks += [
                ("linux.resources.rdma", res.rdma),
                ("linux.resources.unified", res.unified),
            ]
            if res.cpu is not None:
                cpu = res.cpu
                checks += [
                    ("linux.resources.cpu.burst", cpu.burst),
                    ("linux.resources.cpu.realtimeRuntime", cpu.realtime_runtime),
                    ("linux.resources.cpu.realtimePeriod", cpu.realtime_period),
                    ("linux.resources.cpu.idle", cpu.idle),
                ]
            if res.block_io is not None:
                checks.append(("linux.resources.blockIO.leafWeight", res.block_io.leaf_weight))
                for i, wd in enumerate(res.block_io.weight_device):
                    checks.append(
                        (f"linux.resources.blockIO.weightDevice[{i}].leafWeight", wd.leaf_weight)
                    )
            if res.memory is not None:
                mem = res.memory
                checks += [
                    ("linux.resources.memory.kernel", mem.kernel),
                    ("linux.resources.memory.kernelTCP", mem.kernel_tcp),
                    ("linux.resources.memory.swappiness", mem.swappiness),
                    ("linux.resources.memory.disableOOMKiller", mem.disable_oom_killer),
                ]
    for field, value in checks:
        if _asks_for_something(value):
            raise SpecError(field, "is not supported by this version of containerlib yet")


def _asks_for_something(value: object) -> bool:
    """Whether a spec field asks for something: ``0`` does, ``False``, ``None`` and empty
    lists, maps and objects do not (``terminal: false`` asks for no terminal)."""
    if value is None or value is False:
        return False
    if isinstance(value, Sized):
        return len(value) > 0
    if attrs.has(type(value)):
        return any(
            _asks_for_something(getattr(value, f.name))
            for f in attrs.fields(type(value))  # type: ignore[arg-type]
            if f.name != "extra"
        )
    return True


#: Device rules every container gets after its own, as runc adds them.
DEFAULT_DEVICE_RULES: Final = (
    (True, "c *:* m"),
    (True, "b *:* m"),
    *((True, f"c {ma}:{mi} rwm") for _name, ma, mi in DEFAULT_DEVICES),
    (True, "c 5:1 rwm"),
    (True, "c 5:2 rwm"),
    (True, "c 136:* rwm"),
)


def _device_rules(res: oci.LinuxResources) -> tuple[tuple[bool, str], ...]:
    rules = []
    for d in res.devices:
        major = "*" if d.major is None or d.major < 0 else str(d.major)
        minor = "*" if d.minor is None or d.minor < 0 else str(d.minor)
        kind = d.type or "a"
        rule = "a" if kind == "a" else f"{kind} {major}:{minor} {d.access or 'rwm'}"
        rules.append((d.allow, rule))
    return (*rules, *DEFAULT_DEVICE_RULES) if rules else ()


def _limits(spec: oci.Spec) -> CgroupLimits:
    return cgroup_limits(spec.linux.resources if spec.linux is not None else None)


def cgroup_limits(res: oci.LinuxResources | None) -> CgroupLimits:
    """What the cgroup driver is asked for, from an OCI spec's ``linux.resources``.

    Negative values mean "no limit" where the spec allows them (memory, swap, CPU quota,
    pids: -1), as runc reads them.
    """
    if res is None:
        return CgroupLimits()
    mem = res.memory or oci.LinuxMemory()
    cpu = res.cpu or oci.LinuxCPU()
    bio = res.block_io or oci.LinuxBlockIO()
    net = res.network or oci.LinuxNetwork()

    def size(value: int | None) -> int | None:
        return value if value is not None and value >= 0 else None

    def rates(devices: tuple[oci.LinuxThrottleDevice, ...]) -> tuple[DeviceValue, ...]:
        return tuple(DeviceValue(d.major, d.minor, d.rate) for d in devices)

    return CgroupLimits(
        devices=_device_rules(res),
        memory=size(mem.limit),
        memory_reservation=size(mem.reservation),
        memory_swap=-1 if mem.swap == -1 else size(mem.swap),
        cpu_quota=-1 if cpu.quota is not None and cpu.quota < 0 else cpu.quota,
        cpu_period=cpu.period,
        cpu_shares=cpu.shares,
        cpuset_cpus=cpu.cpus,
        cpuset_mems=cpu.mems,
        pids=_pids_limit(res.pids),
        blkio_weight=bio.weight,
        blkio_weight_device=tuple(
            DeviceValue(d.major, d.minor, d.weight) for d in bio.weight_device if d.weight
        ),
        read_bps=rates(bio.throttle_read_bps_device),
        write_bps=rates(bio.throttle_write_bps_device),
        read_iops=rates(bio.throttle_read_iops_device),
        write_iops=rates(bio.throttle_write_iops_device),
        hugetlb=tuple((h.page_size, h.limit) for h in res.hugepage_limits),
        net_cls_classid=net.class_id,
        net_prio_ifpriomap=tuple((p.name, p.priority) for p in net.priorities),
    )


def _pids_limit(pids: oci.LinuxPids | None) -> int | None:
    """0 leaves the limit alone and a negative value lifts it, as runc reads them."""
    if pids is None or pids.limit == 0:
        return None
    return -1 if pids.limit < 0 else pids.limit


def _rlimits(process: oci.Process) -> tuple[tuple[int, int, int], ...]:
    out = []
    for i, rl in enumerate(process.rlimits):
        number = getattr(resource, rl.type, None)
        if not rl.type.startswith("RLIMIT_") or not isinstance(number, int):
            raise SpecError(f"process.rlimits[{i}].type", f"unknown resource {rl.type!r}")
        out.append((number, rl.soft, rl.hard))
    return tuple(out)


#: containerlib's annotations for what the OCI spec cannot say on Linux: a user by name
#: (``user[:group]``, looked up in the container's /etc/passwd and /etc/group), and
#: whether HOME then comes from the user's entry.
USER_ANNOTATION: Final = "org.containerlib.user"
SET_HOME_ANNOTATION: Final = "org.containerlib.set-home"
#: "1": the container's PID 1 is a reaper that runs the command as its child (see Plan.init).
INIT_ANNOTATION: Final = "org.containerlib.init"


def _user_name(spec: oci.Spec) -> bytes | None:
    name = spec.annotations.get(USER_ANNOTATION)
    if name is None:
        return None
    if not name or "\0" in name or "\n" in name or name.count(":") > 1:
        raise SpecError(f"annotations.{USER_ANNOTATION}", f"{name!r} is not 'user[:group]'")
    return name.encode()


def _seccomp(profile: oci.LinuxSeccomp | None, roots: Roots) -> dict[str, object]:
    """The compiled filter and its flags, for the plan (compiled once per profile, and
    kept under ``<data root>/seccomp``)."""
    if profile is None:
        return {}
    from containerlib.linux.seccomp import compile_profile, filter_flags

    compiled = compile_profile(profile, os.path.join(roots.data, "seccomp"))
    split = compiled.split
    return {
        "seccomp": compiled.whole,
        "seccomp_flags": filter_flags(profile),
        "seccomp_early": split.early if split is not None else None,
        "seccomp_late": split.late if split is not None else None,
    }


def _id_maps(linux: oci.Linux) -> tuple[IdMap, IdMap]:
    maps = []
    for field, mappings in (
        ("uidMappings", linux.uid_mappings),
        ("gidMappings", linux.gid_mappings),
    ):
        id_map = tuple((m.container_id, m.host_id, m.size) for m in mappings)
        problem = check_map(id_map, f"linux.{field}")
        if problem is not None:
            raise SpecError(f"linux.{field}", problem.removeprefix(f"linux.{field} "))
        maps.append(id_map)
    return maps[0], maps[1]


def _in_userns(m: oci.Mount, types: set[str], gid_map: IdMap) -> oci.Mount:
    """``m`` as the kernel takes it in a user namespace, as runc changes it for rootless
    containers: without a network namespace of its own, a new sysfs is refused (it would
    show the host's network devices), so the host's /sys is bound instead, read-only; a
    ``gid=`` option of devpts that the namespace does not map is dropped (the kernel
    refuses it), and new terminals then belong to the process's own group."""
    if "user" not in types:
        return m
    if m.type == "sysfs" and "network" not in types:
        options = ("rbind", "nosuid", "noexec", "nodev", "ro")
        return attrs.evolve(m, type="bind", source="/sys", options=options)
    if m.type == "devpts":
        kept = tuple(
            o
            for o in m.options
            if not (
                o.startswith("gid=") and o[4:].isdigit() and host_id(gid_map, int(o[4:])) is None
            )
        )
        return attrs.evolve(m, options=kept)
    return m


def _namespace_paths(linux: oci.Linux) -> tuple[tuple[int, str], ...]:
    """The namespaces ``linux`` joins by path (``linux.namespaces[].path``), as
    :attr:`Plan.namespace_paths`: of a kind a container can join, and none with a user
    namespace of the container's own. The paths are opened when the container starts.

    Raises:
        SpecError: a kind that cannot be joined, a relative path, or a user namespace.
    """
    joins: list[tuple[int, str]] = []
    for i, ns in enumerate(linux.namespaces):
        if not ns.path:
            continue
        field = f"linux.namespaces[{i}].path"
        flag = _NAMESPACE_FLAGS.get(ns.type, 0)
        if flag not in JOINABLE:
            raise SpecError(
                field,
                f"joining a {ns.type} namespace by path is not supported "
                "(network, uts and ipc namespaces are)",
            )
        if not os.path.isabs(ns.path) or "\0" in ns.path:
            raise SpecError(field, f"must be an absolute path, not {ns.path!r}")
        if linux.namespace("user") is not None:
            raise SpecError(
                field,
                f"the {ns.type} namespace {ns.path!r} cannot be joined from a user namespace "
                "of the container's own: the kernel lets a process join only namespaces "
                "that its user namespace owns, and a non-root user's containers always have "
                "one (joining as root, without a user namespace, works)",
            )
        joins.append((flag, ns.path))
    return tuple(joins)


def plan_from_spec(
    spec: oci.Spec,
    *,
    container_id: str,
    lowerdirs: tuple[str, ...],
    roots: Roots,
) -> Plan:
    """Compile ``spec`` into the plan the spawner carries out.

    Args:
        spec: a complete spec; ``spec.root.path`` is ignored in favour of ``lowerdirs``.
        container_id: checked with :func:`check_id`.
        lowerdirs: host directories stacked with overlayfs, topmost first.
        roots: where state, writable layers and cgroups go.

    Raises:
        SpecError: the spec is invalid or asks for what this runtime cannot do yet.
        FileNotFoundError: a bind mount's source does not exist.
    """
    check_id(container_id)
    validate(spec)
    _unsupported(spec)
    process = spec.process
    linux = spec.linux
    if process is None or not process.args:
        raise SpecError("process.args", "a command is needed")
    if linux is None:
        raise SpecError("linux", "a Linux section is needed")
    # The namespaces the container has of its own; those with a path it joins.
    joins = _namespace_paths(linux)
    types = {ns.type for ns in linux.namespaces if not ns.path}
    if "mount" not in types:
        raise SpecError("linux.namespaces", "containerlib needs a mount namespace")
    clone_flags = 0
    for t in types:
        clone_flags |= _NAMESPACE_FLAGS.get(t, 0)
    uid_map, gid_map = _id_maps(linux) if "user" in types else ((), ())
    caps = process.capabilities
    cap_fields = {}
    if caps is not None:
        cap_fields = {
            "cap_bounding": mask(caps.bounding, "process.capabilities.bounding"),
            "cap_effective": mask(caps.effective, "process.capabilities.effective"),
            "cap_permitted": mask(caps.permitted, "process.capabilities.permitted"),
            "cap_inheritable": mask(caps.inheritable, "process.capabilities.inheritable"),
            "cap_ambient": tuple(
                n.bit_length() - 1
                for n in (mask([c], "process.capabilities.ambient") for c in caps.ambient)
            ),
        }
    else:
        full = (1 << 64) - 1
        cap_fields = {"cap_effective": full, "cap_permitted": full, "cap_inheritable": 0}
    mounts = tuple(
        _mount_step(_in_userns(m, types, gid_map), f"mounts[{i}]", m.type in ("cgroup", "cgroup2"))
        for i, m in enumerate(spec.mounts)
    )
    dev_is_tmpfs = any(m.destination == "/dev" and m.type == "tmpfs" for m in spec.mounts)
    devices: list[DeviceStep] = []
    if dev_is_tmpfs:
        devices = [
            DeviceStep(path=name.encode(), mode=stat.S_IFCHR | 0o666, major=ma, minor=mi)
            for name, ma, mi in DEFAULT_DEVICES
        ]
    for i, d in enumerate(linux.devices):
        if not d.path.startswith("/dev/") or ".." in d.path.split("/"):
            raise SpecError(
                f"linux.devices[{i}].path", f"must be a path under /dev, not {d.path!r}"
            )
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        devices.append(
            DeviceStep(
                path=d.path.removeprefix("/dev/").encode(),
                mode=kind[d.type] | (d.file_mode if d.file_mode is not None else 0o666),
                major=d.major or 0,
                minor=d.minor or 0,
                uid=d.uid or 0,
                gid=d.gid or 0,
            )
        )
    propagation = _PROPAGATION.get(linux.rootfs_propagation or "", 0)
    cgroup_path: str | None = (linux.cgroups_path or "").strip(
        "/"
    ) or f"{roots.cgroup_parent}/{container_id}"
    limits = _limits(spec)
    if os.geteuid() != 0:
        # Rootless: no device cgroup (the user namespace refuses mknod, and only root may
        # write device rules), and no cgroup at all unless one is asked for, by limits,
        # a path or CONTAINERLIB_CGROUP_PARENT; making one then fails with what to do.
        limits = attrs.evolve(limits, devices=())
        asked = linux.cgroups_path or "CONTAINERLIB_CGROUP_PARENT" in os.environ
        if limits == CgroupLimits() and not asked:
            cgroup_path = None
    user = process.user
    # As runc: set in a joined uts namespace too.
    uts = linux.namespace("uts") is not None
    hostname = spec.hostname.encode() if spec.hostname is not None and uts else None
    return Plan(
        container_id=container_id,
        rw_dir=f"{roots.data}/containers/{container_id}",
        lowerdirs=lowerdirs,
        readonly_root=bool(spec.root is not None and spec.root.readonly),
        rootfs_propagation=propagation,
        clone_flags=clone_flags,
        uid_map=uid_map,
        gid_map=gid_map,
        new_cgroupns="cgroup" in types,
        cgroup_path=cgroup_path,
        cgroup_limits=limits,
        mounts=mounts,
        devices=tuple(devices),
        dev_symlinks=_DEV_SYMLINKS if dev_is_tmpfs else (),
        masked_paths=tuple(p.encode() for p in linux.masked_paths),
        readonly_paths=tuple(p.encode() for p in linux.readonly_paths),
        hostname=hostname,
        domainname=spec.domainname.encode() if spec.domainname and uts else None,
        sysctl=tuple((k.encode(), v.encode()) for k, v in linux.sysctl.items()),
        uid=user.uid,
        gid=user.gid,
        additional_gids=tuple(user.additional_gids),
        umask=user.umask,
        rlimits=_rlimits(process),
        no_new_privileges=process.no_new_privileges,
        **_seccomp(linux.seccomp, roots),  # type: ignore[arg-type]
        user=_user_name(spec),
        set_home=spec.annotations.get(SET_HOME_ANNOTATION) == "1",
        init=spec.annotations.get(INIT_ANNOTATION) == "1",
        oom_score_adj=process.oom_score_adj,
        cwd=process.cwd.encode(),
        terminal=process.terminal,
        console_width=process.console_size.width if process.console_size else 0,
        console_height=process.console_size.height if process.console_size else 0,
        args=tuple(a.encode() for a in process.args),
        env=tuple(e.encode() for e in process.env),
        namespace_paths=joins,
        **cap_fields,  # type: ignore[arg-type]
    )
