"""The fluent :class:`Container`, its running handle and its :class:`Result`.

A :class:`Container` is an immutable description: every fluent method returns a changed
copy and does no I/O, so one object can be shared between tests and threads. The verbs
:meth:`Container.run` and :meth:`Container.start` compile it to an OCI
:class:`~containerlib.spec.oci.Spec`, then to a plan, and ask the spawner for the container.

Example:
    >>> from containerlib import Container, Image
    >>> from containerlib.image.builtin import busybox_rootfs
    >>> import tempfile
    >>> image = Image.from_rootfs(busybox_rootfs(tempfile.mkdtemp() + "/bb"))
    >>> r = Container(image).limit(mem="64M").run(["echo", "hi"])
    >>> r.exit_code, r.stdout
    (0, b'hi\\n')
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import functools
import io
import ipaddress
import os
import re
import secrets
import signal
import socket
import struct
import termios
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, cast, overload

import attrs

from containerlib._limits import Limits
from containerlib.errors import (
    ContainerError,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSetupError,
    SpecError,
)
from containerlib.images import Image
from containerlib.linux import syscalls as sc
from containerlib.linux.capabilities import CAPABILITIES as CAPABILITY_NUMBERS
from containerlib.linux.cgroups import Cgroup, CgroupStats
from containerlib.linux.userns import DEFAULT_SIZE, IdMap, default_maps
from containerlib.runtime.client import Exited, Process, spawner
from containerlib.runtime.plan import ExecRequest, MountStep, Plan
from containerlib.runtime.specconv import (
    INIT_ANNOTATION,
    SET_HOME_ANNOTATION,
    USER_ANNOTATION,
    Roots,
    cgroup_limits,
    check_id,
    plan_from_spec,
)
from containerlib.spec import oci
from containerlib.spec.defaults import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    default_spec,
)
from containerlib.spec.units import parse_bytes

if TYPE_CHECKING:
    from containerlib.aio import AsyncRunningContainer
    from containerlib.detached import DetachedContainer
    from containerlib.image.cache import LayerHold
    from containerlib.network.bridge import BridgeNetwork
    from containerlib.network.etcfiles import EtcFiles
    from containerlib.network.ports import HostListener, PortProxy, PublishedPort
    from containerlib.networks import Network
    from containerlib.readiness import Condition
    from containerlib.runtime.stdio import Pipes

__all__ = ["Container", "Event", "Result", "RunningContainer"]

_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})")
_ENV_KEY = re.compile(r"[^=\0]+")
#: The hostname of a container that was given neither a hostname nor an id; with an id,
#: the hostname is its first 12 characters, as Docker does.
_DEFAULT_HOSTNAME = "containerlib"


@attrs.frozen
class Event:
    """Something that happened to a container (:meth:`RunningContainer.events`).

    Attributes:
        kind: ``started``, ``oom`` (the kernel killed one of its processes for lack of
            memory) or ``exited``.
        time: when, in seconds since the epoch (for ``oom``, when it was noticed).
        exit_code: for ``exited``, the exit code.

    Example:
        >>> with Container("/srv/busybox").start(["true"]) as box:  # doctest: +SKIP
        ...     for event in box.events():
        ...         print(event.kind, event.exit_code)
        started None
        exited 0
    """

    kind: str
    time: float
    exit_code: int | None = None


#: How often :meth:`RunningContainer.events` looks at the cgroup for OOM kills (seconds).
EVENT_POLL = 0.1


def watch_events(
    oom_kills: Callable[[], int],
    ended: Callable[[float], tuple[int, int] | None],
    poll: float = EVENT_POLL,
) -> Iterator[Event]:
    """``oom`` events while a container runs, then ``exited``: ``oom_kills()`` gives its
    cgroup's count (-1 once it is gone); ``ended(timeout)`` gives ``(exit code, OOM kills
    at the end)`` once the container has ended, None while it runs."""
    seen = max(0, oom_kills())
    while True:
        done = ended(poll)
        count = oom_kills() if done is None else done[1]
        for _ in range(max(0, count - seen)):
            yield Event("oom", time.time())
        seen = max(seen, count)
        if done is not None:
            yield Event("exited", time.time(), done[0])
            return


@attrs.frozen(kw_only=True)
class Result:
    """What a finished container left: its exit code, output and figures.

    Attributes:
        exit_code: as a shell shows it: 127 command not found, 126 not executable,
            128 + N when killed by signal N.
        stdout: everything the container wrote to standard output.
        stderr: everything it wrote to standard error.
        oom_killed: the kernel killed a process of the container for lack of memory.
        timed_out: the container was killed because ``timeout`` passed.
        duration: seconds from the request to the end of the container.
        memory_peak: the most memory the container's cgroup held, in bytes.
        id: the container's id.
        stats: the cgroup's figures when the container ended: CPU time, memory, I/O,
            processes, OOM kills and pressure (see :class:`CgroupStats`).

    Example:
        >>> box = Container("/srv/busybox")  # doctest: +SKIP
        >>> result = box.run(["sh", "-c", "echo hi; exit 3"])  # doctest: +SKIP
        >>> result.exit_code, result.stdout, result.oom_killed  # doctest: +SKIP
        (3, b'hi\\n', False)
    """

    exit_code: int
    stdout: bytes
    stderr: bytes
    oom_killed: bool = False
    timed_out: bool = False
    duration: float = 0.0
    memory_peak: int | None = None
    id: str = ""
    stats: CgroupStats = attrs.field(factory=CgroupStats)


@attrs.frozen(kw_only=True)
class _BindMount:
    source: str
    target: str
    read_only: bool


@attrs.frozen(kw_only=True)
class _Tmpfs:
    target: str
    size: int | None


def _epoch(value: float | datetime.datetime | None, what: str) -> float | None:
    """A time given as seconds since the epoch or as a datetime, in seconds."""
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    raise SpecError(what, f"must be seconds since the epoch or a datetime, not {value!r}")


def _absolute(path: str, field: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise SpecError(field, f"must be an absolute path inside the container, not {path!r}")
    if "\0" in path:
        raise SpecError(field, f"must not contain NUL: {path!r}")
    return path


_T = TypeVar("_T")

#: The id a plan template is compiled with; it is replaced by the container's own.
_TEMPLATE_ID = "0" * 32


@functools.lru_cache(maxsize=128)
def _template(
    container: Container, cmd: tuple[str, ...] | None, roots: Roots
) -> tuple[tuple[str, ...], Plan]:
    return _compile(container, cmd, roots, _TEMPLATE_ID)


def _compile(
    container: Container, cmd: tuple[str, ...] | None, roots: Roots, cid: str
) -> tuple[tuple[str, ...], Plan]:
    """The command and the plan of ``container`` for the id ``cid``."""
    spec = container.spec(cmd, id=cid)
    plan = plan_from_spec(spec, container_id=cid, lowerdirs=container._lowerdirs, roots=roots)
    by_id = container._hostname is None and plan.hostname is not None
    plan = attrs.evolve(
        plan,
        hostname_is_id=by_id,
        bridge=container._bridge(),
        usernet=container._usernet(),
    )
    defaults = len(_base_spec().mounts)
    shared = container._shared_etc()
    if shared is not None:  # a pod's: the files of the container whose netns it shares
        etc_dir, hostname = shared
        placeholder = b"HOSTNAME=" + plan.hostname if plan.hostname is not None else None
        env = tuple(b"HOSTNAME=" + hostname.encode() if e == placeholder else e for e in plan.env)
        plan = attrs.evolve(plan, hostname=hostname.encode(), hostname_is_id=False, env=env)
        return (spec.process.args if spec.process else ()), _with_etc_files(
            plan, None, defaults, etc_dir
        )
    plan = _with_etc_files(plan, container._etc(), defaults)
    return (spec.process.args if spec.process else ()), plan


def _with_etc_files(
    plan: Plan, etc: EtcFiles | None, defaults: int, etc_dir: str | None = None
) -> Plan:
    """``plan`` with its /etc/hosts, /etc/hostname and /etc/resolv.conf: bind mounts of
    the files the spawner writes beside its writable layer (or of those in ``etc_dir``,
    which it then leaves alone: ``etc`` is None), after the default mounts (before the
    caller's, so that a mount of the caller's at one of these paths, or at /etc, wins:
    the file is then left out)."""
    from containerlib.network.etcfiles import ETC_FILES

    covered = {m.target.rstrip(b"/") or b"/" for m in plan.mounts[defaults:]}
    steps = tuple(
        MountStep(
            target=target.encode(),
            source=f"{etc_dir or plan.rw_dir}/{name}".encode(),
            fstype=None,
            flags=sc.MS_BIND,
            is_file=True,
        )
        for name, target in ETC_FILES
        if not covered & {target.encode(), b"/etc", b"/"}
    )
    mounts = plan.mounts[:defaults] + steps + plan.mounts[defaults:]
    return attrs.evolve(plan, mounts=mounts, etc=etc)


def _without_etc_files(plan: Plan) -> Plan:
    """``plan`` without the files of :func:`_with_etc_files` (an image build's step,
    whose writable layer becomes a layer: the mount points would end up in it)."""
    own = plan.rw_dir.encode() + b"/"
    mounts = tuple(
        m for m in plan.mounts if not (m.fstype is None and m.source and m.source.startswith(own))
    )
    return attrs.evolve(plan, mounts=mounts, etc=None)


@functools.cache
def _default_maps(size: int) -> tuple[IdMap, IdMap]:
    """The caller's default id maps (they read /etc/subuid and /etc/subgid): once."""
    return default_maps(size)


@functools.cache
def _base_spec() -> oci.Spec:
    """runc's default spec without a terminal: immutable, so built once. Every field the
    container sets (the process's args among them) is replaced in :meth:`Container.spec`."""
    return default_spec(args=("sh",), terminal=False)


_ACCOUNT = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?"


def _parse_user(text: str, what: str) -> tuple[int, int] | str:
    """``uid:gid`` in numbers as a pair; any other ``user[:group]`` as it is, to be
    looked up in the container (see :meth:`Container.user`)."""
    m = re.fullmatch(r"(\d+):(\d+)", text)
    if m:
        uid, gid = int(m.group(1)), int(m.group(2))
        if uid >= 2**32 - 1 or gid >= 2**32 - 1:
            raise SpecError(what, f"{text!r} is out of range")
        return uid, gid
    if not re.fullmatch(rf"({_ACCOUNT})(:{_ACCOUNT})?", text) or len(text) > 255:
        raise SpecError(what, f"{text!r} is not a user, 'user' or 'user:group'")
    for part in text.split(":"):
        if part.isdigit() and int(part) >= 2**32 - 1:
            raise SpecError(what, f"{text!r} is out of range")
    return text


def _capabilities(names: Sequence[str], what: str) -> frozenset[str]:
    out = set()
    for name in names:
        if not isinstance(name, str):
            raise SpecError(what, f"a capability name, not {name!r}")
        key = name.upper().removeprefix("CAP_")
        if key != "ALL" and key not in CAPABILITY_NUMBERS:
            raise SpecError(what, f"unknown capability {name!r}")
        out.add("CAP_" + key)
    return frozenset(out)


_NAMESPACED_SYSCTL = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                      "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                      "kernel.shm_rmid_forced")  # fmt: skip


def _namespaced_sysctl(key: str, network: object) -> bool:
    """Whether ``key`` belongs to a namespace of the container's own (as Docker's list)."""
    if key in _NAMESPACED_SYSCTL or key.startswith("fs.mqueue."):
        return True
    return key.startswith("net.") and network != "host"


@functools.cache
def _bounding_set() -> tuple[str, ...]:
    """The capabilities in this process's bounding set (root in a container, or a host
    that withholds some, has fewer than all)."""
    bits = (1 << 64) - 1
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    bits = int(line.split()[1], 16)
    except OSError:
        pass
    return tuple(f"CAP_{n}" for n, number in CAPABILITY_NUMBERS.items() if bits >> number & 1)


