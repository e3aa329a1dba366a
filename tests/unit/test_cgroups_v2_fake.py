"""The v2 driver against a fake cgroup file system (see tests/unit/fakecg.py)."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from containerlib.linux.cgroups import (
    CgroupLimits,
    CgroupStats,
    DeviceValue,
    Pressure,
    UnifiedDriver,
)
from tests.unit.fakecg import Activate, FakeCgroupfs, MiB

EVERY_CONTROLLER = "cpuset cpu io memory hugetlb pids"
ZERO_PRESSURE = Pressure(
    some_avg10=0.0,
    some_avg60=0.0,
    some_avg300=0.0,
    some_total_usec=0,
    full_avg10=0.0,
    full_avg60=0.0,
    full_avg300=0.0,
    full_total_usec=0,
)
DOCKER_DEVICE_RULES = (
    (False, "a"),
    (True, "c *:* m"),
    (True, "b *:* m"),
    (True, "c 1:3 rwm"),
    (True, "c 1:5 rwm"),
    (True, "c 136:* rwm"),
)


@pytest.fixture
def unified(tmp_path: Path, fake_kernel: Activate) -> FakeCgroupfs:
    """A unified host whose root offers memory and pids only."""
    return fake_kernel(FakeCgroupfs(tmp_path / "cgroup", {"": "v2"}))


@pytest.fixture
def unified_driver(unified: FakeCgroupfs) -> UnifiedDriver:
    return UnifiedDriver(root=str(unified.base))


@pytest.fixture
def full(tmp_path: Path, fake_kernel: Activate) -> FakeCgroupfs:
    """A unified host whose root offers every controller a limit may need."""
    return fake_kernel(FakeCgroupfs(tmp_path / "full", {"": "v2"}, v2_controllers=EVERY_CONTROLLER))


@pytest.fixture
def full_driver(full: FakeCgroupfs) -> UnifiedDriver:
    return UnifiedDriver(root=str(full.base))


def leaf_writes(fake: FakeCgroupfs, leaf: str = "containerlib/c1") -> list[tuple[str, str]]:
    """The writes to the leaf's files, by file name."""
    return [(p.rsplit("/", 1)[1], v) for p, v in fake.writes if p.rsplit("/", 1)[0] == leaf]


# -- the fake itself ---------------------------------------------------------------------


def test_fake_acts_on_the_v2_core_files(full: FakeCgroupfs) -> None:
    # Without these properties the freeze and destroy tests below would prove nothing.
    full.mkdir("a/b")
    assert full.read("a/cgroup.controllers") == "\n"  # the root enabled nothing yet
    assert not (full.base / "a" / "memory.max").exists()
    fd = os.open(full.base / "cgroup.subtree_control", os.O_WRONLY)
    os.write(fd, b"+memory")
    os.close(fd)
    assert full.read("a/cgroup.controllers") == "memory\n"
    assert full.read("a/memory.max") == "max\n"
    assert not (full.base / "a" / "b" / "memory.max").exists()
    full.set("a/b/cgroup.procs", "42\n")
    for rel, value in [("a/cgroup.freeze", "1"), ("a/cgroup.kill", "1")]:
        fd = os.open(full.base / rel, os.O_WRONLY)
        os.write(fd, value.encode())
        os.close(fd)
    assert full.read("a/cgroup.events") == "populated 0\nfrozen 1\n"
    assert full.read("a/b/cgroup.procs") == ""


# -- create: directories and controllers ------------------------------------------------


def test_unified_create_enables_controllers_and_writes_limits(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    limits = CgroupLimits(memory=64 * MiB, memory_swap=96 * MiB, pids=10)
    cg = unified_driver.create("containerlib/c1", limits)
    assert unified.writes == [
        ("cgroup.subtree_control", "+memory"),
        ("cgroup.subtree_control", "+pids"),
        ("containerlib/cgroup.subtree_control", "+memory"),
        ("containerlib/cgroup.subtree_control", "+pids"),
        ("containerlib/c1/memory.max", str(64 * MiB)),
        ("containerlib/c1/memory.swap.max", str(32 * MiB)),  # v2 counts swap alone
        ("containerlib/c1/pids.max", "10"),
    ]
    assert unified.read("cgroup.subtree_control") == "memory pids\n"
    assert unified.read("containerlib/cgroup.subtree_control") == "memory pids\n"
    assert unified.read("containerlib/c1/memory.max") == str(64 * MiB)
    assert cg.path == "containerlib/c1"
    assert cg.procs_files() == [str(unified.base / "containerlib" / "c1" / "cgroup.procs")]


def test_unified_create_enables_every_available_controller_in_kernel_order(
    full: FakeCgroupfs, full_driver: UnifiedDriver
) -> None:
    full_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB))
    enabled = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids"]
    assert full.writes == [
        *[("cgroup.subtree_control", f"+{c}") for c in enabled],
        *[("containerlib/cgroup.subtree_control", f"+{c}") for c in enabled],
        ("containerlib/c1/memory.max", str(64 * MiB)),
    ]
    assert full.read("containerlib/c1/cgroup.controllers") == " ".join(enabled) + "\n"


