"""Processes cloned ahead of time into a container's namespaces, waiting for a plan.

Most of a container's start is the clone(2) that makes its namespaces and the steps every
container shares (the parent-death signal, ``lo`` up, ``/`` private). A *warm* process
has done them already: it waits on a socket for the plan and the stdio descriptors. It
runs the native init helper (see :mod:`containerlib.runtime.nativeinit`) when one could be
built, else the Python child (:func:`containerlib.runtime._child.child_main`).
"""

from __future__ import annotations

import array
import contextlib
import errno
import gc
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

import attrs

from containerlib.errors import ContainerSetupError
from containerlib.linux import syscalls as sc
from containerlib.linux.cgroups import Cgroup, CgroupDriver, CgroupLimits
from containerlib.runtime import rwdirs
from containerlib.runtime._child import SETUP_FAILED, child_main
from containerlib.runtime.plan import MountStep, Plan

__all__ = [
    "Forker",
    "Premount",
    "Slot",
    "Warm",
    "WarmFailed",
    "clone_warm",
    "discard",
    "limits_for",
    "make_slot",
    "new_slot",
    "premount_key",
    "premount_stamps",
    "run_exec_helper",
    "start_exec_helper",
]

_MAX_FD = os.sysconf("SC_OPEN_MAX")


@attrs.define
class Slot:
    """A cgroup made ahead of time for a container whose id the spawner picks, with the
    warm process already in it.

    Moving a process into a cgroup takes a lock that, after a quiet spell, waits for an RCU
    grace period: several milliseconds here. Done ahead of time, no start waits for it.
    The cgroup's name is the container's id, so the id is picked with it.
    """

    id: str
    cgroup: Cgroup
    #: The device rules written ahead of time (those of the last container, most likely
    #: those of the next).
    devices: tuple[tuple[bool, str], ...] = ()

    def fits(self, plan: Plan) -> bool:
        """The container of ``plan`` can have this slot (and so this id)."""
        return (
            plan.spawner_picks_id
            and plan.cgroup_path is not None
            and os.path.dirname(plan.cgroup_path) == os.path.dirname(self.cgroup.path)
        )


@attrs.frozen
class Premount:
    """What a warm process mounted ahead of time: the rootfs and the first mounts of the
    plan the next container most likely has (the last one's), on a writable layer of the
    pool. A container whose plan has the same :func:`premount_key` and whose layers and
    bind sources are still the same directories (:func:`premount_stamps`) takes them
    as they are, which saves the overlay and most mounts at its start."""

    rw_dir: str
    key: tuple[object, ...]
    stamps: tuple[tuple[int, int], ...]
    #: The early part of the plan's seccomp filter, installed with the premount (it
    #: stays with the process: a container with another filter cannot use it).
    early: bytes | None = None


def _premounted_steps(plan: Plan) -> tuple[MountStep, ...]:
    steps = []
    own = plan.rw_dir.encode() + b"/"
    for m in plan.mounts:
        if m.cgroup:  # waits for the container's cgroup namespace
            break
        if m.source is not None and m.fstype is None and m.source.startswith(own):
            break  # a file of the container's own (its /etc/hosts), written at its start
        steps.append(m)
    return tuple(steps)


def premount_key(plan: Plan) -> tuple[object, ...]:
    """What a premount for ``plan`` mounts: equal keys, equal mounts. A plan that joins
    namespaces (``namespace_paths``) never matches one made without: the premount's sysfs
    and mqueue belong to the warm process's own namespaces."""
    return (plan.clone_flags, plan.namespace_paths, plan.lowerdirs, _premounted_steps(plan))


def premount_stamps(plan: Plan) -> tuple[tuple[int, int], ...] | None:
    """Device and inode of each layer and bind-mount source a premount for ``plan``
    uses: a directory replaced at the same path since the premount is a different one.
    None if one cannot be looked at."""
    paths: list[str | bytes] = list(plan.lowerdirs)
    paths += [m.source for m in _premounted_steps(plan) if m.fstype is None and m.source]
    stamps = []
    try:
        for path in paths:
            st = os.stat(path)
            stamps.append((st.st_dev, st.st_ino))
    except OSError:
        return None
    return tuple(stamps)


