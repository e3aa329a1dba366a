"""What a killed spawner leaves behind: telling it from what a live one holds, and sweeping it.

A spawner that ends normally removes everything it made. One that is killed (SIGKILL,
the OOM killer) cannot: its containers die with it (``PR_SET_PDEATHSIG``), but their
cgroups, their writable layers, its ready cgroups and its pool of writable layers stay.

To tell them apart, each spawner holds a shared ``flock`` on its *owner file*
``<data root>/owners/<pid>-<start time>`` for its lifetime, and every writable layer it
makes holds a hard link to that file (``owner``, see :mod:`containerlib.runtime.rwdirs`).
A lock belongs to the open file, not to a name or a pid, and the kernel drops it when the
last process holding the file ends, however it ends. So whoever can take an exclusive
lock through a layer's link knows that its owner is gone: no pid reuse, no clock, no
message to a process that may be stuck. See flock(2).

A ready cgroup (a cgroup made ahead of time with a warm process waiting inside, see
:class:`~containerlib.runtime.warm.Slot`) has no layer: it is stale when no writable
layer nor detached container has its name and no process is left in it (a warm process
dies with its spawner). Such a cgroup is only ever removed with rmdir(2), which the
kernel refuses while a process is inside. A running spawner's janitor makes a ready
cgroup a moment before the waiting process is in it: so one made in the last
:data:`READY_GRACE` seconds is left for the next prune (removed in that moment, the
process would fail to join it, and that spawner would make each container's cgroup at
its start from then on: slower, not wrong).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

import attrs

from containerlib.linux.cgroups import CgroupDriver, HybridDriver, UnifiedDriver
from containerlib.runtime import rwdirs
from containerlib.runtime.ids import ID_PATTERN
from containerlib.runtime.records import alive, start_time

if TYPE_CHECKING:
    from containerlib.runtime.specconv import Roots

__all__ = ["READY_GRACE", "Owner", "Swept", "held", "sweep"]

#: How old a ready cgroup with no process in it must be to be stale, in seconds (the
#: times of its directory, which the kernel sets when it is made).
READY_GRACE = 1.0


class Owner:
    """A spawner's owner files: one per data root it makes writable layers in, made and
    locked the first time (:meth:`claim`), removed when it is done (:meth:`release`).

    Making one also has the layers this process (and the processes it forks, such as
    the janitor) makes from then on marked as its own.

    Example:
        >>> owner = Owner()  # doctest: +SKIP
        >>> owner.claim("/var/lib/containerlib")  # doctest: +SKIP
        >>> held("/var/lib/containerlib/owners/" + owner.name)  # doctest: +SKIP
        True
    """

    def __init__(self) -> None:
        pid = os.getpid()
        self.name = f"{pid}-{start_time(pid)}"
        self._fds: dict[str, int] = {}
        rwdirs.set_owner(self.name)

    def claim(self, data_root: str) -> None:
        """Make and lock the owner file of ``data_root``, unless done already (a lookup:
        it is called at each start). If it cannot be made, layers there go unmarked,
        and prune leaves them alone."""
        if data_root in self._fds:
            return
        path = rwdirs.owner_file(data_root, self.name)
        fd = -1
        for _attempt in range(3):  # the directory may be removed meanwhile (release)
            try:
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
                break
            except FileNotFoundError:
                continue
            except OSError:
                break
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except OSError:
                os.close(fd)
                fd = -1
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self._fds[data_root] = fd

    def release(self) -> None:
        """Remove the owner files: the spawner has removed what it made."""
        for data_root, fd in self._fds.items():
            if fd < 0:
                continue
            path = rwdirs.owner_file(data_root, self.name)
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))  # the last spawner of this data root
        self._fds = {}


def held(path: str) -> bool | None:
    """Whether a running process holds the owner file ``path`` (an owner file, or a
    layer's link to one): True if its lock is held, False if not, None if there is no
    such file (a layer without its mark: made by an older version, or being made).

    Example:
        >>> held("/var/lib/containerlib/containers/3f2a/owner")  # doctest: +SKIP
        False
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # cannot tell: as good as held
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock taken
    return False


@attrs.frozen(kw_only=True)
class Swept:
    """What :func:`sweep` removed.

    Attributes:
        containers: ids of attached containers whose cgroup and writable layer were left.
        ready: ids of ready cgroups (made ahead of time) that were left.
        layers: writable layers of the pool and the trash that were left.
    """

    containers: tuple[str, ...] = ()
    ready: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()


def sweep(roots: Roots, driver: CgroupDriver | None = None, *, skip: Collection[str] = ()) -> Swept:
    """Remove what killed spawners left in ``roots``: the cgroups of their containers
    (killing what is still inside), the containers' writable layers, their ready cgroups
    and their pool and trash. What a live spawner, a detached container's keeper or a
    container of another version holds is left alone, as is whatever is not named as
    containerlib names things.

    Args:
        roots: the run and data roots and the cgroup parent to look in.
        driver: the cgroup driver; None skips cgroups (a host without them).
        skip: more container ids to leave alone (those of detached containers, found
            in the run root, always are).

    Returns:
        What was removed.

    Example:
        >>> from containerlib.linux.cgroups import probe
        >>> sweep(Roots.from_env(), probe()).containers  # doctest: +SKIP
        ('3f2a9c1b7d4e5f60718293a4b5c6d7e8',)
    """
    leave = set(skip) | _detached_ids(roots.run)
    containers_dir = os.path.join(roots.data, "containers")
    layered = set(_entries(containers_dir))
    removed = [
        cid
        for cid in sorted(layered - leave)
        if _sweep_container(os.path.join(containers_dir, cid), roots.cgroup_parent, driver)
    ]
    layers = []
    for kind in ("pool", "trash"):
        directory = os.path.join(roots.data, kind)
        for name in _entries(directory):
            path = os.path.join(directory, name)
            if held(os.path.join(path, rwdirs.MARKER)) is False and _removed(path):
                layers.append(path)
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # a spawner that wants it again makes it again
    ready: list[str] = []
    if driver is not None:
        ready = _sweep_ready(driver, roots.cgroup_parent, leave | layered)
        if removed or ready:
            with contextlib.suppress(OSError, ValueError):
                driver.remove_parents(f"{roots.cgroup_parent}/x")
    _sweep_owners(os.path.join(roots.data, rwdirs.OWNERS))
    return Swept(containers=tuple(removed), ready=tuple(ready), layers=tuple(layers))


def _sweep_container(rw_dir: str, cgroup_parent: str, driver: CgroupDriver | None) -> bool:
    """Remove the container of the writable layer ``rw_dir`` if its owner is gone: its
    cgroup (killing what is still inside), then the layer; True if it was removed."""
    if held(os.path.join(rw_dir, rwdirs.MARKER)) is not False:
        return False
    cid = os.path.basename(rw_dir)
    if driver is not None and ID_PATTERN.fullmatch(cid):
        try:
            driver.open(f"{cgroup_parent}/{cid}").destroy()
        except FileNotFoundError:
            pass
        except OSError:
            return False  # still busy: the layer stays too, for the next prune
    return _removed(rw_dir)


def _removed(rw_dir: str) -> bool:
    """Remove the writable layer ``rw_dir``; True if it is gone."""
    rwdirs.remove_rw(rw_dir)
    return not os.path.lexists(rw_dir)


def _entries(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _subdirs(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _detached_ids(run_root: str) -> set[str]:
    """The ids of the detached containers in ``run_root`` (each has a state directory
    there from before its keeper makes anything), whatever their status: their
    leftovers are prune's other part."""
    return set(_subdirs(run_root))


def _hierarchies(driver: CgroupDriver) -> list[str]:
    """The mount directory of each hierarchy ``driver`` uses."""
    if isinstance(driver, UnifiedDriver):
        return [driver.root]
    if isinstance(driver, HybridDriver):
        unified = [driver.unified_root] if driver.unified_root else []
        return [*driver.hierarchies(), *unified]
    return []


def _sweep_ready(driver: CgroupDriver, parent: str, leave: Collection[str]) -> list[str]:
    """rmdir the cgroups under ``parent`` named as containers but with neither a
    writable layer nor a detached container of that name (``leave``), nor a process in
    them: the ready cgroups of killed spawners. A live one's has its warm process in it,
    and the kernel refuses to remove a cgroup with a process inside (EBUSY)."""
    rel = "/".join(p for p in parent.split("/") if p)
    tops = [os.path.join(mount, rel) for mount in _hierarchies(driver)]
    names = sorted({n for top in tops for n in _subdirs(top) if ID_PATTERN.fullmatch(n)})
    removed = []
    made_before = time.time() - READY_GRACE
    for cid in names:
        if cid in leave:
            continue
        dirs = [os.path.join(top, cid) for top in tops if os.path.isdir(os.path.join(top, cid))]
        if any(_made_after(d, made_before) or _populated(d) for d in dirs):
            continue
        if all(_rmdir_tree(d) for d in dirs):
            removed.append(cid)
    return removed


def _made_after(cgroup_dir: str, when: float) -> bool:
    """The cgroup ``cgroup_dir`` was made (or had a sub-cgroup made) after ``when``."""
    try:
        st = os.stat(cgroup_dir)
    except FileNotFoundError:
        return False
    return max(st.st_mtime, st.st_ctime) > when


def _populated(cgroup_dir: str) -> bool:
    """A process is in the cgroup ``cgroup_dir`` or below it."""
    for top, _subdirs, _files in os.walk(cgroup_dir):
        try:
            with open(os.path.join(top, "cgroup.procs"), "rb") as f:
                if f.read().strip():
                    return True
        except FileNotFoundError:
            continue
    return False


def _rmdir_tree(cgroup_dir: str) -> bool:
    """rmdir a cgroup and its sub-cgroups, deepest first; False if one stays."""
    for top, _subdirs, _files in sorted(os.walk(cgroup_dir), key=lambda t: -t[0].count("/")):
        try:
            os.rmdir(top)
        except FileNotFoundError:
            pass
        except OSError:  # EBUSY: a process is inside; EACCES: not ours to remove
            return False
    return True


def _sweep_owners(owners: str) -> None:
    """Remove the owner files of spawners that have ended: unlocked, and their process
    (named by the file's pid and start time) gone. The lock alone is not enough: a
    spawner makes its file a moment before it locks it."""
    for name in _entries(owners):
        pid, _, started = name.partition("-")
        if not (pid.isdigit() and started.isdigit()):
            continue
        path = os.path.join(owners, name)
        if held(path) is False and not alive(int(pid), int(started)):
            with contextlib.suppress(OSError):
                os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(owners)
