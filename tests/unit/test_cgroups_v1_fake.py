"""The v1 (hybrid and legacy) driver against fake cgroup file systems, and probe()."""

from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path

import attrs
import pytest

from containerlib.linux.cgroups import (
    CgroupLimits,
    CgroupStats,
    DeviceValue,
    HybridDriver,
    Pressure,
    UnifiedDriver,
    _base,
    probe,
)
from tests.unit.fakecg import Activate, FakeCgroupfs, MiB


@pytest.fixture
def hybrid(tmp_path: Path, fake_kernel: Activate) -> FakeCgroupfs:
    """A hybrid host like the machines this project is built on."""
    fake = fake_kernel(
        FakeCgroupfs(
            tmp_path / "cgroup",
            {"memory": "memory", "pids": "pids", "devices": "devices", "unified": "unified"},
        )
    )
    return fake


@pytest.fixture
def hybrid_driver(hybrid: FakeCgroupfs) -> HybridDriver:
    return HybridDriver(v1_root=str(hybrid.base), unified_root=str(hybrid.base / "unified"))


HIERARCHIES = ("memory", "pids", "devices", "unified")
DOCKER_DEVICE_RULES = (
    (False, "a"),
    (True, "c *:* m"),
    (True, "b *:* m"),
    (True, "c 1:3 rwm"),
    (True, "c 1:5 rwm"),
    (True, "c 136:* rwm"),
)


# -- the fake itself ---------------------------------------------------------------------


def test_fake_behaves_like_cgroupfs(hybrid: FakeCgroupfs) -> None:
    # Without these properties the driver tests below would prove nothing.
    leaf = hybrid.base / "memory" / "x"
    leaf.mkdir()
    assert (leaf / "memory.limit_in_bytes").read_text().startswith("9223372036854771712")
    fd = os.open(leaf / "memory.limit_in_bytes", os.O_WRONLY)
    os.write(fd, b"1048576")
    os.close(fd)
    assert hybrid.writes == [("memory/x/memory.limit_in_bytes", "1048576")]
    assert not (leaf / "no.such.file").exists()
    leaf.rmdir()
    assert not leaf.exists()


# -- HybridDriver -------------------------------------------------------------------------


