"""A fake cgroup file system in tmp_path, for the drivers' unit tests.

A plain directory is not cgroupfs: ``mkdir`` makes no interface files, and a file keeps
what was written to it instead of acting on it. :class:`FakeCgroupfs` closes that gap where
the drivers can see it, without touching the drivers: a Python audit hook (sys.addaudithook;
CPython raises an event before each open, mkdir and rmdir) fills a new cgroup directory with
the files its controller would have when something first opens a file in it, logs
every value written to an interface file, applies ``cgroup.subtree_control`` writes as the
kernel does, and lets ``rmdir`` remove a cgroup that has no processes and no children.
On v2 it also acts on the core files: a write to ``cgroup.freeze`` shows in
``cgroup.events`` (``frozen 1``, unless :attr:`FakeCgroupfs.freezer_stops` is False, as
when a process cannot be stopped), and a write to ``cgroup.kill`` empties ``cgroup.procs``
in the cgroup and below, as the processes die. Tests that need none of that use plain
trees, and check what a missing file does.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakecg_v1 import _MEMSW, _V1_COMMON, _V1_FILES
from tests.unit.fakecg_v2 import (
    _V2_CORE,
    _V2_FILES,
    _V2_IO_WEIGHTS,
    _V2_ORDER,
    _V2_PSI,
    _V2_SWAP,
)

MiB = 1 << 20

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
        psi: the kernel reports pressure (``*.pressure`` files in every v2 cgroup).
        io_weights: the io weight files the v2 io controller shows (``io.weight``,
            ``io.bfq.weight``): which ones depends on the kernel's options.
    """

    #: A write of 1 to cgroup.freeze stops every process (cgroup.events "frozen 1").
    freezer_stops: bool = True

    def __init__(
        self,
        base: Path,
        hierarchies: dict[str, str],
        *,
        swap: bool = True,
        v2_controllers: str = "memory pids",
        psi: bool = True,
        io_weights: tuple[str, ...] = ("io.weight",),
    ) -> None:
        self.base = base
        self.swap = swap
        self.psi = psi
        self.io_weights = io_weights
        self._refused: set[str] = set()
        self._failing: dict[str, int] = {}
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
                if psi:
                    files.update(_V2_PSI)
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
            self._populate(str((self.base / rel).parent))
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

    def refuse(self, name: str) -> None:
        """Make the kernel refuse every write to the files called ``name`` in cgroups
        made from now on. The write itself fails (ENOSPC: the file is a link to
        /dev/full), as when the kernel rejects a value; opening the file still works."""
        self._refused.add(name)

    def fail_reads(self, name: str, err: int) -> None:
        """Make every read of the files called ``name`` fail with ``err``, as pressure
        files do (EOPNOTSUPP) on a kernel with PSI compiled in but turned off. The kernel
        fails the read; here the open fails, which the drivers' reads cannot tell apart."""
        self._failing[name] = err

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
            err = self._failing.get(os.path.basename(p))
            if err is not None:
                raise OSError(err, os.strerror(err), p)
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
        if self.psi:
            files.update(_V2_PSI)
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
            if name == "io":
                files.update({f: _V2_IO_WEIGHTS[f] for f in self.io_weights})
        return files

    def _populate(self, d: str) -> None:
        root = self._root_of(d)
        if root is None or d in self._populated or not os.path.isdir(d):
            return
        self._write_files(d, self._files_for(d, self._roots[root]), fresh=True)
        self._populated.add(d)

    def _write_files(self, d: str, files: dict[str, str], *, fresh: bool) -> None:
        """Make a cgroup's files; in one made before (``fresh`` False), only those it
        lacks, and its cgroup.controllers anew."""
        for name, text in files.items():
            path = Path(d, name)
            if not fresh and name != "cgroup.controllers" and os.path.lexists(path):
                continue
            if name in self._refused:
                os.symlink("/dev/full", path)
            else:
                path.write_text(text)

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
            # The children gain the files of the controllers enabled for them.
            for entry in os.scandir(os.path.dirname(p)):
                if entry.is_dir(follow_symlinks=False) and entry.path in self._populated:
                    self._write_files(entry.path, self._files_for(entry.path, "v2"), fresh=False)
        elif os.path.basename(p) == "cgroup.freeze":
            if value.strip() == "0" or self.freezer_stops:
                self._set_event(os.path.dirname(p), "frozen", value.strip())
        elif os.path.basename(p) == "cgroup.kill" and value.strip() == "1":
            for d, _, _ in os.walk(os.path.dirname(p)):
                if os.path.isfile(os.path.join(d, "cgroup.procs")):
                    Path(d, "cgroup.procs").write_text("")
                    self._set_event(d, "populated", "0")

    @staticmethod
    def _set_event(d: str, key: str, value: str) -> None:
        events = Path(d, "cgroup.events")
        lines = [
            f"{key} {value}" if line.split()[:1] == [key] else line
            for line in events.read_text().splitlines()
        ]
        events.write_text("".join(line + "\n" for line in lines))


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
