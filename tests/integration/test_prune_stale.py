"""prune() and what a killed spawner left of its attached containers.

A spawner that is killed (SIGKILL, the OOM killer) cannot clean up: its containers die
with it, but their cgroups and writable layers, its ready cgroups and its pool of
writable layers stay. prune() removes them, and leaves alone what a spawner that still
runs holds. These tests start real spawners in other processes (a small script using
the library, with roots of their own and this run's cgroup parent), kill one, and look
at the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import containerlib
from containerlib.linux.cgroups import CgroupLimits, probe
from containerlib.runtime import rwdirs
from containerlib.runtime.specconv import Roots
from containerlib.runtime.stale import READY_GRACE, Swept, sweep

from .conftest import CGROUP_PARENT, _children, cgroup_dirs, needs_root, reap_adopted

pytestmark = [
    pytest.mark.root,
    needs_root("containers' cgroups; no cgroup is delegated to this user"),
    pytest.mark.usefixtures("state", "adopter"),
]

# The owner: starts a container that leaves what is hard to remove in its writable
# layer (directories no one may enter, files of another user) and then runs `sleep 60`,
# and one that ends; waits until its spawner holds the next containers' cgroups and
# writable layers ready, says what it has, and waits for its standard input to close.
_OWNER = """
import json, sys
from containerlib import Container
from containerlib.runtime.client import spawner

hard = "mkdir -p /ro/deep && touch /ro/deep/f && chown -R 4321:4321 /ro && chmod 0 /ro/deep /ro"
box = Container(sys.argv[1]).start(["sh", "-c", hard + " && touch /up && exec sleep 60"])
box.wait_for_file("/up")
Container(sys.argv[1]).run(["true"])
ready = spawner.ready_ids()
print(json.dumps({"spawner": spawner.pid, "id": box.id, "pid": box.pid, "ready": ready}))
sys.stdout.flush()
sys.stdin.read()
"""


@attrs.define
class Owner:
    """An owner script and what it said it has."""

    proc: subprocess.Popen[str]
    spawner: int
    id: str
    pid: int
    ready: list[str]

    @property
    def ids(self) -> list[str]:
        return [self.id, *self.ready]

    def owner_name(self) -> str:
        """The name of its spawner's owner file (see containerlib.runtime.stale)."""
        stat = Path(f"/proc/{self.spawner}/stat").read_text()
        return f"{self.spawner}-{stat.rpartition(')')[2].split()[19]}"


