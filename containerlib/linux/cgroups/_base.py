"""What every cgroup driver shares: the limits asked for, the figures read, the protocol,
and small helpers for cgroupfs files."""

from __future__ import annotations

import errno
import os
import time
from typing import Protocol

import attrs

__all__ = [
    "Cgroup",
    "CgroupDriver",
    "CgroupLimits",
    "CgroupStats",
    "DeviceValue",
    "Pressure",
    "parse_pressure",
]


@attrs.frozen
class DeviceValue:
    """A value for one block device: a throttle rate or a weight."""

    major: int
    minor: int
    value: int


@attrs.frozen(kw_only=True)
class CgroupLimits:
    """What the runtime asks of a cgroup. ``None`` (or empty) leaves a limit as it is: the
    host's default in a new cgroup, the current value in :meth:`Cgroup.set_limits`.

    Attributes:
        memory: hard limit in bytes (v1 ``memory.limit_in_bytes``, v2 ``memory.max``).
        memory_reservation: soft limit in bytes (v1 ``memory.soft_limit_in_bytes``, v2
            ``memory.low``), Docker's ``--memory-reservation``.
        memory_swap: memory plus swap in bytes, as Docker's ``--memory-swap``; -1 for
            unlimited swap (v1 ``memory.memsw.limit_in_bytes``, v2 ``memory.swap.max`` =
            this minus ``memory``). Ignored where the host does not account swap.
        cpu_quota: microseconds of CPU time per period; -1 for no limit (v1
            ``cpu.cfs_quota_us``, v2 the first field of ``cpu.max``).
        cpu_period: the period in microseconds (v1 ``cpu.cfs_period_us``, v2 the second
            field of ``cpu.max``).
        cpu_shares: relative weight, 2 to 262144 (v1 ``cpu.shares``; v2 ``cpu.weight``,
            converted as runc does: ``1 + (shares - 2) * 9999 // 262142``).
        cpuset_cpus: CPUs the container may run on, such as ``"0-1,3"``.
        cpuset_mems: memory nodes, such as ``"0"``.
        pids: the most processes at once; -1 for no limit.
        blkio_weight: relative block I/O weight, 10 to 1000 (v1 ``blkio.weight`` or
            ``blkio.bfq.weight``; v2 ``io.weight`` or ``io.bfq.weight``).
        blkio_weight_device: the same per device.
        read_bps, write_bps, read_iops, write_iops: throttles per device (v1
            ``blkio.throttle.*_device``, v2 ``io.max``).
        hugetlb: (page size such as ``"2MB"``, limit in bytes) pairs.
        net_cls_classid: v1 ``net_cls.classid``, where the host has net_cls.
        net_prio_ifpriomap: (interface, priority) pairs for v1 ``net_prio.ifpriomap``.
        devices: device access rules applied in order: (allow, ``"c 1:3 rwm"``). Empty
            leaves access open. Enforced with the v1 devices controller only (see the
            driver's ``enforces_devices``).
    """

    memory: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids: int | None = None
    blkio_weight: int | None = None
    blkio_weight_device: tuple[DeviceValue, ...] = ()
    read_bps: tuple[DeviceValue, ...] = ()
    write_bps: tuple[DeviceValue, ...] = ()
    read_iops: tuple[DeviceValue, ...] = ()
    write_iops: tuple[DeviceValue, ...] = ()
    hugetlb: tuple[tuple[str, int], ...] = ()
    net_cls_classid: int | None = None
    net_prio_ifpriomap: tuple[tuple[str, int], ...] = ()
    devices: tuple[tuple[bool, str], ...] = ()


@attrs.frozen(kw_only=True)
class Pressure:
    """Pressure stall information (PSI) of one resource: the share of time some (or all)
    tasks waited for it, averaged over 10, 60 and 300 seconds (percent), and the total
    time waited (microseconds). ``full`` is None for CPU on kernels that do not report it.

    Example:
        >>> with Container("/srv/busybox").start(["sleep", "60"]) as box:  # doctest: +SKIP
        ...     pressure = box.stats().memory_pressure
        >>> pressure is None or pressure.some_avg10 >= 0  # doctest: +SKIP
        True
    """

    some_avg10: float
    some_avg60: float
    some_avg300: float
    some_total_usec: int
    full_avg10: float | None = None
    full_avg60: float | None = None
    full_avg300: float | None = None
    full_total_usec: int | None = None


