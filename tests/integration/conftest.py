"""Fixtures for tests on the real kernel: a busybox image, private roots, a leak check.

Every test here uses the real kernel. The suite runs as root (the nox session
``integration``) and as ``nobody`` (the session ``rootless``), where containers run in user
namespaces and what only root can do skips, saying why (:data:`needs_root`). It uses its
own run and data roots and, as root, its own cgroup parent (``containerlib/test-<pid>``),
and checks at the end that nothing of them is left on the host: no mount, no cgroup, no
process, no state.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib import Image
from containerlib.image.builtin import busybox_rootfs
from containerlib.linux import syscalls as sc
from containerlib.runtime.client import spawner
from containerlib.runtime.spawner import WARM_STOCK

ROOT = os.geteuid() == 0
CGROUP_PARENT = f"containerlib/test-{os.getpid()}"


def needs_root(why: str) -> pytest.MarkDecorator:
    """Skip as a non-root user (the nox session ``rootless``), saying what needs root."""
    return pytest.mark.skipif(not ROOT, reason=f"needs root: {why}")


def cgroup_dirs(
    *, parents: bool = False, ready: tuple[str, ...] = (), under: str = CGROUP_PARENT
) -> list[str]:
    """The containers' cgroup directories under this run's cgroup parent (or ``under``),
    in every hierarchy; with ``parents``, the parent too (it stays while the spawner
    runs). The cgroups of the ids in ``ready`` (held ready by the spawner) are left out."""
    found = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / under
        # os.walk, not rglob: a directory removed while it is walked (a keeper
        # removing its container's cgroup, the spawner its parent) is skipped.
        for top, subdirs, _ in os.walk(parent):
            for name in subdirs:
                p = Path(top, name)
                if p.relative_to(parent).parts[0] not in ready:
                    found.append(str(p))
        if parents and parent.is_dir():
            found.append(str(parent))
    return found


def processes_in_our_cgroups(ready: tuple[str, ...] = (), under: str = CGROUP_PARENT) -> list[int]:
    """Processes in a cgroup under this run's parent (or ``under``), but for those
    waiting in the cgroups of the ids in ``ready``."""
    pids = []
    held = tuple(f"{under}/{cid}" for cid in ready)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines = (entry / "cgroup").read_text().splitlines()
            except OSError:
                continue
            ours = [line for line in lines if under + "/" in line or line.endswith(under)]
            if ours and not all(any(h in line for h in held) for line in ours):
                pids.append(int(entry.name))
    return pids


def helper_processes(helpers: Path) -> list[int]:
    """Processes running containerlib's native helper from ``helpers`` (the forker, warm
    processes), zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                exe = os.readlink(entry / "exe")
            except OSError:
                # A zombie has no exe; its command line is empty.
                continue
            if exe.startswith(str(helpers)):
                found.append(int(entry.name))
    return found


def cgroups_left() -> list[str]:
    """Containers' cgroups under this run's parent, but for the one this process's
    spawner holds ready for its next container."""
    return cgroup_dirs(ready=tuple(spawner.ready_ids()))


def processes_left() -> list[int]:
    """Processes in this run's cgroups, but for the one waiting in the cgroup this
    process's spawner holds ready."""
    return processes_in_our_cgroups(tuple(spawner.ready_ids()))


