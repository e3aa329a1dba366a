"""The owner's side of the spawner: start it once, ask it for containers, wait for them.

One spawner serves a whole process and every thread in it; it is started on first use
and restarted after a fork. See :mod:`containerlib.runtime.spawner` for why it exists.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

import containerlib
from containerlib.errors import SpawnerError
from containerlib.linux.cgroups import Cgroup, CgroupDriver, CgroupStats, probe
from containerlib.runtime.messages import recv_message, send_message
from containerlib.runtime.plan import ExecRequest, Plan

if TYPE_CHECKING:
    from containerlib.runtime.keeper import DetachRequest

__all__ = ["Exited", "Process", "spawner"]

_SPAWNER_MAIN = "from containerlib.runtime.spawner import main; main()"


@attrs.frozen
class Exited:
    """How a container's first process ended.

    Attributes:
        status: the raw wait(2) status.
        stats: figures read from the container's cgroup before it was removed.
        cleanup_error: what went wrong while removing the container's host resources.
    """

    status: int
    stats: CgroupStats
    cleanup_error: OSError | None = None

    @property
    def exit_code(self) -> int:
        """The exit code as a shell shows it: 128 + N for a process killed by signal N."""
        code = os.waitstatus_to_exitcode(self.status)
        return 128 - code if code < 0 else code


class Process:
    """A container's first process, as seen by its owner.

    The spawner's first answer (the pid and a pidfd, or the setup error) is read when it is
    first needed, so that :meth:`Container.run` can drain the container's output while the
    answer is on its way. Closing the process (or dropping the last reference) kills the
    container.
    """

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self._pid = -1
        self._id = ""
        self.pidfd = -1
        self.exited: Exited | None = None
        self._error: BaseException | None = None
        self._started = False
        self._lock = threading.RLock()

    def started(self) -> None:
        """Wait for the spawner's answer to the request.

        Raises:
            ContainerSetupError: a step of the setup failed; nothing was left behind.
            SpawnerError: the spawner ended before it answered.
        """
        with self._lock:
            if not self._started:
                self._started = True
                msg = recv_message(self.channel)
                if msg is None:
                    self._error = SpawnerError(
                        "the spawner process ended while it created a container"
                    )
                else:
                    reply, fds = msg
                    if reply[0] == "error":
                        self._error = reply[1]
                    else:
                        _, self._pid, self._id = reply
                        self.pidfd = fds[0]
                if self._error is not None:
                    self._close_fds()
            if self._error is not None:
                raise self._error

    @property
    def pid(self) -> int:
        """The host pid of the first process."""
        self.started()
        return self._pid

    @property
    def id(self) -> str:
        """The container's id (picked by the spawner when the caller gave none)."""
        self.started()
        return self._id

    @property
    def failed(self) -> bool:
        """The container could not be made (see :meth:`started`)."""
        with self._lock:
            return self._error is not None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the first process; a process that has ended is ignored."""
        if self.failed:
            return
        self.started()
        # No pidfd: the answer is being read in this very thread (a signal handler ran
        # meanwhile), or the process has been let go of.
        if self.exited is not None or self.pidfd < 0:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, sig)

    def wait(self, timeout: float | None = None) -> Exited | None:
        """Wait until the container has ended and its host resources are gone.

        Returns:
            The :class:`Exited` record, or None if ``timeout`` passed first.
        """
        self.started()
        with self._lock:
            if self.exited is not None:
                return self.exited
            ready, _, _ = select.select([self.channel], [], [], timeout)
            if not ready:
                return None
            msg = recv_message(self.channel)
            if msg is None:
                raise SpawnerError("the spawner process ended while a container was running")
            (kind, status, stats, failure), _ = msg
            assert kind == "exited", kind
            self.exited = Exited(status, stats, failure)
            self._close_fds()
            return self.exited

    def cgroup(self, path: str) -> Cgroup:
        """The container's cgroup at ``path``, while it exists.

        Raises:
            FileNotFoundError: the cgroup is gone: the container has ended.
        """
        return _driver().open(path)

    def close(self) -> None:
        """Kill the container if it still runs, and let go of it."""
        if self.exited is None and not self.failed:
            self.signal(signal.SIGKILL)
        self._close_fds()

    def _close_fds(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        self.channel.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._close_fds()


_DRIVER: list[CgroupDriver] = []


def _driver() -> CgroupDriver:
    """This host's cgroup driver, probed once per process."""
    if not _DRIVER:
        _DRIVER.append(probe())
    return _DRIVER[0]


