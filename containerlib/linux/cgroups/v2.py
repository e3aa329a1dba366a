"""The v2 driver: one unified hierarchy, controllers enabled through subtree_control.

On cgroup v2 every controller lives in one tree. A controller's files (``memory.max``,
``cpu.max``) appear in a cgroup only when its parent lists the controller in
``cgroup.subtree_control``, so the driver enables them in every ancestor, top down.
Freezing (``cgroup.freeze``, ``cgroup.events``), killing (``cgroup.kill``), ``cpu.stat``
and the pressure files are core files of every cgroup, with or without controllers. Read
Documentation/admin-guide/cgroup-v2.rst in the kernel tree for the file formats.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from typing import Final

import attrs

from containerlib.linux.cgroups._base import (
    Cgroup,
    CgroupLimits,
    CgroupStats,
    DeviceValue,
    Pressure,
    _keyed,
    _pids,
    _read,
    _remove_empty,
    _remove_parents,
    _remove_tree,
    _write,
    parse_pressure,
)

__all__ = ["UnifiedDriver"]

#: The controllers a limit may need, in the order the kernel lists them.
_CONTROLLERS: Final = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")

#: (file name in the cgroup, value), in the order they are written.
_Writes = list[tuple[str, str]]


def _max(value: int) -> str:
    """A limit where -1 means none, as v2 files take it."""
    return "max" if value == -1 else str(value)


def _parts(path: str) -> list[str]:
    # OCI cgroupsPath values are often absolute ("/containerlib/x"): they are relative
    # to the hierarchy's root all the same.
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"cgroup path {path!r} is not a relative path below the root")
    return parts


def _needed(limits: CgroupLimits) -> set[str]:
    """The controllers whose files ``limits`` writes."""
    needed = set()
    if (limits.memory, limits.memory_reservation, limits.memory_swap) != (None, None, None):
        needed.add("memory")
    if (limits.cpu_quota, limits.cpu_period, limits.cpu_shares) != (None, None, None):
        needed.add("cpu")
    if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
        needed.add("cpuset")
    if limits.pids is not None:
        needed.add("pids")
    if limits.blkio_weight is not None or any(
        (
            limits.blkio_weight_device,
            limits.read_bps,
            limits.write_bps,
            limits.read_iops,
            limits.write_iops,
        )
    ):
        needed.add("io")
    if limits.hugetlb:
        needed.add("hugetlb")
    return needed


def _refuse_v1_only(limits: CgroupLimits) -> None:
    asked = [
        name
        for name, value in (
            ("net_cls_classid", limits.net_cls_classid is not None),
            ("net_prio_ifpriomap", bool(limits.net_prio_ifpriomap)),
        )
        if value
    ]
    if asked:
        raise OSError(
            errno.ENOTSUP,
            f"cgroup v2 has no net_cls or net_prio controller: cannot set {', '.join(asked)}",
        )


# -- one function per controller: the writes a limit makes ------------------------------


def _memory(d: str, limits: CgroupLimits) -> _Writes:
    out = []
    if limits.memory is not None:
        out.append(("memory.max", _max(limits.memory)))
    # Without swap accounting the file is absent, and there is no swap to limit.
    if limits.memory_swap is not None and os.path.exists(os.path.join(d, "memory.swap.max")):
        out.append(("memory.swap.max", _swap(d, limits.memory_swap, limits.memory)))
    if limits.memory_reservation is not None:
        out.append(("memory.low", str(limits.memory_reservation)))
    return out


def _swap(d: str, memory_swap: int, memory: int | None) -> str:
    """v2 limits swap alone, where ``memory_swap`` counts memory plus swap, as Docker's."""
    if memory_swap == -1:
        return "max"
    if memory is None:
        current = _read(os.path.join(d, "memory.max")).strip()
        memory = -1 if current == "max" else int(current)
    if memory == -1:
        raise OSError(
            errno.EINVAL, f"memory_swap={memory_swap} needs a memory limit, and {d} has none"
        )
    if memory_swap < memory:
        raise OSError(
            errno.EINVAL, f"memory_swap={memory_swap} is less than memory={memory} in {d}"
        )
    return str(memory_swap - memory)