def test_unified_controllers_already_enabled_are_left_alone(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    limits = CgroupLimits(memory=64 * MiB, pids=10)
    unified_driver.create("containerlib/c1", limits)
    before = len(unified.writes)
    unified_driver.create("containerlib/c2", limits)
    assert [path for path, _ in unified.writes[before:]] == [
        "containerlib/c2/memory.max",
        "containerlib/c2/pids.max",
    ]


def test_unified_driver_enables_only_its_controllers(full: FakeCgroupfs) -> None:
    # On a host whose cgroup2 root is shared, the driver may be told to turn on fewer.
    driver = UnifiedDriver(root=str(full.base), controllers=("memory", "pids"))
    driver.create("containerlib/c1", CgroupLimits(pids=4))
    assert full.read("cgroup.subtree_control") == "memory pids\n"
    assert full.read("containerlib/cgroup.subtree_control") == "memory pids\n"
    with pytest.raises(OSError, match="'cpu'") as info:
        driver.create("containerlib/c2", CgroupLimits(cpu_shares=512))
    assert info.value.errno == errno.ENOTSUP
    assert full.cgroups() == ["containerlib", "containerlib/c1"]


def test_unified_root_without_controllers_takes_a_cgroup_without_limits(
    tmp_path: Path, fake_kernel: Activate
) -> None:
    # The cgroup2 mount of a hybrid host: no controllers, only the core files.
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"": "v2"}, v2_controllers=""))
    cg = UnifiedDriver(root=str(fake.base)).create("containerlib/c1", CgroupLimits())
    assert fake.writes == []
    assert cg.procs_files() == [str(fake.base / "containerlib" / "c1" / "cgroup.procs")]
    assert fake.read("containerlib/c1/cgroup.procs") == ""


def test_unified_absolute_path_is_below_the_root(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    # OCI cgroupsPath values are often written "/parent/name".
    cg = unified_driver.create("/containerlib/c1", CgroupLimits(pids=3))
    assert cg.procs_files() == [str(unified.base / "containerlib" / "c1" / "cgroup.procs")]
    assert ("containerlib/c1/pids.max", "3") in unified.writes


@pytest.mark.parametrize("path", ["", "/", "containerlib/../../etc", "./c1"])
def test_unified_path_outside_the_root_is_refused(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver, path: str
) -> None:
    with pytest.raises(ValueError, match="not a relative path"):
        unified_driver.create(path, CgroupLimits())
    with pytest.raises(ValueError, match="not a relative path"):
        unified_driver.open(path)
    assert unified.cgroups() == []


def test_unified_existing_leaf(unified: FakeCgroupfs, unified_driver: UnifiedDriver) -> None:
    unified.mkdir("containerlib/c1")
    unified.set("containerlib/c1/cgroup.procs", "77\n")
    with pytest.raises(FileExistsError) as info:
        unified_driver.create("containerlib/c1", CgroupLimits(pids=4))
    assert str(unified.base / "containerlib" / "c1") in str(info.value)
    # Someone else's cgroup: nothing written, killed or removed.
    assert unified.read("containerlib/c1/cgroup.procs") == "77\n"
    assert unified.cgroups() == ["containerlib", "containerlib/c1"]
    assert [p for p, _ in unified.writes if p.startswith("containerlib/c1/")] == []


# -- missing controllers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "limits"),
    [
        ("memory", CgroupLimits(memory=8 * MiB)),
        ("memory", CgroupLimits(memory_reservation=8 * MiB)),
        ("cpu", CgroupLimits(cpu_quota=50_000)),
        ("cpu", CgroupLimits(cpu_shares=512)),
        ("cpuset", CgroupLimits(cpuset_cpus="0")),
        ("io", CgroupLimits(blkio_weight=500)),
        ("io", CgroupLimits(read_bps=(DeviceValue(8, 0, MiB),))),
        ("hugetlb", CgroupLimits(hugetlb=(("2MB", 4 * MiB),))),
        ("pids", CgroupLimits(pids=4)),
    ],
)
def test_unified_missing_controller_is_named_and_nothing_is_made(
    tmp_path: Path, fake_kernel: Activate, missing: str, limits: CgroupLimits
) -> None:
    offered = " ".join(c for c in EVERY_CONTROLLER.split() if c != missing)
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"": "v2"}, v2_controllers=offered))
    with pytest.raises(OSError, match=f"'{missing}'") as info:
        UnifiedDriver(root=str(fake.base)).create("containerlib/c1", limits)
    assert info.value.errno == errno.ENOTSUP
    assert fake.cgroups() == []
    assert fake.writes == []


