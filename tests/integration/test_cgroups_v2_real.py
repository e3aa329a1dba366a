"""The v2 driver against the real cgroup2 mount of a hybrid host: the core files only.

The cgroup2 mount at /sys/fs/cgroup/unified has no controllers on these machines, so no
limits are set here (the fake cgroupfs of tests/unit covers them). What is real: making
and removing cgroups, moving a process in, ``cgroup.events``, freezing and thawing,
``cgroup.kill``, ``cpu.stat`` and the pressure files. Everything happens under this run's
own parent, ``containerlib/test-v2-<pid>``, and is removed even when a test fails.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containerlib.linux.cgroups import Cgroup, CgroupLimits, Pressure, UnifiedDriver

UNIFIED = "/sys/fs/cgroup/unified"
PARENT = f"containerlib/test-v2-{os.getpid()}"
PATH = f"{PARENT}/c1"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        not os.path.exists(f"{UNIFIED}/cgroup.procs"), reason=f"no cgroup2 mount at {UNIFIED}"
    ),
]

Start = Callable[[Cgroup, list[str]], subprocess.Popen[bytes]]


def _remove_ours() -> None:
    """Kill what is left in this run's cgroups and remove them, deepest first. Only
    ``PARENT`` and what is below it are touched: never a cgroup this run did not make."""
    parent = Path(UNIFIED, PARENT)
    if not parent.is_dir():
        return
    dirs = sorted(
        (p for p in parent.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    )
    dirs.append(parent)
    for d in dirs:
        kill = d / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
    deadline = time.monotonic() + 10
    for d in dirs:
        while d.exists():
            try:
                d.rmdir()
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


def _subtree_controls() -> dict[str, str]:
    return {
        d: Path(UNIFIED, d, "cgroup.subtree_control").read_text()
        for d in (".", "containerlib")
        if Path(UNIFIED, d).is_dir()
    }


@pytest.fixture
def driver() -> Iterator[UnifiedDriver]:
    """The driver on the host's cgroup2 root. It may enable no controller: this root is
    the whole host's (here it offers hugetlb, which no test of ours may turn on)."""
    before = _subtree_controls()
    try:
        yield UnifiedDriver(root=UNIFIED, controllers=())
    finally:
        _remove_ours()
    after = _subtree_controls()
    assert {d: after.get(d, text) for d, text in before.items()} == before