@functools.cache
def _default_seccomp(caps: tuple[str, ...]) -> oci.LinuxSeccomp:
    """Docker's default profile for ``caps``: the same object for the same set, so that
    its compiled filter is cached too."""
    from containerlib.spec.seccomp_default import docker_default_profile

    return docker_default_profile(caps)


def _as_image(path: object) -> Image:
    if isinstance(path, Image):
        return path
    if isinstance(path, str | os.PathLike):
        return Image.from_path(path)
    raise SpecError("image", f"must be an Image or a path, not {path!r}")


@attrs.frozen
class Container:
    """A container to run: an image and how to run it. Immutable.

    Args:
        image: an :class:`Image`, or the path of a root file system directory or of an
            OCI image layout.

    Example:
        >>> c = Container("/srv/rootfs").limit(mem="512M", pids=64).env(DEBUG="1")
        >>> c.limit(mem="1G") is c
        False
    """

    image: Image = attrs.field(converter=_as_image)
    _limits: Limits = attrs.field(factory=Limits)
    _env: tuple[tuple[str, str], ...] = ()
    _workdir: str | None = None
    _user: tuple[int, int] | str | None = None
    _hostname: str | None = None
    _mounts: tuple[_BindMount | _Tmpfs, ...] = ()
    _read_only: bool = False
    _network: str | Network = "none"
    #: The network namespace it joins instead of its own (see :meth:`network`): another
    #: container's handle (a pod), or the path of a namespace file.
    _netns: str | RunningContainer | DetachedContainer | None = None
    #: A user-mode network's gateway leads to the host's loopback (network()).
    _host_loopback: bool = False
    #: Its names on a user-defined network besides its hostname and name.
    _aliases: tuple[str, ...] = ()
    #: Name servers, search domains, resolver options (None each: the host's).
    _dns: tuple[tuple[str, ...] | None, tuple[str, ...] | None, tuple[str, ...] | None] = (
        None,
        None,
        None,
    )
    _extra_hosts: tuple[tuple[str, str], ...] = ()
    _cap_add: frozenset[str] = frozenset()
    _cap_drop: frozenset[str] = frozenset()
    _privileged: bool = False
    _seccomp: oci.LinuxSeccomp | Literal["default"] | None = "default"
    _sysctl: tuple[tuple[str, str], ...] = ()
    _rlimits: tuple[tuple[str, int, int], ...] = ()
    #: (host uid, host gid, size) of a user namespace (no ids: the default maps); False
    #: for none (but a non-root caller's containers always have one).
    _userns: tuple[int | None, int | None, int] | Literal[False] = False
    _init: bool = False
    #: (container port, host port or None, protocol, host address) for each published port.
    _publish: tuple[tuple[int, int | None, str, str], ...] = ()

    # -- fluent methods: each returns a changed copy, no I/O -----------------------------

    def limit(
        self,
        *,
        mem: str | int | None = None,
        mem_reservation: str | int | None = None,
        swap: str | int | None = None,
        cpus: str | float | None = None,
        cpu_shares: int | None = None,
        cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None,
        pids: int | None = None,
        blkio_weight: int | None = None,
        device_read_bps: Mapping[str, str | int] | None = None,
        device_write_bps: Mapping[str, str | int] | None = None,
        device_read_iops: Mapping[str, int] | None = None,
        device_write_iops: Mapping[str, int] | None = None,
        hugetlb: Mapping[str, str | int] | None = None,
    ) -> Self:
        """Limit the container's resources, as the ``docker run`` flags of the same names.

        Args:
            mem: memory (``"512m"``, ``"1g"``, bytes); at least 6 MiB. Without ``swap``
                the container gets no swap: past ``mem`` it is OOM-killed.
            mem_reservation: a soft limit, kept when the host runs short of memory.
            swap: memory plus swap (``--memory-swap``), at least ``mem``; -1 for unlimited.
            cpus: CPUs of time (``1.5``), as a CFS quota per 100 ms period.
            cpu_shares: relative CPU weight, 2 to 262144 (1024 is the default).
            cpuset_cpus, cpuset_mems: the CPUs and memory nodes it may use (``"0-1,3"``).
            pids: the most processes (and threads) at once.
            blkio_weight: relative block I/O weight, 10 to 1000.
            device_read_bps, device_write_bps: bytes a second per block device
                (``{"/dev/sda": "1mb"}``).
            device_read_iops, device_write_iops: I/O operations a second per block device.
            hugetlb: huge pages per page size (``{"2MB": "64m"}``).

        Later calls change only what they give. Device paths are looked up when the
        container starts.

        Raises:
            SpecError: a value ``docker run`` would not accept, naming the argument.

        Example:
            >>> spec = Container.host().limit(mem="64M", pids=32).spec(["true"])
            >>> spec.linux.resources.memory.limit, spec.linux.resources.pids.limit
            (67108864, 32)
        """
        # Every argument but self, by name: the signature is the list of limits.
        given = Limits.parse(**{k: v for k, v in locals().items() if k != "self"})
        return attrs.evolve(self, limits=self._limits.merged(given))

    def env(self, **variables: str) -> Self:
        """Add environment variables; later calls override earlier ones.

        Example:
            >>> spec = Container.host().env(GREETING="hi").spec(["env"])
            >>> "GREETING=hi" in spec.process.env
            True
        """
        for key, value in variables.items():
            if not _ENV_KEY.fullmatch(key):
                raise SpecError(f"env.{key}", f"{key!r} is not a valid variable name")
            if not isinstance(value, str) or "\0" in value:
                raise SpecError(f"env.{key}", f"must be a string without NUL, not {value!r}")
        merged = dict(self._env)
        merged.update(variables)
        return attrs.evolve(self, env=tuple(merged.items()))

    def workdir(self, path: str) -> Self:
        """Run the command in ``path`` (absolute, inside the container).

        Example:
            >>> Container.host().workdir("/tmp").spec(["pwd"]).process.cwd
            '/tmp'
        """
        return attrs.evolve(self, workdir=_absolute(path, "workdir"))

    def user(self, user: str | int) -> Self:
        """Run as ``user`` or ``user:group``, names or numbers, as ``docker run --user``.

        Names are looked up in the container's own /etc/passwd and /etc/group (never the
        host's), once its root file system is in place: a user found there gets its uid,
        its group and the groups that list it, and HOME from its entry; a uid no entry has
        runs with gid 0. ``"uid:gid"`` in numbers is used as it is.

        Raises:
            SpecError: not a user, or a number out of range. A name the image does not
                have fails the start with ContainerSetupError.

        Example:
            >>> user = Container.host().user("1000:1000").spec(["id"]).process.user
            >>> user.uid, user.gid
            (1000, 1000)
        """
        return attrs.evolve(self, user=_parse_user(str(user), "user"))

    def hostname(self, name: str) -> Self:
        """Set the container's hostname (its own UTS namespace).

        Example:
            >>> Container.host().hostname("box").spec(["hostname"]).hostname
            'box'
        """
        if not isinstance(name, str) or not _HOSTNAME.fullmatch(name):
            raise SpecError("hostname", f"{name!r} is not a valid hostname")
        return attrs.evolve(self, hostname=name)

    def mount(self, source: str | os.PathLike[str], target: str, *, read_only: bool = True) -> Self:
        """Bind-mount the host path ``source`` at ``target``; read-only unless asked.

        Example:
            >>> spec = Container.host().mount("/etc", "/host-etc").spec(["ls", "/host-etc"])
            >>> [m.options for m in spec.mounts if m.destination == "/host-etc"]
            [('rbind', 'ro')]
        """
        src = os.fspath(source)
        if not os.path.isabs(src):
            raise SpecError("mount.source", f"must be an absolute host path, not {src!r}")
        m = _BindMount(source=src, target=_absolute(target, "mount.target"), read_only=read_only)
        return attrs.evolve(self, mounts=(*self._mounts, m))

    def tmpfs(self, target: str, *, size: str | int | None = None) -> Self:
        """Mount an empty tmpfs at ``target``, of at most ``size`` (``"64M"``).

        Example:
            >>> spec = Container.host().tmpfs("/scratch", size="64M").spec(["true"])
            >>> [m.type for m in spec.mounts if m.destination == "/scratch"]
            ['tmpfs']
        """
        bytes_ = parse_bytes(size, "tmpfs.size") if size is not None else None
        m = _Tmpfs(target=_absolute(target, "tmpfs.target"), size=bytes_)
        return attrs.evolve(self, mounts=(*self._mounts, m))

    def read_only(self, read_only: bool = True) -> Self:
        """Make the root file system read-only.

        Example:
            >>> Container.host().read_only().spec(["true"]).root.readonly
            True
        """
        return attrs.evolve(self, read_only=read_only)

    @classmethod
    def host(cls) -> Container:
        """A container of the host's own programs, without an image: the host's /usr,
        /bin, /sbin and /lib read-only, a fresh tmpfs at /tmp, a read-only root, its own
        /proc and no network. ``Container.host().limit(mem="256M").call(f)`` sandboxes a
        function. Makes an empty skeleton under the data root the first time.

        Example:
            >>> Container.host().run(["sh", "-c", "echo $((6 * 7))"]).stdout  # doctest: +SKIP
            b'42\\n'
        """
        from containerlib.calls import host_container

        return host_container()

    def call(
        self, fn: Callable[..., _T], /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> _T:
        """Run ``fn(*args, **kwargs)`` in a new container made from this one, with this
        process's interpreter, and return what it returned or raise what it raised (see
        :func:`containerlib.calls.call`). ``fn`` must be defined at the top level of an
        importable module.

        Example:
            >>> import math
            >>> Container.host().limit(mem="256M").call(math.factorial, 20)  # doctest: +SKIP
            2432902008176640000

        Raises:
            SpecError: ``fn`` or its arguments do not pickle; nothing was started.
            CallError: no result: killed for lack of memory (``oom_killed``), timed
                out, exited, or its outcome does not pickle.
        """
        from containerlib.calls import call

        return call(self, fn, *args, timeout=timeout, **kwargs)

    def network(
        self,
        mode: Literal["none", "host", "bridge", "pasta", "slirp4netns"] | Network = "none",
        *,
        aliases: Sequence[str] = (),
        host_loopback: bool = False,
        container: RunningContainer | DetachedContainer | None = None,
        netns: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Choose the container's network (see docs/networking.md).

        Args:
            mode: ``"none"`` (the default): a network namespace of its own with only
                ``lo``. ``"host"``: the host's network. ``"bridge"``: as root, a
                namespace of its own on the host bridge ``clib0`` with an address from
                ``10.217.0.0/16`` (``CONTAINERLIB_BRIDGE_SUBNET`` for another) and NAT to
                the outside (see :mod:`containerlib.network.bridge`); for a non-root
                user, a user-mode network (slirp4netns if installed, else pasta).
                ``"slirp4netns"``, ``"pasta"``: that user-mode network (see
                :mod:`containerlib.network.usernet`): ``eth0`` is 10.0.2.100/24, the
                gateway 10.0.2.2, DNS 10.0.2.3; the host reaches it only through
                published ports. A :class:`~containerlib.networks.Network`: a
                user-defined network whose members reach each other by hostname, name
                and alias.
            aliases: more names the container answers to on its ``Network``.
            host_loopback: on a user-mode network, the gateway leads to the host's
                ``127.0.0.1`` (by default the container cannot reach the host's loopback
                services, as with podman).
            container: share the network namespace of that running container (a
                :class:`RunningContainer` or :class:`~containerlib.detached.DetachedContainer`),
                as ``docker run --network container:NAME`` and a pod: the two reach
                each other on ``127.0.0.1``, each in its own PID, mount, IPC and UTS
                namespaces. It gets that container's hostname and its very
                /etc/hosts, /etc/hostname and /etc/resolv.conf, as Docker's does
                (so no hostname(), dns() or add_host() of its own). Root only.
            netns: join the network namespace of that file (``/proc/PID/ns/net``, or one
                bind-mounted as ``ip netns add`` does). Root only.

        With ``container`` or ``netns`` the container has no address of its own (its
        :attr:`RunningContainer.ip` is None) and nothing of the namespace is removed when
        it ends.

        Example:
            >>> c = Container(image).network(Network("backend"), aliases=["db"])  # doctest: +SKIP
            >>> web = Container(image).start(["httpd", "-f", "-p", "80"])  # doctest: +SKIP
            >>> sidecar = Container(image).network(container=web)  # doctest: +SKIP
            >>> sidecar.run(["wget", "-qO-", "127.0.0.1"])  # doctest: +SKIP

        Raises:
            SpecError: a bad mode or alias, ``host_loopback`` off a user-mode network, or
                ``container`` or ``netns`` with a mode or with each other.
        """
        from containerlib.networks import Network

        if container is not None or netns is not None:
            return self._join_network(mode, aliases, host_loopback, container, netns)

        if isinstance(aliases, str) or not all(
            isinstance(a, str) and _HOSTNAME.fullmatch(a) for a in aliases
        ):
            raise SpecError("aliases", f"must be a list of hostnames, not {aliases!r}")
        if not isinstance(host_loopback, bool):
            raise SpecError("host_loopback", f"must be True or False, not {host_loopback!r}")
        if host_loopback and mode not in ("bridge", "pasta", "slirp4netns"):
            raise SpecError(
                "host_loopback",
                f"is for a user-mode network ('pasta', 'slirp4netns'), not {mode!r}",
            )
        if isinstance(mode, Network):
            return attrs.evolve(
                self, network=mode, aliases=tuple(aliases), host_loopback=False, netns=None
            )
        if mode not in ("none", "host", "bridge", "pasta", "slirp4netns"):
            raise SpecError(
                "network",
                "must be 'none', 'host', 'bridge', 'pasta', 'slirp4netns' or a Network, "
                f"not {mode!r}",
            )
        if aliases:
            raise SpecError("aliases", "aliases are names on a user-defined Network")
        return attrs.evolve(self, network=mode, aliases=(), host_loopback=host_loopback, netns=None)

    def _join_network(
        self,
        mode: object,
        aliases: Sequence[str],
        host_loopback: bool,
        container: RunningContainer | DetachedContainer | None,
        netns: str | os.PathLike[str] | None,
    ) -> Self:
        """:meth:`network` with ``container`` or ``netns``: checked, no I/O."""
        if mode != "none" or aliases or host_loopback:
            raise SpecError(
                "network",
                "container= and netns= join another network namespace: give no mode, "
                "aliases or host_loopback with them",
            )
        if container is not None and netns is not None:
            raise SpecError("network", "give container= or netns=, not both")
        if container is not None:
            if not hasattr(container, "pid"):
                raise SpecError(
                    "network container",
                    f"must be a running container (with a pid), not {container!r}",
                )
            return attrs.evolve(self, network="none", netns=container, host_loopback=False)
        path = os.fspath(netns) if isinstance(netns, str | os.PathLike) else netns
        if not isinstance(path, str) or not os.path.isabs(path) or "\0" in path:
            raise SpecError("network netns", f"must be an absolute path, not {netns!r}")
        return attrs.evolve(self, network="none", netns=path, host_loopback=False)

    def _shared_etc(self) -> tuple[str, str] | None:
        """For a container that shares another container's network namespace (a pod),
        the directory of that container's /etc/hosts, /etc/hostname and
        /etc/resolv.conf, and its hostname, which this one gets too, as with ``docker
        run --network container:``; None otherwise, or if that container has none of
        its own (a build step, or files of its own that it mounted).

        Raises:
            SpecError: a hostname, name servers or hosts entries given as well: the
                files are the other container's.
        """
        other = self._netns
        if other is None or isinstance(other, str):
            return None
        if isinstance(other, RunningContainer):
            plan = other._plan
            if plan is None or plan.etc is None:
                return None
            etc_dir = plan.with_id(other.id).rw_dir
        else:
            etc_dir = str(other._record.get("rw_dir") or "")
        from containerlib.network.etcfiles import ETC_FILES

        try:
            with open(os.path.join(etc_dir, "hostname"), encoding="utf-8") as f:
                hostname = f.read().strip()
        except OSError:
            return None  # not a containerlib container's, or it is gone
        if not hostname or not all(
            os.path.exists(os.path.join(etc_dir, name)) for name, _ in ETC_FILES
        ):
            return None
        given = [
            what
            for what, there in (
                ("hostname()", self._hostname is not None),
                ("dns()", self._dns != (None, None, None)),
                ("add_host()", bool(self._extra_hosts)),
            )
            if there
        ]
        if given:
            raise SpecError(
                "network container",
                f"a container that shares another's network namespace shares its hostname, "
                f"/etc/hosts and /etc/resolv.conf too (as docker's --network container:): "
                f"give {' and '.join(given)} to {other.id[:12]} instead",
            )
        return etc_dir, hostname

    def _netns_path(self) -> str | None:
        """The path of the network namespace the container joins, None for its own.

        Raises:
            SpecError: the caller's containers have a user namespace (a non-root user's
                always do), from which the kernel refuses to join another's.
            ContainerNotRunning: the container whose namespace it shares has ended.
        """
        if self._netns is None:
            return None
        if os.geteuid() != 0 or self._userns is not False:
            raise SpecError(
                "network",
                "sharing another network namespace (container= or netns=) needs root and "
                "no userns(): the kernel lets a process join only namespaces that its user "
                "namespace owns, and a non-root user's containers always have a user "
                "namespace of their own",
            )
        if isinstance(self._netns, str):
            return self._netns
        other = self._netns
        pid = other.pid
        ended = isinstance(other, RunningContainer) and other._result is not None
        if ended or not isinstance(pid, int) or pid <= 0:
            name = str(getattr(other, "id", other))
            raise ContainerNotRunning(name, "share the network namespace of")
        return f"/proc/{pid}/ns/net"

    def dns(
        self,
        servers: Sequence[str] = (),
        *,
        search: Sequence[str] | None = None,
        options: Sequence[str] | None = None,
    ) -> Self:
        """The container's /etc/resolv.conf: these name servers (``docker run --dns``),
        search domains (``--dns-search``) and resolver options (``--dns-option``) instead
        of the host's. An empty ``servers`` keeps the host's servers.

        Example:
            >>> c = Container(image).dns(["192.0.2.53"], search=["example.com"])  # doctest: +SKIP
        """
        for server in servers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise SpecError("dns", f"{server!r} is not an IP address") from None
        for field, words in (("dns search", search), ("dns options", options)):
            if words is not None and (
                isinstance(words, str)
                or not all(isinstance(w, str) and w and w.split() == [w] for w in words)
            ):
                raise SpecError(field, f"must be a list of words, not {words!r}")
        return attrs.evolve(
            self,
            dns=(
                tuple(servers) or None,
                tuple(search) if search is not None else None,
                tuple(options) if options is not None else None,
            ),
        )

    def add_host(self, hostname: str, address: str) -> Self:
        """An entry in the container's /etc/hosts (``docker run --add-host``).

        Example:
            >>> c = Container(image).add_host("db.internal", "192.0.2.10")  # doctest: +SKIP
        """
        if not isinstance(hostname, str) or not _HOSTNAME.fullmatch(hostname):
            raise SpecError("add_host", f"{hostname!r} is not a valid hostname")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SpecError("add_host", f"{address!r} is not an IP address") from None
        return attrs.evolve(self, extra_hosts=(*self._extra_hosts, (hostname, str(address))))

    def publish(
        self,
        container_port: int,
        host_port: int | None = None,
        protocol: Literal["tcp", "udp"] = "tcp",
        *,
        host_ip: str = "127.0.0.1",
    ) -> Self:
        """Publish ``container_port`` on the host's loopback, as ``docker run -p
        127.0.0.1:HOST:CONTAINER``: connections to ``host_ip:host_port`` reach the
        container's port (``host_port`` None: a free port is picked; see
        :attr:`RunningContainer.ports`). It works in the default ``none`` network and for
        a non-root user: a proxy in this process makes its sockets inside the container's
        network namespace. The host port is taken before the container is made, so a
        taken port fails before anything runs.

        Example:
            >>> web = Container(image).publish(8080)  # doctest: +SKIP
            >>> box = web.start(["httpd", "-f", "-p", "8080"])  # doctest: +SKIP
            >>> box.ports[0].host_port  # doctest: +SKIP
            41237

        Raises:
            SpecError: a bad port, protocol or address.
        """
        for field, port in (("container_port", container_port), ("host_port", host_port)):
            if port is None and field == "host_port":
                continue
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise SpecError(f"publish {field}", f"must be a port, 1 to 65535, not {port!r}")
        if protocol not in ("tcp", "udp"):
            raise SpecError("publish protocol", f'must be "tcp" or "udp", not {protocol!r}')
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise SpecError("publish host_ip", f"must be an IP address, not {host_ip!r}") from None
        entry = (container_port, host_port, protocol, host_ip)
        return attrs.evolve(self, publish=(*self._publish, entry))

    def _bridge(self) -> BridgeNetwork | None:
        """The bridge network of the plan (see :attr:`Plan.bridge`), None off a bridge.

        Raises:
            SpecError: a bridge for a user without root, who has no way to make one.
        """
        from containerlib.networks import Network

        if isinstance(self._network, Network):
            if os.geteuid() != 0:
                raise SpecError(
                    "network",
                    f"network {self._network.name!r} is a bridge with veth pairs on the host, "
                    "which needs root",
                )
            return self._network._bridge()
        if self._network != "bridge" or os.geteuid() != 0:
            return None  # a non-root user's "bridge" is a user-mode network (_usernet)
        from containerlib.network.bridge import (
            DEFAULT_BRIDGE,
            DEFAULT_SUBNET,
            BridgeNetwork,
            network_state_dir,
        )

        subnet = os.environ.get("CONTAINERLIB_BRIDGE_SUBNET", DEFAULT_SUBNET)
        return BridgeNetwork(
            name="bridge", bridge=DEFAULT_BRIDGE, subnet=subnet, state_dir=network_state_dir()
        )

    def _usernet(self) -> tuple[str, bool] | None:
        """The user-mode network of the plan (see :attr:`Plan.usernet`), None without.

        Raises:
            SpecError: the program is not installed (naming the packages), or
                ``host_loopback`` was asked for root's real bridge.
        """
        mode = self._network
        if mode in ("pasta", "slirp4netns"):
            tool: str | None = str(mode)
        elif mode == "bridge" and os.geteuid() != 0:
            tool = None  # the one installed, slirp4netns first
        else:
            if self._host_loopback:
                raise SpecError(
                    "host_loopback",
                    "root's 'bridge' is a real bridge, which the host reaches: "
                    "host_loopback is for 'pasta' and 'slirp4netns'",
                )
            return None
        from containerlib.network.usernet import require

        return (require(tool), self._host_loopback)

    def _etc(self) -> EtcFiles:
        """What the container's /etc/hosts, /etc/hostname and /etc/resolv.conf are made
        of (see :mod:`containerlib.network.etcfiles`)."""
        from containerlib.network.etcfiles import EtcFiles

        servers, search, options = self._dns
        return EtcFiles(
            names=self._aliases,
            extra_hosts=self._extra_hosts,
            host_network=self._network == "host",
            dns=servers,
            dns_search=search,
            dns_options=options,
        )

    def _bind_published(self) -> list[HostListener]:
        """Take the host side of the published ports, before the container is made.

        Raises:
            SpecError: ports published on the host's own network.
            ContainerSetupError: a host port is taken; none is held then.
        """
        if not self._publish:
            return []
        if self._network == "host":
            raise SpecError("publish", "a container on the host's network needs no published port")
        from containerlib.network.ports import bind_host

        taken: list[HostListener] = []
        try:
            for container_port, host_port, protocol, host_ip in self._publish:
                taken.append(bind_host(container_port, host_port, protocol, host_ip))
        except BaseException:
            for listener in taken:
                listener.sock.close()
            raise
        return taken

    def cap_add(self, *capabilities: str) -> Self:
        """Give the process these capabilities too (``"NET_ADMIN"`` or
        ``"CAP_NET_ADMIN"``; ``"ALL"`` for every one), as ``docker run --cap-add``.

        Raises:
            SpecError: an unknown capability, naming it.

        Example:
            >>> caps = Container.host().cap_add("NET_ADMIN").spec(["true"]).process.capabilities
            >>> "CAP_NET_ADMIN" in caps.bounding
            True
        """
        names = _capabilities(capabilities, "cap_add")
        return attrs.evolve(self, cap_add=self._cap_add | names, cap_drop=self._cap_drop - names)

    def cap_drop(self, *capabilities: str) -> Self:
        """Take these capabilities away (``"ALL"`` for every one), as ``--cap-drop``.

        Raises:
            SpecError: an unknown capability, naming it.

        Example:
            >>> Container.host().cap_drop("ALL").spec(["true"]).process.capabilities.bounding
            ()
        """
        names = _capabilities(capabilities, "cap_drop")
        return attrs.evolve(self, cap_drop=self._cap_drop | names, cap_add=self._cap_add - names)

    def privileged(self, privileged: bool = True) -> Self:
        """As ``docker run --privileged``: every capability, no seccomp filter, no masked
        or read-only /proc paths, a writable /sys, every device allowed by the device
        cgroup, and no ``no_new_privs``. The namespaces stay.

        Example:
            >>> spec = Container.host().privileged().spec(["true"])
            >>> spec.linux.seccomp is None, "CAP_SYS_ADMIN" in spec.process.capabilities.bounding
            (True, True)
        """
        return attrs.evolve(self, privileged=privileged)

    def init(self, enabled: bool = True) -> Self:
        """Run a small reaper as PID 1, with the command as its child, as ``docker run
        --init``: it passes every signal on (so ``stop()`` ends a shell that has no
        SIGTERM handler) and reaps the processes that end orphaned inside, which a
        command that is not written to be PID 1 leaves as zombies. The exit code is the
        command's (128 + N if signal N killed it). The reaper is containerlib's native
        helper, non-dumpable: nothing inside can read it or its executable.

        Example:
            >>> Container.host().init() != Container.host()
            True
        """
        return attrs.evolve(self, init=enabled)

    def userns(
        self,
        enabled: bool = True,
        *,
        uid: int | None = None,
        gid: int | None = None,
        size: int = DEFAULT_SIZE,
    ) -> Self:
        """Run in a user namespace of its own: the container's root, and every other id
        inside, is an unprivileged user of the host (``dockerd --userns-remap``, podman's
        ``--uidmap``). A process that breaks out is nobody on the host.

        The container's ids 0 to ``size - 1`` are the host's ``uid`` to ``uid + size - 1``
        (and the same for groups from ``gid``). Without ``uid`` and ``gid``, root takes
        the range /etc/subuid and /etc/subgid give the user ``containerlib``, else root,
        else 65536 ids from 524288; a non-root user maps its own ids to root (see
        :func:`containerlib.linux.userns.default_maps`). As root, the image's files are
        shown to the container through id-mapped mounts, so its root owns them without a
        copy; files it writes belong to the mapped ids on the host. A non-root user's
        containers always have a user namespace (rootless use).

        Example:
            >>> Container.host().userns(uid=200000, size=65536) is not None
            True

        Raises:
            SpecError: a negative id or size (at start: a range the kernel refuses).
        """
        if not enabled:
            return attrs.evolve(self, userns=False)
        for name, value in (("uid", uid), ("gid", gid)):
            if value is not None and not (isinstance(value, int) and 0 <= value < 2**32 - 1):
                raise SpecError(f"userns {name}", f"must be a host id from 0, not {value!r}")
        if not isinstance(size, int) or not 0 < size < 2**32 - 1:
            raise SpecError("userns size", f"must be a positive number of ids, not {size!r}")
        if uid is None and gid is None:
            return attrs.evolve(self, userns=(None, None, size))
        return attrs.evolve(self, userns=(uid, gid, size))

    def _id_maps(self) -> tuple[IdMap, IdMap] | None:
        """The user namespace's uid and gid maps, or None for no user namespace."""
        rootless = os.geteuid() != 0
        if self._userns is False and not rootless:
            return None
        if self._userns is False or (self._userns[0] is None and self._userns[1] is None):
            size = self._userns[2] if self._userns else DEFAULT_SIZE
            return _default_maps(size)
        uid, gid, size = self._userns
        host_uid = uid if uid is not None else gid
        host_gid = gid if gid is not None else uid
        assert host_uid is not None
        assert host_gid is not None
        return ((0, host_uid, size),), ((0, host_gid, size),)

    def seccomp(self, profile: oci.LinuxSeccomp | Mapping[str, object] | str | None) -> Self:
        """The seccomp filter: an OCI ``LinuxSeccomp``, a Docker or OCI JSON profile (a
        mapping, or its text), ``"default"`` for Docker's default profile (the default),
        or None for no filter (``--security-opt seccomp=unconfined``).

        Raises:
            SpecError: the profile is not valid, naming the field.

        Example:
            >>> Container.host().seccomp(None).spec(["true"]).linux.seccomp is None
            True
            >>> box = Container.host().seccomp("/etc/containerlib/strict.json")  # doctest: +SKIP
        """
        if profile is None or isinstance(profile, oci.LinuxSeccomp):
            return attrs.evolve(self, seccomp=profile)
        if profile == "default":
            return attrs.evolve(self, seccomp="default")
        from containerlib.spec.seccomp_docker import load_profile

        return attrs.evolve(self, seccomp=load_profile(profile, self._capability_set()))

    def sysctl(self, **settings: str | int) -> Self:
        """Set namespaced kernel parameters inside the container, as ``--sysctl``
        (``net.ipv4.ip_unprivileged_port_start=0``; dots or underscores both work as
        keyword names are written ``net__ipv4__...``, see below): only those that belong to
        the container's own IPC, UTS or network namespace (``kernel.msg*``, ``kernel.sem``,
        ``kernel.shm*``, ``fs.mqueue.*``, ``net.*`` without host networking).

        Keyword names cannot hold dots: write them with ``__`` (``net__ipv4__ip_forward``),
        or pass a mapping with ``**{"net.ipv4.ip_forward": 1}``.

        Raises:
            SpecError: a parameter that is not namespaced, or a value with a NUL.

        Example:
            >>> box = Container.host().sysctl(net__ipv4__ip_unprivileged_port_start=0)
            >>> spec = box.spec(["true"])
            >>> dict(spec.linux.sysctl)
            {'net.ipv4.ip_unprivileged_port_start': '0'}
        """
        merged = dict(self._sysctl)
        for raw, value in settings.items():
            key = raw.replace("__", ".")
            if not _namespaced_sysctl(key, self._network):
                raise SpecError(
                    f"sysctl.{key}",
                    "not a namespaced kernel parameter (kernel.msg*, kernel.sem, "
                    "kernel.shm*, fs.mqueue.*, or net.* with a network of its own)",
                )
            text = str(value)
            if "\0" in text or "\n" in text:
                raise SpecError(f"sysctl.{key}", f"bad value {text!r}")
            merged[key] = text
        return attrs.evolve(self, sysctl=tuple(merged.items()))

    def rlimit(self, name: str, soft: int, hard: int | None = None) -> Self:
        """Set a resource limit (``"nofile"``, ``"nproc"``, ...), as ``--ulimit``; the hard
        limit is ``soft`` unless given. -1 is unlimited.

        Raises:
            SpecError: an unknown resource, or soft above hard.

        Example:
            >>> Container.host().rlimit("nofile", 1024).spec(["true"]).process.rlimits
            (POSIXRlimit(type='RLIMIT_NOFILE', hard=1024, soft=1024),)
        """
        import resource as _resource

        key = name.upper() if name.upper().startswith("RLIMIT_") else "RLIMIT_" + name.upper()
        if not isinstance(getattr(_resource, key, None), int):
            raise SpecError(f"rlimit.{name}", f"unknown resource {name!r}")
        hard = soft if hard is None else hard
        inf = 2**64 - 1
        s_, h_ = (inf if soft == -1 else soft), (inf if hard == -1 else hard)
        if not (0 <= s_ <= h_ <= inf):
            raise SpecError(f"rlimit.{name}", f"soft {soft} must be 0..hard {hard}")
        kept = tuple(r for r in self._rlimits if r[0] != key)
        return attrs.evolve(self, rlimits=(*kept, (key, s_, h_)))

    def _capability_set(self) -> tuple[str, ...]:
        """The container's capabilities, in the kernel's order. "All" is every one this
        process may pass on (its bounding set), as Docker's daemon gives its own."""
        if self._privileged:
            return _bounding_set()
        names = set(DEFAULT_CAPABILITIES)
        if "CAP_ALL" in self._cap_drop:
            names = set()
        names -= self._cap_drop
        if "CAP_ALL" in self._cap_add:
            names = set(_bounding_set())
        names |= self._cap_add - {"CAP_ALL"}
        return tuple(f"CAP_{n}" for n in CAPABILITY_NUMBERS if f"CAP_{n}" in names)

    # -- compilation --------------------------------------------------------------------

    def spec(self, cmd: Sequence[str] | None = None, *, id: str | None = None) -> oci.Spec:
        """The OCI runtime spec this container runs ``cmd`` with (no I/O).

        Raises:
            SpecError: no command is given and the image has none, or ``cmd`` is not a
                list of strings.

        Example:
            >>> spec = Container.host().limit(mem="64M").spec(["echo", "hi"])
            >>> spec.process.args, spec.linux.resources.memory.limit
            (('echo', 'hi'), 67108864)
        """
        args = self._command(cmd)
        image = self.image
        env: dict[str, str] = {}
        for item in (_DEFAULT_PATH, *image.env):
            key, _, value = item.partition("=")
            env[key] = value
        env.update(self._env)
        hostname = self._hostname or (id[:12] if id else _DEFAULT_HOSTNAME)
        env.setdefault("HOSTNAME", hostname)
        who = self._user if self._user is not None else self._image_user()
        annotations: dict[str, str] = {}
        if self._init:
            annotations[INIT_ANNOTATION] = "1"
        if isinstance(who, str):
            # Looked up inside, where the container's /etc/passwd is (see Plan.user).
            uid, gid = 0, 0
            annotations[USER_ANNOTATION] = who
            if "HOME" not in env:
                annotations[SET_HOME_ANNOTATION] = "1"
        else:
            uid, gid = who
            # As Docker: HOME from the user, when the image and the caller leave it unset.
            env.setdefault("HOME", "/root" if uid == 0 else "/")
        base = _base_spec()
        assert base.process is not None
        assert base.linux is not None
        assert base.root is not None
        caps = self._capability_set()
        process = attrs.evolve(
            base.process,
            args=tuple(args),
            env=tuple(f"{k}={v}" for k, v in env.items()),
            cwd=self._workdir or image.workdir or "/",
            user=oci.User(uid=uid, gid=gid),
            capabilities=oci.LinuxCapabilities(
                bounding=caps, effective=caps, permitted=caps, inheritable=(), ambient=()
            ),
            rlimits=tuple(
                oci.POSIXRlimit(type=name, soft=soft, hard=hard)
                for name, soft, hard in self._rlimits
            ),
            no_new_privileges=not self._privileged,
        )
        mounts = [
            attrs.evolve(m, options=("nosuid", "noexec", "nodev"))
            if m.destination == "/proc"
            else m
            for m in base.mounts
        ]
        for m in self._mounts:
            if isinstance(m, _BindMount):
                opts: tuple[str, ...] = ("rbind", "ro" if m.read_only else "rw")
                mounts.append(
                    oci.Mount(destination=m.target, type="bind", source=m.source, options=opts)
                )
            else:
                opts = ("nosuid", "nodev", "mode=1777") + (
                    (f"size={m.size}",) if m.size is not None else ()
                )
                mounts.append(
                    oci.Mount(destination=m.target, type="tmpfs", source="tmpfs", options=opts)
                )
        netns = self._netns_path()
        namespaces = tuple(
            oci.LinuxNamespace(type=t, path=netns if t == "network" else None)
            for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            if t != "network" or self._network != "host"
        )
        resources = self._limits.resources(base.linux.resources)
        maps = self._id_maps()
        uid_mappings: tuple[oci.LinuxIDMapping, ...] = ()
        gid_mappings: tuple[oci.LinuxIDMapping, ...] = ()
        if maps is not None:
            namespaces += (oci.LinuxNamespace(type="user"),)
            uid_mappings, gid_mappings = (
                tuple(oci.LinuxIDMapping(container_id=c, host_id=h, size=n) for c, h, n in m)
                for m in maps
            )
        linux = attrs.evolve(
            base.linux,
            namespaces=namespaces,
            uid_mappings=uid_mappings,
            gid_mappings=gid_mappings,
            resources=resources,
            sysctl=dict(self._sysctl),
            seccomp=self._seccomp_profile(caps),
            # Docker's lists, longer than runc spec's template.
            masked_paths=DEFAULT_MASKED_PATHS,
            readonly_paths=DEFAULT_READONLY_PATHS,
        )
        if self._privileged:
            mounts = [
                attrs.evolve(m, options=tuple(o for o in m.options if o != "ro"))
                if m.destination == "/sys"
                else m
                for m in mounts
            ]
            allow_all = (oci.LinuxDeviceCgroup(allow=True, access="rwm"),)
            linux = attrs.evolve(
                linux,
                masked_paths=(),
                readonly_paths=(),
                resources=attrs.evolve(linux.resources or oci.LinuxResources(), devices=allow_all),
            )
        return attrs.evolve(
            base,
            process=process,
            root=oci.Root(path=image.layers[-1], readonly=self._read_only),
            hostname=hostname,
            mounts=tuple(mounts),
            linux=linux,
            annotations={**base.annotations, **annotations},
        )

    def _seccomp_profile(self, caps: tuple[str, ...]) -> oci.LinuxSeccomp | None:
        if self._privileged or self._seccomp is None:
            return None
        if self._seccomp == "default":
            return _default_seccomp(caps)
        return self._seccomp

    def _command(self, cmd: Sequence[str] | None) -> list[str]:
        if isinstance(cmd, str | bytes):
            raise SpecError("cmd", f"must be a list of strings, not the string {cmd!r}")
        if cmd is None:
            args = [*self.image.entrypoint, *self.image.cmd]
        else:
            args = [*self.image.entrypoint, *cmd] if self.image.entrypoint else list(cmd)
        if not args:
            raise SpecError("cmd", "is empty, and the image has no default command")
        for i, a in enumerate(args):
            if not isinstance(a, str) or "\0" in a:
                raise SpecError(f"cmd[{i}]", f"must be a string without NUL, not {a!r}")
        return args

    def _image_user(self) -> tuple[int, int] | str:
        user = self.image.user
        if not user:
            return (0, 0)
        return _parse_user(user, "image user")

    # -- verbs --------------------------------------------------------------------------

    @overload
    def start(
        self,
        cmd: Sequence[str] | None = None,
        *,
        input: bytes | None = None,
        id: str | None = None,
        detach: Literal[False] = False,
        interactive: bool = False,
        tty: bool = False,
    ) -> RunningContainer: ...

    @overload
    def start(
        self,
        cmd: Sequence[str] | None = None,
        *,
        input: bytes | None = None,
        id: str | None = None,
        detach: Literal[True],
        name: str | None = None,
        auto_remove: bool = False,
        log_max: str | int | None = None,
    ) -> DetachedContainer: ...

    def start(
        self,
        cmd: Sequence[str] | None = None,
        *,
        input: bytes | None = None,
        id: str | None = None,
        detach: bool = False,
        name: str | None = None,
        auto_remove: bool = False,
        log_max: str | int | None = None,
        interactive: bool = False,
        tty: bool = False,
    ) -> RunningContainer | DetachedContainer:
        """Start the container and return at once.

        By default the container belongs to this process: use the handle as a context
        manager; the container is killed when the block ends, and dies with this process.
        Output is collected in the background and handed over by
        :meth:`RunningContainer.wait`.

        With ``detach=True`` the container lives on after this process has exited, as
        ``docker run -d``: a small keeper process of its own drains its output into a log
        and records how it ended (see :class:`~containerlib.detached.DetachedContainer`,
        :func:`containerlib.get`, :func:`containerlib.list`, :func:`containerlib.prune`).

        Args:
            cmd: the command and its arguments; the image's by default.
            input: bytes for the command's stdin; it gets ``/dev/null`` otherwise.
            id: the container's id; random by default.
            detach: outlive this process.
            name: a detached container's name, unique among them; :func:`containerlib.get`
                finds it by name too.
            auto_remove: a detached container's state and log are removed when it ends
                (``docker run --rm``).
            log_max: a detached container's log is rotated once it passes this size
                ("10M"; ``docker run --log-opt max-size``), keeping one older file; no
                limit by default, as Docker's.
            interactive: its stdin is a pipe: write to :attr:`RunningContainer.stdin`
                and close it (``docker run -i``).
            tty: its stdin, stdout and stderr are a new terminal (``docker run -t``),
                80x24 until :meth:`RunningContainer.resize`; what it writes is its
                ``stdout``, with the terminal's ``\\r\\n``.

        Example:
            >>> box = Container(image).start(["httpd", "-f"], detach=True)  # doctest: +SKIP
            >>> containerlib.get(box.id).logs(tail=5)  # doctest: +SKIP

        Raises:
            SpecError: bad input; nothing was created.
            ContainerSetupError: the kernel refused a step, or the id or name is taken;
                nothing is left behind.
        """
        if detach:
            if interactive or tty:
                raise SpecError("detach", "a detached container has no caller to read its stdin")
            return self._start_detached(cmd, input, id, name, auto_remove, log_max=log_max)
        if name is not None or auto_remove or log_max is not None:
            raise SpecError("name", "name, auto_remove and log_max are for detached containers")
        running = self._start(cmd, input, id, interactive=interactive, tty=tty, ports=True)
        running._ensure_pump()
        return running

    async def run_async(
        self,
        cmd: Sequence[str] | None = None,
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        id: str | None = None,
    ) -> Result:
        """:meth:`run` for asyncio: ``result = await container.run_async(cmd)``.

        The event loop goes on while the container runs. A cancelled task kills the
        container and waits for its end before the cancellation goes on.

        Raises:
            The errors of :meth:`run`.

        Example:
            >>> import asyncio
            >>> box = Container("/srv/busybox")  # doctest: +SKIP
            >>> asyncio.run(box.run_async(["echo", "hi"])).stdout  # doctest: +SKIP
            b'hi\\n'
        """
        from containerlib.aio import run

        return await run(self, cmd, input=input, timeout=timeout, check=check, id=id)

    def start_async(
        self,
        cmd: Sequence[str] | None = None,
        *,
        input: bytes | None = None,
        id: str | None = None,
        interactive: bool = False,
        tty: bool = False,
    ) -> AsyncRunningContainer:
        """:meth:`start` for asyncio: ``async with container.start_async(cmd) as box:``
        (the container is killed at the end of the block), or ``box = await
        container.start_async(cmd)``. See :class:`~containerlib.aio.AsyncRunningContainer`.

        Example:
            >>> import asyncio
            >>> async def main() -> int:
            ...     async with Container("/srv/busybox").start_async(["sleep", "60"]) as box:
            ...         return (await box.stop(timeout=1)).exit_code
            >>> asyncio.run(main())  # sleep as PID 1 ignores SIGTERM: SIGKILL  # doctest: +SKIP
            137
        """
        from containerlib.aio import AsyncRunningContainer

        return AsyncRunningContainer(
            lambda: self.start(cmd, input=input, id=id, interactive=interactive, tty=tty)
        )

    def _start_detached(
        self,
        cmd: Sequence[str] | None,
        input: bytes | None,
        cid: str | None,
        name: str | None,
        auto_remove: bool,
        *,
        here: bool = False,
        log_max: str | int | None = None,
    ) -> DetachedContainer:
        """Start a detached container (see :meth:`start`); with ``here``, its keeper is
        forked from this process rather than from the spawner (a small single-threaded
        caller: the command line)."""
        from containerlib.detached import DetachedContainer, claim_state_dir
        from containerlib.runtime import records
        from containerlib.runtime.keeper import DetachRequest, launch

        cid = check_id(cid) if cid is not None else secrets.token_hex(16)
        args, plan = self._plan(cmd, cid)
        if name is not None and plan.etc is not None:
            # Found by its name on its network, too.
            plan = attrs.evolve(plan, etc=attrs.evolve(plan.etc, names=(name, *plan.etc.names)))
        log_max_bytes = parse_bytes(log_max, "log_max") if log_max is not None else None
        if log_max_bytes is not None and log_max_bytes <= 0:
            raise SpecError("log_max", f"must be a positive size, not {log_max!r}")
        roots = Roots.from_env()
        first_record = {
            "id": cid,
            "name": name,
            "image": self.image.name,
            "command": list(args),
            "created": time.time(),
            "auto_remove": auto_remove,
        }
        state_dir = claim_state_dir(roots.run, cid, first_record)
        hold = None
        listeners: list[HostListener] = []
        try:
            # Taken before the container is made: a taken port fails before anything runs.
            listeners = self._bind_published()
            hold = self.image._hold_layers()
            request = DetachRequest(
                plan=plan,
                state_dir=state_dir,
                input=input,
                auto_remove=auto_remove,
                log_max_bytes=log_max_bytes,
                ports=tuple(listener.published for listener in listeners),
            )
            # The keeper serves the ports from these sockets (the last descriptors).
            holds = (
                *(hold.fds if hold is not None else ()),
                *(listener.sock.fileno() for listener in listeners),
            )
            if here:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                with ours:
                    try:
                        launch(request, theirs.fileno(), holds)
                    finally:
                        theirs.close()
                    records.wait_for_start(ours, cid)
            else:
                spawner.detach(request, holds)
        except BaseException:
            records.remove_state(state_dir)
            raise
        finally:
            if hold is not None:
                hold.close()
            for listener in listeners:  # the keeper has its own copies
                listener.sock.close()
        try:
            return DetachedContainer(state_dir)
        except ContainerNotFound:
            # An auto_remove container that has ended, and been removed, already.
            return DetachedContainer._removed(state_dir, first_record)

    def _plan(self, cmd: Sequence[str] | None, cid: str | None) -> tuple[tuple[str, ...], Plan]:
        """The command and the plan for container ``cid``; for None, the spawner picks it.

        Compiling the spec and the plan is the caller's share of a start (about 0.35 ms),
        and the same for every run of this container and command but for the id, so it is
        done once (:func:`_template`) and the id put in after. Bind mounts are looked at on
        the host each time, so a container with any is compiled afresh.
        """
        self._command(cmd)  # bad commands raise SpecError before anything else
        roots = Roots.from_env()
        key = tuple(cmd) if cmd is not None else None
        # As the other container of a pod is looked at each time (is it running?).
        if self._netns is not None or any(isinstance(m, _BindMount) for m in self._mounts):
            args, template = _template.__wrapped__(self, key, roots)
        else:
            args, template = _template(self, key, roots)
        if cid is None:
            return args, attrs.evolve(template, spawner_picks_id=True)
        return args, template.with_id(cid)

    @property
    def _lowerdirs(self) -> tuple[str, ...]:
        return tuple(reversed(self.image.layers))

    def _start(
        self,
        cmd: Sequence[str] | None,
        input: bytes | None,
        id: str | None,
        *,
        wait: bool = True,
        keep_upper: str | None = None,
        interactive: bool = False,
        tty: bool = False,
        ports: bool = False,
    ) -> RunningContainer:
        cid = check_id(id) if id is not None else None
        args, plan = self._plan(cmd, cid)
        if keep_upper is not None:
            plan = attrs.evolve(_without_etc_files(plan), keep_upper=keep_upper)
        if tty:
            from containerlib.linux.terminals import DEFAULT_WINDOW_SIZE

            columns, rows = DEFAULT_WINDOW_SIZE
            plan = attrs.evolve(plan, console_width=columns, console_height=rows)
        listeners = self._bind_published() if ports else []
        t0 = time.monotonic()
        # The layers stay held while the container runs: no prune removes them.
        try:
            hold = self.image._hold_layers()
        except BaseException:
            for listener in listeners:
                listener.sock.close()
            raise
        from containerlib.runtime.stdio import Pipes  # not for the command line's run

        pipes = Pipes(input, interactive=interactive)
        console = _Console(tty)
        try:
            process = spawner.start(plan, pipes.theirs, wait=wait, console=console.theirs())
            master = console.attach(pipes)
        except BaseException:
            pipes.close()
            if hold is not None:
                hold.close()
            for listener in listeners:
                listener.sock.close()
            raise
        finally:
            console.close()
        pipes.release_theirs()
        running = RunningContainer(cid, process, pipes, t0, list(args), plan, hold)
        running._terminal = master
        if interactive:
            running.stdin = pipes.take_stdin()
        if listeners:
            with running._killed_on_error(listeners):
                proxy = running._port_proxy()
                for listener in listeners:
                    proxy.publish(listener.published.container_port, listener=listener)
        return running

    def _run_in_this_process(
        self,
        cmd: Sequence[str] | None,
        *,
        timeout: float | None = None,
        forward: tuple[int, ...] = (),
        console: int | None = None,
        console_size: tuple[int, int] | None = None,
    ) -> Result:
        """Run from this process, on its own stdin, stdout and stderr, without a spawner.

        For the command line, a small single-threaded process that runs one container:
        starting a spawner would cost it more than the container. Not for a library
        caller, which may run threads (see :mod:`containerlib.runtime.spawner`). With
        ``console`` (a unix socket), the container gets a terminal of ``console_size``
        (columns, rows), whose master end goes there.
        """
        from containerlib.runtime.spawner import Spawner

        cid = secrets.token_hex(16)
        _args, plan = self._plan(cmd, cid)
        if console_size is not None:
            columns, rows = console_size
            plan = attrs.evolve(plan, console_width=columns, console_height=rows)
        listeners = self._bind_published()  # a taken port fails before anything runs
        proxies: list[PortProxy] = []

        def publish(pid: int) -> None:
            from containerlib.network.ports import PortProxy

            proxies.append(PortProxy(f"/proc/{pid}/ns/net"))
            for listener in listeners:
                proxies[0].publish(listener.published.container_port, listener=listener)
            listeners.clear()

        t0 = time.monotonic()
        here = Spawner()
        try:
            status, stats, failure, timed_out = here.run_here(
                plan, (0, 1, 2), timeout, forward, console, publish if listeners else None
            )
        finally:
            for listener in listeners:
                listener.sock.close()
            for proxy in proxies:
                proxy.close()
            here.shutdown()
        if failure is not None:
            raise failure
        return Result(
            exit_code=Exited(status, stats).exit_code,
            stdout=b"",
            stderr=b"",
            oom_killed=stats.oom_kills > 0,
            timed_out=timed_out,
            duration=time.monotonic() - t0,
            memory_peak=stats.memory_peak,
            id=cid,
            stats=stats,
        )

    def run(
        self,
        cmd: Sequence[str] | None = None,
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        id: str | None = None,
    ) -> Result:
        """Run ``cmd`` (or the image's default command) and wait for it to end.

        Args:
            cmd: the command and its arguments.
            input: bytes for the command's stdin; it gets ``/dev/null`` otherwise.
            timeout: seconds after which the container is killed (``timed_out``).
            check: raise :class:`ContainerError` when the exit code is not 0.
            id: the container's id; random by default.

        Raises:
            SpecError: bad input; nothing was created.
            ContainerSetupError: the kernel refused a step; nothing is left behind.
            ContainerError: with ``check=True``, the command failed.

        Example:
            >>> box = Container("/srv/busybox")  # doctest: +SKIP
            >>> cmd = ["sh", "-c", "read x; echo got $x"]
            >>> result = box.run(cmd, input=b"42\\n")  # doctest: +SKIP
            >>> result.exit_code, result.stdout  # doctest: +SKIP
            (0, b'got 42\\n')
            >>> box.run(["false"], check=True)  # doctest: +SKIP
            Traceback (most recent call last):
            ContainerError: command ['false'] failed: exit code 1
        """
        if timeout is not None and not timeout > 0:
            raise SpecError("timeout", f"must be a positive number of seconds, not {timeout!r}")
        # Not waiting for the spawner's first answer: its output is drained meanwhile, and
        # a setup error comes out of _finish all the same.
        running = self._start(cmd, input, id, wait=False, ports=True)
        with running:
            result = running._finish(timeout, pump_here=True)
        if check and result.exit_code != 0:
            raise ContainerError(result, running.command)
        return result

    def _run_keeping_upper(
        self, cmd: Sequence[str], upper: str, timeout: float | None = None
    ) -> tuple[Result, list[str]]:
        """Run ``cmd``; what it changed in the root file system (the overlay's upper
        directory) is moved to ``upper`` once it has exited. For image build steps."""
        running = self._start(cmd, None, None, wait=False, keep_upper=upper)
        with running:
            result = running._finish(timeout, pump_here=True)
        return result, running.command