def test_unified_set_limits_names_a_controller_the_cgroup_lacks(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    cg = unified_driver.create("containerlib/c1", CgroupLimits())
    before = len(unified.writes)
    with pytest.raises(OSError, match="'cpu'") as info:
        cg.set_limits(CgroupLimits(pids=5, cpu_quota=50_000))
    assert info.value.errno == errno.ENOTSUP
    assert unified.writes[before:] == []  # checked before the first write


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        (CgroupLimits(net_cls_classid=0x100001), "net_cls_classid"),
        (CgroupLimits(net_prio_ifpriomap=(("eth0", 5),)), "net_prio_ifpriomap"),
    ],
)
def test_unified_net_cls_and_net_prio_do_not_exist_on_v2(
    full: FakeCgroupfs, full_driver: UnifiedDriver, limits: CgroupLimits, named: str
) -> None:
    with pytest.raises(OSError, match=named) as info:
        full_driver.create("containerlib/c1", attrs.evolve(limits, memory=MiB, pids=3))
    assert info.value.errno == errno.ENOTSUP
    assert full.cgroups() == []
    assert full.writes == []
    cg = full_driver.create("containerlib/c1", CgroupLimits())
    before = len(full.writes)
    with pytest.raises(OSError, match=named):
        cg.set_limits(limits)
    assert full.writes[before:] == []


def test_unified_device_rules_are_not_enforced_and_not_an_error(
    full: FakeCgroupfs, full_driver: UnifiedDriver
) -> None:
    # Every container's default limits carry device rules; v2 would need eBPF for them.
    assert full_driver.enforces_devices is False
    full_driver.create("containerlib/c1", CgroupLimits(pids=8, devices=DOCKER_DEVICE_RULES))
    assert leaf_writes(full) == [("pids.max", "8")]


# -- every limit, file by file -----------------------------------------------------------


def test_unified_every_limit_writes_its_file_in_order(
    full: FakeCgroupfs, full_driver: UnifiedDriver
) -> None:
    limits = CgroupLimits(
        memory=256 * MiB,
        memory_reservation=128 * MiB,
        memory_swap=512 * MiB,
        cpu_quota=50_000,
        cpu_period=200_000,
        cpu_shares=1024,
        cpuset_cpus="0-1,3",
        cpuset_mems="0",
        pids=64,
        blkio_weight=500,
        blkio_weight_device=(DeviceValue(8, 0, 10), DeviceValue(8, 16, 1000)),
        read_bps=(DeviceValue(8, 0, 10 * MiB),),
        write_bps=(DeviceValue(8, 0, 5 * MiB), DeviceValue(259, 0, MiB)),
        read_iops=(DeviceValue(8, 0, 1000),),
        write_iops=(DeviceValue(259, 0, 300),),
        hugetlb=(("2MB", 4 * MiB), ("1GB", -1)),
        devices=DOCKER_DEVICE_RULES,
    )
    full_driver.create("containerlib/c1", limits)
    assert leaf_writes(full) == [
        ("memory.max", str(256 * MiB)),
        ("memory.swap.max", str(256 * MiB)),
        ("memory.low", str(128 * MiB)),
        ("cpu.max", "50000 200000"),
        ("cpu.weight", "39"),  # runc's weight for the default 1024 shares
        ("cpuset.cpus", "0-1,3"),
        ("cpuset.mems", "0"),
        ("pids.max", "64"),
        ("io.weight", "default 4950"),  # blkio's 10..1000 onto io.weight's 1..10000
        ("io.weight", "8:0 1"),
        ("io.weight", "8:16 10000"),
        ("io.max", f"8:0 rbps={10 * MiB} wbps={5 * MiB} riops=1000"),
        ("io.max", f"259:0 wbps={MiB} wiops=300"),
        ("hugetlb.2MB.max", str(4 * MiB)),
        ("hugetlb.1GB.max", "max"),
    ]
    assert full.read("containerlib/c1/cpu.max") == "50000 200000"
    assert full.read("containerlib/c1/cpuset.cpus") == "0-1,3"