@attrs.frozen(kw_only=True)
class CgroupStats:
    """Figures read from a cgroup. None: the host does not report that figure.

    Attributes:
        memory_current: memory in use now, bytes.
        memory_peak: the most memory in use at once, bytes.
        cpu_usage_usec, cpu_user_usec, cpu_system_usec: CPU time used, microseconds.
        pids_current: processes (and threads) in the cgroup now.
        io_read_bytes, io_write_bytes: block I/O, bytes, summed over devices.
        oom_kills: processes the OOM killer killed in the cgroup.
        cpu_pressure, memory_pressure, io_pressure: PSI, where the host has it.

    Example:
        >>> result = Container("/srv/busybox").limit(mem="64M").run(["true"])  # doctest: +SKIP
        >>> result.stats.memory_peak > 0, result.stats.oom_kills  # doctest: +SKIP
        (True, 0)
    """

    memory_current: int | None = None
    memory_peak: int | None = None
    cpu_usage_usec: int | None = None
    cpu_user_usec: int | None = None
    cpu_system_usec: int | None = None
    pids_current: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    oom_kills: int = 0
    cpu_pressure: Pressure | None = None
    memory_pressure: Pressure | None = None
    io_pressure: Pressure | None = None


class Cgroup(Protocol):
    """One container's cgroup, in every hierarchy the driver uses."""

    path: str

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes ``0`` to, to join the cgroup."""

    def join_files(self) -> list[str]:
        """The files a single-threaded process writes ``0`` to, to move itself in.

        v1 ``tasks`` rather than ``cgroup.procs``: a thread that moves itself takes no
        global lock there, while a write to ``cgroup.procs`` takes
        ``cgroup_threadgroup_rwsem``, which after a quiet spell waits for an RCU grace
        period (8 to 16 ms here) with ``cgroup_mutex`` held, stalling every cgroup
        operation on the host. cgroup2 has only ``cgroup.procs`` for this (see
        :meth:`clone_into`).
        """

    def clone_into(self) -> str | None:
        """The cgroup2 directory a new process can be cloned straight into
        (``clone3(CLONE_INTO_CGROUP)``, no global lock), or None on a legacy host."""

    def set_limits(self, limits: CgroupLimits, *, move: bool = True) -> None:
        """Write ``limits`` into the cgroup's files; ``None`` leaves a limit as it is.

        A limit of a v1 controller the cgroup is not in yet (cpu, cpuset...) makes the
        cgroup there; with ``move``, every process of the cgroup is moved in, else the
        caller has them join (a process moving itself through :meth:`join_files` takes no
        global lock).

        Raises:
            OSError: the kernel refused a value, or the controller is missing (ENOTSUP);
                the message names the file or the controller.
        """

    def stats(self) -> CgroupStats:
        """Read the figures of the cgroup."""

    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process in the cgroup, and return once they all are stopped.

        Raises:
            TimeoutError: they were not all stopped within ``timeout`` seconds.
            OSError: the host has no freezer (ENOTSUP).
        """

    def thaw(self) -> None:
        """Let the processes of a frozen cgroup run again."""

    def destroy(self) -> None:
        """Kill every process left inside (thawing it first if frozen), then remove the
        directories, deepest first."""