def _cpu_weight(shares: int) -> int:
    # v1 clamps shares to 2..262144; so do we, then map onto weights 1..10000 as runc does.
    shares = min(max(shares, 2), 262144)
    return 1 + (shares - 2) * 9999 // 262142


def _cpu(d: str, limits: CgroupLimits) -> _Writes:
    out = []
    quota, period = limits.cpu_quota, limits.cpu_period
    if quota is not None or period is not None:
        # cpu.max holds both; the one not asked for stays as it is.
        old_quota, old_period = _read(os.path.join(d, "cpu.max")).split()[:2]
        new_quota = _max(quota) if quota is not None else old_quota
        new_period = str(period) if period is not None else old_period
        out.append(("cpu.max", f"{new_quota} {new_period}"))
    if limits.cpu_shares is not None:
        out.append(("cpu.weight", str(_cpu_weight(limits.cpu_shares))))
    return out


def _cpuset(_d: str, limits: CgroupLimits) -> _Writes:
    out = []
    if limits.cpuset_cpus is not None:
        out.append(("cpuset.cpus", limits.cpuset_cpus))
    if limits.cpuset_mems is not None:
        out.append(("cpuset.mems", limits.cpuset_mems))
    return out


def _pids_max(_d: str, limits: CgroupLimits) -> _Writes:
    return [] if limits.pids is None else [("pids.max", _max(limits.pids))]


def _io_weight(weight: int) -> int:
    # blkio weights run 10..1000, io.weight 1..10000; runc maps one onto the other so.
    return 1 + (weight - 10) * 9999 // 990


def _bfq_weight(weight: int) -> int:
    return weight


def _io(d: str, limits: CgroupLimits) -> _Writes:
    out = []
    if limits.blkio_weight is not None or limits.blkio_weight_device:
        if os.path.exists(os.path.join(d, "io.weight")):
            name, default, convert = "io.weight", "default {}", _io_weight
        elif os.path.exists(os.path.join(d, "io.bfq.weight")):
            # BFQ takes blkio's own scale, 1..1000; a bare number is its default weight.
            name, default, convert = "io.bfq.weight", "{}", _bfq_weight
        else:
            raise OSError(
                errno.ENOTSUP,
                f"no io.weight or io.bfq.weight in {d}: cannot set block I/O weights",
            )
        if limits.blkio_weight is not None:
            out.append((name, default.format(convert(limits.blkio_weight))))
        for dev in limits.blkio_weight_device:
            out.append((name, f"{dev.major}:{dev.minor} {convert(dev.value)}"))
    # io.max takes one device a write, with only the keys given: the others stay.
    throttles: dict[tuple[int, int], list[str]] = {}
    keyed: tuple[tuple[str, tuple[DeviceValue, ...]], ...] = (
        ("rbps", limits.read_bps),
        ("wbps", limits.write_bps),
        ("riops", limits.read_iops),
        ("wiops", limits.write_iops),
    )
    for key, devices in keyed:
        for dev in devices:
            throttles.setdefault((dev.major, dev.minor), []).append(f"{key}={_max(dev.value)}")
    for (major, minor), fields in throttles.items():
        out.append(("io.max", f"{major}:{minor} {' '.join(fields)}"))
    return out


def _hugetlb(d: str, limits: CgroupLimits) -> _Writes:
    out = []
    for size, limit in limits.hugetlb:
        name = f"hugetlb.{size}.max"
        if not os.path.exists(os.path.join(d, name)):
            raise OSError(
                errno.ENOTSUP, f"hugetlb page size {size!r} is not supported: no {name} in {d}"
            )
        out.append((name, _max(limit)))
    return out


_PLANNERS: Final = (_memory, _cpu, _cpuset, _pids_max, _io, _hugetlb)


# -- the cgroup --------------------------------------------------------------------------


