"""Detached containers: a keeper process for each, which outlives the one that started it.

A container started with ``detach=True`` must go on running after its creator has exited,
keep its output, and still tell later callers how it ended, as Docker's containers do.
Something has to be its parent (to reap it and learn its exit status) and drain its
output: the *keeper*, one small process per container, as podman's conmon. It is forked
from the spawner (or from the command line's own process), which has every module it
needs imported already, so it costs a fork, not a new interpreter; it then leaves its
parent's session and is no one's child there (a double fork).

The keeper creates the container as the spawner does (:class:`Keeper` is a
:class:`~containerlib.runtime.spawner.Spawner` with no owner), then, until the container's
first process ends:

- writes its output to ``<state>/container.log`` (the CRI log format, see
  :mod:`containerlib.runtime.logs`);
- serves ``<state>/keeper.sock``, where callers ask it to ``exec`` a process in the
  container (the spawner's own protocol) or to tell them when the container has ended;
- then removes the container's cgroup and writable layer, writes how it ended into
  ``<state>/container.json``, answers those waiting, and exits. With ``auto_remove``
  (``docker run --rm``) it removes the state directory too.

The state directory is ``<run root>/<id>`` (``/run/containerlib/<id>`` for root), beside the
containers of ``containerlib-runtime``, which share the ids. A record whose keeper is gone
but which never says how its container ended is *dead*: the keeper was killed, and its
container with it (the parent-death signal). :func:`status` tells, and ``prune()`` removes
what such a container left.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import select
import selectors
import signal
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NoReturn

import attrs

from containerlib.linux import syscalls as sc
from containerlib.runtime.messages import recv_message, send_message
from containerlib.runtime.plan import Plan
from containerlib.runtime.records import (
    LOG_FILE,
    SOCKET,
    read_record,
    remove_state,
    socket_path,
    start_time,
    stats_to_dict,
    write_record,
)
from containerlib.runtime.spawner import Spawner

if TYPE_CHECKING:
    from containerlib.network.ports import PortProxy, PublishedPort

__all__ = ["DetachRequest", "Keeper", "ReadyKeeper", "launch", "launch_ready"]
#: How long the keeper waits, after the container's first process ended, for the last of
#: its output (a process outside its PID namespace may hold the pipes open).
DRAIN_SECONDS: Final = 2.0
_MAX_FD = os.sysconf("SC_OPEN_MAX")
#: How long the keeper of an auto-removed container waits for those told of its end to
#: read its log before it removes it (seconds).
WAITERS_SECONDS: Final = 5.0
_OUTPUTS: Final = ("stdout", "stderr")


@attrs.frozen(kw_only=True)
class DetachRequest:
    """What a keeper needs: the container's plan, its state directory, its input."""

    plan: Plan
    state_dir: str
    input: bytes | None = None
    auto_remove: bool = False
    log_max_bytes: int | None = None
    #: The ports to publish; their host sockets, bound by the caller, are the last of
    #: the descriptors that come with the request, in this order.
    ports: tuple[PublishedPort, ...] = ()


# -- starting one --------------------------------------------------------------------------


def launch(request: DetachRequest, channel: int, holds: Sequence[int]) -> None:
    """Fork the container's keeper. It answers on the socket ``channel`` with
    ``("started", pid, id)`` once the container runs, or ``("error", exception)``.

    Call it from a small single-threaded process (the spawner, the command line): the
    fork copies the caller. ``holds`` (locks on the image's layers) are kept by the keeper
    for as long as the container runs. The caller still owns and closes its descriptors.

    Raises:
        OSError: the fork failed.
    """
    import containerlib.runtime.logs  # noqa: F401  (once here, not in each keeper)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        code = 1
        try:
            os.setsid()  # no terminal, no signals meant for the caller's group
            if os.fork() == 0:
                _keeper_main(request, channel, holds)
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


