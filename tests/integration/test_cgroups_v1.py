"""The v1 driver on this host's real v1 hierarchies (hybrid, or legacy when told to ignore
the cgroup2 mount), with processes the tests start themselves.

Every cgroup is made under ``containerlib/test-v1-<pid>``; each test ends by killing its
processes, destroying its cgroups and removing that parent, and checks that no directory
of it is left in any hierarchy.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from containerlib.linux.cgroups import (
    Cgroup,
    CgroupLimits,
    DeviceValue,
    HybridDriver,
    probe,
)

if os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/memory"):
    pytest.skip("needs root and the cgroup v1 memory controller", allow_module_level=True)

pytestmark = [pytest.mark.root]

PARENT = f"containerlib/test-v1-{os.getpid()}"
MiB = 1 << 20
HOST = probe()
if not isinstance(HOST, HybridDriver):  # pragma: no cover - /sys/fs/cgroup/memory exists
    pytest.skip("this host's cgroups are not v1", allow_module_level=True)
HYBRID: HybridDriver = HOST
#: The same host seen as a legacy one: the v1 freezer and cpuacct instead of cgroup2.
LEGACY = attrs.evolve(HYBRID, unified_root=None)
DRIVERS = [
    pytest.param(HYBRID, id="hybrid"),
    pytest.param(LEGACY, id="legacy"),
]


def _needs(*controllers: str) -> None:
    missing = [c for c in controllers if HYBRID.mount(c) is None]
    if missing:
        pytest.skip(f"the host has no v1 {', '.join(missing)} controller")


def _ours_left() -> list[str]:
    roots = [*HYBRID.hierarchies(), *([HYBRID.unified_root] if HYBRID.unified_root else [])]
    return [os.path.join(r, PARENT) for r in roots if os.path.exists(os.path.join(r, PARENT))]


@attrs.define
class Lab:
    """Makes cgroups under PARENT and starts processes in them; undoes it all."""

    cgroups: list[Cgroup] = attrs.Factory(list)
    procs: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    def create(self, limits: CgroupLimits, driver: HybridDriver = HYBRID) -> Cgroup:
        cg = driver.create(f"{PARENT}/c{len(self.cgroups)}", limits)
        self.cgroups.append(cg)
        return cg

    def start(self, cg: Cgroup, argv: list[str], *, quiet: bool = False) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``cg``: it waits on its stdin until moved in, by its pid."""
        gate = ["sh", "-c", 'read go && exec "$@"', "sh", *argv]
        stderr = subprocess.DEVNULL if quiet else None
        proc = subprocess.Popen(gate, stdin=subprocess.PIPE, stderr=stderr)
        self.procs.append(proc)
        for path in cg.procs_files():
            Path(path).write_text(str(proc.pid))
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        return proc


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        for proc in lab.procs:
            if proc.poll() is None:
                proc.kill()
        errors = []
        for cg in lab.cgroups:
            try:
                cg.destroy()
            except OSError as e:  # the others are destroyed all the same
                errors.append(e)
        for proc in lab.procs:
            proc.wait(timeout=10)
        HYBRID.remove_parents(f"{PARENT}/c")
        if errors:
            raise errors[0]
    assert _ours_left() == []


def _dir(cg: Cgroup, controller: str) -> Path:
    """The cgroup's directory in the hierarchy of ``controller``."""
    mount = HYBRID.mount(controller)
    assert mount is not None
    return Path(mount, cg.path)


def _pids_in(cg: Cgroup) -> list[int]:
    return [int(x) for x in (_dir(cg, "memory") / "cgroup.procs").read_text().split()]


def _cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    raise AssertionError(f"no {controller} line for {pid}")


def _dead(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # its parent (init, for orphans) has yet to reap it


def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout} s")
        time.sleep(0.01)


# -- limits -------------------------------------------------------------------------------

HOG = "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"


def test_memory_hog_is_killed_by_the_oom_killer(lab: Lab) -> None:
    # memory_swap as large as memory: where the host has swap, the hog may not use it.
    cg = lab.create(CgroupLimits(memory=64 * MiB, memory_swap=64 * MiB))
    hog = lab.start(cg, [sys.executable, "-c", HOG])
    assert hog.wait(timeout=60) == -signal.SIGKILL
    stats = cg.stats()
    assert stats.oom_kills >= 1
    assert stats.memory_peak is not None
    assert stats.memory_peak <= 64 * MiB


def test_memory_below_the_limit_is_not_killed(lab: Lab) -> None:
    cg = lab.create(CgroupLimits(memory=512 * MiB))
    assert lab.start(cg, [sys.executable, "-c", HOG]).wait(timeout=60) == 0
    assert cg.stats().oom_kills == 0


