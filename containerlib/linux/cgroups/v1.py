"""The v1 driver: v1 controllers, plus the cgroup2 core files of a hybrid host.

On a v1 host each controller has a hierarchy of its own (or shares one, as ``cpu,cpuacct``
often do), and a container's cgroup is a directory of the same name in each hierarchy it
uses; a process joins it by writing its pid to each ``cgroup.procs``. A hybrid host adds a
cgroup2 mount without controllers, whose core files kill (``cgroup.kill``), freeze
(``cgroup.freeze``) and account CPU time (``cpu.stat``, PSI) for a whole cgroup at once.
Every hierarchy costs an mkdir, a join and an rmdir, so a cgroup is only in those it
needs. See cgroups(7) and Documentation/admin-guide/cgroup-v1/ in the kernel sources.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from containerlib.linux.cgroups._base import (
    Cgroup,
    CgroupLimits,
    CgroupStats,
    Pressure,
    _keyed,
    _mkdirs,
    _pids,
    _read,
    _remove_empty,
    _remove_parents,
    _remove_tree,
    _write,
    parse_pressure,
)

__all__ = ["V1_CONTROLLERS", "HybridDriver"]

#: The v1 controllers the driver uses where the host has them.
V1_CONTROLLERS: Final = (
    "memory",
    "pids",
    "devices",
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "freezer",
    "hugetlb",
    "net_cls",
    "net_prio",
)

#: Every cgroup is in these hierarchies: its memory and process figures, device rules and
#: I/O figures. The others are joined when a limit needs them, at create() or later.
_ALWAYS: Final = ("memory", "pids", "devices", "blkio")
#: ...and, without a cgroup2 mount, these: the only freezer, and the only CPU figures.
_ALWAYS_LEGACY: Final = ("freezer", "cpuacct")


def _rel(path: str) -> str:
    # OCI cgroupsPath values are often absolute ("/containerlib/x"): they are relative to
    # each hierarchy's root all the same.
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"cgroup path {path!r} is not a relative path below the root")
    return "/".join(parts)


# -- limits: one function per controller --------------------------------------------------


def _memory(d: str, limits: CgroupLimits) -> None:
    limit = os.path.join(d, "memory.limit_in_bytes")
    memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
    writes = []
    if limits.memory is not None:
        writes.append((limit, limits.memory))
    if limits.memory_swap is not None:
        # Without swap accounting the file is absent, and there is no swap to limit.
        current = _optional(d, "memory.memsw.limit_in_bytes")
        if current is not None:
            writes.append((memsw, limits.memory_swap))
            # The kernel keeps memory <= memory+swap at every step: a memory limit above
            # the current memsw one must wait for the new memsw limit.
            if limits.memory is not None and not 0 <= limits.memory <= int(current):
                writes.reverse()
    if limits.memory_reservation is not None:
        writes.append((os.path.join(d, "memory.soft_limit_in_bytes"), limits.memory_reservation))
    for path, value in writes:
        _write(path, str(value))


def _cpu(d: str, limits: CgroupLimits) -> None:
    period = os.path.join(d, "cpu.cfs_period_us")
    period_later = False
    if limits.cpu_period is not None:
        try:
            _write(period, str(limits.cpu_period))
        except OSError as e:
            # A shorter period can make the old quota exceed a parent's bandwidth (EINVAL)
            # until the new quota is in: then it goes in after the quota.
            if e.errno != errno.EINVAL or limits.cpu_quota is None:
                raise
            period_later = True
    if limits.cpu_quota is not None:
        _write(os.path.join(d, "cpu.cfs_quota_us"), str(limits.cpu_quota))
        if period_later:
            _write(period, str(limits.cpu_period))
    if limits.cpu_shares is not None:
        _write(os.path.join(d, "cpu.shares"), str(limits.cpu_shares))


def _cpuset(d: str, limits: CgroupLimits) -> None:
    if limits.cpuset_cpus is not None:
        _write(os.path.join(d, "cpuset.cpus"), limits.cpuset_cpus)
    if limits.cpuset_mems is not None:
        _write(os.path.join(d, "cpuset.mems"), limits.cpuset_mems)


def _pids_max(d: str, limits: CgroupLimits) -> None:
    assert limits.pids is not None
    _write(os.path.join(d, "pids.max"), "max" if limits.pids < 0 else str(limits.pids))


def _write_either(d: str, names: tuple[str, str], value: str) -> None:
    """Write ``value`` to the first of ``names`` that ``d`` has: CFQ kernels name the
    weight files ``blkio.weight*``, BFQ ones ``blkio.bfq.weight*``."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            _write(os.path.join(d, name), value)
            return
    raise OSError(errno.ENOTSUP, f"no {' or '.join(names)} in {d}: the host cannot weigh I/O")