def test_unified_cgroup_made_without_limits_takes_them_later(
    full: FakeCgroupfs, full_driver: UnifiedDriver
) -> None:
    # A cgroup made ahead of time, before its container's limits are known.
    cg = full_driver.create("containerlib/c1", CgroupLimits())
    assert full.read("containerlib/cgroup.subtree_control") == EVERY_CONTROLLER + "\n"
    assert leaf_writes(full) == []
    cg.set_limits(
        CgroupLimits(memory=64 * MiB, cpu_quota=10_000, cpuset_cpus="1", pids=5, blkio_weight=10)
    )
    cg.set_limits(CgroupLimits(hugetlb=(("2MB", 2 * MiB),), write_iops=(DeviceValue(8, 0, 9),)))
    assert leaf_writes(full) == [
        ("memory.max", str(64 * MiB)),
        ("cpu.max", "10000 100000"),
        ("cpuset.cpus", "1"),
        ("pids.max", "5"),
        ("io.weight", "default 1"),
        ("io.max", "8:0 wiops=9"),
        ("hugetlb.2MB.max", str(2 * MiB)),
    ]


@pytest.mark.parametrize(
    ("memory", "swap", "written"),
    [
        (64 * MiB, 64 * MiB, "0"),  # what Container.limit(mem="64M") asks: no swap
        (64 * MiB, 96 * MiB, str(32 * MiB)),
        (64 * MiB, -1, "max"),
        (None, -1, "max"),
    ],
)
def test_unified_swap_is_counted_apart_from_memory(
    unified: FakeCgroupfs,
    unified_driver: UnifiedDriver,
    memory: int | None,
    swap: int,
    written: str,
) -> None:
    unified_driver.create("c1", CgroupLimits(memory=memory, memory_swap=swap))
    assert ("c1/memory.swap.max", written) in unified.writes
    assert unified.read("c1/memory.swap.max") == written


def test_unified_swap_alone_counts_from_the_memory_limit_in_place(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    cg = unified_driver.create("c1", CgroupLimits(memory=64 * MiB))
    cg.set_limits(CgroupLimits(memory_swap=100 * MiB))
    assert leaf_writes(unified, "c1") == [
        ("memory.max", str(64 * MiB)),
        ("memory.swap.max", str(36 * MiB)),
    ]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (CgroupLimits(memory=64 * MiB, memory_swap=32 * MiB), "less than memory"),
        (CgroupLimits(memory_swap=32 * MiB), "needs a memory limit"),  # memory.max is max
    ],
)
def test_unified_impossible_swap_is_refused_before_any_write(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver, limits: CgroupLimits, message: str
) -> None:
    cg = unified_driver.create("c1", CgroupLimits())
    before = len(unified.writes)
    with pytest.raises(OSError, match=message) as info:
        cg.set_limits(limits)
    assert info.value.errno == errno.EINVAL
    assert unified.writes[before:] == []
    assert unified.read("c1/memory.max") == "max\n"


def test_unified_host_without_swap_accounting(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"": "v2"}, swap=False))
    # What Container.limit(mem="64M") asks for: memory and memory+swap equal.
    UnifiedDriver(root=str(fake.base)).create(
        "containerlib/c1", CgroupLimits(memory=64 * MiB, memory_swap=64 * MiB)
    )
    assert leaf_writes(fake) == [("memory.max", str(64 * MiB))]


