"""Sockets made inside another network namespace, for a caller that stays outside.

A socket belongs to the network namespace it was created in, whatever thread or process
later uses it (socket(7), network_namespaces(7)). So one helper joins the namespace once and
makes sockets there on request: a thread that called setns(2), when the caller may join
the namespace directly (root); or else a small process that first joins the namespace's
owning user namespace (a process with threads cannot, setns(2)) and hands each socket
back over a unix socket (SCM_RIGHTS, unix(7)); that is how a non-root user reaches its
rootless containers. The caller's own threads never change namespace.
"""

from __future__ import annotations

import errno
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Protocol

from containerlib.linux.syscalls import CLONE_NEWNET, CLONE_NEWUSER, setns

__all__ = ["SocketMaker", "socket_maker"]

_NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1): the user namespace that owns a namespace, ioctl_ns(2)


class SocketMaker(Protocol):
    """Makes sockets inside one network namespace, for any thread of the caller."""

    def make(self, family: int, kind: int) -> socket.socket:
        """A new socket of ``family`` (``AF_INET``…) and ``kind`` (``SOCK_STREAM``…) that
        belongs to the namespace; the caller owns it.

        Raises:
            OSError: socket(2) failed inside, or the helper process has ended
                (``ECHILD``).
        """
        ...

    def close(self) -> None:
        """End the helper thread or process. Sockets already made stay usable."""
        ...


class _ThreadMaker:
    """A thread that joined the namespace and makes sockets there on request."""

    def __init__(self, netns: int) -> None:
        self._requests: queue.SimpleQueue[tuple[int, int, Future[socket.socket]] | None]
        self._requests = queue.SimpleQueue()
        joined: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(netns, joined), name="containerlib-netns", daemon=True
        )
        self._thread.start()
        try:
            joined.result()
        except OSError:
            self._thread.join()
            raise

    def _serve(self, netns: int, joined: Future[None]) -> None:
        try:
            setns(netns, CLONE_NEWNET)
        except OSError as e:
            joined.set_exception(e)
            return
        joined.set_result(None)
        while (request := self._requests.get()) is not None:
            family, kind, answer = request
            try:
                answer.set_result(socket.socket(family, kind))
            except OSError as e:
                answer.set_exception(e)

    def make(self, family: int, kind: int) -> socket.socket:
        answer: Future[socket.socket] = Future()
        self._requests.put((family, kind, answer))
        return answer.result()

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join()


# Runs in a fresh interpreter (single-threaded, so it may join a user namespace), with the
# stdlib only. argv: the channel's descriptor, the netns descriptor.
_HELPER = rf"""
import ctypes, fcntl, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
channel = socket.socket(fileno=int(sys.argv[1]))
net = int(sys.argv[2])
def setns(fd, kind):
    if libc.setns(fd, kind) != 0:
        raise OSError(ctypes.get_errno(), "setns")
try:
    user = fcntl.ioctl(net, {_NS_GET_USERNS})
    if os.fstat(user).st_ino != os.stat("/proc/self/ns/user").st_ino:
        setns(user, {CLONE_NEWUSER})
    os.close(user)
    setns(net, {CLONE_NEWNET})
except OSError as e:
    channel.send(struct.pack("i", e.errno or 1))
    sys.exit(1)
os.close(net)
channel.send(struct.pack("i", 0))
while True:
    request = channel.recv(8)
    if len(request) != 8:
        break
    family, kind = struct.unpack("ii", request)
    try:
        made = socket.socket(family, kind)
    except OSError as e:
        channel.send(struct.pack("i", e.errno or 1))
        continue
    socket.send_fds(channel, [struct.pack("i", 0)], [made.fileno()])
    made.close()
"""


class _ProcessMaker:
    """A helper process in the namespace's user and network namespaces that makes sockets
    there and hands them over; for a caller that may not join the namespace from a thread."""

    def __init__(self, netns: int) -> None:
        self._channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER, str(theirs.fileno()), str(netns)],
                pass_fds=(theirs.fileno(), netns),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            self._channel.close()
            raise
        finally:
            theirs.close()
        answer = self._channel.recv(4)
        err = struct.unpack("i", answer)[0] if len(answer) == 4 else errno.ECHILD
        if err:
            self.close()
            raise OSError(err, os.strerror(err))

    def make(self, family: int, kind: int) -> socket.socket:
        with self._lock:
            self._channel.send(struct.pack("ii", family, kind))
            answer, fds, _flags, _addr = socket.recv_fds(self._channel, 4, 1)
        if len(answer) != 4:
            for fd in fds:
                os.close(fd)
            raise OSError(errno.ECHILD, "the network namespace helper process has ended")
        err = struct.unpack("i", answer)[0]
        if err:
            raise OSError(err, os.strerror(err))
        return socket.socket(fileno=fds[0])

    def close(self) -> None:
        self._channel.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def socket_maker(netns: int) -> SocketMaker:
    """A maker of sockets inside the network namespace open as ``netns``.

    A thread that joined the namespace when this process may join it (it has
    ``CAP_SYS_ADMIN`` over the namespace's owner, as root does), else a helper process in
    the namespace's user namespace (a rootless container's). ``netns`` must stay open
    while the maker runs.

    Args:
        netns: a descriptor of the network namespace (``/proc/PID/ns/net``).

    Returns:
        The maker; close it when done.

    Raises:
        OSError: the namespace could not be joined, even by a helper process.

    Example::

        maker = socket_maker(fd)
        sock = maker.make(socket.AF_INET, socket.SOCK_STREAM)
        sock.connect(("127.0.0.1", 80))  # the container's loopback
    """
    try:
        return _ThreadMaker(netns)
    except PermissionError:
        return _ProcessMaker(netns)