@attrs.define
class ReadyKeeper:
    """A keeper forked ahead of time (:func:`launch_ready`), waiting for its container."""

    pid: int
    pidfd: int
    sock: socket.socket
    flags: int

    def hand(self, request: DetachRequest, channel: int, holds: Sequence[int]) -> None:
        """Give it the container of ``request``; it answers on ``channel`` as a keeper
        from :func:`launch` does.

        Raises:
            OSError: it is gone.
        """
        try:
            send_message(self.sock, ("detach", request), [channel, *holds])
        finally:
            self.close()

    def close(self, timeout: float = 0.0) -> None:
        """Let go of it; unused, it then ends (waited for up to ``timeout`` seconds)."""
        self.sock.close()
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                select.select([self.pidfd], [], [], timeout)
            os.close(self.pidfd)
            self.pidfd = -1


def launch_ready(flags: int) -> ReadyKeeper:
    """Fork a keeper that clones its container's process (for the namespaces of
    ``flags``) now, then waits for the container: the next detached start skips both.
    It ends when its socket closes unused.

    Raises:
        OSError: the fork failed, or the keeper ended at once.
    """
    import containerlib.runtime.logs  # noqa: F401  (once here, not in each keeper)

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            code = 1
            try:
                os.setsid()
                if os.fork() == 0:
                    _keeper_main(None, theirs.fileno(), (), ready_flags=flags)
                code = 0
            finally:
                os._exit(code)
        os.waitpid(pid, 0)
        theirs.close()
        msg = recv_message(ours)
        if msg is None:
            raise OSError(errno.ESRCH, "the keeper made ahead of time ended at once")
        (_kind, keeper_pid), _ = msg
        return ReadyKeeper(keeper_pid, os.pidfd_open(keeper_pid), ours, flags)
    except BaseException:
        ours.close()
        theirs.close()
        raise


def _keeper_main(
    request: DetachRequest | None,
    channel: int,
    holds: Sequence[int],
    *,
    ready_flags: int | None = None,
) -> NoReturn:
    """The keeper, from the fork on; never returns (see :func:`launch`). Without a
    request, ``channel`` is the spawner's socket: the keeper clones a process for
    ``ready_flags``, says its pid, and waits there for its request."""
    code = 1
    try:
        # Objects of the forked process that are garbage now would close their
        # descriptors' numbers when collected, which this process reuses: they are never
        # collected (frozen: a collection would also copy every page of the heap). The
        # rest stay reachable from the frames below this one, which this process never
        # leaves (it exits from here).
        gc.freeze()
        keep = sorted({channel, *holds})
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, _MAX_FD)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
        os.chdir("/")
        sc.set_process_name(b"clib-keeper" if request is not None else b"clib-keeper-rdy")
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
        wakeup, wake = socket.socketpair()
        wake.setblocking(False)
        signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
        keeper = Keeper(wakeup)
        if request is None:
            assert ready_flags is not None
            spawner = socket.socket(fileno=channel)
            request, channel, holds = keeper.wait_for_request(spawner, ready_flags)
        if request is None:  # not needed after all
            keeper.shutdown()
            code = 0
        else:
            code = keeper.keep(request, socket.socket(fileno=channel), holds)
    finally:
        os._exit(code)