@attrs.define
class Warm:
    """A process cloned ahead of time into new namespaces, waiting for a plan."""

    pid: int
    sock: socket.socket
    flags: int
    #: It runs the native helper (it wants an encoded plan), not the Python child.
    native: bool = False
    #: The cgroup it waits in, if one was made for it.
    slot: Slot | None = None
    #: What it mounted ahead of time, if anything; its writable layer is the warm
    #: process's until a container takes it.
    premount: Premount | None = None
    #: Its answer to the premount: b"P" made (with the early filter, if any), b"F" not.
    answer: bytes | None = None

    def premount_answer(self) -> bytes:
        """Wait for the answer to the premount: until then the process may be mounting
        on the writable layer's path, and installing the early filter."""
        if self.answer is None:
            try:
                self.answer = self.sock.recv(16)
            except OSError:
                self.answer = b""
        return self.answer

    def filtered(self) -> bytes | None:
        """The early seccomp filter this process has installed, if any."""
        if self.premount is None or self.premount.early is None:
            return None
        return self.premount.early if self.premount_answer() == b"P" else None


class WarmFailed(OSError):
    """A warm process failed before it was ready; it has exited, to be reaped."""

    def __init__(self, pid: int, err: int, step: str) -> None:
        super().__init__(err, f"{step or 'prepare a warm process'}: {os.strerror(err)}")
        self.pid = pid


def new_slot(
    cgroup_parent: str, driver: CgroupDriver, devices: tuple[tuple[bool, str], ...] = ()
) -> Slot:
    """Make a cgroup under ``cgroup_parent``, named by a new container id, with the
    device rules ``devices``, for a warm process to be cloned into (:meth:`Forker.clone`).

    Raises:
        OSError: it could not be made; nothing is left of it.
    """
    cid = secrets.token_hex(16)
    cgroup = driver.create(f"{cgroup_parent}/{cid}", CgroupLimits(devices=devices))
    return Slot(cid, cgroup, devices)


def make_slot(pid: int, cgroup_parent: str, driver: CgroupDriver) -> Slot:
    """Make a cgroup under ``cgroup_parent``, named by a new container id, and move the
    warm process ``pid`` into it.

    Raises:
        OSError: the cgroup could not be made or joined; nothing is left of it, and the
            process, which may be in part of it, is killed: the caller must reap it.
    """
    cid = secrets.token_hex(16)
    cgroup = driver.create(f"{cgroup_parent}/{cid}", CgroupLimits())
    try:
        for path in cgroup.procs_files():
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        cgroup.destroy()
        raise
    return Slot(cid, cgroup)