def _optional(path: str) -> str | None:
    """A file's text, or None where the host does not have it."""
    try:
        return _read(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        # A pressure file reads EOPNOTSUPP when PSI is off for the cgroup (cgroup.pressure).
        if e.errno == errno.EOPNOTSUPP:
            return None
        raise


def _io_bytes(text: str) -> tuple[int, int]:
    """Sum rbytes and wbytes over the devices of an ``io.stat``::

    8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0
    """
    read = written = 0
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        read += int(fields.get("rbytes", 0))
        written += int(fields.get("wbytes", 0))
    return read, written


@attrs.define
class _UnifiedCgroup:
    path: str
    dir: str

    def procs_files(self) -> list[str]:
        return [os.path.join(self.dir, "cgroup.procs")]

    def join_files(self) -> list[str]:
        return self.procs_files()

    def clone_into(self) -> str | None:
        return self.dir

    def set_limits(self, limits: CgroupLimits, *, move: bool = True) -> None:
        # One hierarchy: the processes are in it already, whatever ``move`` says.
        # Everything is checked and read before the first write.
        _refuse_v1_only(limits)
        needed = _needed(limits)
        if needed:
            have = _read(os.path.join(self.dir, "cgroup.controllers")).split()
            for name in _CONTROLLERS:
                if name in needed and name not in have:
                    raise OSError(
                        errno.ENOTSUP,
                        f"cgroup controller {name!r} is not available in {self.dir}",
                    )
        # Device rules need eBPF on v2, which containerlib does not load: the driver says
        # so with enforces_devices = False, and limits.devices is left alone here.
        writes = [w for plan in _PLANNERS for w in plan(self.dir, limits)]
        for name, value in writes:
            _write(os.path.join(self.dir, name), value)

    def stats(self) -> CgroupStats:
        def read(name: str) -> str | None:
            return _optional(os.path.join(self.dir, name))

        def number(name: str) -> int | None:
            text = read(name)
            return None if text is None else int(text)

        def pressure(name: str) -> Pressure | None:
            text = read(name)
            return None if text is None else parse_pressure(text)

        cpu_text = read("cpu.stat")
        cpu = {} if cpu_text is None else _keyed(cpu_text)
        io_text = read("io.stat")
        io = (None, None) if io_text is None else _io_bytes(io_text)
        events = read("memory.events")
        return CgroupStats(
            memory_current=number("memory.current"),
            memory_peak=number("memory.peak"),
            cpu_usage_usec=cpu.get("usage_usec"),
            cpu_user_usec=cpu.get("user_usec"),
            cpu_system_usec=cpu.get("system_usec"),
            pids_current=number("pids.current"),
            io_read_bytes=io[0],
            io_write_bytes=io[1],
            oom_kills=0 if events is None else _keyed(events).get("oom_kill", 0),
            cpu_pressure=pressure("cpu.pressure"),
            memory_pressure=pressure("memory.pressure"),
            io_pressure=pressure("io.pressure"),
        )

    def freeze(self, timeout: float = 5.0) -> None:
        events = os.path.join(self.dir, "cgroup.events")
        self._write_freeze("1")
        # The write starts freezing; cgroup.events says when every process has stopped.
        deadline = time.monotonic() + timeout
        while _keyed(_read(events)).get("frozen") != 1:
            if time.monotonic() > deadline:
                # Half frozen is of no use to anyone: let the processes run again.
                self._write_freeze("0")
                raise TimeoutError(
                    f"freeze cgroup {self.dir}: its processes did not all stop within {timeout} s"
                )
            time.sleep(0.001)

    def thaw(self) -> None:
        self._write_freeze("0")

    def _write_freeze(self, value: str) -> None:
        try:
            _write(os.path.join(self.dir, "cgroup.freeze"), value)
        except FileNotFoundError:
            if not os.path.isdir(self.dir):
                raise
            raise OSError(
                errno.ENOTSUP, f"no cgroup.freeze in {self.dir}: the kernel has no v2 freezer"
            ) from None

    def destroy(self) -> None:
        # Most of the time the processes are gone and there are no sub-cgroups: one rmdir.
        if _remove_empty([self.dir]):
            return
        deadline = time.monotonic() + 5.0
        try:
            # Kills the sub-cgroups' processes too, frozen ones included.
            _write(os.path.join(self.dir, "cgroup.kill"), "1")
        except FileNotFoundError:
            self._kill_one_by_one()
        _remove_tree(self.dir, deadline)

    def _kill_one_by_one(self) -> None:
        """What cgroup.kill does, for kernels before 5.14 (SIGKILL ends frozen tasks too)."""
        for _ in range(100):
            left = [pid for sub, _, _ in os.walk(self.dir) for pid in _pids(sub)]
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)