class _CgroupControls:
    """What every started container has, attached (:class:`RunningContainer`) or
    detached (:class:`~containerlib.detached.DetachedContainer`): exec, logs, events, and
    what its cgroup gives (new limits, pause and resume)."""

    _paused: bool = False

    @property
    def id(self) -> str:
        raise NotImplementedError

    def _cgroup(self, action: str) -> Cgroup:
        """The container's cgroup while it runs.

        Raises:
            ContainerNotRunning: it has ended.
            ContainerSetupError: it has no cgroup.
        """
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> Result:
        """Wait for the container to end and return its :class:`Result`."""
        raise NotImplementedError

    # -- readiness (see containerlib.readiness) ------------------------------------------

    def wait_for(
        self, condition: Condition, *, timeout: float = 60.0, interval: float = 0.1
    ) -> None:
        """Wait until ``condition`` is met in the container: a
        :class:`~containerlib.readiness.Log`, ``Port``, ``Http``, ``Exec``, ``File`` or
        ``Check``, or several joined with ``&`` and ``|`` (see
        :func:`containerlib.readiness.wait_for`).

        Example:
            >>> from containerlib.readiness import Log, Port  # doctest: +SKIP
            >>> box.wait_for(Log("listening") & Port(5432), timeout=30)  # doctest: +SKIP

        Raises:
            SpecError: a bad timeout, interval or condition; nothing was tried.
            ContainerNotReady: not met within ``timeout``, or the container ended first;
                it carries the last lines of the container's output.
        """
        from containerlib.readiness import wait_for

        wait_for(self._handle(), condition, timeout=timeout, interval=interval)

    def wait_for_log(
        self,
        pattern: str | bytes | re.Pattern[str] | re.Pattern[bytes],
        *,
        stream: Literal["stdout", "stderr", "both"] = "both",
        count: int = 1,
        timeout: float = 60.0,
        interval: float = 0.1,
    ) -> None:
        """Wait until ``count`` lines of the output match ``pattern`` (a regular
        expression); see :meth:`wait_for`.

        Example:
            >>> box.wait_for_log(r"ready to accept connections")  # doctest: +SKIP
        """
        from containerlib.readiness import wait_for_log

        wait_for_log(
            self._handle(), pattern, stream=stream, count=count, timeout=timeout, interval=interval
        )

    def wait_for_port(self, port: int, *, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Wait until ``port`` accepts a TCP connection in the container's network
        namespace; see :meth:`wait_for`.

        Example:
            >>> box.wait_for_port(5432)  # doctest: +SKIP
        """
        from containerlib.readiness import wait_for_port

        wait_for_port(self._handle(), port, timeout=timeout, interval=interval)

    def wait_for_http(
        self,
        port: int,
        path: str = "/",
        status: int = 200,
        *,
        timeout: float = 60.0,
        interval: float = 0.1,
    ) -> None:
        """Wait until a GET of ``path`` on ``port`` answers ``status``; see :meth:`wait_for`.

        Example:
            >>> box.wait_for_http(8080, "/health")  # doctest: +SKIP
        """
        from containerlib.readiness import wait_for_http

        wait_for_http(self._handle(), port, path, status, timeout=timeout, interval=interval)

    def wait_for_exec(
        self, cmd: Sequence[str], *, timeout: float = 60.0, interval: float = 0.1
    ) -> None:
        """Wait until ``cmd``, run in the container, exits with 0; see :meth:`wait_for`.

        Example:
            >>> box.wait_for_exec(["pg_isready"])  # doctest: +SKIP
        """
        from containerlib.readiness import wait_for_exec

        wait_for_exec(self._handle(), cmd, timeout=timeout, interval=interval)

    def wait_for_file(self, path: str, *, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Wait until ``path`` exists in the container; see :meth:`wait_for`.

        Example:
            >>> box.wait_for_file("/run/app.pid")  # doctest: +SKIP
        """
        from containerlib.readiness import wait_for_file

        wait_for_file(self._handle(), path, timeout=timeout, interval=interval)

    def _handle(self) -> RunningContainer | DetachedContainer:
        return cast("RunningContainer | DetachedContainer", self)

    def host_port(self, container_port: int, protocol: str = "tcp") -> int:
        """The host port that ``container_port`` is published on (see
        :meth:`Container.publish`), as testcontainers' ``get_exposed_port``.

        Example:
            >>> web = Container("/srv/busybox").publish(8080)  # doctest: +SKIP
            >>> box = web.start(["httpd", "-f", "-p", "8080"])  # doctest: +SKIP
            >>> box.host_port(8080)  # doctest: +SKIP
            40519

        Raises:
            SpecError: that port is not published.
        """
        ports = self._handle().ports
        for p in ports:
            if p.container_port == container_port and p.protocol == protocol:
                return p.host_port
        published = ", ".join(f"{p.container_port}/{p.protocol}" for p in ports) or "none"
        raise SpecError(
            "host_port",
            f"port {container_port}/{protocol} of container {self.id[:12]} is not published "
            f"(published: {published})",
        )

    # -- files (see containerlib.copying) ----------------------------------------------

    def _first_pid(self, action: str) -> int:
        box = self._handle()
        pid = box.pid
        if pid is None or (isinstance(box, RunningContainer) and box._result is not None):
            raise ContainerNotRunning(self.id, action)
        return pid

    def put(
        self,
        source: bytes | str | os.PathLike[str],
        dest: str,
        *,
        mode: int | None = None,
    ) -> None:
        """Write ``source`` at ``dest`` in the running container: bytes as a file, a host
        file as a file, a host directory as a tree; missing parent directories are made.
        Paths resolve inside the container's root: no symlink of the container's leads
        out of it. The files belong to the container's root.

        Example:
            >>> box.put(b"listen 8080\\n", "/etc/app.conf")  # doctest: +SKIP

        Raises:
            SpecError: ``dest`` is not absolute, or ``source`` is not bytes or a host path.
            ContainerNotRunning: it has ended.
            OSError: the kernel refused (a read-only root, say).
        """
        from containerlib.copying import put

        put(self._first_pid("put a file into"), self.id, source, dest, mode=mode)

    def get(self, path: str) -> bytes:
        """The content of the file ``path`` in the running container (resolved inside its
        root, as :meth:`put`).

        Example:
            >>> box.get("/etc/hostname")  # doctest: +SKIP

        Raises:
            ContainerNotRunning: it has ended.
            FileNotFoundError, IsADirectoryError: as for a host file.
        """
        from containerlib.copying import get

        return get(self._first_pid("get a file from"), self.id, path)

    def path(self, path: str) -> Path:
        """A host path to ``path`` in the running container's root file system
        (``/proc/PID/root/...``), valid while it runs. What the host does with it follows
        symlinks as the host does: for a container that may be hostile, use :meth:`get`
        and :meth:`put`.

        Example:
            >>> (box.path("/tmp") / "report.txt").read_text()  # doctest: +SKIP

        Raises:
            ContainerNotRunning: it has ended.
            FileNotFoundError: there is no such path in the container.
        """
        from containerlib.copying import path as host_path

        return host_path(self._first_pid("look into"), self.id, path)

    def _read_logs(self, filters: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _follow_logs(self, filters: dict[str, Any]) -> Iterator[bytes]:
        raise NotImplementedError

    def _started_at(self) -> float:
        """When the container started, in seconds since the epoch."""
        raise NotImplementedError

    def _exec_starter(
        self, request: ExecRequest
    ) -> Callable[[tuple[int, int, int], int | None], Process]:
        """What starts an exec'd process, given its stdio and console socket.

        Raises:
            ContainerNotRunning: the container has ended.
        """
        raise NotImplementedError

    def exec(
        self,
        cmd: Sequence[str],
        *,
        user: str | int | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        tty: bool = False,
    ) -> Result:
        """Run ``cmd`` in the running container and wait for it, as ``docker exec``.

        The process joins all of the container's namespaces and its cgroup, and gets the
        container's capabilities, ``no_new_privs``, seccomp filter and rlimits. The
        process that joins is made non-dumpable before it does, and only stdin, stdout
        and stderr cross into the container.

        Args:
            cmd: the command and its arguments.
            user: a name, ``name:group``, uid or ``uid:gid``, looked up in the container;
                the container's user by default.
            env: variables added to the container's environment.
            workdir: an absolute path inside the container; the container's by default.
            input: bytes for the command's stdin; it gets ``/dev/null`` otherwise.
            timeout: seconds after which the process is killed (``timed_out``).
            check: raise :class:`ContainerError` when the exit code is not 0.
            tty: its stdio is a new terminal (``docker exec -t``): its output, both
                streams, is the result's ``stdout``, with the terminal's ``\\r\\n``.

        Example:
            >>> with Container("/srv/rootfs").start(["sleep", "60"]) as box:  # doctest: +SKIP
            ...     box.exec(["cat", "/etc/hostname"]).stdout
            b'3f2a9c01b2d4\\n'

        Raises:
            SpecError: bad input; nothing was started.
            ContainerNotRunning: the container has ended.
            ContainerSetupError: a step of the setup failed, naming it.
            ContainerError: with ``check=True``, the command failed.
        """
        request = exec_request(self.id, cmd, user=user, env=env, workdir=workdir)
        if timeout is not None and not timeout > 0:
            raise SpecError("timeout", f"must be a positive number of seconds, not {timeout!r}")
        return run_exec(
            request,
            self._exec_starter(request),
            input=input,
            timeout=timeout,
            check=check,
            tty=tty,
        )

    @overload
    def logs(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        since: float | datetime.datetime | None = None,
        until: float | datetime.datetime | None = None,
        tail: int | None = None,
        timestamps: bool = False,
        follow: Literal[False] = False,
    ) -> bytes: ...

    @overload
    def logs(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        since: float | datetime.datetime | None = None,
        until: float | datetime.datetime | None = None,
        tail: int | None = None,
        timestamps: bool = False,
        follow: Literal[True],
    ) -> Iterator[bytes]: ...

    def logs(
        self,
        *,
        stdout: bool = True,
        stderr: bool = True,
        since: float | datetime.datetime | None = None,
        until: float | datetime.datetime | None = None,
        tail: int | None = None,
        timestamps: bool = False,
        follow: bool = False,
    ) -> bytes | Iterator[bytes]:
        """What the container wrote, as ``docker logs``: stdout and stderr interleaved
        as written (an attached container's is kept in memory while its handle lives, a
        detached one's in its log file).

        Args:
            stdout, stderr: which streams.
            since, until: only what was written from ``since`` and before ``until``
                (seconds since the epoch, or datetimes).
            tail: only the last ``tail`` lines.
            timestamps: each line starts with the time it was written (RFC 3339).
            follow: an iterator of the output now and to come, which ends when the
                container's output ends.

        Example:
            >>> for chunk in box.logs(follow=True):  # doctest: +SKIP
            ...     print(chunk.decode(), end="")
        """
        if tail is not None and (not isinstance(tail, int) or tail < 0):
            raise SpecError("tail", f"must be a number of lines, 0 or more, not {tail!r}")
        filters: dict[str, Any] = {
            "stdout": stdout,
            "stderr": stderr,
            "since": _epoch(since, "since"),
            "until": _epoch(until, "until"),
            "tail": tail,
            "timestamps": timestamps,
        }
        if follow:
            return self._follow_logs(filters)
        return self._read_logs(filters)

    def events(self) -> Iterator[Event]:
        """What happens to the container, as it happens: ``started``, ``oom`` each time
        the kernel kills one of its processes for lack of memory, and ``exited`` last
        (see :class:`Event`).

        Example:
            >>> box = Container("/srv/busybox").limit(mem="32M")  # doctest: +SKIP
            >>> with box.start(["sh", "-c", "tail /dev/zero"]) as running:  # doctest: +SKIP
            ...     print([e.kind for e in running.events()])
            ['started', 'oom', 'exited']
        """
        yield Event("started", self._started_at())
        yield from watch_events(self._oom_kills, self._ended)

    def _oom_kills(self) -> int:
        try:
            return self._cgroup("watch").stats().oom_kills
        except (ContainerNotRunning, ContainerSetupError, FileNotFoundError):
            return -1

    def _ended(self, timeout: float) -> tuple[int, int] | None:
        try:
            result = self.wait(timeout)
        except TimeoutError:
            return None
        return result.exit_code, result.stats.oom_kills

    def update(
        self,
        *,
        mem: str | int | None = None,
        mem_reservation: str | int | None = None,
        swap: str | int | None = None,
        cpus: str | float | None = None,
        cpu_shares: int | None = None,
        cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None,
        pids: int | None = None,
        blkio_weight: int | None = None,
        device_read_bps: Mapping[str, str | int] | None = None,
        device_write_bps: Mapping[str, str | int] | None = None,
        device_read_iops: Mapping[str, int] | None = None,
        device_write_iops: Mapping[str, int] | None = None,
    ) -> None:
        """Change the limits of the running container, as ``docker update`` does; the
        arguments are those of :meth:`Container.limit`, and only those given change.

        Raises:
            SpecError: a bad value; nothing was changed.
            ContainerNotRunning: the container has ended.
            OSError: the kernel refused a value (a memory limit below what is in use,
                say); the message names the file.

        Example:
            >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
            ...     box.update(mem="128M", pids=64)
            ...     box.stats().memory_current < 128 << 20
            True
        """
        # Every argument but self, by name: the signature is the list of limits.
        given = Limits.parse(**{k: v for k, v in locals().items() if k != "self"})
        if given.swap is not None and given.swap != -1 and given.mem is None:
            raise SpecError("swap", "needs mem: it is memory plus swap")
        given.check()
        limits = cgroup_limits(given.resources())
        cgroup = self._cgroup("update")
        try:
            cgroup.set_limits(limits)
        except FileNotFoundError:
            raise ContainerNotRunning(self.id, "update") from None

    def pause(self) -> None:
        """Stop every process of the container (the cgroup freezer) until :meth:`resume`.

        Raises:
            ContainerNotRunning: the container has ended.

        Example:
            >>> spin = ["sh", "-c", "while :; do :; done"]
            >>> with Container("/srv/busybox").start(spin) as box:  # doctest: +SKIP
            ...     box.pause()
            ...     frozen = box.stats().cpu_usage_usec
            ...     time.sleep(0.5)
            ...     print(box.stats().cpu_usage_usec == frozen)
            ...     box.resume()
            True
        """
        cgroup = self._cgroup("pause")
        try:
            cgroup.freeze()
        except FileNotFoundError:
            raise ContainerNotRunning(self.id, "pause") from None
        self._paused = True

    def resume(self) -> None:
        """Let the processes of a paused container run again.

        Raises:
            ContainerNotRunning: the container has ended.

        Example:
            >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
            ...     box.pause()
            ...     box.resume()
            ...     box.exec(["true"]).exit_code
            0
        """
        cgroup = self._cgroup("resume")
        try:
            cgroup.thaw()
        except FileNotFoundError:
            raise ContainerNotRunning(self.id, "resume") from None
        self._paused = False


class RunningContainer(_CgroupControls):
    """A started container. Leaving its ``with`` block kills it if it still runs.

    Attributes:
        id: the container's id.
        pid: the host pid of its first process.
        command: what it runs.

    Example:
        >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
        ...     print(box.exec(["echo", "inside"]).stdout)
        ...     result = box.stop(timeout=1)
        b'inside\\n'
        >>> result.exit_code  # sleep as PID 1 ignores SIGTERM: SIGKILL  # doctest: +SKIP
        137
    """

    def __init__(
        self,
        cid: str | None,
        process: Process,
        pipes: Pipes,
        started: float,
        command: list[str],
        plan: Plan | None,
        hold: LayerHold | None = None,
    ) -> None:
        self._id = cid
        self._plan = plan
        self._hold = hold
        if hold is not None:
            # Released when the container has ended, or with this object at the latest.
            weakref.finalize(self, hold.close)
        self._paused = False
        self.command = command
        self._process = process
        self._pipes = pipes
        self._started = started
        self._result: Result | None = None
        self._timed_out = False
        self._lock = threading.Lock()
        self._pump_thread: threading.Thread | None = None
        #: With ``interactive=True``: the container's stdin, to write to and close.
        self.stdin: io.BufferedWriter | None = None
        self._terminal: int | None = None
        self._proxy: PortProxy | None = None

    @property
    def id(self) -> str:
        """The container's id: the one it was given, or the one the spawner picked."""
        if self._id is None:
            self._id = self._process.id
        return self._id

    @property
    def pid(self) -> int:
        """The host pid of the container's first process (PID 1 inside)."""
        return self._process.pid

    def __repr__(self) -> str:
        state = "running" if self._result is None else f"exited {self._result.exit_code}"
        return f"<RunningContainer {self.id[:12]} pid={self.pid} {state}>"

    def _ensure_pump(self) -> None:
        if self._pump_thread is None and not self._pipes.done:
            self._pump_thread = threading.Thread(
                target=self._pipes.pump, name=f"containerlib-io-{self.id[:12]}", daemon=True
            )
            self._pump_thread.start()

    # -- streams ----------------------------------------------------------------------------

    @functools.cached_property
    def stdout(self) -> io.BufferedReader:
        """The container's stdout as a file that reads from its start and waits for
        more until the container's output ends (with a terminal: all its output)."""
        self._ensure_pump()
        return self._pipes.log.reader("stdout")

    @functools.cached_property
    def stderr(self) -> io.BufferedReader:
        """The container's stderr as a file, as :attr:`stdout`."""
        self._ensure_pump()
        return self._pipes.log.reader("stderr")

    def _read_logs(self, filters: dict[str, Any]) -> bytes:
        self._ensure_pump()
        return self._pipes.log.read(**filters)

    def _follow_logs(self, filters: dict[str, Any]) -> Iterator[bytes]:
        self._ensure_pump()
        return self._pipes.log.follow(**filters)

    def _started_at(self) -> float:
        return time.time() - (time.monotonic() - self._started)

    def _exec_starter(
        self, request: ExecRequest
    ) -> Callable[[tuple[int, int, int], int | None], Process]:
        if self._result is not None:
            raise ContainerNotRunning(self.id, "exec")
        return lambda stdio, console: spawner.exec(request, stdio, wait=False, console=console)

    def resize(self, columns: int, rows: int) -> None:
        """Set the size of the container's terminal (``start(tty=True)``); its
        processes get SIGWINCH.

        Raises:
            SpecError: it has no terminal, or the size is not positive.

        Example:
            >>> shell = Container("/srv/busybox")  # doctest: +SKIP
            >>> with shell.start(["sh"], tty=True, interactive=True) as box:  # doctest: +SKIP
            ...     box.resize(120, 40)  # sh now sees 40 rows of 120 columns
        """
        if self._terminal is None:
            raise SpecError("tty", "the container has no terminal: start it with tty=True")
        if not (0 < columns < 65536 and 0 < rows < 65536):
            raise SpecError("size", f"{columns}x{rows} is not a terminal size")
        fcntl.ioctl(self._terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    @property
    def status(self) -> str:
        """``running``, ``paused`` or ``exited``, as :attr:`DetachedContainer.status`
        says for a detached one.

        Example:
            >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
            ...     box.status
            'running'
        """
        if self._result is not None or self._ended(0) is not None:
            return "exited"
        return "paused" if self._paused else "running"

    # -- network ----------------------------------------------------------------------------

    @property
    def ports(self) -> list[PublishedPort]:
        """The published ports (:meth:`Container.publish`): each one's ``host_ip``,
        ``host_port`` (the one picked, when none was given), ``container_port`` and
        ``protocol``."""
        return self._proxy.ports if self._proxy is not None else []

    @property
    def ip(self) -> str | None:
        """The container's address on its bridge network (``network("bridge")``), which
        the host and the other containers on the bridge reach; None off a bridge, and on
        a user-mode network (pasta, slirp4netns: a non-root user's ``"bridge"``), whose
        address (always 10.0.2.100) nothing outside the container reaches."""
        bridge = self._plan.bridge if self._plan is not None else None
        if bridge is None:
            return None
        leases = [
            lease
            for lease in bridge.leases()
            if lease.owner == self.id and lease.address.version == 4
        ]
        return str(leases[0].address.ip) if leases else None

    def connect(self, port: int, timeout: float | None = 10.0) -> socket.socket:
        """A TCP socket connected to ``port`` from inside the container's network
        namespace (its loopback), published or not.

        Raises:
            ContainerNotRunning: the container has ended.
            ConnectionRefusedError: nothing listens there.
            TimeoutError: no answer within ``timeout`` seconds.

        Example:
            >>> web = Container("/srv/busybox")  # doctest: +SKIP
            >>> with web.start(["httpd", "-f", "-p", "80"]) as box:  # doctest: +SKIP
            ...     with box.connect(80) as sock:
            ...         sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            ...         sock.recv(12)
            b'HTTP/1.1 404'
        """
        if self._result is not None:
            raise ContainerNotRunning(self.id, "connect to")
        return self._port_proxy().connect(port, timeout)

    def _port_proxy(self) -> PortProxy:
        """The proxy into the container's network namespace, made on first use and
        closed when the container ends."""
        from containerlib.network.ports import PortProxy

        with self._lock:
            if self._proxy is None:
                self._proxy = PortProxy(f"/proc/{self.pid}/ns/net")
            return self._proxy

    @contextlib.contextmanager
    def _killed_on_error(self, listeners: list[HostListener]) -> Iterator[None]:
        try:
            yield
        except BaseException:
            for listener in listeners:
                listener.sock.close()
            self.__exit__(None, None, None)
            raise

    def _close_proxy(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.close()

    # -- signals ------------------------------------------------------------------------

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the container's first process (PID 1 inside); a paused
        container is resumed after, so that the signal takes effect.

        Example:
            >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
            ...     box.kill()  # SIGKILL; sleep as PID 1 would ignore SIGTERM
            ...     box.wait().exit_code
            137
        """
        self._process.signal(sig)
        if self._paused:
            with contextlib.suppress(ContainerNotRunning):
                self.resume()

    def _cgroup(self, action: str) -> Cgroup:
        path = self._plan.with_id(self.id).cgroup_path if self._plan is not None else None
        if path is None:
            raise ContainerSetupError(
                f"{action} the cgroup", errno.ENOTSUP, self.id, "it has no cgroup"
            )
        if self._result is None:
            try:
                return self._process.cgroup(path)
            except FileNotFoundError:
                pass
        raise ContainerNotRunning(self.id, action)

    def stats(self) -> CgroupStats:
        """The figures of the container's cgroup now: memory, CPU time, processes, I/O,
        OOM kills, pressure. Once it has ended, those it ended with; none for a
        container without a cgroup (a non-root user's, unless it asked for limits).

        Example:
            >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
            ...     stats = box.stats()
            ...     stats.pids_current, stats.memory_current > 0
            (1, True)
        """
        with self._lock:
            if self._result is not None:
                return self._result.stats
        try:
            return self._cgroup("read the figures of").stats()
        except ContainerSetupError:
            return CgroupStats()
        except (ContainerNotRunning, FileNotFoundError):
            return self.wait().stats

    def wait(self, timeout: float | None = None) -> Result:
        """Wait for the container to end and return its :class:`Result`.

        Raises:
            TimeoutError: ``timeout`` seconds passed; the container keeps running.

        Example:
            >>> cmd = ["sh", "-c", "echo done; exit 2"]
            >>> with Container("/srv/busybox").start(cmd) as box:  # doctest: +SKIP
            ...     result = box.wait(timeout=10)
            ...     result.exit_code, result.stdout
            (2, b'done\\n')
        """
        with self._lock:
            if self._result is not None:
                return self._result
        self._ensure_pump()
        deadline = None if timeout is None else time.monotonic() + timeout
        thread = self._pump_thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"container {self.id[:12]} still runs after {timeout}s")
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        exited = self._process.wait(left)
        if exited is None:
            raise TimeoutError(f"container {self.id[:12]} still runs after {timeout}s")
        return self._make_result(exited)

    def _finish(self, timeout: float | None, pump_here: bool) -> Result:
        deadline = None if timeout is None else time.monotonic() + timeout
        if pump_here and self._pump_thread is None and not self._pipes.pump(deadline):
            self._timed_out = True
            self.kill(signal.SIGKILL)
            self._pipes.pump()
        exited = self._process.wait(None)
        assert exited is not None
        return self._make_result(exited)

    def _make_result(self, exited: Exited) -> Result:
        with self._lock:
            if self._result is None:
                self._pipes.close()
                if self.stdin is not None:  # the container is gone: no one reads it
                    with contextlib.suppress(OSError):
                        self.stdin.close()
                self._close_proxy()
                self._result = Result(
                    exit_code=exited.exit_code,
                    stdout=bytes(self._pipes.stdout),
                    stderr=bytes(self._pipes.stderr),
                    oom_killed=exited.stats.oom_kills > 0,
                    timed_out=self._timed_out,
                    duration=time.monotonic() - self._started,
                    memory_peak=exited.stats.memory_peak,
                    id=self.id,
                    stats=exited.stats,
                )
                if self._hold is not None:
                    self._hold.close()
                if exited.cleanup_error is not None:
                    raise exited.cleanup_error
            return self._result

    def stop(self, timeout: float = 10.0) -> Result:
        """Send SIGTERM, then SIGKILL if the container still runs after ``timeout`` seconds.

        PID 1 ignores signals it has no handler for, so a shell that does not trap
        SIGTERM only ends with the SIGKILL.

        Example:
            >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
            ...     result = box.stop(timeout=1)
            ...     result.exit_code, result.timed_out  # sleep as PID 1 ignores SIGTERM
            (137, False)
        """
        self.kill(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except TimeoutError:
            self.kill(signal.SIGKILL)
            return self.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process.failed:
            self._pipes.close()
            if self._hold is not None:
                self._hold.close()
            self._close_proxy()
        elif self._result is None:
            self.kill(signal.SIGKILL)
            self.wait()


def exec_request(
    cid: str,
    cmd: Sequence[str],
    *,
    user: str | int | None,
    env: Mapping[str, str] | None,
    workdir: str | None,
) -> ExecRequest:
    """The request to run ``cmd`` in container ``cid`` (see :meth:`RunningContainer.exec`).

    Raises:
        SpecError: a bad command, variable, user or workdir.
    """
    if isinstance(cmd, str | bytes) or not cmd:
        raise SpecError("cmd", f"must be a non-empty list of strings, not {cmd!r}")
    for i, a in enumerate(cmd):
        if not isinstance(a, str) or "\0" in a:
            raise SpecError(f"cmd[{i}]", f"must be a string without NUL, not {a!r}")
    variables = []
    for key, value in (env or {}).items():
        if not key or "=" in key or "\0" in key + value:
            raise SpecError("env", f"{key!r} is not a valid variable name")
        variables.append(f"{key}={value}".encode())
    who = None
    if user is not None:
        parsed = _parse_user(str(user), "user")
        who = (parsed if isinstance(parsed, str) else f"{parsed[0]}:{parsed[1]}").encode()
    return ExecRequest(
        container_id=cid,
        args=tuple(a.encode() for a in cmd),
        env=tuple(variables),
        cwd=_absolute(workdir, "workdir").encode() if workdir is not None else None,
        user=who,
    )


class _Console:
    """For a process with a terminal: the console socket its master end comes on."""

    def __init__(self, wanted: bool) -> None:
        self._ours: socket.socket | None = None
        self._theirs: socket.socket | None = None
        if wanted:
            self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def theirs(self) -> int | None:
        """The end to send with the request; None without a terminal."""
        return self._theirs.fileno() if self._theirs is not None else None

    def attach(self, pipes: Pipes) -> int | None:
        """Once the request is sent: receive the master end and give it to ``pipes``;
        returns it. None without a terminal, or when the process failed before it sent
        one (its setup error comes with the process)."""
        if self._ours is None:
            return None
        assert self._theirs is not None
        self._theirs.close()  # end of file here if the process fails before it sends
        _msg, fds, _flags, _addr = socket.recv_fds(self._ours, 64, 1)
        if not fds:
            return None
        pipes.attach_terminal(fds[0])
        return fds[0]

    def close(self) -> None:
        for sock in (self._ours, self._theirs):
            if sock is not None:
                sock.close()


def run_exec(
    request: ExecRequest,
    start: Callable[[tuple[int, int, int], int | None], Process],
    *,
    input: bytes | None,
    timeout: float | None,
    check: bool,
    tty: bool = False,
) -> Result:
    """Start the process of ``request`` with ``start`` (given its stdio and, with
    ``tty``, a console socket), feed and drain it, and wait for it to end."""
    from containerlib.runtime.stdio import Pipes

    pipes = Pipes(input)
    console = _Console(tty)
    try:
        process = start(pipes.theirs, console.theirs())
        console.attach(pipes)
    except BaseException:
        pipes.close()
        raise
    finally:
        console.close()
    pipes.release_theirs()
    cmd = [a.decode(errors="surrogateescape") for a in request.args]
    running = RunningContainer(request.container_id, process, pipes, time.monotonic(), cmd, None)
    with running:
        result = running._finish(timeout, pump_here=True)
    if check and result.exit_code != 0:
        raise ContainerError(result, cmd)
    return result