@pytest.fixture
def start(driver: UnifiedDriver, tmp_path: Path) -> Iterator[Start]:
    """Start a command in a cgroup: it waits on stdin until moved in, so that nothing it
    does happens outside. Every process started is killed and reaped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(cg: Cgroup, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["sh", "-c", 'read go && exec "$@"', "sh", *argv], stdin=subprocess.PIPE
        )
        started.append(proc)
        Path(cg.procs_files()[0]).write_text(str(proc.pid))
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def events(cg: Cgroup) -> dict[str, str]:
    text = Path(cg.procs_files()[0]).with_name("cgroup.events").read_text()
    return dict(line.split() for line in text.splitlines())


def counter(path: Path) -> list[str]:
    """A shell loop that appends to ``path`` as fast as it can, with builtins only."""
    return ["sh", "-c", 'while :; do echo x >> "$0"; done', str(path)]


def read_count(path: Path) -> int:
    # Appending only: a process frozen in the middle of a write leaves no gap to mind.
    return path.stat().st_size if path.exists() else 0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_process_moved_in_is_a_member(driver: UnifiedDriver, start: Start) -> None:
    cg = driver.create(PATH, CgroupLimits())
    assert cg.procs_files() == [f"{UNIFIED}/{PATH}/cgroup.procs"]
    assert events(cg)["populated"] == "0"
    proc = start(cg, ["sleep", "60"])
    assert f"0::/{PATH}\n" in Path(f"/proc/{proc.pid}/cgroup").read_text()
    assert Path(cg.procs_files()[0]).read_text().split() == [str(proc.pid)]
    assert events(cg) == {"populated": "1", "frozen": "0"}


def test_freeze_stops_every_process_and_thaw_lets_them_go_on(
    driver: UnifiedDriver, start: Start, tmp_path: Path
) -> None:
    cg = driver.create(PATH, CgroupLimits())
    count = tmp_path / "count"
    start(cg, counter(count))
    wait_for(lambda: read_count(count) > 100, "the counter to run")

    cg.freeze()
    assert events(cg)["frozen"] == "1"
    stopped_at = read_count(count)
    time.sleep(0.3)
    assert read_count(count) == stopped_at

    cg.thaw()
    assert events(cg)["frozen"] == "0"
    wait_for(lambda: read_count(count) > stopped_at, "the counter to go on")


def test_stats_read_cpu_and_pressure(driver: UnifiedDriver, start: Start, tmp_path: Path) -> None:
    cg = driver.create(PATH, CgroupLimits())
    assert cg.stats().cpu_usage_usec == 0
    count = tmp_path / "count"
    start(cg, counter(count))
    time.sleep(0.5)
    stats = cg.stats()
    # The loop spins: most of its half second is CPU time, in user and system mode.
    assert stats.cpu_usage_usec is not None
    assert stats.cpu_usage_usec > 100_000
    assert stats.cpu_user_usec is not None
    assert stats.cpu_system_usec is not None
    assert stats.cpu_user_usec + stats.cpu_system_usec > 100_000
    for pressure in (stats.cpu_pressure, stats.memory_pressure, stats.io_pressure):
        assert isinstance(pressure, Pressure)
        assert pressure.some_total_usec >= 0
    # No controllers on this mount: their figures are not reported.
    assert (stats.memory_current, stats.memory_peak, stats.pids_current) == (None,) * 3
    assert (stats.io_read_bytes, stats.io_write_bytes, stats.oom_kills) == (None, None, 0)
    time.sleep(0.2)
    later = cg.stats()
    assert later.cpu_usage_usec is not None
    assert later.cpu_usage_usec > stats.cpu_usage_usec


@pytest.mark.parametrize("frozen", [False, True])
def test_destroy_kills_the_processes_and_removes_the_cgroup(
    driver: UnifiedDriver, start: Start, frozen: bool
) -> None:
    cg = driver.create(PATH, CgroupLimits())
    proc = start(cg, ["sleep", "60"])
    if frozen:
        cg.freeze()
        assert events(cg)["frozen"] == "1"
    cg.destroy()
    # cgroup.kill ends frozen processes too.
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert not Path(UNIFIED, PATH).exists()
    driver.remove_parents(PATH)
    assert not Path(UNIFIED, PARENT).exists()


def test_destroy_removes_sub_cgroups_and_their_processes(
    driver: UnifiedDriver, start: Start
) -> None:
    cg = driver.create(PATH, CgroupLimits())
    top = start(cg, ["sleep", "60"])
    Path(UNIFIED, PATH, "sub").mkdir()  # as a container's own systemd would
    sub = start(driver.open(f"{PATH}/sub"), ["sleep", "60"])
    cg.destroy()
    assert top.wait(timeout=5) == -signal.SIGKILL
    assert sub.wait(timeout=5) == -signal.SIGKILL
    assert not Path(UNIFIED, PATH).exists()


def test_open_an_existing_cgroup_and_a_gone_one(driver: UnifiedDriver, start: Start) -> None:
    made = driver.create(PATH, CgroupLimits())
    proc = start(made, ["sleep", "60"])
    cg = driver.open(PATH)
    assert cg.procs_files() == made.procs_files()
    cg.freeze()
    assert events(made)["frozen"] == "1"
    cg.thaw()
    cg.destroy()
    assert proc.wait(timeout=5) == -signal.SIGKILL
    with pytest.raises(FileNotFoundError, match=PATH):
        driver.open(PATH)


def test_create_an_existing_cgroup(driver: UnifiedDriver, start: Start) -> None:
    made = driver.create(PATH, CgroupLimits())
    proc = start(made, ["sleep", "60"])
    with pytest.raises(FileExistsError, match=PATH):
        driver.create(PATH, CgroupLimits())
    # It is left alone, process and all.
    assert proc.poll() is None
    assert events(made)["populated"] == "1"


def test_a_limit_without_its_controller_leaves_nothing(driver: UnifiedDriver) -> None:
    if "memory" in Path(UNIFIED, "cgroup.controllers").read_text().split():
        pytest.skip("this cgroup2 mount has the memory controller")
    with pytest.raises(OSError, match="'memory'") as info:
        driver.create(PATH, CgroupLimits(memory=64 << 20))
    assert info.value.errno == errno.ENOTSUP
    assert not Path(UNIFIED, PARENT).exists()
