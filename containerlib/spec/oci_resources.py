"""The ``linux.resources`` part of the OCI runtime spec: cgroup limits as data.

A cgroup (see cgroups(7)) groups processes so the kernel can account for and limit what they
use together: memory and swap, CPU time and CPU sets, the number of tasks, block I/O,
huge pages, RDMA handles, and which device nodes they may open. These classes describe the
limits; ``containerlib.linux`` writes them to the v1 or v2 controller files.

Example:
    >>> r = LinuxResources(memory=LinuxMemory(limit=512 * 2**20), pids=LinuxPids(limit=64))
    >>> r.to_dict()
    {'memory': {'limit': 536870912}, 'pids': {'limit': 64}}
"""

from __future__ import annotations

import re

import attrs

from containerlib.spec._frozen import FrozenDict
from containerlib.spec._oci_fields import (
    BOOL,
    I64,
    STR,
    U16,
    U32,
    U64,
    Int,
    ListOf,
    MapOf,
    Obj,
    OCIObject,
    Opt,
    Str,
    as_frozendict,
    as_tuple,
    matches,
    non_empty,
    oci,
    one_of,
)

__all__ = [
    "LinuxBlockIO",
    "LinuxCPU",
    "LinuxDeviceCgroup",
    "LinuxHugepageLimit",
    "LinuxInterfacePriority",
    "LinuxMemory",
    "LinuxNetwork",
    "LinuxPids",
    "LinuxRdma",
    "LinuxResources",
    "LinuxThrottleDevice",
    "LinuxWeightDevice",
]

# Byte counts where -1 means "no limit".
_BYTES = Opt(Int(-1, 2**63 - 1))
_CPU_LIST = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)


