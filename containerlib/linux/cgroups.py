"""Control groups: where a container's processes are counted and limited.

A cgroup is a directory in a cgroup file system; writing a pid to its ``cgroup.procs``
moves that process in, and the controller files beside it (``memory.limit_in_bytes`` on
v1, ``memory.max`` on v2) limit everything inside. Hosts come in three kinds: unified
(cgroup v2 only), hybrid (v1 controllers plus a cgroup2 mount without controllers) and
legacy (v1 only). One driver per kind hides that from callers. See cgroups(7).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Protocol

import attrs

__all__ = [
    "Cgroup",
    "CgroupDriver",
    "CgroupLimits",
    "CgroupStats",
    "HybridDriver",
    "UnifiedDriver",
    "probe",
]

#: v1 controllers a container joins on a v1 or hybrid host.
V1_CONTROLLERS: Final = ("memory", "pids", "devices")


@attrs.frozen(kw_only=True)
class CgroupLimits:
    """What the runtime asks of a cgroup; ``None`` leaves the host's default."""

    memory: int | None = None
    memory_swap: int | None = None
    pids: int | None = None
    #: Device access rules applied in order: (allow, "c 1:3 rwm"). Empty leaves access open.
    devices: tuple[tuple[bool, str], ...] = ()


@attrs.frozen(kw_only=True)
class CgroupStats:
    """Figures read from a cgroup when its container has ended."""

    memory_peak: int | None = None
    oom_kills: int = 0