@pytest.mark.parametrize(
    ("before", "limits", "after"),
    [
        ("max 100000\n", CgroupLimits(cpu_quota=50_000), "50000 100000"),
        ("max 250000\n", CgroupLimits(cpu_quota=50_000), "50000 250000"),
        ("20000 100000\n", CgroupLimits(cpu_period=50_000), "20000 50000"),
        ("max 100000\n", CgroupLimits(cpu_period=50_000), "max 50000"),
        ("20000 100000\n", CgroupLimits(cpu_quota=-1), "max 100000"),
        ("20000 100000\n", CgroupLimits(cpu_quota=1000, cpu_period=10_000), "1000 10000"),
    ],
)
def test_unified_cpu_max_keeps_the_field_not_asked_for(
    full: FakeCgroupfs, full_driver: UnifiedDriver, before: str, limits: CgroupLimits, after: str
) -> None:
    cg = full_driver.create("containerlib/c1", CgroupLimits())
    full.set("containerlib/c1/cpu.max", before)
    cg.set_limits(limits)
    assert leaf_writes(full) == [("cpu.max", after)]


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (512, 20), (1024, 39), (262144, 10000), (0, 1), (1 << 20, 10000)],
)
def test_unified_cpu_shares_become_a_weight(
    full: FakeCgroupfs, full_driver: UnifiedDriver, shares: int, weight: int
) -> None:
    # Out of range, shares are clamped to 2..262144 as v1 does.
    full_driver.create("containerlib/c1", CgroupLimits(cpu_shares=shares))
    assert leaf_writes(full) == [("cpu.weight", str(weight))]


def test_unified_no_limit_is_max(full: FakeCgroupfs, full_driver: UnifiedDriver) -> None:
    full_driver.create(
        "containerlib/c1", CgroupLimits(pids=-1, cpu_quota=-1, memory_swap=-1, memory=MiB)
    )
    assert leaf_writes(full) == [
        ("memory.max", str(MiB)),
        ("memory.swap.max", "max"),
        ("cpu.max", "max 100000"),
        ("pids.max", "max"),
    ]


def test_unified_io_weights_go_to_bfq_without_io_cost(
    tmp_path: Path, fake_kernel: Activate
) -> None:
    fake = fake_kernel(
        FakeCgroupfs(
            tmp_path / "cg",
            {"": "v2"},
            v2_controllers=EVERY_CONTROLLER,
            io_weights=("io.bfq.weight",),
        )
    )
    UnifiedDriver(root=str(fake.base)).create(
        "containerlib/c1",
        CgroupLimits(blkio_weight=500, blkio_weight_device=(DeviceValue(8, 0, 300),)),
    )
    # BFQ weights are on blkio's own scale.
    assert leaf_writes(fake) == [("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 300")]


