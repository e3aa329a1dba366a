"""Removing a detached container's state directory, on real directories: it leaves its
id's path at once (renamed to a dot name, then emptied), and what a remover killed midway
left under that name is swept by prune."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import containerlib
from containerlib.runtime import records

CID = "3f2a9c1b7d4e5f60718293a4b5c6d7e8"


def _state(run: Path, name: str) -> Path:
    state = run / name
    state.mkdir(parents=True)
    (state / records.STATE_FILE).write_text(json.dumps({"id": CID, "status": "exited"}))
    (state / records.LOG_FILE).write_text("a line\n")
    (state / f"{records.STATE_FILE}.123").write_text("{}")  # a record being replaced
    return state


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_remove_state_leaves_nothing_not_even_a_dot_directory(tmp_path: Path) -> None:
    state = _state(tmp_path / "run", CID)
    records.remove_state(state)
    assert list((tmp_path / "run").iterdir()) == []
    records.remove_state(state)  # twice: nothing to do


def test_remove_state_renames_first_so_the_id_goes_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _state(tmp_path / "run", CID)
    seen: list[list[str]] = []
    unlink = os.unlink

    def watching(path: str, *args: object, **kwargs: object) -> None:
        # What a reader sees in the run root while the files are being removed.
        seen.append(sorted(os.listdir(tmp_path / "run")))
        unlink(path)

    monkeypatch.setattr(os, "unlink", watching)
    records.remove_state(state)
    assert seen
    assert all(entries == [f".removing-{CID}-{os.getpid()}"] for entries in seen)


def test_what_a_killed_remover_left_is_swept_and_never_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    dead = _state(run, f".removing-{CID}-{_dead_pid()}")
    busy = _state(run, f".removing-{'a' * 32}-{os.getpid()}")  # its remover still runs
    monkeypatch.setenv("CONTAINERLIB_RUN_ROOT", str(run))
    monkeypatch.setenv("CONTAINERLIB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CONTAINERLIB_CGROUP_PARENT", "containerlib/unit-test-none")
    assert containerlib.list(all=True) == []  # never a container of its own
    assert records.sweep_removing(str(run)) == [str(dead)]
    assert not dead.exists()
    assert busy.exists()