def test_hybrid_create_makes_the_cgroup_in_every_hierarchy(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("containerlib/c1", CgroupLimits())
    assert cg.path == "containerlib/c1"
    for name in HIERARCHIES:
        assert (hybrid.base / name / "containerlib" / "c1").is_dir()
    assert cg.procs_files() == [
        str(hybrid.base / name / "containerlib" / "c1" / "cgroup.procs") for name in HIERARCHIES
    ]
    assert hybrid.writes == []  # no limits asked, none written


def test_hybrid_create_writes_the_limits_in_order(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    limits = CgroupLimits(
        memory=64 * MiB, memory_swap=128 * MiB, pids=32, devices=DOCKER_DEVICE_RULES
    )
    hybrid_driver.create("containerlib/c1", limits)
    assert hybrid.writes == [
        ("memory/containerlib/c1/memory.limit_in_bytes", str(64 * MiB)),
        ("memory/containerlib/c1/memory.memsw.limit_in_bytes", str(128 * MiB)),
        ("pids/containerlib/c1/pids.max", "32"),
        ("devices/containerlib/c1/devices.deny", "a"),
        ("devices/containerlib/c1/devices.allow", "c *:* m"),
        ("devices/containerlib/c1/devices.allow", "b *:* m"),
        ("devices/containerlib/c1/devices.allow", "c 1:3 rwm"),
        ("devices/containerlib/c1/devices.allow", "c 1:5 rwm"),
        ("devices/containerlib/c1/devices.allow", "c 136:* rwm"),
    ]
    assert hybrid.read("memory/containerlib/c1/memory.limit_in_bytes") == str(64 * MiB)
    assert hybrid.read("pids/containerlib/c1/pids.max") == "32"


def test_hybrid_cgroup_made_without_limits_takes_them_later(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    # A cgroup made ahead of time, before its container's limits are known.
    cg = hybrid_driver.create("containerlib/c1", CgroupLimits())
    assert hybrid.writes == []
    cg.set_limits(CgroupLimits(memory=64 * MiB, pids=8, devices=DOCKER_DEVICE_RULES[:2]))
    assert hybrid.writes == [
        ("memory/containerlib/c1/memory.limit_in_bytes", str(64 * MiB)),
        ("pids/containerlib/c1/pids.max", "8"),
        ("devices/containerlib/c1/devices.deny", "a"),
        ("devices/containerlib/c1/devices.allow", "c *:* m"),
    ]


def test_hybrid_host_without_swap_accounting_skips_memsw(
    tmp_path: Path, fake_kernel: Activate
) -> None:
    fake = fake_kernel(
        FakeCgroupfs(
            tmp_path / "cg", {"memory": "memory", "pids": "pids", "devices": "devices"}, swap=False
        )
    )
    driver = HybridDriver(v1_root=str(fake.base))
    driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB, memory_swap=64 * MiB))
    assert fake.writes == [("memory/containerlib/c1/memory.limit_in_bytes", str(64 * MiB))]


def test_hybrid_stats(hybrid: FakeCgroupfs, hybrid_driver: HybridDriver) -> None:
    cg = hybrid_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB))
    # A new cgroup: zeros; no blkio hierarchy here (pressure: see below).
    assert attrs.evolve(
        cg.stats(), cpu_pressure=None, memory_pressure=None, io_pressure=None
    ) == CgroupStats(
        memory_current=0,
        memory_peak=0,
        cpu_usage_usec=0,
        cpu_user_usec=0,
        cpu_system_usec=0,
        pids_current=0,
        oom_kills=0,
    )
    hybrid.set("memory/containerlib/c1/memory.max_usage_in_bytes", "52428800\n")
    hybrid.set(
        "memory/containerlib/c1/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    )
    stats = cg.stats()
    assert (stats.memory_peak, stats.oom_kills) == (52428800, 3)


def test_hybrid_stats_on_a_kernel_without_oom_kill_counter(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("containerlib/c1", CgroupLimits())
    hybrid.set("memory/containerlib/c1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")
    hybrid.set("memory/containerlib/c1/memory.max_usage_in_bytes", "4096\n")
    stats = cg.stats()
    assert (stats.memory_peak, stats.oom_kills) == (4096, 0)


def test_hybrid_destroy_removes_the_leaf_everywhere(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB, pids=8))
    cg.destroy()
    for name in HIERARCHIES:
        assert not (hybrid.base / name / "containerlib" / "c1").exists()
        assert (hybrid.base / name / "cgroup.procs").is_file()  # the hierarchy root stays


def test_hybrid_destroy_removes_sub_cgroups_the_container_made(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("containerlib/c1", CgroupLimits())
    hybrid.mkdir("memory/containerlib/c1/inner/deeper")
    hybrid.mkdir("unified/containerlib/c1/inner")
    cg.destroy()
    assert hybrid.cgroups() == sorted([f"{name}/containerlib" for name in HIERARCHIES])
    # The cgroup2 side is killed in one go before the directories go.
    assert ("unified/containerlib/c1/cgroup.kill", "1") in hybrid.writes


def test_hybrid_parents_stay_until_the_last_container_leaves(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    c1 = hybrid_driver.create("containerlib/c1", CgroupLimits())
    c2 = hybrid_driver.create("containerlib/c2", CgroupLimits())
    c1.destroy()
    hybrid_driver.remove_parents("containerlib/c1")
    assert hybrid.cgroups() == sorted(
        p for name in HIERARCHIES for p in (f"{name}/containerlib", f"{name}/containerlib/c2")
    )
    c2.destroy()
    hybrid_driver.remove_parents("containerlib/c2")
    assert hybrid.cgroups() == []


def test_hybrid_nested_containerlib_parents_are_removed(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("containerlib-ci/job7/c1", CgroupLimits())
    cg.destroy()
    hybrid_driver.remove_parents("containerlib-ci/job7/c1")
    assert hybrid.cgroups() == []


def test_hybrid_parent_that_is_not_containerlibs_stays(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("user.slice/c1", CgroupLimits())
    cg.destroy()
    hybrid_driver.remove_parents("user.slice/c1")
    assert hybrid.cgroups() == sorted([f"{name}/user.slice" for name in HIERARCHIES])


def test_a_containerlib_parent_inside_a_delegated_subtree_goes_but_not_the_subtree(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("user.slice/user@1000.service/containerlib/c1", CgroupLimits())
    cg.destroy()
    hybrid_driver.remove_parents("user.slice/user@1000.service/containerlib/c1")
    assert hybrid.cgroups() == sorted(
        p
        for name in HIERARCHIES
        for p in (f"{name}/user.slice", f"{name}/user.slice/user@1000.service")
    )


@pytest.mark.parametrize("where", ["memory", "pids", "devices", "unified"])
def test_hybrid_existing_leaf_is_refused_and_left_alone(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver, where: str
) -> None:
    hybrid.mkdir(f"{where}/containerlib/c1")
    with pytest.raises(FileExistsError) as info:
        hybrid_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB))
    assert info.value.errno == errno.EEXIST
    assert str(hybrid.base / where / "containerlib" / "c1") in str(info.value)
    # The other container's cgroup is untouched, and no leaf of ours is left anywhere.
    assert (hybrid.base / where / "containerlib" / "c1" / "cgroup.procs").is_file()
    leaves = [c for c in hybrid.cgroups() if c.endswith("/c1")]
    assert leaves == [f"{where}/containerlib/c1"]
    assert hybrid.writes == []


def test_hybrid_missing_pids_controller(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"memory": "memory", "devices": "devices"}))
    driver = HybridDriver(v1_root=str(fake.base), controllers=("memory", "devices"))
    with pytest.raises(OSError, match="pids") as info:
        driver.create("containerlib/c1", CgroupLimits(pids=10))
    assert info.value.errno == errno.ENOTSUP
    assert not any(c.endswith("/c1") for c in fake.cgroups())


def test_hybrid_legacy_host_has_no_cgroup2_side(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(
        FakeCgroupfs(tmp_path / "cg", {"memory": "memory", "pids": "pids", "devices": "devices"})
    )
    cg = HybridDriver(v1_root=str(fake.base)).create("containerlib/c1", CgroupLimits())
    assert cg.procs_files() == [
        str(fake.base / name / "containerlib" / "c1" / "cgroup.procs")
        for name in ("memory", "pids", "devices")
    ]


# -- every controller: a host with all of them ---------------------------------------------

ALL_V1 = (
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
C1 = "containerlib/c1"
#: pids above any pid_max (2**22): a stray os.kill of one can reach no real process.
FAKE_PIDS = (5_000_001, 5_000_002, 5_000_003)


def _full_fake(base: Path, fake_kernel: Activate, *, unified: bool = True) -> FakeCgroupfs:
    kinds = {name: name for name in ALL_V1}
    if unified:
        kinds["unified"] = "unified"
    fake = fake_kernel(FakeCgroupfs(base, kinds))
    # The root cpuset has every CPU and memory node of the host.
    fake.set("cpuset/cpuset.cpus", "0-3\n")
    fake.set("cpuset/cpuset.mems", "0\n")
    return fake


@pytest.fixture
def full(tmp_path: Path, fake_kernel: Activate) -> FakeCgroupfs:
    """A hybrid host with every v1 controller the driver knows."""
    return _full_fake(tmp_path / "cgroup", fake_kernel)


@pytest.fixture
def full_driver(full: FakeCgroupfs) -> HybridDriver:
    return HybridDriver(v1_root=str(full.base), unified_root=str(full.base / "unified"))


def _joined(fake: FakeCgroupfs, leaf: str = C1) -> list[str]:
    """The hierarchies ``leaf`` exists in."""
    return sorted(c.split("/")[0] for c in fake.cgroups() if c.endswith("/" + leaf))


def _without(fake: FakeCgroupfs, rel: str) -> None:
    """Remove a file the kernel would not show (an older kernel, other options)."""
    fake.read(rel)  # the cgroup gets its files first
    (fake.base / rel).unlink()


def _procs(fake: FakeCgroupfs, *hierarchies: str) -> list[str]:
    return [str(fake.base / h / C1 / "cgroup.procs") for h in hierarchies]


def test_driver_finds_the_hierarchies_under_v1_root(full_driver: HybridDriver) -> None:
    assert full_driver.controllers == ALL_V1
    assert full_driver.enforces_devices


def test_driver_finds_a_hierarchy_of_two_controllers_and_skips_links(tmp_path: Path) -> None:
    for name in ("memory", "cpu,cpuacct", "systemd"):
        (tmp_path / name).mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    driver = HybridDriver(v1_root=str(tmp_path))
    assert driver.controllers == ("memory", "cpu", "cpuacct")
    assert driver.mount("cpu") == driver.mount("cpuacct") == str(tmp_path / "cpu,cpuacct")
    assert not driver.enforces_devices


def test_new_cgroup_is_only_in_the_hierarchies_every_container_needs(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits(memory=64 * MiB))
    assert _joined(full) == ["blkio", "devices", "memory", "pids", "unified"]
    assert cg.procs_files() == _procs(full, "memory", "pids", "devices", "blkio", "unified")


def test_legacy_cgroup_is_also_in_the_freezer_and_cpuacct(
    tmp_path: Path, fake_kernel: Activate
) -> None:
    fake = _full_fake(tmp_path / "cg", fake_kernel, unified=False)
    cg = HybridDriver(v1_root=str(fake.base)).create(C1, CgroupLimits())
    assert cg.procs_files() == _procs(
        fake, "memory", "pids", "devices", "blkio", "freezer", "cpuacct"
    )


@pytest.mark.parametrize(
    ("limits", "also"),
    [
        (CgroupLimits(cpu_shares=512), ["cpu"]),
        (CgroupLimits(cpuset_cpus="1"), ["cpuset"]),
        (CgroupLimits(hugetlb=(("2MB", 4 * MiB),)), ["hugetlb"]),
        (CgroupLimits(net_cls_classid=0x100001), ["net_cls"]),
        (CgroupLimits(net_prio_ifpriomap=(("lo", 2),)), ["net_prio"]),
        (CgroupLimits(cpu_quota=1000, cpuset_mems="0"), ["cpu", "cpuset"]),
    ],
)
def test_a_limit_brings_its_hierarchy_in(
    full: FakeCgroupfs, full_driver: HybridDriver, limits: CgroupLimits, also: list[str]
) -> None:
    cg = full_driver.create(C1, limits)
    assert _joined(full) == sorted(["blkio", "devices", "memory", "pids", "unified", *also])
    assert cg.procs_files() == _procs(full, "memory", "pids", "devices", "blkio", *also, "unified")
    cg.destroy()
    assert _joined(full) == []


def test_every_limit_is_written_where_the_kernel_reads_it(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    limits = CgroupLimits(
        memory=64 * MiB,
        memory_reservation=32 * MiB,
        memory_swap=128 * MiB,
        cpu_quota=50000,
        cpu_period=100000,
        cpu_shares=512,
        cpuset_cpus="1-2",
        cpuset_mems="0",
        pids=-1,
        blkio_weight=300,
        blkio_weight_device=(DeviceValue(8, 0, 200), DeviceValue(8, 16, 50)),
        read_bps=(DeviceValue(8, 0, 1048576),),
        write_bps=(DeviceValue(8, 0, 2097152),),
        read_iops=(DeviceValue(8, 16, 100),),
        write_iops=(DeviceValue(8, 16, 200),),
        hugetlb=(("2MB", 4 * MiB), ("1GB", 1 << 30)),
        net_cls_classid=0x100001,
        net_prio_ifpriomap=(("lo", 2), ("eth0", 5)),
        devices=DOCKER_DEVICE_RULES[:2],
    )
    full_driver.create(C1, limits)
    at = f"/{C1}/"
    assert full.writes == [
        # Each new cpuset level gets its parent's CPUs and nodes before anything joins.
        ("cpuset/containerlib/cpuset.cpus", "0-3"),
        ("cpuset/containerlib/cpuset.mems", "0"),
        ("cpuset/containerlib/c1/cpuset.cpus", "0-3"),
        ("cpuset/containerlib/c1/cpuset.mems", "0"),
        (f"memory{at}memory.limit_in_bytes", str(64 * MiB)),
        (f"memory{at}memory.memsw.limit_in_bytes", str(128 * MiB)),
        (f"memory{at}memory.soft_limit_in_bytes", str(32 * MiB)),
        (f"cpu{at}cpu.cfs_period_us", "100000"),
        (f"cpu{at}cpu.cfs_quota_us", "50000"),
        (f"cpu{at}cpu.shares", "512"),
        (f"cpuset{at}cpuset.cpus", "1-2"),
        (f"cpuset{at}cpuset.mems", "0"),
        (f"pids{at}pids.max", "max"),
        (f"blkio{at}blkio.bfq.weight", "300"),
        (f"blkio{at}blkio.bfq.weight_device", "8:0 200"),
        (f"blkio{at}blkio.bfq.weight_device", "8:16 50"),
        (f"blkio{at}blkio.throttle.read_bps_device", "8:0 1048576"),
        (f"blkio{at}blkio.throttle.write_bps_device", "8:0 2097152"),
        (f"blkio{at}blkio.throttle.read_iops_device", "8:16 100"),
        (f"blkio{at}blkio.throttle.write_iops_device", "8:16 200"),
        (f"hugetlb{at}hugetlb.2MB.limit_in_bytes", str(4 * MiB)),
        (f"hugetlb{at}hugetlb.1GB.limit_in_bytes", str(1 << 30)),
        (f"net_cls{at}net_cls.classid", str(0x100001)),
        (f"net_prio{at}net_prio.ifpriomap", "lo 2"),
        (f"net_prio{at}net_prio.ifpriomap", "eth0 5"),
        (f"devices{at}devices.deny", "a"),
        (f"devices{at}devices.allow", "c *:* m"),
    ]


def test_blkio_weight_files_of_a_cfq_kernel_are_used_where_present(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    full.set(f"blkio/{C1}/blkio.weight", "500\n")
    full.set(f"blkio/{C1}/blkio.weight_device", "")
    cg.set_limits(CgroupLimits(blkio_weight=700, blkio_weight_device=(DeviceValue(8, 0, 20),)))
    assert full.writes == [
        (f"blkio/{C1}/blkio.weight", "700"),
        (f"blkio/{C1}/blkio.weight_device", "8:0 20"),
    ]


def test_blkio_weight_without_a_weight_file_is_not_supported(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    _without(full, f"blkio/{C1}/blkio.bfq.weight")
    with pytest.raises(OSError, match=re.escape("blkio.weight or blkio.bfq.weight")) as info:
        cg.set_limits(CgroupLimits(blkio_weight=700))
    assert info.value.errno == errno.ENOTSUP


@pytest.mark.parametrize(
    ("old", "new", "memsw_first"),
    [
        ((64 * MiB, 128 * MiB), (256 * MiB, 512 * MiB), True),  # raise above the old memsw
        ((64 * MiB, 128 * MiB), (96 * MiB, 512 * MiB), False),  # raise below it
        ((64 * MiB, 128 * MiB), (32 * MiB, 48 * MiB), False),  # lower both
        ((64 * MiB, 128 * MiB), (32 * MiB, -1), False),  # unlimited swap, lower memory
        ((64 * MiB, 128 * MiB), (-1, -1), True),  # no limit at all
    ],
)
def test_memory_and_swap_limits_keep_the_kernels_order(
    full: FakeCgroupfs,
    full_driver: HybridDriver,
    old: tuple[int, int],
    new: tuple[int, int],
    memsw_first: bool,
) -> None:
    # memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes (EINVAL).
    cg = full_driver.create(C1, CgroupLimits(memory=old[0], memory_swap=old[1]))
    start = len(full.writes)
    cg.set_limits(CgroupLimits(memory=new[0], memory_swap=new[1]))
    mem = (f"memory/{C1}/memory.limit_in_bytes", str(new[0]))
    memsw = (f"memory/{C1}/memory.memsw.limit_in_bytes", str(new[1]))
    assert full.writes[start:] == ([memsw, mem] if memsw_first else [mem, memsw])


def test_swap_limit_alone(full: FakeCgroupfs, full_driver: HybridDriver) -> None:
    full_driver.create(C1, CgroupLimits(memory_swap=-1))
    assert full.writes == [(f"memory/{C1}/memory.memsw.limit_in_bytes", "-1")]


def test_shorter_cpu_period_goes_in_after_the_quota(
    full: FakeCgroupfs, full_driver: HybridDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel refuses a period that makes the old quota too much for a parent's
    # bandwidth; with the new quota in, it takes it.
    cg = full_driver.create(C1, CgroupLimits(cpu_quota=50000, cpu_period=100000))
    refused: list[str] = []

    def kernel(path: str, value: str) -> None:
        if path.endswith("cpu.cfs_period_us") and not refused:
            refused.append(value)
            raise OSError(errno.EINVAL, f"write {value!r} to {path}: Invalid argument")
        _base._write(path, value)

    monkeypatch.setattr("containerlib.linux.cgroups.v1._write", kernel)
    start = len(full.writes)
    cg.set_limits(CgroupLimits(cpu_quota=5000, cpu_period=10000))
    assert refused == ["10000"]
    assert full.writes[start:] == [
        (f"cpu/{C1}/cpu.cfs_quota_us", "5000"),
        (f"cpu/{C1}/cpu.cfs_period_us", "10000"),
    ]
    # Refused for another reason, or with no quota to come, the error is the caller's.
    refused.clear()
    with pytest.raises(OSError, match="cfs_period_us") as info:
        cg.set_limits(CgroupLimits(cpu_period=10000))
    assert info.value.errno == errno.EINVAL


def test_cpuset_parent_found_without_cpus_is_filled(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    # Another process made containerlib/ and has yet to give it CPUs: nothing could join.
    full.mkdir("cpuset/containerlib")
    full_driver.create(C1, CgroupLimits(cpuset_cpus="3"))
    assert full.read("cpuset/containerlib/cpuset.cpus") == "0-3"
    assert full.read(f"cpuset/{C1}/cpuset.cpus") == "3"


def test_cpuset_parent_with_cpus_is_left_as_it_is(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    full.mkdir("cpuset/containerlib")
    full.set("cpuset/containerlib/cpuset.cpus", "2-3\n")
    full.set("cpuset/containerlib/cpuset.mems", "0\n")
    full_driver.create(C1, CgroupLimits(cpuset_cpus="3"))
    assert [w for w in full.writes if w[0].startswith("cpuset/containerlib/cpuset")] == []
    assert full.read(f"cpuset/{C1}/cpuset.cpus") == "3"  # after "2-3", its parent's


@pytest.mark.parametrize(
    ("limits", "controller"),
    [
        (CgroupLimits(hugetlb=(("2MB", MiB),)), "hugetlb"),
        (CgroupLimits(net_cls_classid=1), "net_cls"),
        (CgroupLimits(net_prio_ifpriomap=(("lo", 1),)), "net_prio"),
        (CgroupLimits(cpu_shares=2), "cpu"),
        (CgroupLimits(cpuset_cpus="0"), "cpuset"),
        (CgroupLimits(read_iops=(DeviceValue(8, 0, 1),)), "blkio"),
    ],
)
def test_limit_of_a_controller_the_host_lacks_is_refused_before_anything(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver, limits: CgroupLimits, controller: str
) -> None:
    with pytest.raises(OSError, match=f"v1 {controller} controller") as info:
        hybrid_driver.create(C1, attrs.evolve(limits, memory=64 * MiB))
    assert info.value.errno == errno.ENOTSUP
    assert hybrid.cgroups() == []
    assert hybrid.writes == []
    # The same on a live cgroup: nothing written.
    cg = hybrid_driver.create(C1, CgroupLimits())
    with pytest.raises(OSError, match=controller):
        cg.set_limits(attrs.evolve(limits, pids=5))
    assert hybrid.writes == []


@pytest.mark.parametrize("where", ["cpu", "cpuset", "hugetlb"])
def test_existing_leaf_in_a_hierarchy_joined_later_is_refused(
    full: FakeCgroupfs, full_driver: HybridDriver, where: str
) -> None:
    full.mkdir(f"{where}/{C1}")
    with pytest.raises(FileExistsError, match=str(full.base / where / C1)):
        full_driver.create(C1, CgroupLimits())
    assert _joined(full) == [where]


# -- limits on a live cgroup ----------------------------------------------------------------


def test_live_limit_joins_the_hierarchy_and_moves_every_process(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits(memory=64 * MiB))
    # Two processes in the cgroup, one more in a sub-cgroup its container made.
    full.set(f"memory/{C1}/cgroup.procs", f"{FAKE_PIDS[0]}\n{FAKE_PIDS[1]}\n")
    full.mkdir(f"memory/{C1}/inner")
    full.set(f"memory/{C1}/inner/cgroup.procs", f"{FAKE_PIDS[2]}\n")
    start = len(full.writes)
    cg.set_limits(CgroupLimits(cpu_quota=50000))
    writes = full.writes[start:]
    assert writes[0] == (f"cpu/{C1}/cpu.cfs_quota_us", "50000")  # limited before joining
    assert sorted(writes[1:]) == [(f"cpu/{C1}/cgroup.procs", str(p)) for p in FAKE_PIDS]
    assert str(full.base / "cpu" / C1 / "cgroup.procs") in cg.procs_files()
    # A second cpu limit needs no new directory and moves nothing.
    start = len(full.writes)
    cg.set_limits(CgroupLimits(cpu_shares=100))
    assert full.writes[start:] == [(f"cpu/{C1}/cpu.shares", "100")]
    for rel in (f"memory/{C1}", f"memory/{C1}/inner", f"cpu/{C1}"):
        full.set(f"{rel}/cgroup.procs", "")  # they end before the destroy


def test_live_cpuset_is_filled_before_the_processes_move(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    full.set(f"memory/{C1}/cgroup.procs", f"{FAKE_PIDS[0]}\n")
    cg.set_limits(CgroupLimits(cpuset_cpus="2"))
    assert full.writes[-3:] == [
        (f"cpuset/{C1}/cpuset.mems", "0"),
        (f"cpuset/{C1}/cpuset.cpus", "2"),
        (f"cpuset/{C1}/cgroup.procs", str(FAKE_PIDS[0])),
    ]
    for rel in (f"memory/{C1}", f"cpuset/{C1}"):
        full.set(f"{rel}/cgroup.procs", "")


def test_live_limit_the_kernel_refuses_leaves_no_new_hierarchy(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    (full.base / "hugetlb").mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match=r"hugetlb\.3MB\.limit_in_bytes"):
        cg.set_limits(CgroupLimits(hugetlb=(("3MB", MiB),)))
    assert "hugetlb" not in _joined(full)
    assert len(cg.procs_files()) == 5


# -- open() -------------------------------------------------------------------------------


def test_open_finds_every_hierarchy_of_the_cgroup(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    made = full_driver.create(C1, CgroupLimits(cpuset_cpus="0"))
    opened = full_driver.open(C1)
    assert opened.procs_files() == made.procs_files()


def test_limit_set_through_open_is_undone_by_the_creators_destroy(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    made = full_driver.create(C1, CgroupLimits())
    full_driver.open(C1).set_limits(CgroupLimits(cpu_quota=20000))
    assert "cpu" in _joined(full)
    made.destroy()
    assert _joined(full) == []


def test_open_a_cgroup_that_does_not_exist(full_driver: HybridDriver) -> None:
    with pytest.raises(FileNotFoundError, match="containerlib/gone") as info:
        full_driver.open("containerlib/gone")
    assert info.value.errno == errno.ENOENT


def test_cgroup_travels_between_processes(full: FakeCgroupfs, full_driver: HybridDriver) -> None:
    # The janitor makes cgroups ahead of time and sends them to the spawner.
    cg = full_driver.create(C1, CgroupLimits())
    copy = pickle.loads(pickle.dumps(cg))
    copy.set_limits(CgroupLimits(cpu_shares=256))
    assert copy.procs_files() == _procs(
        full, "memory", "pids", "devices", "blkio", "cpu", "unified"
    )


@pytest.mark.parametrize("path", ["", "/", "containerlib/../etc", "./x"])
def test_path_outside_the_hierarchy_is_refused(full_driver: HybridDriver, path: str) -> None:
    with pytest.raises(ValueError, match="not a relative path"):
        full_driver.create(path, CgroupLimits())


def test_absolute_path_is_taken_below_each_root(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create("/" + C1, CgroupLimits())
    assert cg.procs_files()[0] == str(full.base / "memory" / C1 / "cgroup.procs")


# -- stats --------------------------------------------------------------------------------

_PSI = (
    "some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\n"
    "full avg10=0.50 avg60=0.25 avg300=0.05 total=65432\n"
)
_PSI_CPU_OLD = "some avg10=2.00 avg60=1.00 avg300=0.50 total=999\n"  # before 5.13: no full


def test_stats_read_every_figure(full: FakeCgroupfs, full_driver: HybridDriver) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    full.set(f"memory/{C1}/memory.usage_in_bytes", "10485760\n")
    full.set(f"memory/{C1}/memory.max_usage_in_bytes", "20971520\n")
    full.set(f"memory/{C1}/memory.oom_control", "oom_kill_disable 0\nunder_oom 1\noom_kill 2\n")
    full.set(f"pids/{C1}/pids.current", "7\n")
    full.set(
        f"unified/{C1}/cpu.stat",
        "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 0\n",
    )
    full.set(
        f"blkio/{C1}/blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n"
        "8:0 Total 12288\n7:1 Read 100\n7:1 Write 0\n7:1 Total 100\nTotal 12388\n",
    )
    full.set(f"unified/{C1}/cpu.pressure", _PSI_CPU_OLD)
    full.set(f"unified/{C1}/memory.pressure", _PSI)
    full.set(f"unified/{C1}/io.pressure", _PSI)
    psi = Pressure(
        some_avg10=1.5,
        some_avg60=0.75,
        some_avg300=0.1,
        some_total_usec=123456,
        full_avg10=0.5,
        full_avg60=0.25,
        full_avg300=0.05,
        full_total_usec=65432,
    )
    assert cg.stats() == CgroupStats(
        memory_current=10 * MiB,
        memory_peak=20 * MiB,
        cpu_usage_usec=3000,
        cpu_user_usec=2000,
        cpu_system_usec=1000,
        pids_current=7,
        io_read_bytes=4196,
        io_write_bytes=8192,
        oom_kills=2,
        cpu_pressure=Pressure(some_avg10=2.0, some_avg60=1.0, some_avg300=0.5, some_total_usec=999),
        memory_pressure=psi,
        io_pressure=psi,
    )


def test_stats_io_from_the_non_recursive_file(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    full.set(f"blkio/{C1}/blkio.throttle.io_service_bytes", "8:0 Read 1\n8:0 Write 2\n")
    _without(full, f"blkio/{C1}/blkio.throttle.io_service_bytes_recursive")
    stats = cg.stats()
    assert (stats.io_read_bytes, stats.io_write_bytes) == (1, 2)


def test_stats_cpu_on_a_legacy_host_from_cpuacct(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = _full_fake(tmp_path / "cg", fake_kernel, unified=False)
    cg = HybridDriver(v1_root=str(fake.base)).create(C1, CgroupLimits())
    fake.set(f"cpuacct/{C1}/cpuacct.usage", "2500000999\n")  # nanoseconds
    fake.set(f"cpuacct/{C1}/cpuacct.stat", "user 150\nsystem 75\n")  # USER_HZ ticks
    hz = os.sysconf("SC_CLK_TCK")
    stats = cg.stats()
    assert stats.cpu_usage_usec == 2500000
    assert stats.cpu_user_usec == 150 * 1_000_000 // hz
    assert stats.cpu_system_usec == 75 * 1_000_000 // hz
    assert stats.cpu_pressure is None  # PSI is a cgroup2 file


def test_stats_in_a_shared_cpu_cpuacct_hierarchy(tmp_path: Path, fake_kernel: Activate) -> None:
    kinds = {"memory": "memory", "pids": "pids", "cpu,cpuacct": "cpu,cpuacct"}
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", kinds))
    cg = HybridDriver(v1_root=str(fake.base)).create(C1, CgroupLimits(cpu_shares=512))
    assert cg.procs_files() == _procs(fake, "memory", "pids", "cpu,cpuacct")
    fake.set(f"cpu,cpuacct/{C1}/cpuacct.usage", "1000000\n")
    assert cg.stats().cpu_usage_usec == 1000
    assert fake.writes == [(f"cpu,cpuacct/{C1}/cpu.shares", "512")]


def test_stats_of_a_bare_tree_are_all_absent(tmp_path: Path) -> None:
    cg = _plain_v1(tmp_path).create(C1, CgroupLimits())
    assert cg.stats() == CgroupStats()


def test_stats_of_a_destroyed_cgroup_are_absent(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    cg.destroy()
    assert cg.stats() == CgroupStats()


# -- freezer ------------------------------------------------------------------------------


def test_freeze_and_thaw_with_the_cgroup2_freezer(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    cg.freeze()  # the fake shows "frozen 1" in cgroup.events once cgroup.freeze is 1
    assert full.read(f"unified/{C1}/cgroup.events").splitlines()[-1] == "frozen 1"
    cg.thaw()
    assert full.writes == [
        (f"unified/{C1}/cgroup.freeze", "1"),
        (f"unified/{C1}/cgroup.freeze", "0"),
    ]
    assert "freezer" not in _joined(full)


def test_freeze_that_does_not_finish_in_time_is_undone(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    full.freezer_stops = False  # a process that cannot be stopped
    with pytest.raises(TimeoutError, match=C1):
        cg.freeze(timeout=0.05)
    assert full.read(f"unified/{C1}/cgroup.freeze") == "0"


def test_freeze_and_thaw_with_the_v1_freezer_on_a_legacy_host(
    tmp_path: Path, fake_kernel: Activate
) -> None:
    fake = _full_fake(tmp_path / "cg", fake_kernel, unified=False)
    cg = HybridDriver(v1_root=str(fake.base)).create(C1, CgroupLimits())
    cg.freeze()  # the fake's freezer.state says FROZEN once written
    cg.thaw()
    assert fake.writes == [
        (f"freezer/{C1}/freezer.state", "FROZEN"),
        (f"freezer/{C1}/freezer.state", "THAWED"),
    ]


def test_freeze_on_a_kernel_without_cgroup_freeze_joins_the_v1_freezer(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create(C1, CgroupLimits())
    _without(full, f"unified/{C1}/cgroup.freeze")  # Linux before 5.2
    full.set(f"memory/{C1}/cgroup.procs", f"{FAKE_PIDS[0]}\n")
    cg.freeze()
    assert full.writes == [
        (f"freezer/{C1}/cgroup.procs", str(FAKE_PIDS[0])),
        (f"freezer/{C1}/freezer.state", "FROZEN"),
    ]
    assert "freezer" in _joined(full)
    for rel in (f"memory/{C1}", f"freezer/{C1}"):
        full.set(f"{rel}/cgroup.procs", "")


def test_freeze_without_any_freezer(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"memory": "memory", "pids": "pids"}))
    cg = HybridDriver(v1_root=str(fake.base)).create(C1, CgroupLimits())
    with pytest.raises(OSError, match="freezer") as info:
        cg.freeze()
    assert info.value.errno == errno.ENOTSUP


def test_remove_parents_in_hierarchies_joined_later(
    full: FakeCgroupfs, full_driver: HybridDriver
) -> None:
    cg = full_driver.create("containerlib/job/c1", CgroupLimits(cpuset_cpus="1", cpu_shares=4))
    cg.destroy()
    full_driver.remove_parents("containerlib/job/c1")
    assert full.cgroups() == []


# -- plain trees: what a missing interface file does --------------------------------------


def _plain_v1(root: Path) -> HybridDriver:
    for name in ("memory", "pids", "devices"):
        (root / name).mkdir(parents=True)
        (root / name / "cgroup.procs").write_text("")
    return HybridDriver(v1_root=str(root))


@pytest.mark.parametrize(
    ("limits", "missing"),
    [
        (CgroupLimits(memory=64 * MiB), "memory.limit_in_bytes"),
        (CgroupLimits(pids=16), "pids.max"),
        (CgroupLimits(devices=DOCKER_DEVICE_RULES), "devices.deny"),
        (CgroupLimits(devices=((True, "c 1:3 rwm"), (False, "a"))), "devices.allow"),
    ],
)
def test_plain_tree_missing_limit_file_is_named_and_nothing_is_left(
    tmp_path: Path, limits: CgroupLimits, missing: str
) -> None:
    driver = _plain_v1(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        driver.create("containerlib/c1", limits)
    for name in ("memory", "pids", "devices"):
        assert not (tmp_path / name / "containerlib" / "c1").exists()


def test_plain_tree_without_limits_needs_no_interface_files(tmp_path: Path) -> None:
    driver = _plain_v1(tmp_path)
    cg = driver.create("containerlib/c1", CgroupLimits())
    assert all(Path(p).parent.is_dir() for p in cg.procs_files())
    cg.destroy()
    assert not (tmp_path / "memory" / "containerlib" / "c1").exists()


# -- probe() -------------------------------------------------------------------------------


_HYBRID = """\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime shared:12 - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime shared:14 - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime shared:15 - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime shared:16 - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:17 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw
"""

_UNIFIED = """\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
"""  # noqa: E501

_LEGACY = """\
25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
33 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
34 25 0:31 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,devices
"""  # noqa: E501

_NONE = """\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
"""


def test_probe_hybrid_host() -> None:
    driver = probe(_HYBRID)
    on_host = ("memory", "pids", "devices", "blkio", "cpu", "cpuacct", "cpuset", "freezer")
    assert driver == HybridDriver(
        v1_root="/sys/fs/cgroup", unified_root="/sys/fs/cgroup/unified", controllers=on_host
    )
    assert isinstance(driver, HybridDriver)
    assert driver.mount("cpu") == "/sys/fs/cgroup/cpu"
    assert driver.mount("cpuacct") == "/sys/fs/cgroup/cpuacct"
    assert driver.mount("hugetlb") is None
    assert driver.enforces_devices


def test_probe_hybrid_host_for_a_user_other_than_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # The v1 hierarchies are root's; a user's delegated subtree is in the cgroup2 one.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert probe(_HYBRID) == UnifiedDriver(root="/sys/fs/cgroup/unified")
    assert isinstance(probe(_LEGACY), HybridDriver)  # no cgroup2 at all: v1 it is


def test_probe_unified_host() -> None:
    assert probe(_UNIFIED) == UnifiedDriver(root="/sys/fs/cgroup")


def test_probe_legacy_host_with_cpu_and_cpuacct_in_one_hierarchy() -> None:
    driver = probe(_LEGACY)
    assert isinstance(driver, HybridDriver)
    assert driver.unified_root is None
    assert driver.controllers == ("memory", "pids", "devices", "cpu", "cpuacct")
    assert driver.mount("cpu") == driver.mount("cpuacct") == "/sys/fs/cgroup/cpu,cpuacct"
    assert driver.hierarchies() == [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/devices",
        "/sys/fs/cgroup/cpu,cpuacct",
    ]


def test_probe_v1_host_without_pids_controller() -> None:
    text = "".join(line + "\n" for line in _LEGACY.splitlines() if "/pids " not in line)
    driver = probe(text)
    assert isinstance(driver, HybridDriver)
    assert driver.controllers == ("memory", "devices", "cpu", "cpuacct")


def test_probe_v1_host_without_devices_controller_does_not_enforce_devices() -> None:
    text = "".join(line + "\n" for line in _LEGACY.splitlines() if "/devices " not in line)
    driver = probe(text)
    assert isinstance(driver, HybridDriver)
    assert not driver.enforces_devices


def test_probe_no_cgroups() -> None:
    with pytest.raises(OSError, match="no cgroup file system") as info:
        probe(_NONE)
    assert info.value.errno == errno.ENOENT


def test_probe_reads_this_hosts_mountinfo() -> None:
    text = Path("/proc/self/mountinfo").read_text()
    if " - cgroup" not in text:
        pytest.skip("no cgroup file system is mounted here")
    assert probe() == probe(text)


def test_probe_reads_escaped_mount_points() -> None:
    # mountinfo writes a space in a mount point as \040.
    text = _UNIFIED.replace("/sys/fs/cgroup rw", "/run/my\\040cgroups rw")
    assert probe(text) == UnifiedDriver(root="/run/my cgroups")
