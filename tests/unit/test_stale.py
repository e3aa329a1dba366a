"""The owner files that tell a live spawner's writable layers from a killed one's
(containerlib.runtime.stale), on real files and real locks: no root needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib.runtime import rwdirs
from containerlib.runtime.specconv import Roots
from containerlib.runtime.stale import Owner, held, sweep

# Another process that claims an owner file for a data root, makes a marked layer in
# its pool, says so, and waits: the stand-in for a spawner.
_OWNER_SCRIPT = """
import sys
from containerlib.runtime import rwdirs
from containerlib.runtime.stale import Owner
owner = Owner()
owner.claim(sys.argv[1])
print(owner.name, rwdirs.new_rw_dir(sys.argv[1] + "/containers"), flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def no_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Owner made here marks the layers this process makes: not after the test."""
    monkeypatch.setattr(rwdirs, "_owner", None)


@pytest.fixture
def other_owner(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """A live owner in another process: (process, owner name, its pool layer)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    name, layer = proc.stdout.readline().split()
    yield proc, name, layer
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    assert proc.stdin is not None
    proc.stdin.close()
    proc.stdout.close()


def test_a_claimed_owner_file_is_held_until_released(tmp_path: Path) -> None:
    owner = Owner()
    assert owner.name == f"{os.getpid()}-{_start_time(os.getpid())}"
    owner.claim(str(tmp_path))
    path = tmp_path / "owners" / owner.name
    assert path.is_file()
    assert held(str(path)) is True
    owner.claim(str(tmp_path))  # again: nothing new
    assert os.listdir(tmp_path / "owners") == [owner.name]
    owner.release()
    assert not (tmp_path / "owners").exists()
    assert held(str(path)) is None


def test_a_layer_is_marked_with_its_owners_file(tmp_path: Path) -> None:
    owner = Owner()
    owner.claim(str(tmp_path))
    layer = rwdirs.new_rw_dir(str(tmp_path / "containers"))
    mark = Path(layer, rwdirs.MARKER)
    assert mark.stat().st_ino == (tmp_path / "owners" / owner.name).stat().st_ino
    assert held(str(mark)) is True
    owner.release()
    # The owner is done: its layer (had one been left) is no one's.
    assert held(str(mark)) is False
    rwdirs.remove_rw(layer)
    assert not os.path.exists(layer)


def test_without_an_owner_a_layer_is_not_marked(tmp_path: Path) -> None:
    layer = rwdirs.new_rw_dir(str(tmp_path / "containers"))
    assert held(os.path.join(layer, rwdirs.MARKER)) is None


def test_a_killed_owners_layers_are_no_ones(
    other_owner: tuple[subprocess.Popen[str], str, str],
) -> None:
    proc, _name, layer = other_owner
    mark = os.path.join(layer, rwdirs.MARKER)
    assert held(mark) is True
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert held(mark) is False


def test_sweep_removes_a_killed_owners_layers_only(
    tmp_path: Path, other_owner: tuple[subprocess.Popen[str], str, str]
) -> None:
    data = tmp_path
    roots = Roots(run=str(tmp_path / "run"), data=str(data), cgroup_parent="containerlib")
    proc, dead_name, dead_pool = other_owner
    live = Owner()
    live.claim(str(data))
    try:
        containers = data / "containers"
        # The dead owner's container, moved out of the pool as a start does, and a layer
        # in its trash; the live owner's container and pool layer; a layer with no mark
        # (an older version's, or one being made); a detached container's.
        rwdirs.set_owner(dead_name)
        os.makedirs(containers)
        os.rename(rwdirs.new_rw_dir(str(containers)), containers / "dead")
        dead_trash = rwdirs.trash_path(str(containers / "x"))
        os.rename(rwdirs.new_rw_dir(str(containers)), dead_trash)
        rwdirs.set_owner(live.name)
        os.rename(rwdirs.new_rw_dir(str(containers)), containers / "live")
        live_pool = rwdirs.new_rw_dir(str(containers))
        rwdirs.set_owner(None)
        os.rename(rwdirs.new_rw_dir(str(containers)), containers / "unmarked")
        rwdirs.set_owner(dead_name)
        os.rename(rwdirs.new_rw_dir(str(containers)), containers / "detached")
        (tmp_path / "run" / "detached").mkdir(parents=True)

        swept = sweep(roots)
        assert swept.containers == ()  # its owner still runs
        assert swept.layers == ()

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        swept = sweep(roots)
        assert swept.containers == ("dead",)
        assert sorted(swept.layers) == sorted([dead_pool, dead_trash])
        assert swept.ready == ()
        assert sorted(os.listdir(containers)) == ["detached", "live", "unmarked"]
        assert os.listdir(data / "pool") == [os.path.basename(live_pool)]
        assert not (data / "trash").exists()
        # The killed owner's file went too; the live one's stays.
        assert os.listdir(data / "owners") == [live.name]
    finally:
        live.release()


def _start_time(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text.rpartition(")")[2].split()[19])
