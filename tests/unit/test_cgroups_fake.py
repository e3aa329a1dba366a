"""The cgroup drivers against fake cgroup file systems in tmp_path, and probe() on mountinfo.

A plain directory is not cgroupfs: ``mkdir`` makes no interface files, and a file keeps
what was written to it instead of acting on it. :class:`FakeCgroupfs` closes that gap where
the drivers can see it, without touching the drivers: a Python audit hook (sys.addaudithook;
CPython raises an event before each open, mkdir and rmdir) fills a new cgroup directory with
the files its controller would have when something first opens a file in it, logs
every value written to an interface file, applies ``cgroup.subtree_control`` writes as the
kernel does, and lets ``rmdir`` remove a cgroup that has no processes and no children.
Tests that need none of that use plain trees, and check what a missing file does.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from containerlib.linux.cgroups import (
    CgroupLimits,
    CgroupStats,
    HybridDriver,
    UnifiedDriver,
    probe,
)

MiB = 1 << 20

_V1_COMMON = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0\n"}
_V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.usage_in_bytes": "0\n",
        "memory.max_usage_in_bytes": "0\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
}
_MEMSW = {"memory.memsw.limit_in_bytes": "9223372036854771712\n"}
_V2_CORE = {
    "cgroup.procs": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "",
    "cgroup.freeze": "0\n",
    "cgroup.subtree_control": "",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
_V2_FILES = {
    "memory": {
        "memory.max": "max\n",
        "memory.current": "0\n",
        "memory.peak": "0\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
}
_V2_SWAP = {"memory.swap.max": "max\n", "memory.swap.current": "0\n"}
_V2_ORDER = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")

_ACTIVE: list[FakeCgroupfs] = []
Activate = Callable[["FakeCgroupfs"], "FakeCgroupfs"]
_IN_HOOK = threading.local()
_HOOK_EVENTS = frozenset({"open", "os.mkdir", "os.rmdir", "os.scandir", "os.listdir"})
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _ACTIVE or event not in _HOOK_EVENTS or getattr(_IN_HOOK, "on", False):
        return
    _IN_HOOK.on = True
    try:
        for fake in list(_ACTIVE):
            fake.on_event(event, args)
    finally:
        _IN_HOOK.on = False


class FakeCgroupfs:
    """Hierarchies under ``base`` that behave like cgroupfs for the drivers (see above).

    Args:
        base: the directory standing in for /sys/fs/cgroup.
        hierarchies: sub-directory of ``base`` -> its kind: a v1 controller name,
            ``"unified"`` (a cgroup2 mount without controllers, as on a hybrid host) or
            ``"v2"`` (a unified host).
        swap: the host accounts swap (memory.memsw.* on v1, memory.swap.* on v2).
        v2_controllers: what the v2 root offers in cgroup.controllers.
    """

    def __init__(
        self,
        base: Path,
        hierarchies: dict[str, str],
        *,
        swap: bool = True,
        v2_controllers: str = "memory pids",
    ) -> None:
        self.base = base
        self.swap = swap
        self._roots = {
            str(base / name) if name else str(base): kind for name, kind in hierarchies.items()
        }
        self._populated: set[str] = set()
        self._pending: tuple[str, str] | None = None
        self._log: list[tuple[str, str]] = []
        for root, kind in self._roots.items():
            os.makedirs(root, exist_ok=True)
            if kind == "v2":
                # The root cgroup has no limit files of its own.
                files = {**_V2_CORE, "cgroup.controllers": v2_controllers + "\n"}
            else:
                files = self._files_for(root, kind)
            for name, text in files.items():
                Path(root, name).write_text(text)
            self._populated.add(root)

    # -- what the tests use ------------------------------------------------------------

    @property
    def writes(self) -> list[tuple[str, str]]:
        """Every value written to an interface file, as (path under base, value)."""
        with _hook_off():
            self._flush()
        return list(self._log)

    def read(self, rel: str) -> str:
        with _hook_off():
            self._flush()
            return (self.base / rel).read_text()

    def set(self, rel: str, text: str) -> None:
        """Change what a file shows, as the kernel would (a figure that grew)."""
        with _hook_off():
            self._flush()
            self._populate(str((self.base / rel).parent))
            (self.base / rel).write_text(text)

    def mkdir(self, rel: str) -> None:
        """Make a cgroup from outside, as another container or process would."""
        with _hook_off():
            self._flush()
            path = self.base / rel
            path.mkdir(parents=True)
            for parent in reversed([path, *path.parents]):
                self._populate(str(parent))

    def cgroups(self) -> list[str]:
        """Every cgroup directory under base, relative, sorted."""
        with _hook_off():
            return sorted(
                str(Path(d).relative_to(self.base))
                for root in self._roots
                for d, _, _ in os.walk(root)
                if d != root
            )

    # -- the kernel's side -------------------------------------------------------------

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        path = args[0]
        if not isinstance(path, str | bytes | os.PathLike):
            return
        p = os.path.abspath(os.fsdecode(path))
        if self._root_of(p) is None:
            return
        self._flush()
        if event == "open":
            self._populate(os.path.dirname(p))
            if args[2] & (os.O_WRONLY | os.O_RDWR) and os.path.isfile(p):
                old = Path(p).read_text()
                os.truncate(p, 0)  # a write replaces the value; it does not patch it
                self._pending = (p, old)
        elif event == "os.rmdir":
            self._release(p)
        elif event in ("os.scandir", "os.listdir"):
            self._populate(p)

    def _root_of(self, p: str) -> str | None:
        for root in self._roots:
            if p == root or p.startswith(root + "/"):
                return root
        return None

    def _files_for(self, d: str, kind: str) -> dict[str, str]:
        if kind in _V1_FILES:
            files = {**_V1_COMMON, **_V1_FILES[kind]}
            if kind == "memory" and self.swap:
                files.update(_MEMSW)
            return files
        files = dict(_V2_CORE)
        if kind == "unified":
            files["cgroup.controllers"] = ""
            return files
        parent = os.path.dirname(d)
        enabled = Path(parent, "cgroup.subtree_control").read_text().split()
        files["cgroup.controllers"] = " ".join(enabled) + "\n"
        for name in enabled:
            files.update(_V2_FILES.get(name, {}))
            if name == "memory" and self.swap:
                files.update(_V2_SWAP)
        return files

    def _populate(self, d: str) -> None:
        root = self._root_of(d)
        if root is None or d in self._populated or not os.path.isdir(d):
            return
        for name, text in self._files_for(d, self._roots[root]).items():
            Path(d, name).write_text(text)
        self._populated.add(d)

    def _release(self, d: str) -> None:
        if d not in self._populated:
            return
        entries = list(os.scandir(d))
        if any(e.is_dir(follow_symlinks=False) for e in entries):
            return  # rmdir fails: the cgroup has children
        if Path(d, "cgroup.procs").read_text().strip():
            return  # rmdir fails: processes are inside
        for e in entries:
            os.unlink(e.path)
        self._populated.discard(d)

    def _flush(self) -> None:
        if self._pending is None:
            return
        p, old = self._pending
        self._pending = None
        if not os.path.isfile(p):
            return
        value = Path(p).read_text()
        self._log.append((str(Path(p).relative_to(self.base)), value))
        if os.path.basename(p) == "cgroup.subtree_control":
            enabled = set(old.split())
            for token in value.split():
                if token.startswith("+"):
                    enabled.add(token[1:])
                elif token.startswith("-"):
                    enabled.discard(token[1:])
            Path(p).write_text(" ".join(c for c in _V2_ORDER if c in enabled) + "\n")


class _hook_off:
    def __enter__(self) -> None:
        self._was = getattr(_IN_HOOK, "on", False)
        _IN_HOOK.on = True

    def __exit__(self, *exc: object) -> None:
        _IN_HOOK.on = self._was


@pytest.fixture
def fake_kernel() -> Iterator[Activate]:
    """Return a function that makes a fake act like cgroupfs until the test ends."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # audit hooks cannot be removed: this one idles when unused
        _hook_installed = True
    mine: list[FakeCgroupfs] = []

    def activate(fake: FakeCgroupfs) -> FakeCgroupfs:
        mine.append(fake)
        _ACTIVE.append(fake)
        return fake

    try:
        yield activate
    finally:
        for fake in mine:
            _ACTIVE.remove(fake)


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