class _Spawner:
    """A connection to this process's spawner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = -1

    def _connect(self) -> socket.socket:
        with self._lock:
            if self._control is not None and self._owner_pid == os.getpid():
                return self._control
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            env = dict(os.environ)
            package_parent = str(Path(containerlib.__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (package_parent, env.get("PYTHONPATH")) if p
            )
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", _SPAWNER_MAIN, str(theirs.fileno())],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd="/",
                    # Its own session: a signal to the owner's process group (Ctrl-C, or a
                    # supervisor killing the group, as Jupyter does with a kernel) must not
                    # kill it before it has cleaned up. It ends when the owner's end of the
                    # control socket closes.
                    start_new_session=True,
                )
            except OSError as e:
                ours.close()
                raise SpawnerError(f"start the spawner process: {e}") from e
            finally:
                theirs.close()
            self._control = ours
            self._owner_pid = os.getpid()
            return ours

    def start(
        self,
        plan: Plan,
        stdio: tuple[int, int, int],
        *,
        wait: bool = True,
        console: int | None = None,
    ) -> Process:
        """Ask the spawner to create and start the container of ``plan``.

        Args:
            wait: wait for the spawner's answer; otherwise it is read when first needed
                (see :meth:`Process.started`).
            console: a unix socket: the container gets a terminal (its stdio), whose
                master end comes there (``SCM_RIGHTS``) before the container runs.

        Raises:
            ContainerSetupError: a step of the setup failed; nothing was left behind.
            SpawnerError: the spawner could not be reached.
        """
        return self._request("run", plan, stdio, wait, console)

    def exec(
        self,
        request: ExecRequest,
        stdio: tuple[int, int, int],
        *,
        wait: bool = True,
        console: int | None = None,
    ) -> Process:
        """Ask the spawner to start the process of ``request`` in its running container;
        as :meth:`start`, but nothing is removed when the process ends."""
        return self._request("exec", request, stdio, wait, console)

    def detach(self, request: DetachRequest, holds: Sequence[int]) -> int:
        """Ask the spawner to fork a keeper for the detached container of ``request``
        (see :mod:`containerlib.runtime.keeper`) and wait until it runs; returns its pid.
        ``holds`` (locks on the image's layers) go to the keeper.

        Raises:
            ContainerSetupError: a step of the setup failed; nothing was left behind.
            SpawnerError: the spawner or the keeper could not be reached.
        """
        from containerlib.runtime.records import wait_for_start

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours:
            try:
                control = self._connect()
                send_message(control, ("detach", request), [theirs.fileno(), *holds])
            except OSError as e:
                raise SpawnerError(f"ask the spawner for a container: {e}") from e
            finally:
                theirs.close()
            return wait_for_start(ours, request.plan.container_id)

    def _request(
        self,
        op: str,
        what: Plan | ExecRequest,
        stdio: tuple[int, int, int],
        wait: bool,
        console: int | None = None,
    ) -> Process:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            for attempt in (1, 2):
                control = self._connect()
                try:
                    extra = () if console is None else (console,)
                    send_message(control, (op, what), [theirs.fileno(), *stdio, *extra])
                    break
                except (BrokenPipeError, ConnectionResetError) as e:
                    # The spawner has ended (someone killed it): start another, once.
                    self._forget(control)
                    if attempt == 2:
                        raise SpawnerError(f"ask the spawner for a container: {e}") from e
                except OSError as e:
                    raise SpawnerError(f"ask the spawner for a container: {e}") from e
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        process = Process(ours)
        if wait:
            process.started()
        return process

    def ready_ids(self) -> list[str]:
        """The ids the spawner holds ready for the next containers: their cgroups exist
        already, each with a waiting process inside. For leak checks that run while the
        spawner does; empty when no spawner runs."""
        with self._lock:
            control = self._control if self._owner_pid == os.getpid() else None
        if control is None:
            return []
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours:
            try:
                send_message(control, ("ready", None), [theirs.fileno()])
            finally:
                theirs.close()
            msg = recv_message(ours)
        if msg is None:
            raise SpawnerError("the spawner process ended while it was asked for its state")
        (_kind, ids), _ = msg
        return list(ids)

    def _forget(self, control: socket.socket) -> None:
        """Drop a connection to a spawner that has ended, and reap it."""
        with self._lock:
            if self._control is control:
                control.close()
                self._control = None
                if self._proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(1.0)
                    self._proc = None

    def stop(self, timeout: float = 5.0) -> None:
        """Close the control socket; the spawner kills what is left and exits."""
        with self._lock:
            if self._control is not None and self._owner_pid == os.getpid():
                self._control.close()
                self._control = None
                if self._proc is not None:
                    deadline = time.monotonic() + timeout
                    while self._proc.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.005)
            self._proc = None

    @property
    def pid(self) -> int | None:
        """The spawner's pid, if one runs for this process."""
        return self._proc.pid if self._proc is not None else None


spawner = _Spawner()

atexit.register(spawner.stop)
