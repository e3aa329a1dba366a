"""The cgroup the spawner makes ahead of time for the next container given no id.

Moving a process into a cgroup can wait several milliseconds for the kernel (an RCU grace
period after a quiet spell), so the spawner makes the next container's cgroup, named by an
id it picks, and moves the waiting process into it before anyone asks. These tests check
what a user could see of that: the id, the cgroup, the limits, and that nothing is left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from containerlib import Container, Image
from containerlib.runtime.client import spawner
from containerlib.runtime.spawner import WARM_STOCK

from .conftest import CGROUP_PARENT, needs_root

pytestmark = [
    pytest.mark.root,
    needs_root("cgroups made ahead of time; no cgroup is delegated to this user"),
    pytest.mark.usefixtures("state"),
]

MEMORY = Path("/sys/fs/cgroup/memory")


def memory_cgroup_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path.strip("/")
    raise AssertionError(f"process {pid} has no memory cgroup")


def test_the_next_container_gets_the_id_held_ready(image: Image) -> None:
    Container(image).run(["true"])
    held = spawner.ready_ids()
    assert len(held) == WARM_STOCK == 2
    ready = held[0]  # the oldest goes first
    # The cgroup exists before the container does, with the waiting process inside.
    waiting = [
        int(p) for p in (MEMORY / CGROUP_PARENT / ready / "cgroup.procs").read_text().split()
    ]
    assert len(waiting) == 1
    with Container(image).limit(mem="48M", pids=12).start(["sleep", "30"]) as c:
        assert c.id == ready
        assert c.pid == waiting[0]
        assert memory_cgroup_of(c.pid) == f"{CGROUP_PARENT}/{ready}"
        # In every hierarchy: cloned into the cgroup2 one, moved into the v1 ones.
        lines = Path(f"/proc/{c.pid}/cgroup").read_text().splitlines()
        ours = [line for line in lines if line.endswith(f"/{CGROUP_PARENT}/{ready}")]
        controllers = {name for line in ours for name in line.split(":")[1].split(",")}
        assert {"memory", "pids", "devices", "blkio"} <= controllers
        if Path("/sys/fs/cgroup/unified/cgroup.procs").exists():
            assert f"0::/{CGROUP_PARENT}/{ready}" in lines
        cgroup = MEMORY / CGROUP_PARENT / ready
        assert int((cgroup / "memory.limit_in_bytes").read_text()) == 48 << 20
        pids = Path("/sys/fs/cgroup/pids") / CGROUP_PARENT / ready / "pids.max"
        assert pids.read_text().strip() == "12"
    assert not (MEMORY / CGROUP_PARENT / ready).exists()
    # Another is made in its place, under another id.
    following = spawner.ready_ids()
    assert len(following) == 2
    assert ready not in following
    assert held[1] in following


def test_limits_do_not_pass_from_one_container_to_the_next(image: Image) -> None:
    Container(image).limit(mem="32M", pids=8).run(["true"])
    # A cgroup made afresh has no limit: the value the parent (never limited) shows.
    no_limit = (MEMORY / CGROUP_PARENT / "memory.limit_in_bytes").read_text()
    assert int(no_limit) > 1 << 50
    with Container(image).start(["sleep", "30"]) as c:
        cgroup = MEMORY / CGROUP_PARENT / c.id
        assert (cgroup / "memory.limit_in_bytes").read_text() == no_limit
        pids_max = Path("/sys/fs/cgroup/pids") / CGROUP_PARENT / c.id / "pids.max"
        assert pids_max.read_text() == "max\n"


def test_a_container_given_an_id_leaves_the_ready_cgroup_behind_it(image: Image) -> None:
    Container(image).run(["true"])
    ready = spawner.ready_ids()[0]
    with Container(image).start(["sleep", "30"], id="given-id") as c:
        assert c.id == "given-id"
        assert memory_cgroup_of(c.pid) == f"{CGROUP_PARENT}/given-id"
    # The process held ready moved to the container's cgroup; the one made for it is gone.
    assert not (MEMORY / CGROUP_PARENT / ready).exists()
    assert ready not in spawner.ready_ids()


def test_ids_picked_by_the_spawner_are_unique(image: Image) -> None:
    ids = [Container(image).run(["true"]).id for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)