@pytest.fixture
def unified(tmp_path: Path, fake_kernel: Activate) -> FakeCgroupfs:
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cgroup", {"": "v2"}))
    return fake


@pytest.fixture
def unified_driver(unified: FakeCgroupfs) -> UnifiedDriver:
    return UnifiedDriver(root=str(unified.base))


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
    assert cg.stats() == CgroupStats(memory_peak=0, oom_kills=0)
    hybrid.set("memory/containerlib/c1/memory.max_usage_in_bytes", "52428800\n")
    hybrid.set(
        "memory/containerlib/c1/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    )
    assert cg.stats() == CgroupStats(memory_peak=52428800, oom_kills=3)


def test_hybrid_stats_on_a_kernel_without_oom_kill_counter(
    hybrid: FakeCgroupfs, hybrid_driver: HybridDriver
) -> None:
    cg = hybrid_driver.create("containerlib/c1", CgroupLimits())
    hybrid.set("memory/containerlib/c1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")
    hybrid.set("memory/containerlib/c1/memory.max_usage_in_bytes", "4096\n")
    assert cg.stats() == CgroupStats(memory_peak=4096, oom_kills=0)


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


# -- UnifiedDriver -------------------------------------------------------------------------


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
    assert cg.procs_files() == [str(unified.base / "containerlib" / "c1" / "cgroup.procs")]


def test_unified_swap_equal_to_memory_means_no_swap(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    unified_driver.create("c1", CgroupLimits(memory=64 * MiB, memory_swap=64 * MiB))
    assert ("c1/memory.swap.max", "0") in unified.writes


def test_unified_cgroup_made_without_limits_takes_them_later(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    # A cgroup made ahead of time, before its container's limits are known.
    cg = unified_driver.create("containerlib/c1", CgroupLimits())
    assert unified.read("containerlib/cgroup.subtree_control") == "memory pids\n"
    before = len(unified.writes)
    cg.set_limits(CgroupLimits(memory=64 * MiB, pids=5))
    assert unified.writes[before:] == [
        ("containerlib/c1/memory.max", str(64 * MiB)),
        ("containerlib/c1/pids.max", "5"),
    ]


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


def test_unified_stats(unified: FakeCgroupfs, unified_driver: UnifiedDriver) -> None:
    cg = unified_driver.create("containerlib/c1", CgroupLimits(memory=64 * MiB))
    assert cg.stats() == CgroupStats(memory_peak=0, oom_kills=0)
    unified.set("containerlib/c1/memory.peak", "7340032\n")
    unified.set("containerlib/c1/memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n")
    assert cg.stats() == CgroupStats(memory_peak=7340032, oom_kills=2)


def test_unified_stats_without_the_memory_controller(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"": "v2"}, v2_controllers="cpu io pids"))
    cg = UnifiedDriver(root=str(fake.base)).create("containerlib/c1", CgroupLimits(pids=4))
    assert not (fake.base / "containerlib" / "c1" / "memory.peak").exists()
    assert cg.stats() == CgroupStats(memory_peak=None, oom_kills=0)


def test_unified_missing_controller_is_named_and_nothing_is_made(
    tmp_path: Path, fake_kernel: Activate
) -> None:
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"": "v2"}, v2_controllers="cpu io pids"))
    with pytest.raises(OSError, match="'memory'") as info:
        UnifiedDriver(root=str(fake.base)).create("containerlib/c1", CgroupLimits(memory=MiB * 8))
    assert info.value.errno == errno.ENOTSUP
    assert fake.cgroups() == []
    assert fake.writes == []


