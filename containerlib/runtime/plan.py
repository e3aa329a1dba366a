"""The plan: everything a container's first process needs, computed before the fork.

A :class:`Plan` holds bytes, ints and paths only, so that the forked child can carry it out
without importing, allocating much or deciding anything. It is built from an OCI
:class:`~containerlib.spec.oci.Spec` by :mod:`containerlib.runtime.specconv` and travels
to the spawner process by pickle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from containerlib.linux.cgroups import CgroupLimits

if TYPE_CHECKING:
    from containerlib.network.bridge import BridgeNetwork
    from containerlib.network.etcfiles import EtcFiles

__all__ = ["DeviceStep", "ExecRequest", "HookStep", "MountStep", "Plan", "exec_plan"]


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
class HookStep:
    """A hook the container's first process runs itself (an OCI ``createContainer`` or
    ``startContainer`` hook): forked and exec'd with the container's state on its stdin.

    Attributes:
        path: the program; a host path for a createContainer hook (it runs before
            ``pivot_root``), a path in the container for a startContainer one.
        args: its argv; empty for the path alone.
        env: its whole environment, ``NAME=VALUE`` entries.
        timeout: seconds after which it is killed and fails; 0 for none.
    """

    path: bytes
    args: tuple[bytes, ...] = ()
    env: tuple[bytes, ...] = ()
    timeout: int = 0


@attrs.frozen(kw_only=True)
class Plan:
    """All a container's first process does between clone(2) and execve(2).

    The container's id appears in ``rw_dir`` and ``cgroup_path`` (their last component)
    and, when ``hostname_is_id`` is set, in the hostname and ``HOSTNAME``; :meth:`with_id`
    gives the same plan for another id. With ``spawner_picks_id``, the id in the plan is a
    placeholder and the spawner gives the container an id of its own choosing: that of a
    cgroup it has made, and a process placed in it, ahead of time. With ``keep_upper``, the
    overlay's upper directory (what the container changed) is moved there when the
    container has exited, before its owner hears of it: an image build step commits it.
    """

    container_id: str
    spawner_picks_id: bool = False
    hostname_is_id: bool = False
    rw_dir: str
    keep_upper: str | None = None
    lowerdirs: tuple[str, ...]
    readonly_root: bool = False
    rootfs_propagation: int = 0
    clone_flags: int
    #: With a new user namespace (CLONE_NEWUSER in ``clone_flags``): its uid and gid
    #: maps, ``(container_id, host_id, size)`` entries, which the spawner writes before
    #: the process gets its plan.
    uid_map: tuple[tuple[int, int, int], ...] = ()
    gid_map: tuple[tuple[int, int, int], ...] = ()
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
    #: A compiled seccomp filter (struct sock_filter entries, 8 bytes each) and the
    #: SECCOMP_FILTER_FLAG_* bits to install it with, just before the exec; None for none.
    seccomp: bytes | None = None
    seccomp_flags: int = 0
    #: The same filter in two parts (see :class:`containerlib.linux.seccomp.SplitFilter`):
    #: a warm process may install ``seccomp_early`` ahead of time, and then the start
    #: installs only ``seccomp_late``. Not sent to the process as such.
    seccomp_early: bytes | None = None
    seccomp_late: bytes | None = None
    #: A ``user[:group]`` (names or numbers) to look up in the container's own
    #: /etc/passwd and /etc/group once it is in its root: it then replaces ``uid`` and
    #: ``gid``. With ``set_home``, HOME comes from the user's entry.
    user: bytes | None = None
    set_home: bool = False
    cap_bounding: int | None = None
    cap_effective: int = 0
    cap_permitted: int = 0
    cap_inheritable: int = 0
    cap_ambient: tuple[int, ...] = ()
    oom_score_adj: int | None = None
    cwd: bytes = b"/"
    args: tuple[bytes, ...]
    env: tuple[bytes, ...] = ()
    #: The rootfs is the directory ``lowerdirs[0]`` itself, bound on itself, with no
    #: overlay and no writable layer (an OCI bundle's, as runc uses it).
    bind_root: bool = False
    #: The OCI create/start split: the process waits, set up, until ``start`` opens this
    #: FIFO (see ``_init.c``).
    exec_fifo: str | None = None
    #: The process gets a new pseudo terminal as its stdio and controlling terminal; its
    #: master end goes to the console socket that comes with the plan (see ``_init.c``).
    terminal: bool = False
    console_width: int = 0
    console_height: int = 0
    #: PID 1 is a small reaper that forks the command, passes signals on, reaps what
    #: ends and exits with the command's status (``docker run --init``).
    init: bool = False
    #: A bridge network to put the container on before it runs (see
    #: :mod:`containerlib.network.bridge`); the spawner does it from outside. Not sent to
    #: the process.
    bridge: BridgeNetwork | None = None
    #: Once the namespaces, cgroup and mounts are made, the process stops (before
    #: ``pivot_root``) until the runtime has run its ``prestart`` and ``createRuntime``
    #: hooks, in the runtime's namespaces (see ``_init.c``).
    pause_for_hooks: bool = False
    #: The hooks the process runs itself, and the state (a JSON document) each kind gets
    #: on its stdin: ``createContainer`` ones before ``pivot_root``, ``startContainer``
    #: ones when ``start`` has let the process go, just before the command's exec.
    create_container_hooks: tuple[HookStep, ...] = ()
    create_state: bytes | None = None
    start_container_hooks: tuple[HookStep, ...] = ()
    start_state: bytes | None = None
    #: The container's /etc/hosts, /etc/hostname and /etc/resolv.conf, which the spawner
    #: writes beside its writable layer (``rw_dir``) before it starts, and ``mounts``
    #: bind-mounts (see :mod:`containerlib.network.etcfiles`); None for none. Not sent to
    #: the process.
    etc: EtcFiles | None = None
    #: Namespaces the process joins instead of making its own, ``(CLONE_NEW*, path)``
    #: pairs: an OCI ``linux.namespaces[].path``, or the network namespace of a pod (the
    #: other container's ``/proc/PID/ns/net``). Those flags are not in ``clone_flags``.
    #: The spawner opens each path and sends the descriptors with the plan; the process
    #: setns(2)s into each before it mounts anything (a sysfs shows the network devices
    #: of the namespace it was mounted in). Network, UTS and IPC only.
    namespace_paths: tuple[tuple[int, str], ...] = ()
    #: A user-mode network for the container's own network namespace (see
    #: :mod:`containerlib.network.usernet`): the program's absolute path (pasta or
    #: slirp4netns) and whether the container may reach the host's loopback. The
    #: spawner starts it from outside before the process gets its plan, and stops it
    #: when the container ends. Not sent to the process.
    usernet: tuple[str, bool] | None = None

    def with_id(self, container_id: str) -> Plan:
        """This plan for the container ``container_id``."""
        old = self.container_id
        rw_dir = _renamed(self.rw_dir, old, container_id)
        changes: dict[str, object] = {
            "container_id": container_id,
            "spawner_picks_id": False,
            "rw_dir": rw_dir,
        }
        if self.cgroup_path is not None:
            changes["cgroup_path"] = _renamed(self.cgroup_path, old, container_id)
        if self.etc is not None:
            # The files bind-mounted from beside the writable layer.
            rw, new_rw = self.rw_dir.encode() + b"/", rw_dir.encode() + b"/"
            changes["mounts"] = tuple(
                attrs.evolve(m, source=new_rw + m.source[len(rw) :])
                if m.source is not None and m.fstype is None and m.source.startswith(rw)
                else m
                for m in self.mounts
            )
        if self.hostname_is_id:
            name, placeholder = container_id[:12].encode(), old[:12].encode()
            changes["hostname"] = name
            changes["env"] = tuple(
                b"HOSTNAME=" + name if e == b"HOSTNAME=" + placeholder else e for e in self.env
            )
        return attrs.evolve(self, **changes)  # type: ignore[arg-type]

    @property
    def rootfs(self) -> str:
        """Where the overlay is mounted, in the container's own mount namespace: beside
        the upper and work directories, so that no other directory has to be made (with
        ``bind_root``: the directory itself)."""
        return self.lowerdirs[0] if self.bind_root else self.rw_dir + "/rootfs"


def _renamed(path: str, old: str, new: str) -> str:
    """``path``, whose last component is the id ``old``, for the id ``new``; a path named
    otherwise (a cgroup path the spec gave) is kept."""
    head, sep, tail = path.rpartition("/")
    return head + sep + new if tail == old else path


@attrs.frozen(kw_only=True)
class ExecRequest:
    """A process to start in a running container (``docker exec``).

    Attributes:
        container_id: the container.
        args: the command and its arguments.
        env: ``NAME=VALUE`` entries added to the container's environment (a later one
            wins).
        cwd: the working directory; the container's by default.
        user: ``user[:group]`` (names or numbers) looked up in the container's
            /etc/passwd and /etc/group; the container's user by default.
    """

    container_id: str
    args: tuple[bytes, ...]
    env: tuple[bytes, ...] = ()
    cwd: bytes | None = None
    user: bytes | None = None


def exec_plan(plan: Plan, request: ExecRequest) -> Plan:
    """The plan of a process started in the container of ``plan`` by ``request``: the
    container's credentials, capabilities, filter and limits, with the request's command,
    environment, directory and user."""
    changes: dict[str, object] = {"args": request.args, "env": plan.env + request.env}
    if request.cwd is not None:
        changes["cwd"] = request.cwd
    if request.user is not None:
        changes.update(user=request.user, uid=0, gid=0, additional_gids=())
        changes["set_home"] = not any(e.startswith(b"HOME=") for e in request.env)
    return attrs.evolve(plan, **changes)  # type: ignore[arg-type]