def _blkio(d: str, limits: CgroupLimits) -> None:
    weight_device = ("blkio.weight_device", "blkio.bfq.weight_device")
    if limits.blkio_weight is not None:
        _write_either(d, ("blkio.weight", "blkio.bfq.weight"), str(limits.blkio_weight))
    for v in limits.blkio_weight_device:  # the kernel takes one device a write
        _write_either(d, weight_device, f"{v.major}:{v.minor} {v.value}")
    for name, values in (
        ("read_bps", limits.read_bps),
        ("write_bps", limits.write_bps),
        ("read_iops", limits.read_iops),
        ("write_iops", limits.write_iops),
    ):
        for v in values:
            _write(
                os.path.join(d, f"blkio.throttle.{name}_device"), f"{v.major}:{v.minor} {v.value}"
            )


def _hugetlb(d: str, limits: CgroupLimits) -> None:
    for size, limit in limits.hugetlb:
        _write(os.path.join(d, f"hugetlb.{size}.limit_in_bytes"), str(limit))


def _net_cls(d: str, limits: CgroupLimits) -> None:
    _write(os.path.join(d, "net_cls.classid"), str(limits.net_cls_classid))


def _net_prio(d: str, limits: CgroupLimits) -> None:
    for interface, priority in limits.net_prio_ifpriomap:
        _write(os.path.join(d, "net_prio.ifpriomap"), f"{interface} {priority}")


def _devices(d: str, limits: CgroupLimits) -> None:
    for allow, rule in limits.devices:
        _write(os.path.join(d, "devices.allow" if allow else "devices.deny"), rule)


#: Which limits each controller applies, in the order they are written.
_APPLY: Final[dict[str, Callable[[str, CgroupLimits], None]]] = {
    "memory": _memory,
    "cpu": _cpu,
    "cpuset": _cpuset,
    "pids": _pids_max,
    "blkio": _blkio,
    "hugetlb": _hugetlb,
    "net_cls": _net_cls,
    "net_prio": _net_prio,
    "devices": _devices,
}


def _needed(limits: CgroupLimits) -> list[str]:
    """The controllers whose files ``limits`` writes, in the order of :data:`_APPLY`."""
    wanted = {
        "memory": (limits.memory, limits.memory_reservation, limits.memory_swap),
        "cpu": (limits.cpu_quota, limits.cpu_period, limits.cpu_shares),
        "cpuset": (limits.cpuset_cpus, limits.cpuset_mems),
        "pids": (limits.pids,),
        "blkio": (
            limits.blkio_weight,
            *(limits.blkio_weight_device, limits.read_bps, limits.write_bps),
            *(limits.read_iops, limits.write_iops),
        ),
        "hugetlb": (limits.hugetlb,),
        "net_cls": (limits.net_cls_classid,),
        "net_prio": (limits.net_prio_ifpriomap,),
        "devices": (limits.devices,),
    }
    return [name for name, values in wanted.items() if any(v not in (None, ()) for v in values)]


# -- figures ------------------------------------------------------------------------------