class Keeper(Spawner):
    """A spawner with no owner that runs one detached container (see the module)."""

    def __init__(self, wakeup: socket.socket) -> None:
        super().__init__(None, wakeup)
        self.waiters: list[socket.socket] = []

    def wait_for_request(
        self, spawner: socket.socket, flags: int
    ) -> tuple[DetachRequest | None, int, list[int]]:
        """As a keeper made ahead of time: clone the container's process (for the
        namespaces of ``flags``), say this process's pid on ``spawner``, and wait there
        for the request; returns it, the channel to answer on and the descriptors that
        came with it (None, -1 and none when the spawner let go of this keeper unused)."""
        self.warm_flags = flags
        self.warms.append(self.warm_up(flags))
        send_message(spawner, ("ready", os.getpid()))
        msg = recv_message(spawner)
        spawner.close()
        if msg is None:
            return None, -1, []
        (_op, request), fds = msg
        sc.set_process_name(b"clib-keeper")
        return request, fds[0], fds[1:]

    def keep(self, request: DetachRequest, channel: socket.socket, fds: Sequence[int]) -> int:
        """Create the container, serve until it ends, clean up; returns the exit code
        for this process. ``fds`` came with the request: locks on the image's layers,
        then the host sockets of its published ports."""
        from containerlib.runtime.logs import LogWriter

        plan = request.plan
        state = request.state_dir
        record = read_record(state) or {}
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        theirs: list[int] = []
        ours: dict[int, str] = {}
        try:
            with socket_path(state) as path:
                listener.bind(path)
            listener.listen(16)
            if request.input is None:
                theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            else:
                r, w = os.pipe2(os.O_CLOEXEC)
                theirs.append(r)
                ours[w] = "stdin"
            for name in ("stdout", "stderr"):
                r, w = os.pipe2(os.O_CLOEXEC)
                theirs.append(w)
                ours[r] = name
            run = self.create(plan, (theirs[0], theirs[1], theirs[2]))
        except BaseException as e:
            with contextlib.suppress(OSError):
                send_message(channel, ("error", e))
            listener.close()
            for fd in (*theirs, *ours):
                os.close(fd)
            remove_state(state)
            return 1
        for fd in theirs:
            os.close(fd)
        # The container's end is reported on this pair, as the spawner reports it.
        report, run.channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.running[run.pidfd] = run
        try:
            proxy = _publish(run.pid, request.ports, fds[len(fds) - len(request.ports) :])
        except BaseException as e:
            self.kill(run)
            self.reap(run)  # its cgroup and writable layer go
            report.close()
            self.shutdown()
            with contextlib.suppress(OSError):
                send_message(channel, ("error", e))
            listener.close()
            for fd in ours:
                os.close(fd)
            remove_state(state)
            return 1
        self.selector.register(run.pidfd, selectors.EVENT_READ, "main")
        record.update(
            status="running",
            pid=run.pid,
            start_time=start_time(run.pid),
            keeper_pid=os.getpid(),
            keeper_start_time=start_time(os.getpid()),
            started=time.time(),
            cgroup_path=plan.cgroup_path,
            rw_dir=plan.rw_dir,
            ports=[attrs.asdict(p) for p in request.ports],
            network=plan.bridge.name if plan.bridge is not None else None,
            ip=_address(plan),
        )
        write_record(state, record)
        with contextlib.suppress(OSError):
            send_message(channel, ("started", run.pid, plan.container_id))
        channel.close()

        log = LogWriter(os.path.join(state, LOG_FILE), max_bytes=request.log_max_bytes)
        pending = memoryview(request.input or b"")
        for fd, name in ours.items():
            os.set_blocking(fd, False)
            event = selectors.EVENT_WRITE if name == "stdin" else selectors.EVENT_READ
            if name == "stdin" and not pending:
                os.close(fd)
                continue
            self.selector.register(fd, event, name)
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        drained_by: float | None = None  # once the first process has ended
        while True:
            timeout = None
            if drained_by is not None:
                timeout = drained_by - time.monotonic()
                reading = any(k.data in _OUTPUTS for k in self.selector.get_map().values())
                if not reading or timeout <= 0:
                    break
            for key, _ in self.selector.select(timeout):
                data = key.data
                if data == "main":
                    self.selector.unregister(key.fd)
                    drained_by = time.monotonic() + DRAIN_SECONDS
                elif data in _OUTPUTS:
                    try:
                        chunk = os.read(key.fd, 1 << 16)
                    except (BlockingIOError, InterruptedError):
                        continue
                    if chunk:
                        log.write(data, chunk)
                    else:
                        self.selector.unregister(key.fd)
                        os.close(key.fd)
                elif data == "stdin":
                    try:
                        n = os.write(key.fd, pending[: 1 << 16])
                    except BlockingIOError:
                        continue
                    except OSError:
                        n = len(pending)  # it closed its stdin: drop the rest
                    pending = pending[n:]
                    if not pending:
                        self.selector.unregister(key.fd)
                        os.close(key.fd)
                elif data == "accept":
                    with contextlib.suppress(OSError):
                        conn, _ = listener.accept()
                        self.selector.register(conn, selectors.EVENT_READ, "client")
                elif data == "client":
                    self.serve_client(key.fileobj)  # type: ignore[arg-type]
                elif data == "waiter-gone":  # one waiting let go
                    self.selector.unregister(key.fd)
                    self.waiters.remove(key.fileobj)  # type: ignore[arg-type]
                    key.fileobj.close()  # type: ignore[union-attr]
                elif data == "exit":  # a process started by exec
                    self.reap(self.running[key.fd])
                elif data == "channel":
                    gone = self.by_channel.pop(key.fd)
                    self.kill(gone)  # its caller let go of it
                    self.selector.unregister(key.fd)
                elif data == "signal":  # SIGTERM: the container goes, as with docker stop -t 0
                    with contextlib.suppress(OSError):
                        key.fileobj.recv(64)  # type: ignore[union-attr]
                    self.kill(run)
        for key in list(self.selector.get_map().values()):
            if key.data in ("stdout", "stderr", "stdin"):
                self.selector.unregister(key.fd)
                os.close(key.fd)
        log.close()
        listener.close()
        if proxy is not None:
            proxy.close()
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(state, SOCKET))
        self.reap(run)
        msg = recv_message(report)
        report.close()
        assert msg is not None
        (_kind, wait_status, stats, failure), _ = msg
        code = os.waitstatus_to_exitcode(wait_status)
        record.update(
            status="exited",
            exit_code=128 - code if code < 0 else code,
            oom_killed=stats.oom_kills > 0,
            finished=time.time(),
            stats=stats_to_dict(stats),
            error=None if failure is None else str(failure),
        )
        write_record(state, record)
        for waiter in self.waiters:
            with contextlib.suppress(OSError):
                send_message(waiter, ("exited", wait_status, stats, failure))
            self.selector.unregister(waiter)
        if request.auto_remove:
            # Those waiting read the log before it goes: until they hang up, for a while.
            deadline = time.monotonic() + WAITERS_SECONDS
            left = list(self.waiters)
            while left and (timeout := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select(left, [], [], timeout)
                left = [w for w in left if w not in ready]
        for waiter in self.waiters:
            waiter.close()
        self.shutdown()  # exec'd processes left, the writable layer in the trash
        if request.auto_remove:
            remove_state(state)
        return 0

    def serve_client(self, conn: socket.socket) -> None:
        """One request on ``keeper.sock``: ``("exec", ExecRequest)`` with the process's
        stdio (and a console socket, for a terminal), answered as the spawner answers it,
        or ``("wait", None)``, answered with ``("exited", status, stats, error)`` when the
        container has ended."""
        self.selector.unregister(conn)
        try:
            msg = recv_message(conn)
        except OSError:
            msg = None
        if msg is None:
            conn.close()
            return
        (op, payload), fds = msg
        if op == "wait":
            for fd in fds:
                os.close(fd)
            self.waiters.append(conn)
            self.selector.register(conn, selectors.EVENT_READ, "waiter-gone")
            return
        if op != "exec" or len(fds) not in (3, 4):  # stdio, and a console socket
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                send_message(conn, ("error", ValueError(f"unknown request {op!r}")))
            conn.close()
            return
        self.handle((op, payload), [conn.detach(), *fds])


def _publish(pid: int, ports: Sequence[PublishedPort], socks: Sequence[int]) -> PortProxy | None:
    """Relay the published ports of the container whose first process is ``pid``, from
    the host sockets ``socks`` its creator bound (see :mod:`containerlib.network.ports`)."""
    if not ports:
        return None
    from containerlib.network.ports import HostListener, PortProxy

    proxy = PortProxy(f"/proc/{pid}/ns/net")
    try:
        for published, fd in zip(ports, socks, strict=True):
            sock = socket.socket(fileno=fd)
            proxy.publish(
                published.container_port, listener=HostListener(sock=sock, published=published)
            )
    except BaseException:
        proxy.close()
        raise
    return proxy


def _address(plan: Plan) -> str | None:
    """The container's IPv4 address on its bridge network, None off one."""
    if plan.bridge is None:
        return None
    with contextlib.suppress(OSError):
        for lease in plan.bridge.leases():
            if lease.owner == plan.container_id and lease.address.version == 4:
                return str(lease.address.ip)
    return None
