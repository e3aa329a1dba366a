"""The janitor: the spawner's second pair of hands, for work no start should wait for.

The spawner is single-threaded (it clones containers, which is only safe without threads),
so any work it does stands between the requests it serves. The janitor is a process
forked from it at start-up that does, on the other core, what can be done ahead of time
or after the fact: clone the next warm process (with CLONE_PARENT, so that it is the
spawner's child, as a container must be), make the next writable layer, and remove thrown
away ones. The spawner asks with :meth:`Janitor.want_warm` and the like, and collects the
answers when the janitor's socket is readable. The janitor dies with the spawner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from typing import Any

from containerlib.linux import syscalls as sc
from containerlib.linux.cgroups import CgroupDriver, probe
from containerlib.runtime import rwdirs
from containerlib.runtime.messages import recv_message, send_message
from containerlib.runtime.warm import Forker, Warm, WarmFailed, clone_warm, make_slot, new_slot

__all__ = ["Janitor"]


class Janitor:
    """The spawner's side of its janitor process.

    Args:
        helper: the native init helper for warm processes, or None for the Python child.
        last_cap: the highest capability number of this kernel.
    """

    def __init__(self, helper: str | None, last_cap: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the janitor
            # The spawner's other descriptors stay open here: closing them behind the
            # backs of the Python objects that own them would let a later garbage
            # collection close whatever new file took their numbers.
            ours.close()
            code = 0
            try:
                _serve(theirs, helper, last_cap)
            except BaseException:
                code = 1
            os._exit(code)
        theirs.close()
        self.pid = pid
        self.sock = ours
        self.warm_asked = False
        self.pool_asked: set[str] = set()

    def fileno(self) -> int:
        """Readable when the janitor has an answer."""
        return self.sock.fileno()

    def want_warm(
        self,
        flags: int,
        cgroup_parent: str | None = None,
        devices: tuple[tuple[bool, str], ...] = (),
    ) -> None:
        """Ask for a warm process in the namespaces of ``flags``, unless one is coming;
        with ``cgroup_parent``, in a cgroup made for it there (a :class:`Slot`), with the
        device rules ``devices``."""
        if not self.warm_asked:
            self.warm_asked = True
            send_message(self.sock, ("warm", (flags, cgroup_parent, devices)))

    def want_rw_dir(self, containers: str) -> None:
        """Ask for an empty writable layer for ``containers``, unless one is coming."""
        if containers not in self.pool_asked:
            self.pool_asked.add(containers)
            send_message(self.sock, ("pool", containers))

    def throw_away(self, path: str) -> None:
        """Have ``path`` (in the trash) removed."""
        send_message(self.sock, ("trash", path))

    def receive(self) -> tuple[Any, ...] | None:
        """One answer: ``("warm", Warm | None)``, ``("dead", pid)`` for a warm process
        that failed and is to be reaped, ``("forker", pid)`` for the forker the janitor
        started (the spawner's child, to be reaped when it ends), ``("noslots",)`` when
        cgroups cannot be made ahead of time here, or ``("pool",
        containers, path | None)``; None when the janitor has ended."""
        msg = recv_message(self.sock)
        if msg is None:
            return None
        reply, fds = msg
        if reply[0] == "warm":
            self.warm_asked = False
            if not fds:
                return ("warm", None)
            _, pid, flags, native, slot = reply
            return ("warm", Warm(pid, socket.socket(fileno=fds[0]), flags, native, slot))
        if reply[0] == "dead":
            self.warm_asked = False
            return reply  # type: ignore[no-any-return]
        if reply[0] in ("forker", "noslots"):
            return reply  # type: ignore[no-any-return]
        self.pool_asked.discard(reply[1])
        return reply  # type: ignore[no-any-return]

    def close(self) -> list[tuple[Any, ...]]:
        """Let the janitor finish what it was asked, and return the answers still due."""
        answers = []
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            while (answer := self.receive()) is not None:
                answers.append(answer)
        self.sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        return answers


def _serve(sock: socket.socket, helper: str | None, last_cap: int) -> None:  # pragma: no cover
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Not the spawner's way of ending on SIGTERM (a wake-up descriptor): the default.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sc.set_process_name(b"clib-janitor")
    driver: CgroupDriver | None = None
    # Warm processes come from a native forker when there is a native helper.
    forker: Forker | None = None
    helper_forks = True
    while (msg := recv_message(sock)) is not None:
        (op, arg), _fds = msg
        if op == "trash":
            rwdirs.remove_rw(arg)
        elif op == "pool":
            try:
                path: str | None = rwdirs.new_rw_dir(arg)
            except OSError:
                path = None
            send_message(sock, ("pool", arg, path))
        elif op == "warm":
            flags, cgroup_parent, devices = arg
            if forker is None and helper is not None:
                try:
                    forker = Forker(helper)
                    send_message(sock, ("forker", forker.pid))
                except OSError:
                    helper_forks = False
            native = forker is not None and helper_forks
            slot = None
            if native and cgroup_parent is not None:
                # The cgroup first: the forker clones the process into it.
                try:
                    if driver is None:
                        driver = probe()
                    slot = new_slot(cgroup_parent, driver, devices)
                except OSError:
                    send_message(sock, ("noslots",))
                    slot = None
            try:
                if forker is not None and native:
                    warm = forker.clone(flags, slot)
                else:
                    warm = clone_warm(flags, helper, last_cap, sibling=True)
            except WarmFailed as e:
                if slot is not None:
                    with contextlib.suppress(OSError):
                        slot.cgroup.destroy()
                send_message(sock, ("dead", e.pid))  # the spawner reaps it
                continue
            except OSError:
                if slot is not None:
                    with contextlib.suppress(OSError):
                        slot.cgroup.destroy()
                send_message(sock, ("warm",))
                continue
            if not native and cgroup_parent is not None:
                try:
                    if driver is None:
                        driver = probe()
                    slot = make_slot(warm.pid, cgroup_parent, driver)
                except OSError:
                    warm.sock.close()
                    send_message(sock, ("dead", warm.pid))  # the spawner reaps it
                    continue
                warm.slot = slot
            try:
                reply = ("warm", warm.pid, warm.flags, warm.native, slot)
                send_message(sock, reply, [warm.sock.fileno()])
            except OSError:
                # The spawner is gone or going; the process is its child, not ours.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(warm.pid, signal.SIGKILL)
                if slot is not None:
                    with contextlib.suppress(OSError):
                        slot.cgroup.destroy()
            warm.sock.close()