def clone_warm(
    flags: int,
    helper: str | None,
    last_cap: int,
    *,
    sibling: bool = False,
    detached: bool = False,
) -> Warm:
    """Clone a warm process into the namespaces of ``flags``.

    Args:
        flags: CLONE_NEW* flags.
        helper: the native init helper, or None for the Python child.
        last_cap: the highest capability number of this kernel.
        sibling: make the process a child of this process's parent (CLONE_PARENT), as the
            janitor does for the spawner, which must be the container's parent.
        detached: the process outlives this one (no parent-death signal), as a container
            created by the OCI command line does; native helper only.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = sc.clone(flags | signal.SIGCHLD | (sc.CLONE_PARENT if sibling else 0))
        if pid == 0:  # pragma: no cover - runs in the child
            # Keep only stdio and our socket: a descriptor of the cloning process held here
            # while the process waits (its janitor socket, say) would keep it from ever
            # reading end of file. No garbage collection from here on: an object of the
            # cloning process would close its descriptor's number, which a descriptor
            # received later (the container's stdio) may have taken.
            gc.disable()
            fd = theirs.fileno()
            os.closerange(3, fd)
            os.closerange(fd + 1, _MAX_FD)
            if helper is None:
                sc.set_process_name(b"clib-init-py")
                _default_signals()
                child_main(theirs, flags, last_cap)
            _exec_helper(helper, theirs, flags, detached=detached)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Warm(pid, ours, flags, native=helper is not None)


class Forker:
    """A native helper process that clones warm processes on request (``clib-init
    --forker``), for the janitor.

    A clone from Python copies the page tables of a whole interpreter (1.2 to 1.9 ms
    measured here) and the child must then exec the helper; the forker is small, and its
    clones are the helper already. It is started with CLONE_PARENT, so that it and the
    processes it clones are children of the janitor's parent, the spawner, as a container
    must be; it dies with the spawner and ends when its socket closes.

    The spawner starts one of its own (``sibling=False``, its child) for containers in a
    user namespace when it has no janitor: a process that execs in a new user namespace
    before it is that namespace's root loses every capability, so such a process must be
    cloned by the helper, not by Python and then exec it.

    Raises:
        OSError: the forker could not be started.
    """

    def __init__(self, helper: str, *, sibling: bool = True) -> None:
        self.pid, self.sock = _start_helper(helper, "--forker", sibling=sibling, die_with_us=True)

    def clone(self, flags: int, slot: Slot | None = None) -> Warm:
        """A new warm process in the namespaces of ``flags``; with ``slot``, cloned into
        the slot's cgroup2 directory and moved into its v1 cgroups by itself, which takes
        the kernel no global lock (see :meth:`Cgroup.join_files`).

        Raises:
            OSError: the clone failed (its errno), or the forker has ended.
            WarmFailed: the process could not join its cgroup; it has exited and the
                caller's parent (the spawner) must reap it.
        """
        payload = flags.to_bytes(8, sys.byteorder)
        fds: list[int] = []
        dir_fd = -1
        if slot is not None:
            into = slot.cgroup.clone_into()
            join = [f for f in slot.cgroup.join_files() if os.path.dirname(f) != into]
            payload += b"".join(os.fsencode(f) + b"\0" for f in join)
            if into is not None:
                dir_fd = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                fds.append(dir_fd)
        try:
            socket.send_fds(self.sock, [payload], fds)
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        data, got, _flags, _addr = socket.recv_fds(self.sock, 8, 1)
        if len(data) != 8:
            raise OSError(errno.EPIPE, "the forker process has ended")
        pid = int.from_bytes(data, sys.byteorder, signed=True)
        if pid < 0:
            raise OSError(-pid, f"clone a warm process: {os.strerror(-pid)}")
        warm = Warm(pid, socket.socket(fileno=got[0]), flags, native=True, slot=slot)
        if slot is not None:
            ready = warm.sock.recv(4096)
            if ready != b"R":
                warm.sock.close()
                err, _, step = ready.partition(b"\0")
                raise WarmFailed(pid, int(err or errno.EIO), step.decode(errors="replace"))
        return warm

    def close(self) -> None:
        """Let the forker end (its parent, the spawner, reaps it)."""
        self.sock.close()


def discard(warm: Warm) -> None:
    """Kill and reap a warm process that is not needed (the caller must be its parent),
    and remove its cgroup."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(warm.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(warm.pid, 0)
    warm.sock.close()
    if warm.premount is not None:
        # Its mount namespace, where the layer was mounted, ended with it.
        rwdirs.remove_rw(warm.premount.rw_dir)
        warm.premount = None
    if warm.slot is not None:
        with contextlib.suppress(OSError):
            warm.slot.cgroup.destroy()