def processes_holding(root: Path) -> dict[int, str]:
    """Processes with a descriptor open on a file under ``root`` (a keeper holds its
    container's log): pid -> their name."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(str(root) + "/"):
                        found[int(entry.name)] = (entry / "comm").read_text().strip()
                        break
    return found


def mounts_under(*roots: str) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if any(r in line for r in roots)]


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Private run and data roots for the session, checked for leaks at its end."""
    base = tmp_path_factory.mktemp("roots")
    env = {
        "CONTAINERLIB_RUN_ROOT": str(base / "run"),
        "CONTAINERLIB_DATA_ROOT": str(base / "data"),
    }
    if ROOT:  # a non-root user's containers get no cgroup unless they ask for one
        env["CONTAINERLIB_CGROUP_PARENT"] = CGROUP_PARENT
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # This process adopts what detaches from it for the whole session, as a service
    # manager would: the keepers of detached containers, and those the spawner forks
    # ahead of time between tests. The host's PID 1 need not reap them promptly.
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    yield env
    spawner.stop()
    reap_adopted()  # the keeper forked ahead of time ends with the spawner
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    # iterdir, not glob("*"): a state directory left half removed is a dot directory.
    left_state = list((base / "run").iterdir()) if (base / "run").exists() else []
    left_state += list((base / "data" / "containers").glob("*"))
    # The spawner's writable layers made ahead of time, and those waiting to be removed.
    left_state += [p for p in (base / "data" / "pool", base / "data" / "trash") if p.exists()]
    assert not left_state, f"state left behind: {left_state}"
    left = cgroup_dirs(parents=True)
    assert not left, f"cgroups left behind: {left}"
    assert not processes_in_our_cgroups()
    assert not helper_processes(base / "data" / "helpers")
    assert not mounts_under(str(base)), mounts_under(str(base))
    holders = processes_holding(base)
    assert not holders, f"processes still hold files under the roots (keepers?): {holders}"
    from containerlib.linux.netlink import links

    assert not links("clib"), f"network interfaces left behind: {links('clib')}"
    if ROOT:
        from containerlib.network import nat

        assert not nat.table_exists(), "the nftables table containerlib was left behind"
        from containerlib.network.bridge import NETWORK_ROOT

        assert not os.path.exists(NETWORK_ROOT), f"network state left: {os.listdir(NETWORK_ROOT)}"


@pytest.fixture(scope="session")
def busybox(roots: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root file system (Debian's busybox-static)."""
    return busybox_rootfs(tmp_path_factory.mktemp("images") / "busybox")


@pytest.fixture(scope="session")
def image(busybox: Path) -> Image:
    return Image.from_rootfs(busybox)


@pytest.fixture
def state(roots: dict[str, str]) -> Iterator[None]:
    """Asserts that a test leaves no container state, cgroup or mount behind."""
    yield
    reap_adopted()
    run = Path(roots["CONTAINERLIB_RUN_ROOT"])
    assert not list(run.glob("*")) if run.exists() else True
    # One being removed (a keeper's auto_remove) goes under a dot name first: it is gone
    # for everyone at once, and its files go after.
    deadline = time.monotonic() + 10
    while run.exists() and list(run.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(run.iterdir()) if run.exists() else True
    rw = Path(roots["CONTAINERLIB_DATA_ROOT"]) / "containers"
    assert not list(rw.glob("*")) if rw.exists() else True
    if ROOT:  # the networks' state is the host's (per network namespace), not the run root's
        from containerlib.network.bridge import network_state_dir

        assert not os.path.exists(network_state_dir()), os.listdir(network_state_dir())
    # The spawner holds cgroups ready for the next containers, with a process waiting in
    # it; it asks for the janitor's answers first, so nothing is on its way.
    assert len(spawner.ready_ids()) <= WARM_STOCK
    assert not cgroups_left()
    left = processes_left()
    assert not left, [_describe(pid) for pid in left]


def _children() -> dict[int, tuple[str, str]]:
    """This process's children: pid -> (state, name)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rpartition(")")[2].split()
            if int(fields[1]) == os.getpid():
                found[int(entry.name)] = (fields[0], name)
    return found


def _describe(pid: int) -> str:
    """What a process is, for a failed leak check: its name, state, parent and cgroups."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cgroups = Path(f"/proc/{pid}/cgroup").read_text().split()
    except OSError:
        return f"{pid}: gone"
    fields = stat.rpartition(")")[2].split()
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    ours = [c for c in cgroups if CGROUP_PARENT in c][:1]
    return f"{pid} {name} state {fields[0]} parent {fields[1]} {ours}"


def reap_adopted() -> None:
    """Reap the processes this process adopted that have ended (its zombie children)."""
    for pid, (state, _name) in _children().items():
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@pytest.fixture
def adopter() -> Iterator[None]:
    """No keeper, or container of a killed keeper, may be left at the end of the test:
    each ends with its container. (The session makes this process their subreaper, see
    ``roots``, and reaps them.)"""
    yield
    deadline = time.monotonic() + 10
    while True:
        reap_adopted()
        children = _children()
        keepers = [p for p, (_s, name) in children.items() if name == "clib-keeper"]
        # A container whose keeper was killed is adopted here too, and may still be
        # dying (SIGKILL from its parent-death signal): it is reaped once it has.
        containers = [p for p in children if p in processes_in_our_cgroups()]
        if not (keepers or containers) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not keepers, f"keepers left running: {keepers}"
    assert not containers, f"adopted containers left running: {containers}"


def http_get(url: str) -> str:
    """The page at ``url``, once the server in the container has come up (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