class Cgroup(Protocol):
    """One container's cgroup, in every hierarchy the driver uses."""

    path: str

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes ``0`` to, to join the cgroup."""

    def stats(self) -> CgroupStats:
        """Read the figures of the cgroup."""

    def destroy(self) -> None:
        """Kill every process left inside, then remove the directories, deepest first."""

    def set_limits(self, limits: CgroupLimits) -> None:
        """Write ``limits`` into the cgroup's files; ``None`` leaves a limit as it is.

        Raises:
            OSError: the kernel refused a value, or the controller is missing; the message
                names the file.
        """


class CgroupDriver(Protocol):
    """Creates cgroups on one kind of host."""

    def create(self, path: str, limits: CgroupLimits) -> Cgroup:
        """Make the cgroup ``path`` (relative, such as ``containerlib/3f2a``) with ``limits``.

        Parents are made as needed and stay while their owner runs containers: removing
        and making them again for each container would cost time and race with other
        processes. :meth:`remove_parents` removes them when the owner is done.

        Raises:
            FileExistsError: a cgroup of that name exists already; it is left alone.
            OSError: the kernel refused a directory or a limit; the cgroup is removed.
        """

    def remove_parents(self, path: str) -> None:
        """Remove the parents of ``path`` that are empty and named ``containerlib*``."""


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, f"write {value!r} to {path}: {os.strerror(e.errno or 0)}") from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _mkdirs(base: str, rel: str) -> str:
    """Create ``base/rel``; parents may exist, the leaf must not.

    Another process may remove an empty parent between our mkdir calls (see
    :func:`remove_parents`); the walk then starts again.
    """
    parts = rel.split("/")
    for _attempt in range(100):
        path = base
        try:
            for i, part in enumerate(parts):
                path = os.path.join(path, part)
                try:
                    os.mkdir(path)
                except FileExistsError:
                    if i == len(parts) - 1:
                        raise FileExistsError(
                            errno.EEXIST, f"cgroup {path} exists already"
                        ) from None
        except FileNotFoundError:
            continue
        return path
    raise OSError(errno.EBUSY, f"cgroup {base}/{rel}: its parent keeps disappearing")


def _remove_parents(base: str, rel: str) -> None:
    """rmdir the empty parents of ``base/rel``, deepest first, but only under a top-level
    directory named ``containerlib*``: those belong to containerlib, whoever made them."""
    parts = rel.split("/")
    if not parts[0].startswith("containerlib"):
        return
    for depth in range(len(parts) - 1, 0, -1):
        try:
            os.rmdir(os.path.join(base, *parts[:depth]))
        except OSError:
            return


def _rmdir_retry(path: str, deadline: float) -> None:
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise OSError(
                    e.errno, f"remove cgroup {path}: {os.strerror(e.errno or 0)}"
                ) from None
            time.sleep(0.001)


def _pids(path: str) -> list[int]:
    try:
        return [int(x) for x in _read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def _remove_tree(leaf: str, deadline: float) -> None:
    """Remove ``leaf`` and the sub-cgroups its processes made, deepest first."""
    for dirpath, _dirs, _files in sorted(os.walk(leaf), key=lambda t: -t[0].count("/")):
        _rmdir_retry(dirpath, deadline)


def _remove_empty(leaves: list[str]) -> bool:
    """rmdir each leaf cgroup; False as soon as one is busy or has sub-cgroups."""
    for leaf in leaves:
        try:
            os.rmdir(leaf)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return True


@attrs.define
class _HybridCgroup:
    path: str
    v1_dirs: dict[str, str]
    unified_dir: str | None

    def procs_files(self) -> list[str]:
        dirs = [*self.v1_dirs.values()]
        if self.unified_dir:
            dirs.append(self.unified_dir)
        return [os.path.join(d, "cgroup.procs") for d in dirs]

    def stats(self) -> CgroupStats:
        mem = self.v1_dirs.get("memory")
        if mem is None:
            return CgroupStats()
        peak = int(_read(os.path.join(mem, "memory.max_usage_in_bytes")))
        ooms = _keyed(_read(os.path.join(mem, "memory.oom_control"))).get("oom_kill", 0)
        return CgroupStats(memory_peak=peak, oom_kills=ooms)

    def _dirs(self) -> list[str]:
        return [*self.v1_dirs.values(), *([self.unified_dir] if self.unified_dir else [])]

    def destroy(self) -> None:
        # Most of the time the container's processes are gone and it made no sub-cgroups:
        # one rmdir each is then all it takes.
        if _remove_empty(self._dirs()):
            return
        deadline = time.monotonic() + 5.0
        if self.unified_dir and os.path.exists(os.path.join(self.unified_dir, "cgroup.kill")):
            _write(os.path.join(self.unified_dir, "cgroup.kill"), "1")
        for d in self.v1_dirs.values():
            for _ in range(100):
                left = [pid for sub, _, _ in os.walk(d) for pid in _pids(sub)]
                if not left:
                    break
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.001)
        for d in self._dirs():
            _remove_tree(d, deadline)

    def set_limits(self, limits: CgroupLimits) -> None:
        v1_dirs = self.v1_dirs
        if limits.memory is not None:
            mem = v1_dirs["memory"]
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(limits.memory))
            memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
            if limits.memory_swap is not None and os.path.exists(memsw):
                _write(memsw, str(limits.memory_swap))
        if limits.pids is not None:
            if "pids" not in v1_dirs:
                raise OSError(errno.ENOTSUP, "the v1 pids controller is not mounted")
            _write(os.path.join(v1_dirs["pids"], "pids.max"), str(limits.pids))
        if limits.devices and "devices" not in v1_dirs:
            raise OSError(errno.ENOTSUP, "the v1 devices controller is not mounted")
        for allow, rule in limits.devices:
            name = "devices.allow" if allow else "devices.deny"
            _write(os.path.join(v1_dirs["devices"], name), rule)


@attrs.frozen
class HybridDriver:
    """cgroup v1 controllers, plus the cgroup2 core files where a cgroup2 mount exists.

    Args:
        v1_root: where the v1 controllers are mounted, one directory each.
        unified_root: the cgroup2 mount of a hybrid host, or None on a legacy host.
    """

    v1_root: str = "/sys/fs/cgroup"
    unified_root: str | None = None
    controllers: tuple[str, ...] = V1_CONTROLLERS

    def create(self, path: str, limits: CgroupLimits) -> Cgroup:
        v1_dirs: dict[str, str] = {}
        cg = _HybridCgroup(path, v1_dirs, None)
        try:
            for name in self.controllers:
                v1_dirs[name] = _mkdirs(os.path.join(self.v1_root, name), path)
            if self.unified_root:
                cg.unified_dir = _mkdirs(self.unified_root, path)
            cg.set_limits(limits)
        except BaseException:
            cg.destroy()
            raise
        return cg

    def remove_parents(self, path: str) -> None:
        """Remove the empty ``containerlib*`` parents of ``path`` in every hierarchy."""
        for name in self.controllers:
            _remove_parents(os.path.join(self.v1_root, name), path)
        if self.unified_root:
            _remove_parents(self.unified_root, path)


@attrs.define
class _UnifiedCgroup:
    path: str
    dir: str

    def procs_files(self) -> list[str]:
        return [os.path.join(self.dir, "cgroup.procs")]

    def stats(self) -> CgroupStats:
        peak_file = os.path.join(self.dir, "memory.peak")
        peak = int(_read(peak_file)) if os.path.exists(peak_file) else None
        events = os.path.join(self.dir, "memory.events")
        ooms = _keyed(_read(events)).get("oom_kill", 0) if os.path.exists(events) else 0
        return CgroupStats(memory_peak=peak, oom_kills=ooms)

    def destroy(self) -> None:
        if _remove_empty([self.dir]):
            return
        deadline = time.monotonic() + 5.0
        kill = os.path.join(self.dir, "cgroup.kill")
        if os.path.exists(kill):
            _write(kill, "1")
        _remove_tree(self.dir, deadline)

    def set_limits(self, limits: CgroupLimits) -> None:
        leaf = self.dir
        if limits.memory is not None:
            _write(os.path.join(leaf, "memory.max"), str(limits.memory))
            swap_file = os.path.join(leaf, "memory.swap.max")
            # Without swap accounting the file is absent, and there is no swap to limit.
            if limits.memory_swap is not None and os.path.exists(swap_file):
                swap = max(limits.memory_swap - limits.memory, 0)
                _write(swap_file, str(swap))
        if limits.pids is not None:
            _write(os.path.join(leaf, "pids.max"), str(limits.pids))


@attrs.frozen
class UnifiedDriver:
    """cgroup v2 only: one hierarchy, controllers enabled through ``cgroup.subtree_control``."""

    root: str = "/sys/fs/cgroup"

    def create(self, path: str, limits: CgroupLimits) -> Cgroup:
        parent = os.path.dirname(path)
        wanted = {"memory": limits.memory is not None, "pids": limits.pids is not None}
        # Controllers must be enabled in every ancestor's subtree_control down to the parent.
        node = self.root
        for part in [p for p in parent.split("/") if p]:
            self._enable(node, wanted)
            node = os.path.join(node, part)
            with contextlib.suppress(FileExistsError):
                os.mkdir(node)
        self._enable(node, wanted)
        leaf = os.path.join(node, os.path.basename(path))
        try:
            os.mkdir(leaf)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, f"cgroup {leaf} exists already") from None
        cg = _UnifiedCgroup(path, leaf)
        try:
            cg.set_limits(limits)
        except BaseException:
            cg.destroy()
            raise
        return cg

    def remove_parents(self, path: str) -> None:
        """Remove the empty ``containerlib*`` parents of ``path``."""
        _remove_parents(self.root, path)

    @staticmethod
    def _enable(node: str, wanted: dict[str, bool]) -> None:
        available = _read(os.path.join(node, "cgroup.controllers")).split()
        enabled = _read(os.path.join(node, "cgroup.subtree_control")).split()
        # Every controller a limit may want is enabled when available, so that limits can
        # be set later on a cgroup made without them (see Cgroup.set_limits).
        for name, needed in wanted.items():
            if name in enabled:
                continue
            if name not in available:
                if needed:
                    raise OSError(
                        errno.ENOTSUP, f"cgroup controller {name!r} is not available in {node}"
                    )
                continue
            _write(os.path.join(node, "cgroup.subtree_control"), f"+{name}")


def _cgroup_mounts(mountinfo: str) -> Iterator[tuple[str, str, list[str]]]:
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype in ("cgroup", "cgroup2"):
            yield fstype, fields[4], options


def probe(mountinfo: str | None = None) -> CgroupDriver:
    """Pick the driver for this host by reading ``/proc/self/mountinfo``.

    Returns:
        :class:`UnifiedDriver` when cgroup2 is mounted with controllers and no v1
        memory controller exists; otherwise :class:`HybridDriver`.

    Raises:
        OSError: no cgroup file system is mounted at all (ENOENT).
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1: dict[str, str] = {}
    unified = None
    for fstype, where, options in _cgroup_mounts(mountinfo):
        if fstype == "cgroup2":
            unified = where
        else:
            for opt in options:
                if opt in V1_CONTROLLERS:
                    v1[opt] = where
    if "memory" in v1:
        roots = {os.path.dirname(p) for p in v1.values()}
        return HybridDriver(
            v1_root=roots.pop() if len(roots) == 1 else "/sys/fs/cgroup",
            unified_root=unified,
            controllers=tuple(c for c in V1_CONTROLLERS if c in v1),
        )
    if unified:
        return UnifiedDriver(root=unified)
    raise OSError(errno.ENOENT, "no cgroup file system is mounted on this host")