def _cpu_list(value: str) -> str | None:
    """Check a cpuset list such as ``"0-3,7"`` (the empty string means "all")."""
    if value == "":
        return None
    for part in value.split(","):
        m = _CPU_LIST.fullmatch(part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            return f"must be a list like '0-3,7', not {value!r}"
    return None


def _access(value: str) -> str | None:
    """Check a device cgroup access string: some of ``r``, ``w`` and ``m``, each once."""
    if set(value) <= set("rwm") and len(set(value)) == len(value):
        return None
    return f"must be made of 'r', 'w' and 'm', each at most once, not {value!r}"


@attrs.frozen(kw_only=True, repr=False)
class LinuxDeviceCgroup(OCIObject):
    """One rule of the device allow list; rules are applied in order.

    Omitted ``type``, ``major`` or ``minor`` match every device; ``access`` is a subset of
    ``"rwm"`` (read, write, mknod).
    """

    allow: bool = attrs.field(metadata=oci("allow", BOOL, required=True))
    type: str | None = attrs.field(
        default=None, metadata=oci("type", Opt(Str(one_of("a", "b", "c"))))
    )
    major: int | None = attrs.field(default=None, metadata=oci("major", Opt(I64)))
    minor: int | None = attrs.field(default=None, metadata=oci("minor", Opt(I64)))
    access: str | None = attrs.field(default=None, metadata=oci("access", Opt(Str(_access))))


@attrs.frozen(kw_only=True, repr=False)
class LinuxMemory(OCIObject):
    """Memory limits in bytes; -1 means unlimited. ``swap`` is memory plus swap."""

    limit: int | None = attrs.field(default=None, metadata=oci("limit", _BYTES))
    reservation: int | None = attrs.field(default=None, metadata=oci("reservation", _BYTES))
    swap: int | None = attrs.field(default=None, metadata=oci("swap", _BYTES))
    kernel: int | None = attrs.field(default=None, metadata=oci("kernel", _BYTES))
    kernel_tcp: int | None = attrs.field(default=None, metadata=oci("kernelTCP", _BYTES))
    swappiness: int | None = attrs.field(default=None, metadata=oci("swappiness", Opt(U64)))
    disable_oom_killer: bool | None = attrs.field(
        default=None, metadata=oci("disableOOMKiller", Opt(BOOL))
    )
    use_hierarchy: bool | None = attrs.field(default=None, metadata=oci("useHierarchy", Opt(BOOL)))
    check_before_update: bool | None = attrs.field(
        default=None, metadata=oci("checkBeforeUpdate", Opt(BOOL))
    )


@attrs.frozen(kw_only=True, repr=False)
class LinuxCPU(OCIObject):
    """CPU time limits (microseconds) and the CPUs and memory nodes the tasks may use."""

    shares: int | None = attrs.field(default=None, metadata=oci("shares", Opt(U64)))
    quota: int | None = attrs.field(default=None, metadata=oci("quota", Opt(I64)))
    burst: int | None = attrs.field(default=None, metadata=oci("burst", Opt(U64)))
    period: int | None = attrs.field(default=None, metadata=oci("period", Opt(U64)))
    realtime_runtime: int | None = attrs.field(
        default=None, metadata=oci("realtimeRuntime", Opt(I64))
    )
    realtime_period: int | None = attrs.field(
        default=None, metadata=oci("realtimePeriod", Opt(U64))
    )
    cpus: str | None = attrs.field(default=None, metadata=oci("cpus", Opt(Str(_cpu_list))))
    mems: str | None = attrs.field(default=None, metadata=oci("mems", Opt(Str(_cpu_list))))
    idle: int | None = attrs.field(default=None, metadata=oci("idle", Opt(I64)))


@attrs.frozen(kw_only=True, repr=False)
class LinuxPids(OCIObject):
    """The most tasks the cgroup may hold; -1 (or 0, for older runtimes) means no limit."""

    limit: int = attrs.field(metadata=oci("limit", Int(-1, 2**63 - 1), required=True))


@attrs.frozen(kw_only=True, repr=False)
class LinuxWeightDevice(OCIObject):
    """A block I/O weight for one device."""

    major: int = attrs.field(metadata=oci("major", I64, required=True))
    minor: int = attrs.field(metadata=oci("minor", I64, required=True))
    weight: int | None = attrs.field(default=None, metadata=oci("weight", Opt(U16)))
    leaf_weight: int | None = attrs.field(default=None, metadata=oci("leafWeight", Opt(U16)))


@attrs.frozen(kw_only=True, repr=False)
class LinuxThrottleDevice(OCIObject):
    """A block I/O rate limit (bytes or operations per second) for one device."""

    major: int = attrs.field(metadata=oci("major", I64, required=True))
    minor: int = attrs.field(metadata=oci("minor", I64, required=True))
    rate: int = attrs.field(metadata=oci("rate", U64, required=True))


_THROTTLE = ListOf(Obj(LinuxThrottleDevice))


@attrs.frozen(kw_only=True, repr=False)
class LinuxBlockIO(OCIObject):
    """Block I/O weights and throttles."""

    weight: int | None = attrs.field(default=None, metadata=oci("weight", Opt(U16)))
    leaf_weight: int | None = attrs.field(default=None, metadata=oci("leafWeight", Opt(U16)))
    weight_device: tuple[LinuxWeightDevice, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("weightDevice", ListOf(Obj(LinuxWeightDevice)))
    )
    throttle_read_bps_device: tuple[LinuxThrottleDevice, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("throttleReadBpsDevice", _THROTTLE)
    )
    throttle_write_bps_device: tuple[LinuxThrottleDevice, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("throttleWriteBpsDevice", _THROTTLE)
    )
    throttle_read_iops_device: tuple[LinuxThrottleDevice, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("throttleReadIOPSDevice", _THROTTLE)
    )
    throttle_write_iops_device: tuple[LinuxThrottleDevice, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("throttleWriteIOPSDevice", _THROTTLE)
    )


@attrs.frozen(kw_only=True, repr=False)
class LinuxHugepageLimit(OCIObject):
    """A limit in bytes on huge pages of one size (``page_size`` like ``"2MB"``)."""

    page_size: str = attrs.field(
        metadata=oci("pageSize", Str(matches(r"\d+[KMGTP]?B", "a size like '2MB'")), required=True)
    )
    limit: int = attrs.field(metadata=oci("limit", U64, required=True))


@attrs.frozen(kw_only=True, repr=False)
class LinuxInterfacePriority(OCIObject):
    """The priority of the container's traffic on one network interface."""

    name: str = attrs.field(metadata=oci("name", Str(non_empty), required=True))
    priority: int = attrs.field(metadata=oci("priority", U32, required=True))


@attrs.frozen(kw_only=True, repr=False)
class LinuxNetwork(OCIObject):
    """The net_cls class id and net_prio priorities of the container's packets."""

    class_id: int | None = attrs.field(default=None, metadata=oci("classID", Opt(U32)))
    priorities: tuple[LinuxInterfacePriority, ...] = attrs.field(
        default=(),
        converter=as_tuple,
        metadata=oci("priorities", ListOf(Obj(LinuxInterfacePriority))),
    )


@attrs.frozen(kw_only=True, repr=False)
class LinuxRdma(OCIObject):
    """Limits on the RDMA handles and objects of one device."""

    hca_handles: int | None = attrs.field(default=None, metadata=oci("hcaHandles", Opt(U32)))
    hca_objects: int | None = attrs.field(default=None, metadata=oci("hcaObjects", Opt(U32)))


@attrs.frozen(kw_only=True, repr=False)
class LinuxResources(OCIObject):
    """Everything the container's cgroup limits.

    ``unified`` holds cgroup v2 files written as they are (``{"memory.high": "1G"}``).
    """

    devices: tuple[LinuxDeviceCgroup, ...] = attrs.field(
        default=(), converter=as_tuple, metadata=oci("devices", ListOf(Obj(LinuxDeviceCgroup)))
    )
    memory: LinuxMemory | None = attrs.field(
        default=None, metadata=oci("memory", Opt(Obj(LinuxMemory)))
    )
    cpu: LinuxCPU | None = attrs.field(default=None, metadata=oci("cpu", Opt(Obj(LinuxCPU))))
    pids: LinuxPids | None = attrs.field(default=None, metadata=oci("pids", Opt(Obj(LinuxPids))))
    block_io: LinuxBlockIO | None = attrs.field(
        default=None, metadata=oci("blockIO", Opt(Obj(LinuxBlockIO)))
    )
    hugepage_limits: tuple[LinuxHugepageLimit, ...] = attrs.field(
        default=(),
        converter=as_tuple,
        metadata=oci("hugepageLimits", ListOf(Obj(LinuxHugepageLimit))),
    )
    network: LinuxNetwork | None = attrs.field(
        default=None, metadata=oci("network", Opt(Obj(LinuxNetwork)))
    )
    rdma: FrozenDict[str, LinuxRdma] = attrs.field(
        default=FrozenDict(),
        converter=as_frozendict,
        metadata=oci("rdma", MapOf(Obj(LinuxRdma), non_empty)),
    )
    unified: FrozenDict[str, str] = attrs.field(
        default=FrozenDict(),
        converter=as_frozendict,
        metadata=oci("unified", MapOf(STR, non_empty)),
    )
