"""The spawner: a small single-threaded process that forks containers for its owner.

Forking a large Python process is slow (its page tables are copied) and unsafe when it has
threads. So the owner starts this helper once, and asks it over a unix socket to create
each container: it sends a :class:`~containerlib.runtime.plan.Plan`, the container's stdio
descriptors and one end of a fresh socket pair (the *channel*), all with SCM_RIGHTS. The
spawner answers on the channel with ``("started", pid)`` plus a pidfd, or
``("error", exception)``, and later ``("exited", wait_status, stats)`` once the container
has ended and everything it held on the host is gone.

The spawner dies with its owner: when the owner's end of the control socket closes, it
kills its containers, cleans up and exits. A container dies with the spawner
(PR_SET_PDEATHSIG) and when the owner closes the container's channel.

Work that need not wait for a request (the next warm process, the next writable layer,
removing thrown-away ones) goes to the spawner's janitor, a process of its own (see
:mod:`containerlib.runtime.janitor`).

Run as ``python -m containerlib.runtime.spawner FD``.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import re
import secrets
import select
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from containerlib.errors import ContainerSetupError
from containerlib.linux import syscalls as sc
from containerlib.linux.capabilities import last_cap
from containerlib.linux.cgroups import Cgroup, CgroupDriver, CgroupStats, probe
from containerlib.linux.terminals import DEFAULT_WINDOW_SIZE, window_size
from containerlib.linux.userns import host_id, setgroups_allowed, write_id_maps
from containerlib.runtime import nativeinit, rwdirs
from containerlib.runtime.messages import MAX_MESSAGE, recv_message, send_message
from containerlib.runtime.plan import ExecRequest, Plan, exec_plan
from containerlib.runtime.signals import SignalRelay, to_pidfd
from containerlib.runtime.stale import Owner

if TYPE_CHECKING:
    from containerlib.network.bridge import BridgeNetwork
    from containerlib.network.usernet import UserNet
    from containerlib.runtime.janitor import Janitor
    from containerlib.runtime.keeper import DetachRequest, ReadyKeeper
from containerlib.runtime.warm import (
    Forker,
    Premount,
    Warm,
    clone_warm,
    discard,
    limits_for,
    make_slot,
    premount_key,
    premount_stamps,
    run_exec_helper,
)

__all__ = ["MAX_MESSAGE", "Spawner", "main", "recv_message", "send_message"]

#: How many warm processes (with their cgroups) are kept ready. Two: after a quiet spell,
#: the janitor's first move of a process into a cgroup waits for the kernel (see Slot), and
#: a second start that comes right after the first must not wait for that.
WARM_STOCK = 2

#: How long after a detached start the spawner waits before it forks the next keeper
#: (seconds): the keeper just handed its container is busy making it meanwhile.
KEEPER_DELAY = 0.05

#: How long after a start the janitor waits before it prepares the next one, unless the
#: container ends sooner (seconds). Cloning the next warm process while a short container
#: starts and exits slows both down (two cores, and the kernel locks they share).
REPLENISH_DELAY = 0.005


@attrs.define
class _Running:
    plan: Plan
    pid: int
    pidfd: int
    cgroup: Cgroup | None
    channel: socket.socket | None = None
    #: A process started in a running container (docker exec), not a container: its
    #: end removes nothing.
    exec: bool = False
    #: The container's user-mode network program (pasta, slirp4netns), stopped at its end.
    usernet: UserNet | None = None


class Spawner:
    """The spawner's state: its control socket, its containers, and work for later.

    The next container's process is cloned ahead of time (the namespaces and the common
    setup are most of a start's cost), its writable layer made ahead of time, and a
    container's writable layer is thrown away with one rename into ``<data root>/trash``
    and removed later. The janitor does that work while the spawner serves; without one
    (:meth:`run_here`), the spawner does it when idle.
    """

    def __init__(
        self, control: socket.socket | None = None, wakeup: socket.socket | None = None
    ) -> None:
        self.control = control
        self.selector = selectors.DefaultSelector()
        if wakeup is not None:  # readable when a signal asks the spawner to end
            self.selector.register(wakeup, selectors.EVENT_READ, "signal")
        self.running: dict[int, _Running] = {}  # by pidfd
        # The user-mode networks start() started, by pid, until create() keeps them.
        self.usernets: dict[int, UserNet] = {}
        self.by_channel: dict[int, _Running] = {}
        self.last_cap = last_cap()
        # Compiled once per machine (about half a second), then found at once.
        self.native_init = nativeinit.helper_path()
        self._driver: CgroupDriver | None = None
        # Warm processes ready for the next starts, oldest first (see WARM_STOCK).
        self.warms: list[Warm] = []
        self.janitor: Janitor | None = None
        self.warm_flags: int | None = None
        self.trash: list[str] = []
        self.trash_dirs: set[str] = set()
        # Writable layers made ahead of time, by the directory they are for.
        self.pool: dict[str, list[str]] = {}
        self.pool_for: str | None = None
        self.cgroup_paths: set[str] = set()
        # When to ask the janitor for the next start's warm process and writable layer.
        self.replenish_due: float | None = None
        self.last_start = 0.0
        # Where warm processes get a cgroup of their own ahead of time (see Slot), and
        # whether that works here.
        self.slot_parent: str | None = None
        self.slot_devices: tuple[tuple[bool, str], ...] = ()
        self.slots = True
        # The plan the next container most likely has, for warm processes to premount;
        # and whether this spawner is shutting down (then nothing more is prepared).
        self.premount_plan: Plan | None = None
        self.premount_enabled = (
            self.native_init is not None and os.environ.get("CONTAINERLIB_PREMOUNT") != "0"
        )
        self.closing = False
        # Its owner file in each data root, locked while it lives: what prune() sees to
        # tell its writable layers from those of a killed spawner (see stale.py).
        self.owner = Owner()
        # The janitor's forker (see warm.Forker), a child of this process.
        self.forker_pids: list[int] = []
        # This process's own forker, for user namespaces without a janitor.
        self.forker: Forker | None = None
        # The keeper for the next detached container, forked ahead of time once one was
        # asked for (see detach), for the namespaces of keeper_flags, at keeper_due.
        self.ready_keeper: ReadyKeeper | None = None
        self.keeper_flags: int | None = None
        self.keeper_due: float | None = None

    @property
    def driver(self) -> CgroupDriver:
        if self._driver is None:
            self._driver = probe()
        return self._driver

    def serve(self) -> None:
        assert self.control is not None, "serve() needs the owner's control socket"
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        try:
            from containerlib.runtime.janitor import Janitor  # not for run_here

            self.janitor = Janitor(self.native_init, self.last_cap)
            self.selector.register(self.janitor, selectors.EVENT_READ, "janitor")
        except OSError:
            self.janitor = None
        while True:
            events = self.selector.select(0)
            if not events:
                timeout = 0.0 if self.idle_work() else None
                for due in (self.replenish_due, self.keeper_due):
                    if due is not None:
                        left = max(0.0, due - time.monotonic())
                        timeout = left if timeout is None else min(timeout, left)
                events = self.selector.select(timeout)
            if self.replenish_due is not None and time.monotonic() >= self.replenish_due:
                self.replenish()
            if self.keeper_due is not None and time.monotonic() >= self.keeper_due:
                self.make_ready_keeper()
            for key, _ in events:
                if key.data == "control":
                    msg = recv_message(self.control)
                    if msg is None:
                        self.shutdown()
                        return
                    self.handle(*msg)
                elif key.data == "signal":  # SIGTERM (see main): as when the owner goes
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    self.shutdown()
                    return
                elif key.data == "exit":
                    self.reap(self.running[key.fd])
                elif key.data == "channel":
                    run = self.by_channel.pop(key.fd)
                    # The owner closed or dropped its handle: the container goes with it.
                    self.kill(run)
                    self.selector.unregister(key.fd)
                elif key.data == "janitor" and self.janitor_has_answer():
                    self.from_janitor()

    def janitor_has_answer(self) -> bool:
        """The janitor's socket is readable now: a start earlier in the same round of
        events may have taken the answer the round was woken for."""
        return self.janitor is not None and bool(select.select([self.janitor], [], [], 0)[0])

    def from_janitor(self) -> None:
        """Take the janitor's answer: a warm process or a writable layer."""
        assert self.janitor is not None
        answer = self.janitor.receive()
        if answer is None:  # it died: do its work here from now on
            self.selector.unregister(self.janitor)
            self.janitor.close()
            self.janitor = None
        else:
            self.take(answer)

    def take(self, answer: tuple[Any, ...]) -> None:
        if answer[0] == "warm":
            warm = answer[1]
            if warm is None:
                return
            if len(self.warms) < WARM_STOCK and warm.flags == self.warm_flags:
                self.warms.append(warm)
                self.premount(warm)
                self.replenish_soon()
            else:
                discard(warm)
        elif answer[0] == "forker":
            self.forker_pids.append(answer[1])
        elif answer[0] == "dead":
            # Its cgroup could not be made or joined: start without slots from now on.
            self.slots = False
            with contextlib.suppress(ChildProcessError):
                os.waitpid(answer[1], 0)
        elif answer[0] == "noslots":
            self.slots = False
        elif answer[2] is not None:
            self.pool.setdefault(answer[1], []).append(answer[2])
            waiting = [w for w in self.warms if w.premount is None]
            for warm in waiting:
                self.premount(warm)
            if waiting:
                self.replenish_soon()

    def premount(self, warm: Warm) -> None:
        """Have ``warm`` mount, ahead of time, what the next container most likely
        mounts: the last container's rootfs and mounts, on a writable layer from the pool
        (see :class:`~containerlib.runtime.warm.Premount`). Nothing happens when no
        layer is ready; a premount that fails in the process is undone there."""
        template = self.premount_plan
        if (
            self.closing
            or template is None
            or warm.premount is not None
            or not warm.native
            or warm.slot is None
            or warm.flags != template.clone_flags
            or template.clone_flags & sc.CLONE_NEWUSER
        ):
            # A user namespace's process gets its maps and layers with its plan.
            return
        ready = self.pool.get(os.path.dirname(template.rw_dir))
        if not ready:
            return
        rw_dir = ready.pop()
        # With the early part of its seccomp filter, if it has one; never the whole
        # filter, which would refuse the setup's own mounts.
        plan = attrs.evolve(
            template.with_id(warm.slot.id), rw_dir=rw_dir, seccomp=template.seccomp_early
        )
        stamps = premount_stamps(plan)
        try:
            if stamps is None:
                raise ValueError("a layer is gone")
            data = nativeinit.encode(plan, [], False, self.last_cap, premount=True)
            warm.sock.send(data)
        except (OSError, ValueError):
            ready.append(rw_dir)
            return
        warm.premount = Premount(rw_dir, premount_key(plan), stamps, template.seccomp_early)

    def take_premount(self, warm: Warm | None, plan: Plan) -> bool:
        """Give the container of ``plan`` the writable layer ``warm`` premounted, if the
        premount fits ``plan``; else throw it away. True if the container has it."""
        pre = warm.premount if warm is not None else None
        if warm is None or pre is None:
            return False
        made = warm.premount_answer() == b"P"
        if made and premount_key(plan) == pre.key and premount_stamps(plan) == pre.stamps:
            try:
                sc.rename_noreplace(pre.rw_dir, plan.rw_dir)
            except FileExistsError:
                raise
            except OSError:
                pass
            else:
                warm.premount = None
                return True
        trashed = self.to_trash(pre.rw_dir)
        warm.premount = None
        if trashed is not None:
            self.throw_away(trashed)
        return False

    def replenish_soon(self) -> None:
        """Replenish now, or once the container started last is past its start."""
        due = self.last_start + REPLENISH_DELAY
        if time.monotonic() >= due:
            self.replenish()
        elif self.replenish_due is None:
            self.replenish_due = due

    def replenish(self) -> None:
        """Ask for what the next start will want: a warm process and a writable layer."""
        self.replenish_due = None
        if self.janitor is None:
            return  # idle_work makes them
        try:
            if len(self.warms) < WARM_STOCK and self.warm_flags is not None:
                parent = self.slot_parent if self.slots else None
                self.janitor.want_warm(self.warm_flags, parent, self.slot_devices)
            if (
                self.pool_for is not None
                and len(self.pool.get(self.pool_for, ())) < self.pool_need()
            ):
                self.janitor.want_rw_dir(self.pool_for)
        except OSError:
            pass

    def pool_need(self) -> int:
        """How many writable layers the pool should hold: one for the next start, and one
        for each warm process to premount."""
        if self.premount_plan is None:
            return 1
        return 1 + sum(1 for w in self.warms if w.native and w.premount is None)

    def idle_work(self) -> bool:
        """Without a janitor: do one piece of the work for later; True if more is left."""
        if self.janitor is not None:
            return False
        if len(self.warms) < WARM_STOCK and self.warm_flags is not None:
            try:
                self.warms.append(self.warm_up(self.warm_flags, slot=True))
            except OSError:
                self.warm_flags = None
        elif self.pool_for is not None and not self.pool.get(self.pool_for):
            try:
                self.pool.setdefault(self.pool_for, []).append(rwdirs.new_rw_dir(self.pool_for))
            except OSError:
                self.pool_for = None
        elif self.trash:
            rwdirs.remove_rw(self.trash.pop())
        return (
            bool(self.trash)
            or (len(self.warms) < WARM_STOCK and self.warm_flags is not None)
            or (self.pool_for is not None and not self.pool.get(self.pool_for))
        )

    def make_rw_dir(self, rw_dir: str) -> None:
        """Put an empty writable layer at ``rw_dir``, from the pool when one is ready.

        Raises:
            FileExistsError: ``rw_dir`` exists: a container of that id exists.
        """
        containers = os.path.dirname(rw_dir)
        self.owner.claim(os.path.dirname(containers))
        self.pool_for = containers
        ready = self.pool.get(containers)
        if ready:
            try:
                sc.rename_noreplace(ready[-1], rw_dir)
            except FileExistsError:
                raise
            except OSError:
                pass
            else:
                ready.pop()
                return
        os.makedirs(containers, mode=0o711, exist_ok=True)
        rwdirs.make_rw_layout(rw_dir)

    def handle(self, request: Any, fds: list[int]) -> None:
        op, plan = request
        channel = socket.socket(fileno=fds[0])
        if op == "ready":
            with channel, contextlib.suppress(OSError):
                send_message(channel, ("ready", self.ready_ids()))
            return
        if op == "detach":
            self.detach(plan, channel, fds[1:])
            return
        stdio = (fds[1], fds[2], fds[3])
        # A fifth descriptor is a console socket: the process gets a terminal, whose
        # master end it sends there (see set_up_console in _init.c).
        console = fds[4] if len(fds) > 4 else None
        try:
            if op == "run":
                run = self.create(plan, stdio, console)
            elif op == "exec":
                run = self.start_exec(plan, stdio, console)
            else:
                raise ValueError(f"unknown request {op!r}")
        except BaseException as e:
            with contextlib.suppress(OSError):
                send_message(channel, ("error", e))
            channel.close()
            return
        finally:
            for fd in fds[1:]:
                os.close(fd)
        run.channel = channel
        try:
            send_message(channel, ("started", run.pid, run.plan.container_id), [run.pidfd])
        except OSError:
            self.kill(run)
        if not run.exec:
            self.last_start = time.monotonic()
            if self.replenish_due is None:
                self.replenish_due = self.last_start + REPLENISH_DELAY
        self.running[run.pidfd] = run
        self.by_channel[channel.fileno()] = run
        self.selector.register(run.pidfd, selectors.EVENT_READ, "exit")
        self.selector.register(channel, selectors.EVENT_READ, "channel")

    def detach(self, request: DetachRequest, channel: socket.socket, holds: list[int]) -> None:
        """Have a keeper of its own run the detached container of ``request`` (see
        keeper.py): the one forked ahead of time if it fits, else one forked now. It
        answers on ``channel``; ``holds`` are locks on the image's layers, for it to keep.
        The next one is forked a little later, once this container is on its way."""
        from containerlib.runtime.keeper import launch

        flags = request.plan.clone_flags
        try:
            ready, self.ready_keeper = self.ready_keeper, None
            handed = False
            if ready is not None and ready.flags == flags:
                with contextlib.suppress(OSError):
                    ready.hand(request, channel.fileno(), holds)
                    handed = True
            elif ready is not None:
                ready.close()
            if not handed:
                launch(request, channel.fileno(), holds)
        except BaseException as e:
            with contextlib.suppress(OSError):
                send_message(channel, ("error", e))
        finally:
            channel.close()
            for fd in holds:
                os.close(fd)
        self.keeper_flags = flags
        self.keeper_due = time.monotonic() + KEEPER_DELAY

    def make_ready_keeper(self) -> None:
        """Fork the keeper for the next detached start (see :meth:`detach`)."""
        from containerlib.runtime.keeper import launch_ready

        self.keeper_due = None
        if self.ready_keeper is None and self.keeper_flags is not None and not self.closing:
            try:
                self.ready_keeper = launch_ready(self.keeper_flags)
            except OSError:
                self.keeper_flags = None  # not here, then

    def ready_ids(self) -> list[str]:
        """The ids of the cgroups made ahead of time (see :class:`Slot`), once the janitor
        has answered what it was asked (warm processes and writable layers, which then
        are premounted), and been asked now what it was to be asked later: no cgroup is
        then on its way."""
        while True:
            if self.replenish_due is not None:
                self.replenish()
            if self.janitor is None or not (self.janitor.warm_asked or self.janitor.pool_asked):
                break
            self.from_janitor()
        return [w.slot.id for w in self.warms if w.slot is not None]

    def take_warm(self, flags: int, early: bytes | None = None) -> Warm | None:
        """The warm process for a start in the namespaces of ``flags``, if one is ready
        or on its way from the janitor: the first whose early seccomp filter, if it has
        one, is ``early`` (one with another filter is left for a container it fits)."""
        if self.warm_flags != flags:
            for stale in self.warms:
                discard(stale)
            self.warms = []
        self.warm_flags = flags
        for i, warm in enumerate(self.warms):
            if warm.filtered() in (None, early):
                return self.warms.pop(i)
        if self.warms:
            return self.warms.pop(0)
        return self.warm_from_janitor()

    def warm_from_janitor(self) -> Warm | None:
        """Wait for the warm process the janitor is making, if it is making one: it is
        ready sooner than one cloned from scratch."""
        while self.janitor is not None and self.janitor.warm_asked and not self.warms:
            self.from_janitor()
        return self.warms.pop(0) if self.warms else None

    def create(
        self, plan: Plan, stdio: tuple[int, int, int], console: int | None = None
    ) -> _Running:
        warm = self.take_warm(plan.clone_flags, plan.seccomp_early)
        while warm is not None and warm.filtered() not in (None, plan.seccomp_early):
            # It has installed another container's filter, which cannot be taken back.
            discard(warm)
            warm = self.take_warm(plan.clone_flags, plan.seccomp_early)
        prefiltered = warm is not None and warm.filtered() is not None
        slot = warm.slot if warm is not None else None
        if (
            plan.spawner_picks_id
            and self.premount_enabled
            and self.slots
            and not plan.clone_flags & sc.CLONE_NEWUSER
            # A warm process mounts in its own namespaces, not in those a plan joins.
            and not plan.namespace_paths
        ):
            # The next containers most likely look like this one.
            self.premount_plan = plan
        if plan.spawner_picks_id:
            if plan.cgroup_path is not None:
                self.slot_parent = os.path.dirname(plan.cgroup_path)
                self.slot_devices = plan.cgroup_limits.devices
            fits = slot is not None and slot.fits(plan)
            plan = plan.with_id(slot.id if slot is not None and fits else secrets.token_hex(16))
        own = slot if slot is not None and plan.cgroup_path == slot.cgroup.path else None
        cid = plan.container_id
        cgroup = None
        made_rw = False
        premounted = False
        to_join: list[str] = []
        try:
            try:
                premounted = made_rw = self.take_premount(warm, plan)
                if not made_rw:
                    self.make_rw_dir(plan.rw_dir)
                    made_rw = True
            except FileExistsError:
                raise ContainerSetupError(
                    f"create {plan.rw_dir}", errno.EEXIST, cid, "a container with this id exists"
                ) from None
            step = f"create cgroup {plan.cgroup_path}"
            try:
                if own is not None:
                    cgroup = own.cgroup
                    step = f"set the limits of cgroup {plan.cgroup_path}"
                    # A limit in a hierarchy the process is not in yet (cpu, cpuset):
                    # the process joins it itself, without the kernel's global lock.
                    joined = set(cgroup.join_files())
                    cgroup.set_limits(limits_for(own, plan.cgroup_limits), move=False)
                    to_join = [f for f in cgroup.join_files() if f not in joined]
                elif plan.cgroup_path is not None:
                    cgroup = self.driver.create(plan.cgroup_path, plan.cgroup_limits)
            except OSError as e:
                raise ContainerSetupError(
                    step, e.errno or errno.EIO, cid, _cgroup_detail(e)
                ) from None
            if plan.cgroup_path is not None:
                self.cgroup_paths.add(plan.cgroup_path)
            taken, warm = warm, None
            # The early part is in place: the rest is a few instructions (an exec gets
            # the whole filter: the plan kept below has it).
            sent = attrs.evolve(plan, seccomp=plan.seccomp_late) if prefiltered else plan
            if console is not None:
                sent = attrs.evolve(sent, terminal=True)
            pid = self.start(
                sent,
                stdio,
                cgroup,
                taken,
                only=to_join if own else None,
                premounted=premounted,
                console=console,
            )
        except BaseException:
            if warm is not None:
                discard(warm)
            if cgroup is not None:
                cgroup.destroy()
            if made_rw:
                rwdirs.remove_rw(plan.rw_dir)
            raise
        finally:
            if slot is not None and own is None:
                # The process left the cgroup made for it, for the container's own.
                with contextlib.suppress(OSError):
                    slot.cgroup.destroy()
        usernet = self.usernets.pop(pid, None)
        return _Running(plan, pid, os.pidfd_open(pid), cgroup, usernet=usernet)

    def warm_up(self, flags: int, *, slot: bool = False) -> Warm:
        """Clone a warm process here (see :mod:`containerlib.runtime.warm`); with
        ``slot``, in a cgroup of its own if containers get one (see :class:`Slot`)."""
        if flags & sc.CLONE_NEWUSER and self.native_init is not None:
            # Cloned by the helper itself: an exec in the new namespace, before the
            # process is its root, would drop every capability (see Forker).
            if self.forker is None:
                self.forker = Forker(self.native_init, sibling=False)
            return self.forker.clone(flags)
        warm = clone_warm(flags, self.native_init, self.last_cap)
        if slot and self.slots and self.slot_parent is not None:
            try:
                warm.slot = make_slot(warm.pid, self.slot_parent, self.driver)
            except OSError:
                self.slots = False
                warm.sock.close()
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(warm.pid, 0)
                return clone_warm(flags, self.native_init, self.last_cap)
        return warm

    def start(
        self,
        plan: Plan,
        stdio: tuple[int, int, int],
        cgroup: Cgroup | None,
        warm: Warm | None,
        *,
        only: list[str] | None = None,
        premounted: bool = False,
        console: int | None = None,
    ) -> int:
        """Hand ``plan`` to ``warm`` (or a fresh process) and wait until it has exec'd.

        Args:
            only: ``warm`` is in ``cgroup`` already but for these join files.
            premounted: ``warm`` premounted the rootfs and mounts of ``plan``.
            console: for a plan with a terminal, the console socket its master goes to.
        """
        files = cgroup.join_files() if cgroup is not None else []
        # Only a cgroup2 directory has cgroup.kill: one stat, not one per hierarchy.
        into = cgroup.clone_into() if cgroup is not None else None
        have_cgroup2 = into is not None and os.path.exists(os.path.join(into, "cgroup.kill"))
        if only is not None:
            files = only
        userns = _UserNamespace()
        try:
            if plan.clone_flags & sc.CLONE_NEWUSER:
                # The maps and layers are the process's own: it must be there first.
                if warm is None:
                    warm = self.warm_up(plan.clone_flags)
                userns = _enter_user_namespace(warm, plan)
            encoded = (
                nativeinit.encode(
                    plan,
                    files,
                    have_cgroup2,
                    self.last_cap,
                    premounted=premounted,
                    setgroups=userns.setgroups,
                    rootfs_fd=userns.rootfs_fd is not None,
                    join_fds=True,
                )
                if self.native_init is not None
                else None
            )
        except BaseException:
            userns.close()
            if warm is not None:
                discard(warm)
            raise
        if warm is None:
            warm = self.warm_up(plan.clone_flags)
        if plan.init and not warm.native:
            discard(warm)
            raise ContainerSetupError(
                "start the container's process",
                errno.EOPNOTSUPP,
                plan.container_id,
                "init needs the native init helper, which needs a C compiler (cc or gcc)",
            )
        if plan.terminal and (console is None or not warm.native):
            discard(warm)
            raise ContainerSetupError(
                "start the container's process",
                errno.EOPNOTSUPP,
                plan.container_id,
                "a terminal needs a console socket and the native init helper, which needs "
                "a C compiler (cc or gcc)",
            )
        report = b""
        send_error = 0
        joins = self.open_joins(plan, warm)
        try:
            bridge = self.attach_bridge(plan, warm)
            usernet = self.start_usernet(plan, warm)
        except BaseException:
            _close_all(joins)
            raise
        try:
            try:
                if encoded is not None and warm.native:
                    extra = [] if userns.rootfs_fd is None else [userns.rootfs_fd]
                    extra += joins
                    if console is not None:
                        extra.append(console)
                    fds = array.array("i", [*stdio, *extra])
                    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
                    warm.sock.sendmsg([encoded], anc)
                else:
                    send_message(warm.sock, (plan, files, have_cgroup2), [*stdio, *joins])
            except OSError as e:
                # A process that failed before it read the plan has exited, leaving its
                # report; one still waiting for it would never close the socket.
                send_error = e.errno or errno.EIO
                with contextlib.suppress(ProcessLookupError):
                    os.kill(warm.pid, signal.SIGKILL)
            # The socket closes at execve (close-on-exec); before that, a report may come.
            while chunk := warm.sock.recv(4096):
                report += chunk
        finally:
            warm.sock.close()
            userns.close()
            _close_all(joins)
        if send_error or report:
            os.waitpid(warm.pid, 0)
            if bridge is not None:
                from containerlib.network.bridge import detach

                detach(bridge, plan.container_id)
            if usernet is not None:
                usernet.stop()
        if send_error and not report:
            raise ContainerSetupError(
                "send the plan to the container's process", send_error, plan.container_id
            )
        if report:
            err, _, step = report.partition(b"\0")
            raise ContainerSetupError(
                step.decode(errors="replace") or "start the container's process",
                int(err or errno.EIO),
                plan.container_id,
            )
        if usernet is not None:
            self.usernets[warm.pid] = usernet
        return warm.pid

    def open_joins(self, plan: Plan, warm: Warm) -> list[int]:
        """Open the namespaces ``plan`` joins (``namespace_paths``), to send with it: here,
        where a namespace bind-mounted after ``warm`` was cloned is seen (see
        :mod:`containerlib.runtime.joins`).

        Raises:
            ContainerSetupError: one could not be opened; ``warm`` is discarded.
        """
        if not plan.namespace_paths:
            return []
        from containerlib.runtime.joins import open_namespaces

        try:
            return open_namespaces(plan)
        except BaseException:
            discard(warm)
            raise

    def attach_bridge(self, plan: Plan, warm: Warm) -> BridgeNetwork | None:
        """Put the process of ``warm`` on the bridge network of ``plan``, if it has one
        (from outside, before it gets its plan), and write the container's /etc files;
        returns the network, for :meth:`reap`.

        Raises:
            ContainerSetupError: it could not be done; ``warm`` is discarded.
        """
        net = plan.bridge
        try:
            if net is None:
                self.write_etc(plan, (), "")
                return None
            # pyroute2 is imported only by a spawner whose containers use a bridge.
            from containerlib.network.bridge import attach

            hostname = plan.hostname.decode() if plan.hostname else None
            names = plan.etc.names if plan.etc is not None else ()
            netns = os.open(f"/proc/{warm.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                attach(
                    net,
                    plan.container_id,
                    netns,
                    hostname=hostname,
                    names=names,
                    hosts_path=os.path.join(plan.rw_dir, "hosts") if plan.etc else None,
                    write_hosts=lambda own, members: self.write_etc(plan, own, members),
                    pid=warm.pid,
                )
            finally:
                os.close(netns)
        except BaseException:
            discard(warm)
            raise
        return net

    def write_etc(self, plan: Plan, own: Sequence[str], members: str) -> None:
        """Write the /etc/hosts, /etc/hostname and /etc/resolv.conf of ``plan``'s
        container beside its writable layer, if it has them (see
        :mod:`containerlib.network.etcfiles`): ``own`` are its addresses, ``members`` the
        part of /etc/hosts that lists the other members of its network."""
        etc = plan.etc
        if etc is None:
            return
        from containerlib.network import etcfiles

        hostname = plan.hostname.decode() if plan.hostname else ""
        owner = None
        if plan.clone_flags & sc.CLONE_NEWUSER and os.geteuid() == 0:
            uid, gid = host_id(plan.uid_map, 0), host_id(plan.gid_map, 0)
            if uid is not None and gid is not None:
                owner = (uid, gid)
        try:
            etcfiles.write_files(
                plan.rw_dir,
                {
                    "hosts": etcfiles.hosts_file(etc, hostname, own, members),
                    "hostname": hostname + "\n",
                    "resolv.conf": etcfiles.resolv_conf(etc),
                },
                owner,
            )
        except OSError as e:
            raise ContainerSetupError(
                "write /etc/hosts, /etc/hostname and /etc/resolv.conf",
                e.errno or errno.EIO,
                plan.container_id,
                e.strerror or "",
            ) from None

    def start_usernet(self, plan: Plan, warm: Warm) -> UserNet | None:
        """Start the user-mode network of ``plan``, if it has one, for the network
        namespace of ``warm`` (from outside, before it gets its plan); returns it, for
        :meth:`reap` to stop.

        Raises:
            ContainerSetupError: it could not be done; ``warm`` is discarded.
        """
        if plan.usernet is None:
            return None
        from containerlib.network.usernet import start

        executable, host_loopback = plan.usernet
        try:
            return start(
                os.path.basename(executable),
                warm.pid,
                host_loopback=host_loopback,
                container_id=plan.container_id,
                executable=executable,
            )
        except BaseException:
            discard(warm)
            raise

    def kill(self, run: _Running) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(run.pidfd, signal.SIGKILL)

    def to_trash(self, rw_dir: str) -> str | None:
        """Move a writable layer out of the way at the cost of one rename; returns where
        it went, for :meth:`throw_away` (None: it had to be removed at once)."""
        try:
            target = rwdirs.trash_path(rw_dir)
            os.rename(rw_dir, target)
        except OSError:
            rwdirs.remove_rw(rw_dir)
            return None
        self.trash_dirs.add(os.path.dirname(target))
        return target

    def throw_away(self, target: str) -> None:
        """Have a writable layer in the trash removed: by the janitor, or when idle."""
        if self.janitor is not None:
            try:
                self.janitor.throw_away(target)
                return
            except OSError:
                pass
        self.trash.append(target)

    def reap(self, run: _Running) -> None:
        _, status = os.waitpid(run.pid, 0)
        if run.pidfd in self.selector.get_map():
            self.selector.unregister(run.pidfd)
        stats = CgroupStats()
        failure = None
        if run.exec:
            self.forget(run, ("exited", status, stats, None))
            return
        if run.cgroup is not None:
            with contextlib.suppress(OSError):
                stats = run.cgroup.stats()
            try:
                run.cgroup.destroy()
            except OSError as e:
                failure = e
        if run.plan.bridge is not None:
            from containerlib.network.bridge import detach

            try:
                detach(run.plan.bridge, run.plan.container_id)
            except OSError as e:
                failure = failure or e
        if run.usernet is not None:
            run.usernet.stop()
        if run.plan.keep_upper is not None:
            try:
                os.rename(run.plan.rw_dir + "/upper", run.plan.keep_upper)
            except OSError as e:
                failure = failure or e
        trashed = self.to_trash(run.plan.rw_dir)
        self.forget(run, ("exited", status, stats, failure))
        # What no one waits for, once the owner has its answer: the next start first.
        self.replenish()
        if trashed is not None:
            self.throw_away(trashed)

    def forget(self, run: _Running, last: tuple[Any, ...]) -> None:
        """Let go of a process that has been reaped, telling its owner ``last``."""
        del self.running[run.pidfd]
        os.close(run.pidfd)
        channel = run.channel
        if channel is not None:
            if self.by_channel.pop(channel.fileno(), None) is not None:
                self.selector.unregister(channel)
            with contextlib.suppress(OSError):
                send_message(channel, last)
            channel.close()

    def start_exec(
        self, request: ExecRequest, stdio: tuple[int, int, int], console: int | None = None
    ) -> _Running:
        """Start the process of ``request`` in its running container (see ``clib-init
        --exec`` in ``_init.c``): the spawner's child, in the container's namespaces and
        cgroup, with its credentials, capabilities and filter. With ``console``, it gets
        a terminal, of the size of the caller's (see :func:`_with_terminal`).

        Raises:
            ContainerSetupError: the container does not run here, there is no native
                helper, or a step failed (naming it); nothing is left behind.
        """
        cid = request.container_id
        run = next(
            (r for r in self.running.values() if not r.exec and r.plan.container_id == cid),
            None,
        )
        if run is None:
            raise ContainerSetupError(
                "exec in the container", errno.ESRCH, cid, "it does not run (any more)"
            )
        if self.native_init is None:
            raise ContainerSetupError(
                "exec in the container",
                errno.EOPNOTSUPP,
                cid,
                "exec needs the native init helper, which needs a C compiler (cc or gcc): "
                f"{nativeinit.build_error or 'it is turned off'}",
            )
        plan = exec_plan(run.plan, request)
        if console is not None:
            plan = _with_terminal(plan, stdio)
        flags = plan.clone_flags | (sc.CLONE_NEWCGROUP if plan.new_cgroupns else 0)
        data = nativeinit.encode(
            plan,
            run.cgroup.join_files() if run.cgroup is not None else [],
            False,
            self.last_cap,
            setgroups=setgroups_allowed(plan.gid_map),
            join_flags=flags,
        )
        extra = (run.pidfd,) if console is None else (run.pidfd, console)
        pid = run_exec_helper(self.native_init, data, (*stdio, *extra), cid)
        return _Running(plan, pid, os.pidfd_open(pid), None, exec=True)

    def run_here(
        self,
        plan: Plan,
        stdio: tuple[int, int, int],
        timeout: float | None = None,
        forward: tuple[int, ...] = (),
        console: int | None = None,
        on_started: Callable[[int], None] | None = None,
    ) -> tuple[int, CgroupStats, OSError | None, bool]:
        """Create the container of ``plan`` from this process and wait until it is gone.

        For a small, single-threaded caller that runs one container, such as the command
        line: it needs no spawner process of its own, and the container can use the
        caller's own stdio. The signals in ``forward`` are passed on to the container's
        first process while it runs, as ``docker run`` does (main thread only). With
        ``console`` (a unix socket), the container gets a terminal whose master end goes
        there (see ``set_up_console`` in ``_init.c``) before this call waits.
        ``on_started`` is called with the container's pid once it runs (to publish its
        ports); if it raises, the container is killed and the error passed on.

        Returns:
            The wait status, the cgroup's figures, an error of the cleanup, and whether
            ``timeout`` passed (the container was then killed).
        """
        # The relay goes in first: the container may be told to stop as soon as its
        # command has shown it runs, before create() has returned. Its wait also sees
        # a signal that lands just before it blocks (see containerlib.runtime.signals).
        with SignalRelay(forward) as signals:
            run = self.create(plan, stdio, console)
            self.running[run.pidfd] = run
            self.selector.register(run.pidfd, selectors.EVENT_READ, "exit")
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            run.channel = theirs
            signals.send_to(to_pidfd(run.pidfd))
            timed_out = False
            try:
                if on_started is not None:
                    on_started(run.pid)
                timed_out = not signals.wait([run.pidfd], timeout)
                if timed_out:
                    self.kill(run)
            except BaseException:
                self.kill(run)
                raise
            finally:
                signals.drop()  # reap() closes the pidfd
                self.reap(run)
                msg = recv_message(ours)
                ours.close()
        assert msg is not None
        (_kind, status, stats, failure), _fds = msg
        return status, stats, failure, timed_out

    def shutdown(self) -> None:
        """Kill what still runs, then remove everything this spawner left."""
        self.closing = True
        if self.ready_keeper is not None:  # it ends unused, with its warm process
            self.ready_keeper.close(timeout=5.0)
            self.ready_keeper = None
        for run in list(self.running.values()):
            self.kill(run)
        for run in list(self.running.values()):
            self.reap(run)
        if self.janitor is not None:
            self.selector.unregister(self.janitor)
            for answer in self.janitor.close():
                self.take(answer)
            self.janitor = None
        if self.forker is not None:
            self.forker.close()
            self.forker_pids.append(self.forker.pid)
            self.forker = None
        for pid in self.forker_pids:  # it ends with the janitor's end of its socket
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.forker_pids = []
        for warm in self.warms:
            discard(warm)
        self.warms = []
        for path in self.trash:
            rwdirs.remove_rw(path)
        for trash in self.trash_dirs:
            with contextlib.suppress(OSError):
                os.rmdir(trash)
        for containers, ready in self.pool.items():
            for path in ready:
                rwdirs.remove_rw(path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(os.path.dirname(containers), "pool"))
        for path in self.cgroup_paths:
            with contextlib.suppress(OSError):
                self.driver.remove_parents(path)
        self.owner.release()