def run_exec_helper(helper: str, data: bytes, fds: Sequence[int], cid: str) -> int:
    """Start ``clib-init --exec``, send it the exec message ``data`` with ``fds`` (stdin,
    stdout, stderr, the container's pidfd, and a console socket if the process has a
    terminal), and return the pid of the process it started, once that process has
    exec'd its command. That process is this one's child (CLONE_PARENT).

    Raises:
        ContainerSetupError: a step failed, naming it; nothing runs.
        OSError: the helper could not be started.
    """
    helper_pid, sock = start_exec_helper(helper)
    pid = -1
    report = b""
    try:
        try:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            first = sock.recv(4096)
        except OSError as e:
            first = b"%d\0send the plan to the exec process" % (e.errno or errno.EIO)
        if first[:1] == b"P" and len(first) == 9:
            pid = int.from_bytes(first[1:], sys.byteorder, signed=True)
        else:
            report = first
        os.waitpid(helper_pid, 0)
        # The new process's socket closes at its exec; before that, a report may come.
        while pid > 0 and (chunk := sock.recv(4096)):
            report += chunk
    finally:
        sock.close()
    if report:
        if pid > 0:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        err, _, step = report.partition(b"\0")
        raise ContainerSetupError(
            step.decode(errors="replace") or "exec in the container", int(err or errno.EIO), cid
        )
    return pid


def start_exec_helper(helper: str) -> tuple[int, socket.socket]:
    """Start ``clib-init --exec`` (see ``_init.c``), a child of this process, in this
    process's namespaces; returns its pid and the socket to send it the exec's plan on.

    Raises:
        OSError: it could not be started.
    """
    # exec_main sets its parent-death signal itself, as its first step.
    return _start_helper(helper, "--exec")


def _start_helper(
    helper: str, mode: str, *, sibling: bool = False, die_with_us: bool = False
) -> tuple[int, socket.socket]:
    """Start ``helper MODE FD`` (``--forker`` or ``--exec``) as a child of this process
    (with ``sibling``, of its parent), with nothing of this process's open but its end of
    a new socket pair; returns its pid and our end.

    Raises:
        OSError: it could not be cloned.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if not sibling and not die_with_us and threading.active_count() > 1:
        # A process with threads (a keeper serving published ports) must not run Python
        # between a fork and the exec: another thread may hold a lock then. posix_spawn
        # takes no lock; the helper closes what it inherits first thing (exec_main).
        try:
            os.set_inheritable(theirs.fileno(), True)
            pid = os.posix_spawn(helper, [helper, mode, str(theirs.fileno())], {})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return pid, ours
    try:
        pid = sc.clone((sc.CLONE_PARENT if sibling else 0) | signal.SIGCHLD)
        if pid == 0:  # pragma: no cover - runs in the child
            fd = theirs.fileno()
            try:
                os.closerange(3, fd)
                os.closerange(fd + 1, _MAX_FD)
                if die_with_us:
                    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
                os.set_inheritable(fd, True)
                os.execve(helper, [helper, mode, str(fd)], {})
            finally:
                os._exit(SETUP_FAILED)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return pid, ours


def _default_signals() -> None:  # pragma: no cover - runs in the child
    """Every signal at its default and none blocked, as a command starts under Docker: an
    ignored signal (the spawner ignores SIGPIPE, SIGXFSZ and SIGINT) survives execve.
    The native helper does the same itself."""
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _exec_helper(
    helper: str, sock: socket.socket, flags: int, *, detached: bool = False
) -> NoReturn:  # pragma: no cover
    """In a child just cloned: become the native helper, which waits on ``sock``."""
    fd = sock.fileno()
    try:
        argv = [helper, str(fd), str(flags)]
        if detached:
            argv.append("--detached")
        else:
            # Until the helper sets it again itself; it survives the exec.
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.set_inheritable(fd, True)
        os.execve(helper, argv, {})
    except BaseException as e:
        err = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
        with contextlib.suppress(BaseException):
            os.write(fd, b"%d\0exec the init helper '%s'" % (err, os.fsencode(helper)))
    os._exit(SETUP_FAILED)


def limits_for(slot: Slot, limits: CgroupLimits) -> CgroupLimits:
    """What is left to write to ``slot``'s cgroup for a container that asks ``limits``:
    not the device rules, when those written ahead of time are the same. Rules always
    start by denying everything, so others replace them; no rules at all means open
    access, which must then be given back."""
    if limits.devices == slot.devices:
        return attrs.evolve(limits, devices=())
    if not limits.devices:
        return attrs.evolve(limits, devices=((True, "a"),))
    return limits