def test_unified_io_weights_prefer_io_weight(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(
        FakeCgroupfs(
            tmp_path / "cg",
            {"": "v2"},
            v2_controllers=EVERY_CONTROLLER,
            io_weights=("io.weight", "io.bfq.weight"),
        )
    )
    UnifiedDriver(root=str(fake.base)).create("containerlib/c1", CgroupLimits(blkio_weight=1000))
    assert leaf_writes(fake) == [("io.weight", "default 10000")]


def test_unified_io_weight_without_weight_files(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(
        FakeCgroupfs(tmp_path / "cg", {"": "v2"}, v2_controllers=EVERY_CONTROLLER, io_weights=())
    )
    driver = UnifiedDriver(root=str(fake.base))
    with pytest.raises(OSError, match=r"io\.weight or io\.bfq\.weight") as info:
        driver.create("containerlib/c1", CgroupLimits(blkio_weight=500, pids=3))
    assert info.value.errno == errno.ENOTSUP
    assert fake.cgroups() == []
    # Throttles need no weight file.
    driver.create("containerlib/c1", CgroupLimits(read_iops=(DeviceValue(8, 0, 50),)))
    assert leaf_writes(fake) == [("io.max", "8:0 riops=50")]


def test_unified_unknown_hugetlb_page_size(full: FakeCgroupfs, full_driver: UnifiedDriver) -> None:
    with pytest.raises(OSError, match="'64KB'") as info:
        full_driver.create("containerlib/c1", CgroupLimits(pids=4, hugetlb=(("64KB", MiB),)))
    assert info.value.errno == errno.ENOTSUP
    assert full.cgroups() == []
    assert leaf_writes(full) == []


# -- failures ----------------------------------------------------------------------------


def test_unified_refused_value_is_named_and_nothing_is_left(
    full: FakeCgroupfs, full_driver: UnifiedDriver
) -> None:
    full.mkdir("containerlib/other")
    full.refuse("cpu.weight")
    with pytest.raises(OSError, match=r"write '39' to .*/containerlib/a/c1/cpu\.weight"):
        full_driver.create("containerlib/a/c1", CgroupLimits(pids=5, cpu_shares=1024))
    # The parent made for it is gone too; the one that was there stays.
    assert full.cgroups() == ["containerlib", "containerlib/other"]


def test_unified_failed_limit_removes_the_cgroup(tmp_path: Path) -> None:
    # A plain tree is not cgroupfs: the new leaf has no cgroup.controllers.
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory pids\n")
    with pytest.raises(OSError, match=r"c1/cgroup\.controllers"):
        UnifiedDriver(root=str(tmp_path)).create("c1", CgroupLimits(memory=64 * MiB))
    assert not (tmp_path / "c1").exists()


def test_unified_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere/cgroup\.controllers"):
        UnifiedDriver(root=str(tmp_path / "nowhere")).create("containerlib/c1", CgroupLimits())
    assert not (tmp_path / "nowhere").exists()


# -- open --------------------------------------------------------------------------------


def test_unified_open_an_existing_cgroup(full: FakeCgroupfs, full_driver: UnifiedDriver) -> None:
    made = full_driver.create("containerlib/c1", CgroupLimits(pids=4))
    cg = full_driver.open("containerlib/c1")
    assert cg.path == "containerlib/c1"
    assert cg.procs_files() == made.procs_files()
    full.set("containerlib/c1/pids.current", "3\n")
    assert cg.stats().pids_current == 3
    cg.set_limits(CgroupLimits(pids=8))
    assert full.read("containerlib/c1/pids.max") == "8"


def test_unified_open_a_missing_cgroup(full: FakeCgroupfs, full_driver: UnifiedDriver) -> None:
    full_driver.create("containerlib/c1", CgroupLimits()).destroy()
    with pytest.raises(FileNotFoundError, match="containerlib/c1") as info:
        full_driver.open("containerlib/c1")
    assert info.value.errno == errno.ENOENT


# -- stats -------------------------------------------------------------------------------


def test_unified_stats_of_a_new_cgroup(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    cg = unified_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB))
    assert cg.stats() == CgroupStats(
        memory_current=0,
        memory_peak=0,
        cpu_usage_usec=0,
        cpu_user_usec=0,
        cpu_system_usec=0,
        pids_current=0,
        io_read_bytes=None,  # no io controller on this host
        io_write_bytes=None,
        oom_kills=0,
        cpu_pressure=ZERO_PRESSURE,
        memory_pressure=ZERO_PRESSURE,
        io_pressure=ZERO_PRESSURE,
    )


def test_unified_stats_read_every_figure(full: FakeCgroupfs, full_driver: UnifiedDriver) -> None:
    cg = full_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB))
    c1 = "containerlib/c1/"
    full.set(c1 + "memory.current", "7340032\n")
    full.set(c1 + "memory.peak", "9437184\n")
    full.set(
        c1 + "cpu.stat",
        "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 10\n"
        "nr_throttled 2\nthrottled_usec 5000\nnr_bursts 0\nburst_usec 0\n",
    )
    full.set(c1 + "pids.current", "3\n")
    full.set(
        c1 + "io.stat",
        "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
        "259:0 rbytes=1048576 wbytes=0 rios=256 wios=0 dbytes=512 dios=1\n",
    )
    full.set(c1 + "memory.events", "low 0\nhigh 4\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n")
    full.set(
        c1 + "cpu.pressure",
        "some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\n"
        "full avg10=0.20 avg60=0.05 avg300=0.01 total=4567\n",
    )
    full.set(c1 + "memory.pressure", "some avg10=3.00 avg60=2.00 avg300=1.00 total=999\n")
    assert cg.stats() == CgroupStats(
        memory_current=7340032,
        memory_peak=9437184,
        cpu_usage_usec=123456,
        cpu_user_usec=100000,
        cpu_system_usec=23456,
        pids_current=3,
        io_read_bytes=4096 + 1048576,
        io_write_bytes=8192,
        oom_kills=2,
        cpu_pressure=Pressure(
            some_avg10=1.5,
            some_avg60=0.75,
            some_avg300=0.1,
            some_total_usec=123456,
            full_avg10=0.2,
            full_avg60=0.05,
            full_avg300=0.01,
            full_total_usec=4567,
        ),
        memory_pressure=Pressure(
            some_avg10=3.0, some_avg60=2.0, some_avg300=1.0, some_total_usec=999
        ),
        io_pressure=ZERO_PRESSURE,
    )