def _with_terminal(plan: Plan, stdio: tuple[int, int, int]) -> Plan:
    """``plan`` for an exec'd process with a terminal of its own, of the size of the
    caller's: the first of the stdout and stdin it sent that is a terminal (the command
    line sends its own), else the container's terminal's size, else 80x24.

    ``set_up_console`` (``_init.c``) sets it before the exec: a size that the caller set
    on the master end once that came would reach the process only after it had started,
    and busybox's ``stty size`` fails on a terminal that is still 0x0.
    """
    size = window_size((stdio[1], stdio[0]))
    if size is None and plan.console_width and plan.console_height:
        size = plan.console_width, plan.console_height
    columns, rows = size or DEFAULT_WINDOW_SIZE
    return attrs.evolve(plan, terminal=True, console_width=columns, console_height=rows)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@attrs.define
class _UserNamespace:
    """What a start in a user namespace sends with the plan: whether setgroups(2) is
    allowed there, and the rootfs made for it, if the spawner made it."""

    setgroups: bool = True
    rootfs_fd: int | None = None

    def close(self) -> None:
        if self.rootfs_fd is not None:
            os.close(self.rootfs_fd)
            self.rootfs_fd = None


#: An unpacked layer of the layer cache (containerlib.image.cache): all of a cache's
#: layers are id-mapped with one mount of its ``layers`` directory.
_CACHED_LAYER = re.compile(r"(/.+/layers)/(sha256/[0-9a-f]{64}/fs)")


