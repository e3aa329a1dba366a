"""Resource limits, figures, live updates and pause, through the API, on this host's cgroups."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from containerlib import Container, ContainerNotRunning, ContainerSetupError, Image, SpecError

from .conftest import CGROUP_PARENT, needs_root

pytestmark = [
    pytest.mark.root,
    needs_root("cgroup limits; no cgroup is delegated to this user"),
    pytest.mark.usefixtures("state"),
]

V1 = Path("/sys/fs/cgroup")
BUSY = ["sh", "-c", "while :; do :; done"]


def v1_file(controller: str, cid: str, name: str) -> str:
    return (V1 / controller / CGROUP_PARENT / cid / name).read_text().strip()


def cpu_seconds(c: object) -> float:
    usage = c.stats().cpu_usage_usec  # type: ignore[attr-defined]
    assert usage is not None
    return float(usage) / 1e6


def test_half_a_cpu_gets_about_half_a_core(image: Image) -> None:
    with Container(image).limit(cpus=0.5).start(BUSY) as c:
        # In the cpu hierarchy, which a container without a CPU limit is not in.
        assert str(c.pid) in v1_file("cpu", c.id, "cgroup.procs").split()
        time.sleep(0.3)
        used, t = cpu_seconds(c), time.monotonic()
        time.sleep(3)
        share = (cpu_seconds(c) - used) / (time.monotonic() - t)
    assert 0.3 < share < 0.7, share


def test_figures_while_running_and_at_the_end(image: Image) -> None:
    # 40 MiB in /dev/shm is memory of the container's cgroup.
    script = "dd if=/dev/zero of=/dev/shm/f bs=1M count=40 2>/dev/null; sleep 30 & sleep 30"
    with Container(image).start(["sh", "-c", script]) as c:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = c.stats()
            if now.memory_current and now.memory_current >= 40 << 20:
                break
            time.sleep(0.05)
        assert now.memory_current is not None
        assert now.memory_current >= 40 << 20
        assert now.pids_current is not None
        assert now.pids_current >= 2  # two sleeps (sh execs the last command)
        assert now.cpu_usage_usec is not None
        assert now.cpu_usage_usec > 0
        c.kill()
        result = c.wait()
    assert result.stats.memory_peak is not None
    assert result.stats.memory_peak >= 40 << 20
    assert result.memory_peak == result.stats.memory_peak
    assert result.stats.cpu_user_usec is not None
    assert result.stats.cpu_system_usec is not None
    assert result.stats.oom_kills == 0
    # After the end, stats() gives the figures the container ended with.
    assert c.stats() == result.stats


def test_update_changes_the_limits_of_a_running_container(image: Image) -> None:
    with Container(image).limit(mem="256m").start(["sleep", "30"]) as c:
        c.update(mem="64m", pids=10)
        assert int(v1_file("memory", c.id, "memory.limit_in_bytes")) == 64 << 20
        assert v1_file("pids", c.id, "pids.max") == "10"
        # A CPU limit on a container started without one.
        c.update(cpus=1.5)
        assert v1_file("cpu", c.id, "cpu.cfs_quota_us") == "150000"
        assert str(c.pid) in v1_file("cpu", c.id, "cgroup.procs").split()


def test_bad_update_values_change_nothing(image: Image) -> None:
    with Container(image).limit(mem="64m").start(["sleep", "30"]) as c:
        for bad in ({"mem": "lots"}, {"pids": 0}, {"cpus": -1}, {"swap": "1g"}):
            with pytest.raises(SpecError):
                c.update(**bad)  # type: ignore[arg-type]
        assert int(v1_file("memory", c.id, "memory.limit_in_bytes")) == 64 << 20


def test_a_container_that_has_ended_cannot_be_changed(image: Image) -> None:
    with Container(image).start(["true"]) as c:
        c.wait()
        with pytest.raises(ContainerNotRunning, match=c.id):
            c.update(mem="64m")
        with pytest.raises(ContainerNotRunning):
            c.pause()


def counter(roots: dict[str, str], cid: str) -> int:
    path = Path(roots["CONTAINERLIB_DATA_ROOT"]) / "containers" / cid / "upper" / "n"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            time.sleep(0.01)
    raise AssertionError(f"no counter in {path}")


def test_pause_stops_every_process_and_resume_lets_them_go_on(
    image: Image, roots: dict[str, str]
) -> None:
    script = "i=0; while :; do i=$((i+1)); echo $i > /n.tmp; mv /n.tmp /n; sleep 0.01; done"
    with Container(image).start(["sh", "-c", script]) as c:
        first = counter(roots, c.id)
        deadline = time.monotonic() + 5
        while counter(roots, c.id) == first and time.monotonic() < deadline:
            time.sleep(0.01)
        c.pause()
        frozen = counter(roots, c.id)
        time.sleep(0.3)
        assert counter(roots, c.id) == frozen
        c.resume()
        time.sleep(0.3)
        assert counter(roots, c.id) > frozen
        # A paused container can still be stopped.
        c.pause()
        result = c.stop(timeout=1)
    assert result.exit_code in (137, 143)


def root_disk() -> str | None:
    """The block device the data root lives on, if it is a whole disk under /dev."""
    dev = os.stat(os.environ.get("CONTAINERLIB_DATA_ROOT", "/")).st_dev
    uevent = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/uevent")
    try:
        fields = dict(line.split("=", 1) for line in uevent.read_text().splitlines())
    except OSError:
        return None
    if fields.get("DEVTYPE") != "disk" or not Path(f"/dev/{fields['DEVNAME']}").exists():
        return None
    return f"/dev/{fields['DEVNAME']}"


def test_a_write_throttle_slows_direct_writes(image: Image) -> None:
    disk = root_disk()
    if disk is None:
        pytest.skip("the data root is not on a whole disk")
    script = "dd if=/dev/zero of=/f bs=64k count=48 oflag=direct 2>&1 | tail -1"
    free = Container(image).run(["sh", "-c", script])
    if free.exit_code != 0:
        pytest.skip(f"no direct writes here: {free.stdout!r}")
    start = time.monotonic()
    slow = Container(image).limit(device_write_bps={disk: "1mb"}).run(["sh", "-c", script])
    took = time.monotonic() - start
    assert slow.exit_code == 0, slow.stdout
    # 3 MiB at 1 MiB a second.
    assert took > 2.0, (took, slow.stdout)
    assert slow.stats.io_write_bytes is not None
    assert slow.stats.io_write_bytes >= 3 << 20


def test_a_limit_the_host_cannot_apply_is_named_and_leaves_nothing(image: Image) -> None:
    if Path("/sys/fs/cgroup/hugetlb").exists():
        pytest.skip("this host has the v1 hugetlb controller")
    with pytest.raises(ContainerSetupError, match="hugetlb") as info:
        Container(image).limit(hugetlb={"2MB": "4m"}).run(["true"])
    assert info.value.errno == errno.ENOTSUP
    # And the next container starts as usual (the state fixture checks nothing is left).
    assert Container(image).run(["true"]).exit_code == 0