def _optional(d: str | None, name: str) -> str | None:
    """The text of ``d/name``, or None where the host (or the cgroup) does not have it."""
    if d is None:
        return None
    try:
        return _read(os.path.join(d, name))
    except FileNotFoundError:
        return None
    except OSError as e:
        # A pressure file reads EOPNOTSUPP where PSI is off.
        if e.errno == errno.EOPNOTSUPP:
            return None
        raise


def _number(d: str | None, name: str) -> int | None:
    text = _optional(d, name)
    return None if text is None else int(text)


def _pressure(d: str | None, name: str) -> Pressure | None:
    text = _optional(d, name)
    return None if text is None else parse_pressure(text)


def _io_bytes(d: str | None) -> tuple[int | None, int | None]:
    """Bytes read and written, summed over the devices of a ``blkio.*io_service_bytes*``::

    7:0 Read 4096
    7:0 Write 8192
    ...
    Total 12288
    """
    for name in (
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.throttle.io_service_bytes",
        "blkio.io_service_bytes_recursive",  # CFQ, before 5.0
        "blkio.io_service_bytes",
    ):
        text = _optional(d, name)
        if text is not None:
            break
    else:
        return None, None
    sums = {"Read": 0, "Write": 0}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in sums:
            sums[fields[1]] += int(fields[2])
    return sums["Read"], sums["Write"]


def _tree_pids(d: str) -> set[int]:
    """The processes in ``d`` and the sub-cgroups under it."""
    return {pid for sub, _, _ in os.walk(d) for pid in _pids(sub)}


# -- the cgroup ---------------------------------------------------------------------------


