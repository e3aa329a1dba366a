"""The resource limits of :meth:`Container.limit` and :meth:`RunningContainer.update`.

Values are read the way the ``docker run`` flags read them (``mem="512m"``, ``cpus=1.5``,
``device_write_bps={"/dev/sda": "1mb"}``) and checked when given, so that a bad value is a
:class:`~containerlib.errors.SpecError` naming the argument before anything is made. They
become the OCI spec's ``linux.resources``; device paths are looked up on the host then,
since a fluent method does no I/O.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from typing import Any

import attrs

from containerlib.errors import SpecError
from containerlib.spec import oci
from containerlib.spec.units import cpus_to_quota, parse_bytes, parse_cpus, parse_pids

__all__ = ["Limits"]

#: The smallest memory limit Docker accepts.
MIN_MEMORY = 6 * 1024 * 1024
_CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*", re.ASCII)
_PAGE_SIZE = re.compile(r"\d+[KMGTP]?B", re.ASCII)
_DEVICE_KINDS = ("device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops")


@attrs.frozen(kw_only=True)
class Limits:
    """Resource limits as given, checked; ``None`` (or empty) is not given."""

    mem: int | None = None
    mem_reservation: int | None = None
    #: Memory plus swap, as ``docker run --memory-swap``; -1 for unlimited swap.
    swap: int | None = None
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids: int | None = None
    blkio_weight: int | None = None
    #: (kind, host path, rate) with kind one of ``device_read_bps`` and the like.
    devices: tuple[tuple[str, str, int], ...] = ()
    hugetlb: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, **given: Any) -> Limits:
        """Check the arguments of :meth:`Container.limit` (those not None).

        Raises:
            SpecError: a value ``docker run`` would not accept; the field is the argument.
        """
        out: dict[str, Any] = {}
        if (mem := given.get("mem")) is not None:
            out["mem"] = parse_bytes(mem, "mem")
            if out["mem"] < MIN_MEMORY:
                raise SpecError("mem", f"{mem!r} is below the minimum of 6 MiB")
        if (reservation := given.get("mem_reservation")) is not None:
            out["mem_reservation"] = parse_bytes(reservation, "mem_reservation")
        if (swap := given.get("swap")) is not None:
            out["swap"] = -1 if swap in (-1, "-1") else parse_bytes(swap, "swap")
        if (cpus := given.get("cpus")) is not None:
            nano = parse_cpus(cpus, "cpus")
            cpus_to_quota(nano)  # refuses a quota under the kernel's minimum
            out["nano_cpus"] = nano
        if (shares := given.get("cpu_shares")) is not None:
            if isinstance(shares, bool) or not isinstance(shares, int) or not 2 <= shares <= 262144:
                raise SpecError(
                    "cpu_shares", f"must be an integer from 2 to 262144, not {shares!r}"
                )
            out["cpu_shares"] = shares
        for name in ("cpuset_cpus", "cpuset_mems"):
            if (value := given.get(name)) is not None:
                if not isinstance(value, str) or not _CPU_LIST.fullmatch(value):
                    raise SpecError(name, f"must be a list like '0-3,5', not {value!r}")
                out[name] = value
        if (pids := given.get("pids")) is not None:
            out["pids"] = parse_pids(pids, "pids")
        if (weight := given.get("blkio_weight")) is not None:
            if isinstance(weight, bool) or not isinstance(weight, int) or not 10 <= weight <= 1000:
                raise SpecError(
                    "blkio_weight", f"must be an integer from 10 to 1000, not {weight!r}"
                )
            out["blkio_weight"] = weight
        devices = []
        for kind in _DEVICE_KINDS:
            rates = given.get(kind)
            if rates is None:
                continue
            if not isinstance(rates, Mapping):
                raise SpecError(kind, f"must map device paths to rates, not {rates!r}")
            for path, rate in rates.items():
                if not isinstance(path, str) or not path.startswith("/"):
                    raise SpecError(kind, f"must name devices by absolute path, not {path!r}")
                # Bytes a second, or a positive number of operations a second.
                bps = kind.endswith("_bps")
                value = parse_bytes(rate, kind) if bps else parse_pids(rate, kind)
                devices.append((kind, path, value))
        out["devices"] = tuple(devices)
        if (huge := given.get("hugetlb")) is not None:
            if not isinstance(huge, Mapping):
                raise SpecError("hugetlb", f"must map page sizes to limits, not {huge!r}")
            pairs = []
            for size, limit in huge.items():
                if not isinstance(size, str) or not _PAGE_SIZE.fullmatch(size):
                    raise SpecError("hugetlb", f"page sizes are like '2MB' or '1GB', not {size!r}")
                pairs.append((size, parse_bytes(limit, f"hugetlb.{size}")))
            out["hugetlb"] = tuple(pairs)
        return cls(**out)

    def merged(self, newer: Limits) -> Limits:
        """These limits with those given in ``newer`` replacing them."""
        changes = {
            f.name: getattr(newer, f.name)
            for f in attrs.fields(Limits)
            if getattr(newer, f.name) not in (None, ())
        }
        merged = attrs.evolve(self, **changes)
        if newer.devices:  # per device: the newer rate of the same kind and device wins
            keep = {(k, p): r for k, p, r in self.devices}
            keep.update({(k, p): r for k, p, r in newer.devices})
            merged = attrs.evolve(merged, devices=tuple((k, p, r) for (k, p), r in keep.items()))
        merged.check()
        return merged

    def check(self) -> None:
        """The checks between values, as ``docker run`` makes them."""
        if self.swap is not None and self.swap != -1:
            if self.mem is None:
                raise SpecError("swap", "needs mem: it is memory plus swap")
            if self.swap < self.mem:
                raise SpecError(
                    "swap", f"memory plus swap ({self.swap}) must be at least mem ({self.mem})"
                )
        reservation = self.mem_reservation
        if reservation is not None and self.mem is not None and reservation > self.mem:
            raise SpecError("mem_reservation", "must not be more than mem")

    def resources(self, base: oci.LinuxResources | None = None) -> oci.LinuxResources:
        """The OCI ``linux.resources`` for these limits, over ``base``.

        With ``mem`` and no ``swap``, memory plus swap is ``mem``: no swap, so that a
        container that needs more memory is OOM-killed rather than slowed down.

        Raises:
            SpecError: a device path is not a block device on this host.
        """
        res = base or oci.LinuxResources()
        memory = None
        if self.mem is not None or self.mem_reservation is not None:
            swap = self.swap if self.swap is not None else self.mem
            memory = oci.LinuxMemory(limit=self.mem, reservation=self.mem_reservation, swap=swap)
        cpu = None
        if self.nano_cpus or self.cpu_shares or self.cpuset_cpus or self.cpuset_mems:
            quota, period = cpus_to_quota(self.nano_cpus) if self.nano_cpus else (None, None)
            cpu = oci.LinuxCPU(
                shares=self.cpu_shares,
                quota=quota,
                period=period,
                cpus=self.cpuset_cpus,
                mems=self.cpuset_mems,
            )
        block_io = None
        if self.blkio_weight is not None or self.devices:
            by_kind: dict[str, list[oci.LinuxThrottleDevice]] = {k: [] for k in _DEVICE_KINDS}
            for kind, path, rate in self.devices:
                major, minor = _block_device(path, kind)
                by_kind[kind].append(oci.LinuxThrottleDevice(major=major, minor=minor, rate=rate))
            block_io = oci.LinuxBlockIO(
                weight=self.blkio_weight,
                throttle_read_bps_device=tuple(by_kind["device_read_bps"]),
                throttle_write_bps_device=tuple(by_kind["device_write_bps"]),
                throttle_read_iops_device=tuple(by_kind["device_read_iops"]),
                throttle_write_iops_device=tuple(by_kind["device_write_iops"]),
            )
        return attrs.evolve(
            res,
            memory=memory,
            cpu=cpu,
            pids=oci.LinuxPids(limit=self.pids) if self.pids is not None else None,
            block_io=block_io,
            hugepage_limits=tuple(
                oci.LinuxHugepageLimit(page_size=size, limit=limit) for size, limit in self.hugetlb
            ),
        )


def _integer(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(field, f"must be an integer from {low} to {high}, not {value!r}")
    return value


def _block_device(path: str, field: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise SpecError(field, f"{path!r}: {e.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise SpecError(field, f"{path!r} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)