def test_unified_stats_on_a_root_without_controllers(tmp_path: Path, fake_kernel: Activate) -> None:
    # The cgroup2 mount of a hybrid host: cpu.stat and pressure only.
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"": "v2"}, v2_controllers=""))
    cg = UnifiedDriver(root=str(fake.base)).create("containerlib/c1", CgroupLimits())
    fake.set("containerlib/c1/cpu.stat", "usage_usec 42\nuser_usec 40\nsystem_usec 2\n")
    assert cg.stats() == CgroupStats(
        cpu_usage_usec=42,
        cpu_user_usec=40,
        cpu_system_usec=2,
        cpu_pressure=ZERO_PRESSURE,
        memory_pressure=ZERO_PRESSURE,
        io_pressure=ZERO_PRESSURE,
    )


def test_unified_stats_without_psi_or_memory_controller(
    tmp_path: Path, fake_kernel: Activate
) -> None:
    fake = fake_kernel(
        FakeCgroupfs(tmp_path / "cg", {"": "v2"}, v2_controllers="cpu io pids", psi=False)
    )
    cg = UnifiedDriver(root=str(fake.base)).create("containerlib/c1", CgroupLimits(pids=4))
    assert not (fake.base / "containerlib" / "c1" / "memory.peak").exists()
    assert cg.stats() == CgroupStats(
        cpu_usage_usec=0,
        cpu_user_usec=0,
        cpu_system_usec=0,
        pids_current=0,
        io_read_bytes=0,  # io.stat is there, and empty: no I/O yet
        io_write_bytes=0,
    )