def _enter_user_namespace(warm: Warm, plan: Plan) -> _UserNamespace:
    """Give the new user namespace of ``warm`` its id maps; when the container's root is
    another host user than root's, also its rootfs.

    That rootfs is an overlay the spawner mounts (detached; the process attaches it) in
    the host's user namespace, so that it reads the layers' overlay metadata as root's
    containers do (``trusted.overlay.*``), over id-mapped mounts of the layers (a file
    of host uid 0 in an image shows as the container's root's), on a writable layer
    whose top directory belongs to the container's root. A non-root user's process
    mounts its overlay itself, in its namespace (``userxattr``).

    Raises:
        ContainerSetupError: the maps could not be written (a non-root user asking for
            ids it may not map, say), or the rootfs could not be made.
    """
    cid = plan.container_id
    if not warm.native:
        raise ContainerSetupError(
            "start the container's process",
            errno.EOPNOTSUPP,
            cid,
            "a user namespace needs the native init helper, which needs a C compiler "
            f"(cc or gcc) to build: {nativeinit.build_error or 'it is turned off'}",
        )
    try:
        setgroups = write_id_maps(warm.pid, plan.uid_map, plan.gid_map)
    except OSError as e:
        raise ContainerSetupError(
            "write the id maps of the user namespace",
            e.errno or errno.EPERM,
            cid,
            e.strerror if e.strerror and e.strerror != os.strerror(e.errno or 0) else "",
        ) from None
    done = _UserNamespace(setgroups)
    root_uid, root_gid = host_id(plan.uid_map, 0), host_id(plan.gid_map, 0)
    if os.geteuid() != 0 or (root_uid, root_gid) == (0, 0):
        return done
    assert root_uid is not None  # plan_from_spec checked
    assert root_gid is not None
    trees: dict[str, int] = {}
    try:
        userns_fd = os.open(f"/proc/{warm.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            lowerdirs = []
            for layer in plan.lowerdirs:
                m = _CACHED_LAYER.fullmatch(layer)
                anchor, sub = (m.group(1), "/" + m.group(2)) if m else (layer, "")
                if anchor not in trees:
                    trees[anchor] = sc.idmapped_tree(anchor, userns_fd)
                lowerdirs.append(f"/proc/self/fd/{trees[anchor]}{sub}")
        finally:
            os.close(userns_fd)
        upper = f"{plan.rw_dir}/upper"
        os.chown(upper, root_uid, root_gid)
        done.rootfs_fd = sc.overlay_mount(lowerdirs, upper, f"{plan.rw_dir}/work")
    except OSError as e:
        raise ContainerSetupError(
            f"mount the rootfs {plan.rootfs}", e.errno or errno.EIO, cid, e.strerror or ""
        ) from None
    finally:
        for fd in trees.values():  # the overlay holds what it needs of them
            os.close(fd)
    return done


def _cgroup_detail(e: OSError) -> str:
    """What the driver said beyond the errno's own text, and what to do when this process
    may not make cgroups at all."""
    detail = e.strerror if e.strerror and e.strerror != os.strerror(e.errno or 0) else ""
    if e.errno == errno.ENOTSUP and os.geteuid() != 0:
        hint = (
            "a non-root user's containers have limits only on a cgroup v2 host, under a "
            "subtree delegated to the user (set CONTAINERLIB_CGROUP_PARENT to it)"
        )
        detail = f"{detail}; {hint}" if detail else hint
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = (
            "this process may not create cgroups there: run as root, or set "
            "CONTAINERLIB_CGROUP_PARENT to a cgroup delegated to this user"
        )
        detail = f"{detail}; {hint}" if detail else hint
    return detail


def main(argv: list[str] | None = None) -> None:
    """Serve the owner on the socket whose descriptor is the first argument."""
    args = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(args[0]))
    os.set_inheritable(control.fileno(), False)
    # The owner may be interrupted with Ctrl-C; the spawner cleans up when its socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Someone ending the spawner itself (kill PID) gets the same clean-up, when the loop
    # wakes up for it: a handler that raised could leave a half-taken answer behind.
    wakeup, wake = socket.socketpair()
    wake.setblocking(False)
    signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    Spawner(control, wakeup).serve()


if __name__ == "__main__":
    main()