def test_unified_existing_leaf(unified: FakeCgroupfs, unified_driver: UnifiedDriver) -> None:
    unified.mkdir("containerlib/c1")
    with pytest.raises(FileExistsError) as info:
        unified_driver.create("containerlib/c1", CgroupLimits())
    assert str(unified.base / "containerlib" / "c1") in str(info.value)
    assert (unified.base / "containerlib" / "c1" / "cgroup.procs").is_file()


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


def test_unified_destroy_removes_sub_cgroups(
    unified: FakeCgroupfs, unified_driver: UnifiedDriver
) -> None:
    cg = unified_driver.create("containerlib/c1", CgroupLimits())
    unified.mkdir("containerlib/c1/a/b")
    cg.destroy()
    assert unified.cgroups() == ["containerlib"]
    assert ("containerlib/c1/cgroup.kill", "1") in unified.writes


def test_unified_failed_limit_removes_the_cgroup(tmp_path: Path) -> None:
    # A plain tree: the new leaf has no memory.max, so the write fails and names it.
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory pids\n")
    with pytest.raises(OSError, match=r"memory\.max"):
        UnifiedDriver(root=str(tmp_path)).create("c1", CgroupLimits(memory=64 * MiB))
    assert not (tmp_path / "c1").exists()


def test_unified_host_without_swap_accounting(tmp_path: Path, fake_kernel: Activate) -> None:
    fake = fake_kernel(FakeCgroupfs(tmp_path / "cg", {"": "v2"}, swap=False))
    # What Container.limit(mem="64M") asks for: memory and memory+swap equal.
    UnifiedDriver(root=str(fake.base)).create(
        "containerlib/c1", CgroupLimits(memory=64 * MiB, memory_swap=64 * MiB)
    )
    assert ("containerlib/c1/memory.max", str(64 * MiB)) in fake.writes


# -- probe --------------------------------------------------------------------------------

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
    assert probe(_HYBRID) == HybridDriver(
        v1_root="/sys/fs/cgroup",
        unified_root="/sys/fs/cgroup/unified",
        controllers=("memory", "pids", "devices"),
    )


def test_probe_unified_host() -> None:
    assert probe(_UNIFIED) == UnifiedDriver(root="/sys/fs/cgroup")


def test_probe_legacy_host() -> None:
    assert probe(_LEGACY) == HybridDriver(
        v1_root="/sys/fs/cgroup", unified_root=None, controllers=("memory", "pids", "devices")
    )


def test_probe_v1_host_without_pids_controller() -> None:
    text = "".join(line + "\n" for line in _LEGACY.splitlines() if "/pids " not in line)
    driver = probe(text)
    assert isinstance(driver, HybridDriver)
    assert driver.controllers == ("memory", "devices")


def test_probe_no_cgroups() -> None:
    with pytest.raises(OSError, match="no cgroup file system") as info:
        probe(_NONE)
    assert info.value.errno == errno.ENOENT


def test_probe_reads_this_hosts_mountinfo() -> None:
    text = Path("/proc/self/mountinfo").read_text()
    if " - cgroup" not in text:
        pytest.skip("no cgroup file system is mounted here")
    assert probe() == probe(text)