def test_unified_stats_with_psi_turned_off(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    # Kernels built with CONFIG_PSI_DEFAULT_DISABLED show the files but refuse to read them.
    cg = unified_driver.create("containerlib/c1", CgroupLimits())
    for name in ("cpu.pressure", "memory.pressure", "io.pressure"):
        unified.fail_reads(name, errno.EOPNOTSUPP)
    stats = cg.stats()
    assert (stats.cpu_pressure, stats.memory_pressure, stats.io_pressure) == (None, None, None)
    assert stats.memory_current == 0
    # Any other failure is not taken for a missing figure.
    unified.fail_reads("memory.current", errno.EIO)
    with pytest.raises(OSError, match=r"memory\.current") as info:
        cg.stats()
    assert info.value.errno == errno.EIO


def test_unified_stats_before_memory_peak_existed(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    # memory.peak came with Linux 5.19: a missing optional file is None, not an error.
    cg = unified_driver.create("containerlib/c1", CgroupLimits())
    unified.set("containerlib/c1/memory.current", "4096\n")
    os.unlink(unified.base / "containerlib" / "c1" / "memory.peak")
    stats = cg.stats()
    assert (stats.memory_current, stats.memory_peak) == (4096, None)


# -- freeze, thaw, destroy ---------------------------------------------------------------


def test_unified_freeze_and_thaw(full: FakeCgroupfs, full_driver: UnifiedDriver) -> None:
    cg = full_driver.create("containerlib/c1", CgroupLimits())
    full.set("containerlib/c1/cgroup.procs", "1234\n")
    cg.freeze()
    assert full.read("containerlib/c1/cgroup.events").splitlines()[1] == "frozen 1"
    cg.thaw()
    assert full.read("containerlib/c1/cgroup.events").splitlines()[1] == "frozen 0"
    assert leaf_writes(full) == [("cgroup.freeze", "1"), ("cgroup.freeze", "0")]


def test_unified_freeze_waits_for_the_kernel(
    full: FakeCgroupfs, full_driver: UnifiedDriver
) -> None:
    cg = full_driver.create("containerlib/c1", CgroupLimits())
    full.freezer_stops = False
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="containerlib/c1"):
        cg.freeze(timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    # A half-frozen cgroup is let go again.
    assert leaf_writes(full) == [("cgroup.freeze", "1"), ("cgroup.freeze", "0")]


def test_unified_no_freezer(tmp_path: Path) -> None:
    # Kernels before 5.2 have no cgroup.freeze.
    (tmp_path / "c1").mkdir()
    cg = UnifiedDriver(root=str(tmp_path)).open("c1")
    for action in (cg.freeze, cg.thaw):
        with pytest.raises(OSError, match="freezer") as info:
            action()
        assert info.value.errno == errno.ENOTSUP


def test_unified_destroy_and_remove_parents(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    c1 = unified_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB))
    c2 = unified_driver.create("containerlib/c2", CgroupLimits(memory=64 * MiB))
    c1.destroy()
    unified_driver.remove_parents("containerlib/c1")
    assert unified.cgroups() == ["containerlib", "containerlib/c2"]
    c2.destroy()
    unified_driver.remove_parents("containerlib/c2")
    assert unified.cgroups() == []


def test_unified_destroy_of_an_empty_cgroup_kills_nothing(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    unified_driver.create("containerlib/c1", CgroupLimits()).destroy()
    assert unified.cgroups() == ["containerlib"]
    assert leaf_writes(unified) == []


@pytest.mark.parametrize("frozen", [False, True])
def test_unified_destroy_kills_the_processes_inside(
    full: FakeCgroupfs, full_driver: UnifiedDriver, frozen: bool
) -> None:
    cg = full_driver.create("containerlib/c1", CgroupLimits())
    full.set("containerlib/c1/cgroup.procs", "1234\n1235\n")
    if frozen:
        cg.freeze()
    cg.destroy()
    assert full.cgroups() == ["containerlib"]
    # cgroup.kill ends frozen processes too: no thaw first.
    assert leaf_writes(full)[-1:] == [("cgroup.kill", "1")]
    assert ("containerlib/c1/cgroup.freeze", "0") not in full.writes


def test_unified_destroy_removes_sub_cgroups(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    cg = unified_driver.create("containerlib/c1", CgroupLimits())
    unified.mkdir("containerlib/c1/a/b")
    unified.set("containerlib/c1/a/b/cgroup.procs", "99\n")
    cg.destroy()
    assert unified.cgroups() == ["containerlib"]
    assert ("containerlib/c1/cgroup.kill", "1") in unified.writes


def test_unified_destroy_without_cgroup_kill(
    full: FakeCgroupfs, full_driver: UnifiedDriver
) -> None:
    # Kernels before 5.14 have no cgroup.kill: each process gets SIGKILL.
    cg = full_driver.create("containerlib/c1", CgroupLimits())
    with subprocess.Popen(["sleep", "60"]) as child:
        try:
            full.set("containerlib/c1/cgroup.procs", f"{child.pid}\n")
            os.unlink(full.base / "containerlib" / "c1" / "cgroup.kill")
            with pytest.raises(OSError, match="containerlib/c1"):
                # The fake cannot see the process die, so the cgroup stays busy.
                cg.destroy()
            assert child.wait(timeout=5) == -9
        finally:
            child.kill()


# -- round trip --------------------------------------------------------------------------


def _parse_max(text: str) -> int:
    return -1 if text.strip() == "max" else int(text)


_limits = st.builds(
    CgroupLimits,
    memory=st.none() | st.integers(4096, 1 << 40),
    pids=st.none() | st.just(-1) | st.integers(1, 4_194_304),
    cpu_quota=st.none() | st.just(-1) | st.integers(1000, 10_000_000),
    cpu_period=st.none() | st.integers(1000, 1_000_000),
    cpu_shares=st.none() | st.integers(2, 262_144),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_limits, min_size=1, max_size=4))
def test_unified_limits_read_back_as_set(
    full: FakeCgroupfs, full_driver: UnifiedDriver, steps: list[CgroupLimits]
) -> None:
    # One cgroup for every example, back to its defaults at the start of each.
    c1 = "containerlib/c1/"
    if not (full.base / "containerlib" / "c1").exists():
        full_driver.create("containerlib/c1", CgroupLimits())
    defaults = {"memory.max": "max\n", "pids.max": "max\n", "cpu.max": "max 100000\n"}
    for name, text in {**defaults, "cpu.weight": "100\n"}.items():
        full.set(c1 + name, text)
    cg = full_driver.open("containerlib/c1")
    want = {"memory": -1, "pids": -1, "quota": -1, "period": 100_000, "weight": 100}
    for limits in steps:
        cg.set_limits(limits)
        # What each step asked for replaces what was there; the rest stays.
        for key, value in [
            ("memory", limits.memory),
            ("pids", limits.pids),
            ("quota", limits.cpu_quota),
            ("period", limits.cpu_period),
        ]:
            if value is not None:
                want[key] = value
        if limits.cpu_shares is not None:
            want["weight"] = 1 + (limits.cpu_shares - 2) * 9999 // 262142
        quota, period = full.read(c1 + "cpu.max").split()
        assert {
            "memory": _parse_max(full.read(c1 + "memory.max")),
            "pids": _parse_max(full.read(c1 + "pids.max")),
            "quota": _parse_max(quota),
            "period": int(period),
            "weight": int(full.read(c1 + "cpu.weight")),
        } == want
        assert 1 <= want["weight"] <= 10_000