@attrs.define
class _HybridCgroup:
    path: str
    driver: HybridDriver
    #: The mount directory of each hierarchy the cgroup is in -> the cgroup's directory.
    dirs: dict[str, str] = attrs.Factory(dict)
    unified_dir: str | None = None

    def _dir(self, controller: str) -> str | None:
        mount = self.driver.mount(controller)
        return None if mount is None else self.dirs.get(mount)

    def _all_dirs(self) -> list[str]:
        return [*self.dirs.values(), *([self.unified_dir] if self.unified_dir else [])]

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self._all_dirs()]

    def join_files(self) -> list[str]:
        v1 = [os.path.join(d, "tasks") for d in self.dirs.values()]
        return v1 + ([os.path.join(self.unified_dir, "cgroup.procs")] if self.unified_dir else [])

    def clone_into(self) -> str | None:
        return self.unified_dir

    # -- limits -----------------------------------------------------------------------

    def set_limits(self, limits: CgroupLimits, *, move: bool = True) -> None:
        self._update(limits, live=move)

    def _update(self, limits: CgroupLimits, *, live: bool) -> None:
        needed = _needed(limits)
        self.driver.check_mounted(needed)
        made = self._join(needed, adopt=live)
        try:
            for name in needed:
                d = self._dir(name)
                assert d is not None
                _APPLY[name](d, limits)
        except BaseException:
            self._leave(made)
            raise
        if live and made:
            self._move_into(made)

    def _join(self, controllers: Iterable[str], *, adopt: bool) -> list[str]:
        """Make the cgroup in the hierarchies of ``controllers`` it is not in yet; return
        the directories made. ``adopt``: take over one that exists already (made by
        another object of this cgroup, as :meth:`HybridDriver.open` returns)."""
        made = []
        for name in controllers:
            mount = self.driver.mount(name)
            assert mount is not None
            if mount in self.dirs:
                continue
            try:
                if name == "cpuset":
                    d = _mkdirs_cpuset(mount, _rel(self.path))
                else:
                    d = _mkdirs(mount, _rel(self.path))
                made.append(d)
            except FileExistsError:
                if not adopt:
                    raise
                d = os.path.join(mount, _rel(self.path))
            self.dirs[mount] = d
        return made

    def _leave(self, made: list[str]) -> None:
        for d in made:
            with contextlib.suppress(OSError):
                os.rmdir(d)
        self.dirs = {m: d for m, d in self.dirs.items() if d not in made}

    def _move_into(self, targets: list[str]) -> None:
        """Move every process of the cgroup into the hierarchies just joined.

        The processes are listed from the memory hierarchy (else another the cgroup was
        in already). A process forked before its parent moved shows up in the next
        listing; one forked after is born in the new cgroup. So: until a listing shows
        none missing.
        """
        source = self._dir("memory") or next(d for d in self.dirs.values() if d not in targets)
        for target in targets:
            moved: set[int] = set()
            for _round in range(1000):
                missing = _tree_pids(source) - _tree_pids(target) - moved
                if not missing:
                    break
                for pid in missing:
                    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                        _write(os.path.join(target, "cgroup.procs"), str(pid))
                moved |= missing
            else:
                raise OSError(errno.EBUSY, f"cgroup {self.path}: processes keep escaping {target}")

    # -- figures --------------------------------------------------------------------------

    def stats(self) -> CgroupStats:
        mem, unified = self._dir("memory"), self.unified_dir
        oom = _optional(mem, "memory.oom_control")
        cpu = _optional(unified, "cpu.stat")
        if cpu is not None:
            k = _keyed(cpu)
            usage, user, system = k.get("usage_usec"), k.get("user_usec"), k.get("system_usec")
        else:
            acct = self._dir("cpuacct")
            ns = _number(acct, "cpuacct.usage")
            usage = None if ns is None else ns // 1000
            ticks = _keyed(_optional(acct, "cpuacct.stat") or "")  # USER_HZ ticks
            hz = os.sysconf("SC_CLK_TCK")
            user = ticks["user"] * 1_000_000 // hz if "user" in ticks else None
            system = ticks["system"] * 1_000_000 // hz if "system" in ticks else None
        io_read, io_write = _io_bytes(self._dir("blkio"))
        return CgroupStats(
            memory_current=_number(mem, "memory.usage_in_bytes"),
            memory_peak=_number(mem, "memory.max_usage_in_bytes"),
            cpu_usage_usec=usage,
            cpu_user_usec=user,
            cpu_system_usec=system,
            pids_current=_number(self._dir("pids"), "pids.current"),
            io_read_bytes=io_read,
            io_write_bytes=io_write,
            # Kernels before 4.13 do not count OOM kills.
            oom_kills=_keyed(oom).get("oom_kill", 0) if oom else 0,
            cpu_pressure=_pressure(unified, "cpu.pressure"),
            memory_pressure=_pressure(unified, "memory.pressure"),
            io_pressure=_pressure(unified, "io.pressure"),
        )

    # -- freezer --------------------------------------------------------------------------

    def freeze(self, timeout: float = 5.0) -> None:
        done = self._start_freeze()
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while not done():
            if time.monotonic() > deadline:
                # Half frozen is of no use to anyone: let the processes run again.
                self.thaw()
                raise TimeoutError(
                    f"freeze cgroup {self.path}: its processes did not all stop within {timeout} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _start_freeze(self) -> Callable[[], bool]:
        """Start freezing; return what tells that every process has stopped."""
        if self.unified_dir is not None:
            unified = self.unified_dir
            try:
                _write(os.path.join(unified, "cgroup.freeze"), "1")
                events = os.path.join(unified, "cgroup.events")
                return lambda: _keyed(_read(events)).get("frozen") == 1
            except FileNotFoundError:
                # Kernels before 5.2: the v1 freezer, joined now, as a limit would be.
                if self._dir("freezer") is None:
                    self.driver.check_mounted(["freezer"])
                    self._move_into(self._join(["freezer"], adopt=True))
        state = self._dir("freezer")
        if state is None:
            raise OSError(errno.ENOTSUP, f"freeze cgroup {self.path}: the host has no freezer")
        state = os.path.join(state, "freezer.state")
        _write(state, "FROZEN")
        # Reading freezer.state moves FREEZING on to FROZEN once every task has stopped.
        return lambda: _read(state).strip() == "FROZEN"

    def thaw(self) -> None:
        if self.unified_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                _write(os.path.join(self.unified_dir, "cgroup.freeze"), "0")
        freezer = self._dir("freezer")
        if freezer is not None:
            _write(os.path.join(freezer, "freezer.state"), "THAWED")

    # -- the end --------------------------------------------------------------------------

    def destroy(self) -> None:
        # A limit set through another object of this cgroup (driver.open) may have put it
        # in hierarchies this one does not know of.
        self._discover()
        self._remove()

    def _discover(self) -> None:
        rel = _rel(self.path)
        for mount in self.driver.hierarchies():
            if mount not in self.dirs and os.path.isdir(os.path.join(mount, rel)):
                self.dirs[mount] = os.path.join(mount, rel)
        root = self.driver.unified_root
        if self.unified_dir is None and root and os.path.isdir(os.path.join(root, rel)):
            self.unified_dir = os.path.join(root, rel)

    def _remove(self) -> None:
        # Most of the time the container's processes are gone and it made no sub-cgroups:
        # one rmdir each is then all it takes.
        dirs = self._all_dirs()
        if _remove_empty(dirs):
            return
        deadline = time.monotonic() + 5.0
        if self.unified_dir is not None:
            with contextlib.suppress(FileNotFoundError):  # kernels before 5.14
                _write(os.path.join(self.unified_dir, "cgroup.kill"), "1")
        freezer = self._dir("freezer")
        while time.monotonic() < deadline:
            left = {pid for d in self.dirs.values() for pid in _tree_pids(d)}
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if freezer is not None:
                # A process stopped by the v1 freezer dies only once thawed; thawed after
                # the kill, it runs no more code of its own.
                for sub, _, _ in os.walk(freezer):
                    with contextlib.suppress(FileNotFoundError):
                        _write(os.path.join(sub, "freezer.state"), "THAWED")
                freezer = None
            time.sleep(0.001)
        for d in dirs:
            _remove_tree(d, deadline)


def _mkdirs_cpuset(base: str, rel: str) -> str:
    """:func:`_mkdirs` for the cpuset hierarchy, where a new cgroup has no CPUs and no
    memory nodes, so that no process can join it (ENOSPC): each level made gets its
    parent's. So does a level found empty: another process made it and has yet to."""
    parts = rel.split("/")
    for _attempt in range(100):
        path = base
        try:
            for i, part in enumerate(parts):
                parent, path = path, os.path.join(path, part)
                try:
                    os.mkdir(path)
                except FileExistsError:
                    if i == len(parts) - 1:
                        raise FileExistsError(
                            errno.EEXIST, f"cgroup {path} exists already"
                        ) from None
                    if _read(os.path.join(path, "cpuset.cpus")).strip():
                        continue
                for name in ("cpuset.cpus", "cpuset.mems"):
                    _write(os.path.join(path, name), _read(os.path.join(parent, name)).strip())
        except FileNotFoundError:
            continue  # a parent was removed meanwhile (see _mkdirs)
        return path
    raise OSError(errno.EBUSY, f"cgroup {base}/{rel}: its parent keeps disappearing")


# -- the driver ---------------------------------------------------------------------------


def _find_mounts(v1_root: str) -> dict[str, str]:
    """The controllers of the hierarchies under ``v1_root``, by directory name
    (``cpu,cpuacct`` holds two). Symbolic links (``cpu -> cpu,cpuacct``) are skipped."""
    found: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(v1_root), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                for name in entry.name.split(","):
                    found.setdefault(name, entry.path)
    return found


@attrs.frozen(slots=False)
class HybridDriver:
    """cgroup v1 controllers, plus the cgroup2 core files where a cgroup2 mount exists.

    Args:
        v1_root: where the v1 hierarchies are mounted, one directory each, named by their
            controllers (``memory``, ``cpu,cpuacct``).
        unified_root: the cgroup2 mount of a hybrid host, or None on a legacy host.
        controllers: the controllers to use, in ``v1_root/<name>``; empty: those found
            under ``v1_root``, or in ``mounts``.
        mounts: (controller, mount directory) pairs, as :func:`probe` reads them from
            mountinfo; they take the place of ``v1_root``.

    Example:
        >>> d = HybridDriver(mounts=(("memory", "/m"), ("cpu", "/c"), ("cpuacct", "/c")))
        >>> d.controllers, d.mount("cpuacct"), d.enforces_devices
        (('memory', 'cpu', 'cpuacct'), '/c', False)
    """

    v1_root: str = "/sys/fs/cgroup"
    unified_root: str | None = None
    controllers: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()
    # A plain attribute, set once in __attrs_post_init__: an attrs field would be
    # read-only, and the protocol wants a variable.
    enforces_devices = False
    _mount: dict[str, str] = attrs.field(init=False, eq=False, repr=False)
    _always: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.mounts:
            found = dict(self.mounts)
        elif self.controllers:
            found = {c: os.path.join(self.v1_root, c) for c in self.controllers}
        else:
            found = _find_mounts(self.v1_root)
        wanted = self.controllers or V1_CONTROLLERS
        mount = {c: found[c] for c in V1_CONTROLLERS if c in found and c in wanted}
        always = _ALWAYS if self.unified_root else (*_ALWAYS, *_ALWAYS_LEGACY)
        set_ = object.__setattr__  # the class is frozen; these are derived once, here
        set_(self, "mounts", tuple(mount.items()))
        set_(self, "controllers", tuple(mount))
        set_(self, "enforces_devices", "devices" in mount)
        set_(self, "_mount", mount)
        set_(self, "_always", tuple(dict.fromkeys(mount[c] for c in always if c in mount)))

    def mount(self, controller: str) -> str | None:
        """Where the hierarchy of ``controller`` is mounted; None if it is not."""
        return self._mount.get(controller)

    def hierarchies(self) -> list[str]:
        """The mount directory of each v1 hierarchy the driver uses."""
        return list(dict.fromkeys(self._mount.values()))

    def check_mounted(self, controllers: Iterable[str]) -> None:
        """Raise OSError(ENOTSUP) naming the first of ``controllers`` not mounted."""
        for name in controllers:
            if name not in self._mount:
                raise OSError(errno.ENOTSUP, f"the cgroup v1 {name} controller is not mounted")

    def create(self, path: str, limits: CgroupLimits) -> Cgroup:
        rel = _rel(path)
        self.check_mounted(_needed(limits))
        # A cgroup of that name in a hierarchy joined only later would be taken over then.
        for mount in self.hierarchies():
            if mount not in self._always and os.path.isdir(os.path.join(mount, rel)):
                raise FileExistsError(
                    errno.EEXIST, f"cgroup {os.path.join(mount, rel)} exists already"
                )
        cg = _HybridCgroup(path, self)
        try:
            for mount in self._always:
                cg.dirs[mount] = _mkdirs(mount, rel)
            if self.unified_root:
                cg.unified_dir = _mkdirs(self.unified_root, rel)
            cg._update(limits, live=False)
        except BaseException:
            cg._remove()  # only what was made here: not another cgroup's directories
            raise
        return cg

    def open(self, path: str) -> Cgroup:
        cg = _HybridCgroup(path, self)
        cg._discover()
        if not cg.procs_files():
            raise FileNotFoundError(errno.ENOENT, f"cgroup {path} exists in no hierarchy")
        return cg

    def remove_parents(self, path: str) -> None:
        """Remove the empty ``containerlib*`` parents of ``path`` in every hierarchy."""
        rel = _rel(path)
        for mount in self.hierarchies():
            _remove_parents(mount, rel)
        if self.unified_root:
            _remove_parents(self.unified_root, rel)