@pytest.mark.slow
def test_cpu_quota_gives_half_a_core(lab: Lab) -> None:
    _needs("cpu")
    cg = lab.create(CgroupLimits(cpu_quota=50000, cpu_period=100000))
    lab.start(cg, [sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)  # past the interpreter's start
    before, start = cg.stats().cpu_usage_usec, time.monotonic()
    time.sleep(3)
    after, end = cg.stats().cpu_usage_usec, time.monotonic()
    assert before is not None
    assert after is not None
    cores = (after - before) / 1e6 / (end - start)
    assert 0.3 <= cores <= 0.7, f"{cores:.2f} of a core"


def test_fork_bomb_stops_at_the_pids_limit_and_is_cleaned_up(lab: Lab) -> None:
    cg = lab.create(CgroupLimits(pids=20))
    # Four loops forking sleepers; each loop ends at its first refused fork (dash exits
    # when a fork fails), and its sleepers stay. 50 each at most: were the limit broken,
    # the host would not be flooded.
    loop = "i=0; while [ $i -lt 50 ]; do sleep 600 & i=$((i + 1)); done"
    bomb = f"for j in 1 2 3 4; do ({loop}) & done; wait"
    lab.start(cg, ["sh", "-c", bomb], quiet=True)
    seen: list[int] = []

    def stopped() -> bool:
        count = cg.stats().pids_current
        assert count is not None
        seen.append(count)
        # pids.events: "max N", N forks refused at the limit; one ends each loop.
        return int((_dir(cg, "pids") / "pids.events").read_text().split()[1]) >= 4

    _until(stopped, "stopped by the limit")
    assert max(seen) <= 20
    # This process forks as it did: the limit is the cgroup's, not the host's.
    assert subprocess.run(["true"], check=False).returncode == 0
    sleepers = _pids_in(cg)
    assert len(sleepers) >= 10
    cg.destroy()
    _until(lambda: all(_dead(pid) for pid in sleepers), "dead")


def test_cpuset_pins_the_process(lab: Lab) -> None:
    _needs("cpuset")
    cg = lab.create(CgroupLimits(cpuset_cpus="0", cpuset_mems="0"))
    proc = lab.start(cg, ["sleep", "60"])
    assert _status(proc.pid)["Cpus_allowed_list"] == "0"
    if (os.cpu_count() or 1) > 1:
        other = lab.create(CgroupLimits(cpuset_cpus="1"))
        assert _status(lab.start(other, ["sleep", "60"]).pid)["Cpus_allowed_list"] == "1"


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A loop device over a file in tmp_path (losetup, util-linux); detached at the end."""
    backing = tmp_path / "disk.img"
    with backing.open("wb") as f:
        f.truncate(32 * MiB)
    made = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], check=False, capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"no loop device could be made: {made.stderr.strip()}")
    device = made.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


def test_write_bps_throttles_a_direct_write(lab: Lab, loop_device: str) -> None:
    _needs("blkio")
    rdev = os.stat(loop_device).st_rdev
    rate = 1 * MiB
    dd = ["dd", "if=/dev/zero", f"of={loop_device}", "bs=64k", "count=128", "oflag=direct"]
    # Unthrottled, the 8 MiB go through at once.
    free = lab.create(CgroupLimits())
    assert lab.start(free, dd, quiet=True).wait(timeout=60) == 0
    throttled = lab.create(
        CgroupLimits(write_bps=(DeviceValue(os.major(rdev), os.minor(rdev), rate),))
    )
    start = time.monotonic()
    slow = lab.start(throttled, dd, quiet=True)
    time.sleep(2)
    written = throttled.stats().io_write_bytes
    elapsed = time.monotonic() - start
    assert slow.poll() is None  # still writing
    assert written is not None
    # The kernel lets at most `rate` a second through, and a slice's worth more.
    assert 0 < written <= rate * elapsed + rate, f"{written} bytes in {elapsed:.1f} s"


# -- a live cgroup ------------------------------------------------------------------------


def test_limit_added_to_a_running_cgroup_moves_every_process_in(lab: Lab) -> None:
    _needs("cpu", "cpuset")
    cg = lab.create(CgroupLimits(memory=64 * MiB))
    assert not _dir(cg, "cpu").exists()
    assert not _dir(cg, "cpuset").exists()
    lab.start(cg, ["sh", "-c", "sleep 60 & sleep 60 & wait"])
    _until(lambda: len(_pids_in(cg)) == 3, "three processes")
    cg.set_limits(CgroupLimits(cpu_quota=20000, cpu_period=100000))
    for pid in _pids_in(cg):
        assert _cgroup_of(pid, "cpu") == "/" + cg.path.strip("/")
    assert str(_dir(cg, "cpu") / "cgroup.procs") in cg.procs_files()
    assert (_dir(cg, "cpu") / "cpu.cfs_quota_us").read_text() == "20000\n"
    # Through another object of the cgroup, as another process would open it.
    HYBRID.open(cg.path).set_limits(CgroupLimits(cpuset_cpus="0"))
    for pid in _pids_in(cg):
        assert _status(pid)["Cpus_allowed_list"] == "0"
    # The creator's destroy (in the fixture) removes the cpuset directory too.


def test_open_sees_the_cgroup_and_then_its_end(lab: Lab) -> None:
    cg = lab.create(CgroupLimits(pids=10))
    opened = HYBRID.open(cg.path)
    assert opened.procs_files() == cg.procs_files()
    lab.start(cg, ["sleep", "60"])
    assert opened.stats().pids_current == 1
    cg.destroy()
    with pytest.raises(FileNotFoundError, match=cg.path):
        HYBRID.open(cg.path)


def test_cgroup_of_the_same_name_is_refused_and_left_alone(lab: Lab) -> None:
    cg = lab.create(CgroupLimits())
    proc = lab.start(cg, ["sleep", "60"])
    with pytest.raises(FileExistsError):
        HYBRID.create(cg.path, CgroupLimits(cpu_shares=2))
    assert _pids_in(cg) == [proc.pid]
    if HYBRID.mount("cpu") is not None:
        assert not _dir(cg, "cpu").exists()


def test_limit_of_a_controller_the_host_lacks(lab: Lab) -> None:
    if HYBRID.mount("hugetlb") is not None:
        pytest.skip("the host has the hugetlb controller")
    with pytest.raises(OSError, match="hugetlb"):
        lab.create(CgroupLimits(memory=MiB * 64, hugetlb=(("2MB", 2 * MiB),)))
    assert _ours_left() == []  # refused before the first mkdir


def test_weights_and_soft_limits_reach_the_kernel(lab: Lab) -> None:
    _needs("cpu", "blkio")
    cg = lab.create(
        CgroupLimits(memory_reservation=32 * MiB, cpu_shares=512, blkio_weight=300, pids=-1)
    )
    assert (_dir(cg, "memory") / "memory.soft_limit_in_bytes").read_text() == f"{32 * MiB}\n"
    assert (_dir(cg, "cpu") / "cpu.shares").read_text() == "512\n"
    blkio = _dir(cg, "blkio")
    weight = blkio / "blkio.weight"
    if not weight.exists():
        weight = blkio / "blkio.bfq.weight"
    assert weight.read_text() == "300\n"
    assert (_dir(cg, "pids") / "pids.max").read_text() == "max\n"


# -- freezer and figures, on the hybrid host and as if it were legacy ---------------------

COUNTER = (
    "import os, struct, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    os.pwrite(fd, struct.pack('Q', i), 0)\n"
)


@pytest.mark.parametrize("driver", DRIVERS)
def test_freeze_stops_the_processes_and_thaw_lets_them_go_on(
    lab: Lab, tmp_path: Path, driver: HybridDriver
) -> None:
    if driver.unified_root is None:
        _needs("freezer")
    counter = tmp_path / "counter"

    def count() -> int:
        data = counter.read_bytes() if counter.exists() else b""
        return struct.unpack("Q", data[:8])[0] if len(data) >= 8 else 0

    cg = lab.create(CgroupLimits(), driver)
    proc = lab.start(cg, [sys.executable, "-c", COUNTER, str(counter)])
    _until(lambda: count() > 0, "counting")
    cg.freeze()
    frozen = count()
    time.sleep(0.3)
    assert count() == frozen
    cg.thaw()
    _until(lambda: count() > frozen, "counting again")
    # A frozen cgroup can be destroyed: its processes are killed all the same.
    cg.freeze()
    cg.destroy()
    assert proc.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize("driver", DRIVERS)
def test_stats_are_plausible(lab: Lab, driver: HybridDriver) -> None:
    busy = "b = bytearray(32 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nwhile 1: pass"
    cg = lab.create(CgroupLimits(memory=256 * MiB, pids=32), driver)
    lab.start(cg, [sys.executable, "-c", busy])
    _until(lambda: (cg.stats().memory_current or 0) >= 32 * MiB, "using 32 MiB")
    first = cg.stats()
    time.sleep(0.5)
    second = cg.stats()
    assert second.pids_current == 1
    assert second.memory_peak is not None
    assert second.memory_current is not None
    assert second.memory_peak >= second.memory_current >= 32 * MiB
    for field in ("cpu_usage_usec", "cpu_user_usec"):
        was, now = getattr(first, field), getattr(second, field)
        assert was is not None
        assert now is not None
        assert now > was, field
    assert second.cpu_system_usec is not None
    assert second.io_read_bytes is not None
    assert second.io_write_bytes is not None
    assert second.oom_kills == 0
    if driver.unified_root is not None:
        assert second.cpu_pressure is not None
        assert second.cpu_pressure.some_total_usec > 0  # a busy loop waits for the CPU
        assert second.memory_pressure is not None
        assert second.io_pressure is not None
    else:
        assert second.cpu_pressure is None


def test_nothing_is_left() -> None:
    assert _ours_left() == []
