"""User-mode networking: a container reaches out through pasta or slirp4netns.

A non-root user can make no veth pair or bridge on the host. Instead, as podman does for
rootless containers, a user-mode network stack runs beside the container: the program
joins the container's user and network namespaces, makes a tap device there (``eth0``)
with an address, a default route and the loopback up, then leaves the namespaces and
turns each packet the container sends into an ordinary socket call of the host's user.
Two programs do it, tried in this order: ``slirp4netns`` and ``pasta`` (Debian package
``passt``). Read slirp4netns(1) and pasta(1). slirp4netns comes first because of the pasta
bug below (podman on Debian 12 also defaults to slirp4netns).

Both are given the same network, so that a container sees the same whichever runs:
address ``10.0.2.100/24``, gateway ``10.0.2.2``, DNS ``10.0.2.3`` (forwarded to the
host's resolver), MTU 65520, IPv4 only. The gateway reaches the host's loopback only with
``host_loopback=True``: by default a container cannot reach services that listen on the
host's ``127.0.0.1`` (podman's default), which trust whoever connects as the host's own
user. No port of the host is forwarded into the container nor the other way: ports are
published by :mod:`containerlib.network.ports`.

The spawner starts the program once the container's process exists and before the
process gets its plan (see :func:`start`), keeps the handle with the container, and stops
it when the container ends (:meth:`UserNet.stop`); the program also dies with the
process that started it (``PR_SET_PDEATHSIG``). The namespaces are given to it as
descriptors (``/proc/self/fd/N``), not as ``/proc/PID/ns/*`` paths: a program that has
dropped its capabilities may not open another process's namespaces, and a descriptor
cannot name another process's once the pid is reused.

Both programs open ``/dev/net/tun`` inside the container's namespaces, as the user: it must
be readable and writable by that user (mode 0666, as distributions make it); an error of
the program says so when it is not. Debian 12's pasta (passt 2023-03-09) mishandles a TCP
connection the container half-closes first (``shutdown(SHUT_WR)``, as ``nc`` does when its
input ends): the host's answer may arrive more than once and its end never.

Example:
    >>> from containerlib.network import usernet
    >>> usernet.available() in ("pasta", "slirp4netns", None)
    True
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from typing import IO, Final

import attrs

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.linux import syscalls as sc

__all__ = [
    "ADDRESS",
    "DNS",
    "GATEWAY",
    "IFNAME",
    "PACKAGES",
    "TOOLS",
    "UserNet",
    "available",
    "command",
    "require",
    "start",
]

#: The programs, in the order they are preferred.
TOOLS: Final = ("slirp4netns", "pasta")
#: The Debian package that installs each one.
PACKAGES: Final = {"pasta": "passt", "slirp4netns": "slirp4netns"}
#: The container's side: its interface, address (in a /24), gateway and DNS server.
IFNAME: Final = "eth0"
ADDRESS: Final = "10.0.2.100"
GATEWAY: Final = "10.0.2.2"
DNS: Final = "10.0.2.3"
PREFIX: Final = 24
MTU: Final = 65520
#: How long the program may take to configure the namespace (seconds).
READY_TIMEOUT: Final = 10.0


def available(path: str | None = None) -> str | None:
    """The program a container's user-mode network would use: ``"slirp4netns"`` if it is
    on ``path`` (``$PATH`` by default), else ``"pasta"``, else None."""
    return next((tool for tool in TOOLS if shutil.which(tool, path=path)), None)


def require(tool: str | None = None, path: str | None = None) -> str:
    """The absolute path of ``tool`` (one of :data:`TOOLS`), or of the program
    :func:`available` picks when ``tool`` is None.

    Raises:
        SpecError: ``tool`` is no such program, or it is not installed (naming the
            Debian packages to install).
    """
    if tool is not None and tool not in TOOLS:
        raise SpecError("network", f"must be one of {', '.join(TOOLS)}, not {tool!r}")
    tool = tool or available(path)
    found = shutil.which(tool, path=path) if tool is not None else None
    if found is None:
        wanted = [tool] if tool is not None else list(TOOLS)
        names = " or ".join(wanted)
        packages = " or ".join(PACKAGES[t] for t in wanted)
        raise SpecError(
            "network",
            "user-mode networking (a non-root user's 'bridge', 'pasta', 'slirp4netns') "
            f"needs {names} on PATH, which has none: install the Debian package "
            f"{packages} (apt-get install {' '.join(PACKAGES[t] for t in wanted)}), or "
            "use network('none') with publish()",
        )
    return os.path.abspath(found)


def command(
    executable: str,
    *,
    netns_fd: int,
    userns_fd: int | None,
    host_loopback: bool,
    ready: str | int,
    exit_fd: int | None = None,
    as_root: bool = False,
) -> list[str]:
    """The command line that runs ``executable`` (pasta or slirp4netns, told apart by
    its name) for the network namespace open as ``netns_fd``.

    Args:
        netns_fd: the container's network namespace, a descriptor the program inherits.
        userns_fd: the user namespace that owns it, inherited too; None when that is the
            caller's own (a root container without one), which cannot be joined again.
        host_loopback: the gateway leads to the host's ``127.0.0.1``.
        ready: pasta: a path (a FIFO) it writes its pid to once the namespace is
            configured; slirp4netns: a descriptor it writes ``1`` to then.
        exit_fd: slirp4netns: a descriptor whose closing (or any event) ends it.
        as_root: the caller is root: pasta, which otherwise changes to ``nobody``, stays
            root (it drops its capabilities itself), so that it can use ``/dev/net/tun``.

    Raises:
        ValueError: ``executable`` is neither program, or ``ready`` is of the wrong kind.
    """
    name = os.path.basename(executable)
    netns = f"/proc/self/fd/{netns_fd}"
    userns = None if userns_fd is None else f"/proc/self/fd/{userns_fd}"
    if name == "pasta":
        if not isinstance(ready, str):
            raise ValueError("pasta tells it is ready through a pid file path")
        args = [executable, "--config-net", "--foreground", "--quiet", "--ipv4-only"]
        args += ["--ns-ifname", IFNAME, "--mtu", str(MTU)]
        args += ["--address", ADDRESS, "--netmask", str(PREFIX), "--gateway", GATEWAY]
        args += ["--dns-forward", DNS]
        # No port of either side forwarded to the other (pasta's default is all that
        # listen): publish() does that, for the ports asked for.
        args += ["--tcp-ports", "none", "--udp-ports", "none"]
        args += ["--tcp-ns", "none", "--udp-ns", "none"]
        if not host_loopback:
            args.append("--no-map-gw")
        if as_root:
            args += ["--runas", "0:0"]
        args += ["--pid", ready, "--netns", netns]
        args += ["--netns-only"] if userns is None else ["--userns", userns]
        return args
    if name == "slirp4netns":
        if isinstance(ready, str):
            raise ValueError("slirp4netns tells it is ready on a descriptor")
        args = [executable, "--configure", f"--mtu={MTU}", f"--ready-fd={ready}"]
        args.append(f"--cidr=10.0.2.0/{PREFIX}")
        if exit_fd is not None:
            args.append(f"--exit-fd={exit_fd}")
        if not host_loopback:
            args.append("--disable-host-loopback")
        args.append("--netns-type=path")
        if userns is not None:
            args.append(f"--userns-path={userns}")
        return [*args, netns, IFNAME]
    raise ValueError(f"not a user-mode network program: {executable!r}")


@attrs.define
class UserNet:
    """A running user-mode network stack of one container (see :func:`start`).

    Attributes:
        tool: ``"pasta"`` or ``"slirp4netns"``.
        pid: the program's pid (a child of the process that started it).
        address: the container's address; ``gateway``, its gateway (the host's loopback
            with ``host_loopback``); ``dns``, the DNS server it may use.
    """

    tool: str
    pid: int
    address: str = ADDRESS
    gateway: str = GATEWAY
    dns: str = DNS
    _process: subprocess.Popen[bytes] | None = attrs.field(default=None, repr=False)
    _exit_fd: int | None = attrs.field(default=None, repr=False)

    def stop(self) -> None:
        """Kill the program and wait for it. Idempotent."""
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)  # a reaped pid is never signalled
        process.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)


def start(
    tool: str,
    pid: int,
    *,
    host_loopback: bool,
    container_id: str = "",
    executable: str | None = None,
) -> UserNet:
    """Start ``tool`` for the network namespace of the process ``pid`` and wait until it
    has configured it.

    Args:
        tool: ``"pasta"`` or ``"slirp4netns"``.
        pid: a process in the container's network (and user) namespace.
        host_loopback: the container's gateway leads to the host's ``127.0.0.1``.
        container_id: for the errors.
        executable: the program's path; ``tool`` on ``$PATH`` by default.

    Call it from a single-threaded process (the spawner, a keeper): the program is set
    to die with the caller between its fork and its exec.

    Returns:
        The running program; the caller stops it (:meth:`UserNet.stop`).

    Raises:
        SpecError: ``tool`` is not installed.
        ContainerSetupError: the namespaces could not be opened, or the program failed
            or did not configure the namespace in time (with what it said).
    """
    exe = executable or require(tool)
    step = f"start {tool} for the container's network"
    with contextlib.ExitStack() as stack:
        try:
            netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, netns)
            userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, userns)
            # The caller's own user namespace cannot be joined again (setns: EINVAL).
            own = os.fstat(userns).st_ino == os.stat("/proc/self/ns/user").st_ino
        except OSError as e:
            raise ContainerSetupError(
                f"open the namespaces of process {pid}", e.errno or errno.EIO, container_id
            ) from None
        log = stack.enter_context(tempfile.TemporaryFile(prefix="clib-usernet-"))
        child_ends = [netns] if own else [netns, userns]
        closed_by_child: list[int] = []  # the child's ends of pipes, closed once it runs
        exit_w: int | None = None
        if os.path.basename(exe) == "pasta":
            # A FIFO as its pid file: pasta writes its pid there once it is ready. Opened
            # for writing too, so that it never reads as EOF before pasta opens it.
            fifo_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="clib-pasta-"))
            fifo = os.path.join(fifo_dir, "pid")
            os.mkfifo(fifo, 0o600)
            ready = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            stack.callback(os.close, ready)
            args = command(
                exe,
                netns_fd=netns,
                userns_fd=None if own else userns,
                host_loopback=host_loopback,
                ready=fifo,
                as_root=os.geteuid() == 0,
            )
        else:
            ready, ready_w = os.pipe2(os.O_CLOEXEC)
            stack.callback(os.close, ready)
            exit_w, exit_r = os.pipe2(os.O_CLOEXEC)
            closed_by_child = [ready_w, exit_r]
            args = command(
                exe,
                netns_fd=netns,
                userns_fd=None if own else userns,
                host_loopback=host_loopback,
                ready=ready_w,
                exit_fd=exit_r,
            )
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=child_ends + closed_by_child,
                # Called from the spawner or a keeper, which are single-threaded.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
                cwd="/",
            )
        except OSError as e:
            if exit_w is not None:
                os.close(exit_w)
            raise ContainerSetupError(step, e.errno or errno.EIO, container_id) from None
        finally:
            for fd in closed_by_child:
                os.close(fd)
        net = UserNet(tool=tool, pid=process.pid, process=process, exit_fd=exit_w)
        try:
            _wait_ready(process, ready, log, step, container_id)
        except BaseException:
            net.stop()
            raise
        return net


def _wait_ready(
    process: subprocess.Popen[bytes], ready: int, log: IO[bytes], step: str, cid: str
) -> None:
    """Wait until the program says on ``ready`` that it has configured the namespace
    (slirp4netns writes ``1``, pasta its pid and a newline).

    Raises:
        ContainerSetupError: it exited first, or took longer than :data:`READY_TIMEOUT`.
    """
    pidfd = os.pidfd_open(process.pid)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        said = b""
        while (left := deadline - time.monotonic()) > 0:
            readable = select.select([ready, pidfd], [], [], left)[0]
            if ready in readable:
                try:
                    chunk = os.read(ready, 64)
                except BlockingIOError:
                    chunk = None
                said += chunk or b""
                if said == b"1" or said.endswith(b"\n"):
                    return
                if chunk == b"":  # it closed its end without a word: it is ending
                    select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
                    readable.append(pidfd)
            if pidfd in readable and process.poll() is not None:
                reason = f"it exited with status {process.returncode}"
                raise ContainerSetupError(step, errno.EIO, cid, _explain(reason, log))
        reason = f"it did not configure the namespace within {READY_TIMEOUT:g}s"
        raise ContainerSetupError(step, errno.ETIMEDOUT, cid, _explain(reason, log))
    finally:
        os.close(pidfd)


def _explain(reason: str, log: IO[bytes]) -> str:
    """``reason``, what the program said last, and what to do about a tap device this
    user may not open."""
    log.seek(0)
    lines = [
        line.strip()
        for line in log.read().decode(errors="replace").splitlines()
        if line.strip() and "syslog" not in line
    ]
    detail = reason + (": " + "; ".join(lines[-3:]) if lines else "")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        detail += (
            "; /dev/net/tun must be readable and writable by this user "
            "(as root: chmod 0666 /dev/net/tun, the mode distributions give it)"
        )
    return detail