# -- the driver --------------------------------------------------------------------------


@attrs.frozen
class UnifiedDriver:
    """cgroup v2: one hierarchy, controllers enabled through ``cgroup.subtree_control``.

    Args:
        root: where cgroup2 is mounted: ``/sys/fs/cgroup`` on a unified host,
            ``/sys/fs/cgroup/unified`` for the core files of a hybrid one.
        controllers: those the driver may enable in the ``cgroup.subtree_control`` of
            ``root`` and of the parents, and so use. Each one the root offers is enabled
            on the way down, whether or not a limit needs it yet; leave out those that
            must not be turned on for the whole host (a hybrid host's own services share
            its cgroup2 root).
    """

    root: str = "/sys/fs/cgroup"
    controllers: tuple[str, ...] = _CONTROLLERS
    # Device rules on v2 need an eBPF program, which containerlib does not load. A plain
    # class attribute: an attrs field would be read-only, and the protocol wants a variable.
    enforces_devices = False

    def create(self, path: str, limits: CgroupLimits) -> Cgroup:
        parts = _parts(path)
        _refuse_v1_only(limits)
        needed = _needed(limits)
        made: list[str] = []
        cg: _UnifiedCgroup | None = None
        try:
            leaf = self._mkdirs(parts, needed, made)
            cg = _UnifiedCgroup(path, leaf)
            cg.set_limits(limits)
        except BaseException:
            if cg is not None:
                cg.destroy()
            for parent in reversed(made):
                # Another container may have moved in meanwhile: then it stays.
                with contextlib.suppress(OSError):
                    os.rmdir(parent)
            raise
        return cg

    def open(self, path: str) -> Cgroup:
        leaf = os.path.join(self.root, *_parts(path))
        if not os.path.isdir(leaf):
            raise FileNotFoundError(errno.ENOENT, f"cgroup {leaf} does not exist")
        return _UnifiedCgroup(path, leaf)

    def remove_parents(self, path: str) -> None:
        """Remove the empty ``containerlib*`` parents of ``path``."""
        _remove_parents(self.root, "/".join(_parts(path)))

    def _mkdirs(self, parts: list[str], needed: set[str], made: list[str]) -> str:
        """Make the parents as needed and the leaf, enabling controllers on the way down;
        the directories made are appended to ``made``."""
        for name in _CONTROLLERS:
            if name in needed and name not in self.controllers:
                raise OSError(
                    errno.ENOTSUP,
                    f"cgroup controller {name!r} is not among the driver's {self.controllers}",
                )
        for _attempt in range(100):
            node = self.root
            try:
                for part in parts[:-1]:
                    self._enable(node, needed, self.controllers)
                    node = os.path.join(node, part)
                    try:
                        os.mkdir(node)
                        made.append(node)
                    except FileExistsError:
                        pass
                self._enable(node, needed, self.controllers)
                leaf = os.path.join(node, parts[-1])
                try:
                    os.mkdir(leaf)
                except FileExistsError:
                    raise FileExistsError(errno.EEXIST, f"cgroup {leaf} exists already") from None
                return leaf
            except FileNotFoundError:
                if node == self.root or os.path.isdir(node):
                    raise
                # Another process removed an empty parent (remove_parents): start again.
        where = os.path.join(self.root, *parts)
        raise OSError(errno.EBUSY, f"cgroup {where}: its parent keeps disappearing")

    @staticmethod
    def _enable(node: str, needed: set[str], allowed: tuple[str, ...]) -> None:
        """Enable in ``node``'s subtree_control every ``allowed`` controller it offers,
        so that a cgroup made without limits can take them later; ENOTSUP if a needed
        one is not offered."""
        available = _read(os.path.join(node, "cgroup.controllers")).split()
        enabled = _read(os.path.join(node, "cgroup.subtree_control")).split()
        for name in _CONTROLLERS:
            if name in needed and name not in available:
                raise OSError(
                    errno.ENOTSUP, f"cgroup controller {name!r} is not available in {node}"
                )
        for name in _CONTROLLERS:
            if name in enabled or name not in available or name not in allowed:
                continue
            try:
                _write(os.path.join(node, "cgroup.subtree_control"), f"+{name}")
            except OSError:
                if name in needed:
                    raise