class CgroupDriver(Protocol):
    """Creates cgroups on one kind of host."""

    #: The driver enforces ``CgroupLimits.devices`` (v1 devices controller).
    enforces_devices: bool

    def create(self, path: str, limits: CgroupLimits) -> Cgroup:
        """Make the cgroup ``path`` (relative, such as ``containerlib/3f2a``) with ``limits``.

        Parents are made as needed and stay while their owner runs containers: removing
        and making them again for each container would cost time and race with other
        processes. :meth:`remove_parents` removes them when the owner is done.

        Raises:
            FileExistsError: a cgroup of that name exists already; it is left alone.
            OSError: the kernel refused a directory or a limit; the cgroup is removed.
        """

    def open(self, path: str) -> Cgroup:
        """The existing cgroup ``path`` (made by :meth:`create`, maybe in another process),
        to read its figures, change its limits or freeze it.

        Raises:
            FileNotFoundError: there is no such cgroup (its container has ended).
        """

    def remove_parents(self, path: str) -> None:
        """Remove the parents of ``path`` that are empty and named ``containerlib*``."""


def parse_pressure(text: str) -> Pressure:
    """Parse a PSI file (``cpu.pressure``, ``memory.pressure``, ``io.pressure``)::

    some avg10=0.00 avg60=0.00 avg300=0.00 total=0
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0
    """
    lines: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        lines[kind] = dict(f.split("=", 1) for f in rest.split() if "=" in f)
    some = lines.get("some")
    if some is None:
        raise ValueError(f"not a pressure file: {text!r}")
    full = lines.get("full")
    return Pressure(
        some_avg10=float(some["avg10"]),
        some_avg60=float(some["avg60"]),
        some_avg300=float(some["avg300"]),
        some_total_usec=int(some["total"]),
        full_avg10=float(full["avg10"]) if full else None,
        full_avg60=float(full["avg60"]) if full else None,
        full_avg300=float(full["avg300"]) if full else None,
        full_total_usec=int(full["total"]) if full else None,
    )


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, f"write {value!r} to {path}: {os.strerror(e.errno or 0)}") from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    # Plain system calls: open() and its text layer cost several more per file, and a
    # container's figures are a dozen files read on the way to its exit status.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii")


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _mkdirs(base: str, rel: str) -> str:
    """Create ``base/rel``; parents may exist, the leaf must not.

    Another process may remove an empty parent between our mkdir calls (see
    :func:`remove_parents`); the walk then starts again.
    """
    parts = rel.split("/")
    for _attempt in range(100):
        path = base
        try:
            for i, part in enumerate(parts):
                path = os.path.join(path, part)
                try:
                    os.mkdir(path)
                except FileExistsError:
                    if i == len(parts) - 1:
                        raise FileExistsError(
                            errno.EEXIST, f"cgroup {path} exists already"
                        ) from None
        except FileNotFoundError:
            continue
        return path
    raise OSError(errno.EBUSY, f"cgroup {base}/{rel}: its parent keeps disappearing")


def _remove_parents(base: str, rel: str) -> None:
    """rmdir the empty parents of ``base/rel``, deepest first, up to and including the
    first directory named ``containerlib*`` on the way from ``base``: those belong to
    containerlib, whoever made them (``containerlib/test-1/<id>`` loses ``test-1`` and
    ``containerlib``; ``user.slice/.../containerlib/<id>``, a delegated subtree's, only
    ``containerlib``)."""
    parts = rel.split("/")
    first = next((i for i, p in enumerate(parts[:-1]) if p.startswith("containerlib")), None)
    if first is None:
        return
    for depth in range(len(parts) - 1, first, -1):
        try:
            os.rmdir(os.path.join(base, *parts[:depth]))
        except OSError:
            return


def _rmdir_retry(path: str, deadline: float) -> None:
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise OSError(
                    e.errno, f"remove cgroup {path}: {os.strerror(e.errno or 0)}"
                ) from None
            time.sleep(0.001)


def _pids(path: str) -> list[int]:
    try:
        return [int(x) for x in _read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def _remove_tree(leaf: str, deadline: float) -> None:
    """Remove ``leaf`` and the sub-cgroups its processes made, deepest first."""
    for dirpath, _dirs, _files in sorted(os.walk(leaf), key=lambda t: -t[0].count("/")):
        _rmdir_retry(dirpath, deadline)


def _remove_empty(leaves: list[str]) -> bool:
    """rmdir each leaf cgroup; False as soon as one is busy or has sub-cgroups."""
    for leaf in leaves:
        try:
            os.rmdir(leaf)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return True