@attrs.define
class Scene:
    data: Path
    env: dict[str, str]
    busybox: Path
    procs: list[subprocess.Popen[str]] = attrs.Factory(list)
    #: Processes of the test's own, to be killed at its end.
    others: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    def start_owner(self) -> Owner:
        proc = subprocess.Popen(
            [sys.executable, "-c", _OWNER, str(self.busybox)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **self.env},
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the owner script failed (exit {proc.wait()})"
        said: dict[str, Any] = json.loads(line)
        return Owner(proc, **said)

    def layers_of(self, owner_name: str, kind: str) -> list[str]:
        """The writable layers in ``data/kind`` marked as the owner's."""
        owner_file = self.data / rwdirs.OWNERS / owner_name
        found = []
        ino = owner_file.stat().st_ino
        for entry in (self.data / kind).iterdir() if (self.data / kind).exists() else ():
            with contextlib.suppress(FileNotFoundError):
                if (entry / rwdirs.MARKER).stat().st_ino == ino:
                    found.append(entry.name)
        return found


@pytest.fixture
def scene(
    roots: dict[str, str],
    busybox: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Scene]:
    """Run and data roots of their own for the owner scripts and for prune() here (so
    that the session's own spawner, with its layers in the session's data root, is none
    of theirs); this run's cgroup parent, which the session's spawner shares."""
    base = tmp_path / "roots"
    env = {
        "CONTAINERLIB_RUN_ROOT": str(base / "run"),
        "CONTAINERLIB_DATA_ROOT": str(base / "data"),
        "CONTAINERLIB_CGROUP_PARENT": CGROUP_PARENT,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    scene = Scene(base / "data", env, busybox)
    yield scene
    for other in scene.others:
        other.kill()
        other.wait()
    for proc in scene.procs:  # their spawners clean up as their owners end
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
        proc.wait(30)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()
    containerlib.prune()  # whatever a failed test left
    reap_adopted()
    if base.exists():
        shutil.rmtree(base)


def wait_for_adopted_to_end(keep: set[int]) -> None:
    """Wait until the processes this process adopted (a killed owner's spawner, its
    janitor, warm processes and containers) have ended and been reaped; ``keep``: this
    process's children that are not to end."""
    deadline = time.monotonic() + 30
    while set(_children()) - keep:
        assert time.monotonic() < deadline, f"still running: {set(_children()) - keep}"
        reap_adopted()
        time.sleep(0.01)


def let_age(ids: list[str]) -> None:
    """Wait until the cgroups of ``ids`` are older than READY_GRACE: prune() leaves a
    younger ready cgroup alone (a running janitor's may be waiting for its process)."""
    dirs = cgroups_of(ids)
    newest = max(max(os.stat(d).st_mtime, os.stat(d).st_ctime) for d in dirs)
    while time.time() <= newest + READY_GRACE:
        time.sleep(0.05)


def cgroups_of(ids: list[str]) -> list[str]:
    """The cgroup directories of the containers (or ready cgroups) ``ids``."""
    return [d for d in cgroup_dirs() if Path(d).name in ids]


def test_prune_removes_what_a_killed_spawner_left_and_keeps_a_live_ones(scene: Scene) -> None:
    dead = scene.start_owner()
    live = scene.start_owner()
    dead_name, live_name = dead.owner_name(), live.owner_name()
    live_cgroups = sorted(cgroups_of(live.ids))
    assert dead.ready
    assert live.ready
    assert cgroups_of(dead.ids)
    assert cgroups_of(live.ids)
    # Every hierarchy: the memory one and the others (cgroup2 as well on a hybrid host).
    hierarchies = {Path(d).relative_to("/sys/fs/cgroup").parts[0] for d in cgroups_of([dead.id])}
    assert {"memory", "pids"} <= hierarchies
    dead_pool = scene.layers_of(dead_name, "pool")
    live_pool = scene.layers_of(live_name, "pool")
    assert dead_pool
    assert live_pool
    upper = scene.data / "containers" / dead.id / "upper"
    assert (upper / "ro").stat().st_mode & 0o777 == 0
    assert (upper / "ro").stat().st_uid == 4321

    # A process of the killed owner's container that outlived it (here, one of this
    # test's own, moved into the container's cgroup): prune() must kill it.
    survivor = subprocess.Popen(["sleep", "60"])
    scene.others.append(survivor)
    for cgroup in cgroups_of([dead.id]):
        Path(cgroup, "cgroup.procs").write_text(str(survivor.pid))

    keep = set(_children()) - {dead.proc.pid}
    os.kill(dead.spawner, signal.SIGKILL)  # first: killed alone, the owner's script
    os.kill(dead.proc.pid, signal.SIGKILL)  # would have its spawner clean up
    dead.proc.wait()
    wait_for_adopted_to_end(keep)
    # What the killed spawner left: its container's process is gone (parent-death
    # signal), not its cgroups, writable layer or pool.
    with pytest.raises(ProcessLookupError):
        os.kill(dead.pid, 0)
    assert cgroups_of(dead.ids)
    assert (scene.data / "containers" / dead.id).is_dir()
    assert scene.layers_of(dead_name, "pool") == dead_pool
    assert survivor.poll() is None
    let_age(dead.ready)

    assert containerlib.prune() == []  # its return: the detached containers removed

    assert cgroups_of(dead.ids) == []
    assert survivor.wait(10) == -signal.SIGKILL
    assert not (scene.data / "containers" / dead.id).exists()
    pool = scene.data / "pool"
    assert not any((pool / name).exists() for name in dead_pool)
    assert not (scene.data / rwdirs.OWNERS / dead_name).exists()
    # The live owner's: all there, its container still running.
    assert sorted(cgroups_of(live.ids)) == live_cgroups
    assert (scene.data / "containers" / live.id).is_dir()
    assert set(live_pool) <= set(os.listdir(pool))
    assert (scene.data / rwdirs.OWNERS / live_name).is_file()
    os.kill(live.pid, 0)

    # It ends as usual, and takes everything with it.
    assert live.proc.stdin is not None
    live.proc.stdin.close()
    assert live.proc.wait(30) == 0
    assert cgroups_of(live.ids) == []
    assert not (scene.data / "containers").exists() or not os.listdir(scene.data / "containers")
    assert not pool.exists()
    assert not (scene.data / rwdirs.OWNERS).exists()


def test_prune_leaves_a_running_spawners_containers_alone(scene: Scene) -> None:
    owner = scene.start_owner()
    before = sorted(cgroup_dirs())
    layers = sorted(os.listdir(scene.data / "containers"))
    pool = sorted(os.listdir(scene.data / "pool"))

    assert containerlib.prune() == []

    assert sorted(cgroup_dirs()) == before
    assert sorted(os.listdir(scene.data / "containers")) == layers
    assert sorted(os.listdir(scene.data / "pool")) == pool
    os.kill(owner.pid, 0)  # its container still runs


def test_sweep_says_what_it_removed(scene: Scene) -> None:
    dead = scene.start_owner()
    dead_name = dead.owner_name()
    dead_pool = scene.layers_of(dead_name, "pool")
    keep = set(_children()) - {dead.proc.pid}
    os.kill(dead.spawner, signal.SIGKILL)
    os.kill(dead.proc.pid, signal.SIGKILL)
    dead.proc.wait()
    wait_for_adopted_to_end(keep)
    let_age(dead.ready)

    swept = sweep(Roots.from_env(), probe())

    assert swept.containers == (dead.id,)
    assert sorted(swept.ready) == sorted(dead.ready)
    assert sorted(swept.layers) == sorted(str(scene.data / "pool" / name) for name in dead_pool)
    assert cgroups_of(dead.ids) == []
    # Nothing is left to sweep.
    assert sweep(Roots.from_env(), probe()) == Swept()


def test_a_ready_cgroup_with_no_process_goes_once_it_is_not_new(scene: Scene) -> None:
    # As a janitor makes one: the cgroup first, the process a moment later.
    cid = secrets.token_hex(16)
    made = probe().create(f"{CGROUP_PARENT}/{cid}", CgroupLimits())
    try:
        assert sweep(Roots.from_env(), probe()) == Swept()  # it may be on its way
        assert cgroups_of([cid])
        let_age([cid])

        assert sweep(Roots.from_env(), probe()) == Swept(ready=(cid,))

        assert cgroups_of([cid]) == []
    finally:
        with contextlib.suppress(OSError):
            made.destroy()
