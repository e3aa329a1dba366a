"""The relay behind published ports (:mod:`containerlib.network.ports`): one I/O thread
with a selector (selectors, epoll(7)) that relays every connection between a host socket
and one made inside the container's network namespace.

A TCP connection's bytes go from one socket to the other through a pipe, with splice(2):
the pipe takes references to the pages of the socket's buffers rather than copies, so
the bytes never reach user space (splice(2), pipe(7) on pipe sizes). Where splice(2) is
refused (a seccomp filter, say), the relay copies through a buffer instead. TCP
half-closes are passed on, and a connection refused inside resets the client. UDP
clients each get a socket inside, dropped when idle.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import os
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from containerlib.network.nssockets import SocketMaker

__all__ = ["INSIDE_HOST", "Relay", "TcpListener", "UdpListener"]

#: Where the relay connects inside the namespace (the container's loopback).
INSIDE_HOST = "127.0.0.1"
#: Bytes buffered per direction of a TCP connection before reading from its source stops,
#: where the relay copies (splice(2) unavailable).
TCP_BUFFER = 256 * 1024
#: Bytes a relay's pipe grows to (F_SETPIPE_SZ, fcntl(2)) once it fills, where splice(2)
#: moves the bytes: 1 MiB is what /proc/sys/fs/pipe-max-size allows any user by default.
#: Where refused, the pipe keeps the kernel's default (64 KiB).
PIPE_SIZE = 1024 * 1024
#: The most pipefuls one event moves in one direction before the thread serves others.
PUMP_ROUNDS = 8
#: The most UDP clients relayed at once; the one idle longest is dropped for a new one.
UDP_FLOWS = 1024


def _reset(sock: socket.socket) -> None:
    """Close with a reset (RST) rather than an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Direction(Protocol):
    """One direction of a TCP relay: bytes read from ``src`` wait for ``dst``."""

    src: socket.socket
    dst: socket.socket
    eof: bool
    shut: bool

    def wants_read(self) -> bool:
        """Whether to watch ``src`` for reading: no end seen yet, and room to read into."""
        ...

    def wants_write(self) -> bool:
        """Whether to watch ``dst`` for writing: bytes wait for it."""
        ...

    def pump(self) -> None:
        """Move what can move now, from ``src`` to ``dst``; once ``src`` has ended and
        everything is written, shut down ``dst``'s sending side.

        Raises:
            OSError: either socket failed (a reset, for one).
        """
        ...

    def close(self) -> None:
        """Release what the direction holds (not the sockets)."""
        ...


class CopyDirection:
    """A direction through a buffer in user space: recv(2) into it, send(2) out of it."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.buf = bytearray()
        self.eof = False
        self.shut = False

    def wants_read(self) -> bool:
        return not self.eof and len(self.buf) < TCP_BUFFER

    def wants_write(self) -> bool:
        return bool(self.buf)

    def _flush(self) -> None:
        if self.buf:
            try:
                sent = self.dst.send(self.buf)
            except BlockingIOError:
                return
            del self.buf[:sent]
        if self.eof and not self.buf and not self.shut:
            self.shut = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)

    def pump(self) -> None:
        self._flush()
        room = TCP_BUFFER - len(self.buf)
        if self.eof or room <= 0:
            return
        try:
            data = self.src.recv(room)
        except BlockingIOError:
            return
        if data:
            self.buf += data
        else:
            self.eof = True
        self._flush()

    def close(self) -> None:
        self.buf.clear()


class _SpliceUnavailable(Exception):
    """splice(2) refused these sockets before it moved a byte (a seccomp filter, a
    kernel or socket without it): the connection goes on with :class:`CopyDirection`."""


#: errno values with which splice(2) says it cannot serve these descriptors at all.
_NO_SPLICE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM})
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def _make_pipe() -> tuple[int, int, int]:
    """A non-blocking pipe: its read end, write end and size in bytes.

    Raises:
        OSError: no pipe could be made (``EMFILE``, ``ENFILE``).
    """
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    return r, w, size


class SpliceDirection:
    """A direction through a pipe, with splice(2): socket to pipe, pipe to socket.

    The bytes stay in the kernel (the pipe holds references to the socket buffers'
    pages), so the relay thread does no copying and wakes once per pipeful rather than
    once per buffer. ``pending`` counts the bytes in the pipe: reading stops while the
    pipe is full, and ``dst`` is watched only while it holds bytes.

    The pipe starts at the kernel's default size and grows to :data:`PIPE_SIZE` the
    first time it fills: a user's pipes count against its pipe-user-pages-soft limit
    (pipe(7)), so only connections that carry a stream take the larger size.
    """

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.r, self.w, self.size = _make_pipe()
        self.pending = 0
        self.moved = 0
        # The pipe has free bytes but no free slots (splice(2) fills one slot per piece
        # of a socket buffer, often less than a page): reading waits for a write.
        self.full = False
        self.grown = self.size >= PIPE_SIZE
        self.eof = False
        self.shut = False

    def wants_read(self) -> bool:
        return not self.eof and not self.full and self.pending < self.size

    def _grow(self) -> None:
        """Enlarge the pipe to :data:`PIPE_SIZE`, once; where refused (over
        /proc/sys/fs/pipe-max-size, or the user's pipe-user-pages-soft reached) it keeps
        its size."""
        self.grown = True
        with contextlib.suppress(OSError):
            self.size = fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)

    def wants_write(self) -> bool:
        return self.pending > 0

    def _flush(self) -> bool:
        """Write from the pipe to ``dst``; whether anything was written."""
        wrote = False
        while self.pending:
            try:
                sent = os.splice(self.r, self.dst.fileno(), self.pending, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                break
            if sent == 0:
                break
            self.pending -= sent
            self.full = False
            wrote = True
        if self.eof and not self.pending and not self.shut:
            self.shut = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
        return wrote

    def _fill(self) -> bool:
        """Read from ``src`` into the pipe; whether anything was read."""
        try:
            got = os.splice(
                self.src.fileno(), self.w, self.size - self.pending, flags=_SPLICE_FLAGS
            )
        except BlockingIOError:
            # Nothing to read, or no free slot in the pipe. With bytes in the pipe, wait
            # for a write to free some; without, the socket was simply empty.
            self.full = self.pending > 0
            if self.full and not self.grown:
                self._grow()
                self.full = False
            return False
        except OSError as e:
            if e.errno in _NO_SPLICE and self.moved == 0 and self.pending == 0:
                raise _SpliceUnavailable from e
            raise
        if got == 0:
            self.eof = True
            return False
        self.pending += got
        self.moved += got
        if self.pending >= self.size and not self.grown:
            self._grow()
        return True

    def pump(self) -> None:
        # Alternate until neither side can go on, but for at most a few pipefuls, so
        # that one busy connection does not keep the thread from the others.
        for _ in range(PUMP_ROUNDS):
            self._flush()
            if not self.wants_read() or not self._fill():
                break
        self._flush()

    def close(self) -> None:
        if self.r >= 0:
            os.close(self.r)
            os.close(self.w)
            self.r = self.w = -1


#: Cleared when splice(2) fails for want of support; later connections then copy.
_splice_works = hasattr(os, "splice")


def _direction(src: socket.socket, dst: socket.socket) -> Direction:
    """A splice direction where splice(2) works, else one that copies."""
    if _splice_works:
        try:
            return SpliceDirection(src, dst)
        except OSError:
            pass  # no pipe now (too many open files): this connection copies
    return CopyDirection(src, dst)


def _copying(direction: Direction) -> Direction:
    """``direction``, or a copying one in its place if it is a splice direction that has
    not moved or ended anything yet."""
    if isinstance(direction, SpliceDirection) and direction.moved == 0 and not direction.eof:
        direction.close()
        return CopyDirection(direction.src, direction.dst)
    return direction


class Connection:
    """A relayed TCP connection: the host-side client and the socket made inside."""

    def __init__(self, relay: Relay, client: socket.socket, inside: socket.socket) -> None:
        self.relay = relay
        self.client = client
        self.inside = inside
        self.connected = False
        self.up: Direction = CopyDirection(client, inside)
        self.down: Direction = CopyDirection(inside, client)
        # The events each socket is registered for, so that the selector is only told
        # of a change (an epoll_ctl(2) call less per event).
        self.watched = {client: 0, inside: 0}
        self.closed = False

    def start(self) -> None:
        """Register both sockets: the inside one for its connect to finish."""
        self.relay.connections.add(self)
        self.relay.watch(self.inside, self, selectors.EVENT_WRITE, 0)
        self.watched[self.inside] = selectors.EVENT_WRITE

    def _connected(self) -> None:
        err = self.inside.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        self.connected = True
        self.up = _direction(self.client, self.inside)
        self.down = _direction(self.inside, self.client)

    def _events(self, sock: socket.socket) -> int:
        reader, writer = (self.up, self.down) if sock is self.client else (self.down, self.up)
        mask = selectors.EVENT_READ if reader.wants_read() else 0
        if writer.wants_write():
            mask |= selectors.EVENT_WRITE
        return mask

    def _pump(self, direction: Direction) -> None:
        try:
            direction.pump()
        except _SpliceUnavailable:
            global _splice_works
            _splice_works = False
            self.up, self.down = _copying(self.up), _copying(self.down)
            self._pump(self.up if direction.src is self.client else self.down)

    def ready(self, sock: socket.socket, mask: int) -> None:
        try:
            if not self.connected:
                self._connected()
                self._pump(self.up)
                self._pump(self.down)
            else:
                reader, writer = (
                    (self.up, self.down) if sock is self.client else (self.down, self.up)
                )
                if mask & selectors.EVENT_WRITE:
                    self._pump(writer)
                if mask & selectors.EVENT_READ:
                    self._pump(reader)
        except OSError:
            self.close(reset=True)
            return
        if self.up.shut and self.down.shut:
            self.close(reset=False)
            return
        for s in (self.client, self.inside):
            events = self._events(s)
            if events != self.watched[s]:
                self.relay.watch(s, self, events, self.watched[s])
                self.watched[s] = events

    def close(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.up.close()
        self.down.close()
        for sock in (self.client, self.inside):
            if self.watched[sock]:
                self.relay.unwatch(sock)
            if reset:
                _reset(sock)
            else:
                sock.close()
        # Last: whoever sees it gone from the set (another thread) sees it closed.
        self.relay.connections.discard(self)


class TcpListener:
    def __init__(self, relay: Relay, listener: socket.socket, port: int) -> None:
        self.relay = relay
        self.listener = listener
        self.port = port

    def ready(self, sock: socket.socket, mask: int) -> None:
        try:
            client, _addr = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        client.setblocking(False)
        try:
            inside = self.relay.maker.make(socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            _reset(client)
            return
        inside.setblocking(False)
        connection = Connection(self.relay, client, inside)
        err = inside.connect_ex((INSIDE_HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            connection.close(reset=True)
            return
        connection.start()

    def close(self) -> None:
        self.relay.unwatch(self.listener)
        self.listener.close()


class UdpFlow:
    """One UDP client's socket inside, sending the container's answers back to it."""

    def __init__(self, owner: UdpListener, client: tuple[str, int], inside: socket.socket) -> None:
        self.owner = owner
        self.client = client
        self.inside = inside
        self.last = time.monotonic()
        self.closed = False

    def ready(self, sock: socket.socket, mask: int) -> None:
        self.last = time.monotonic()
        try:
            data = self.inside.recv(65536)
            self.owner.listener.sendto(data, self.client)
        except (BlockingIOError, InterruptedError):
            pass  # a datagram that cannot be sent now is dropped, as UDP may
        except OSError:
            self.owner.drop(self)

    def close(self) -> None:
        self.closed = True
        self.owner.relay.unwatch(self.inside)
        self.inside.close()


class UdpListener:
    def __init__(self, relay: Relay, listener: socket.socket, port: int) -> None:
        self.relay = relay
        self.listener = listener
        self.port = port
        self.flows: collections.OrderedDict[tuple[str, int], UdpFlow]
        self.flows = collections.OrderedDict()

    def ready(self, sock: socket.socket, mask: int) -> None:
        try:
            data, client = self.listener.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # an ICMP error for an earlier answer: nothing to do
        flow = self.flows.get(client)
        if flow is None:
            if len(self.flows) >= UDP_FLOWS:
                self.drop(next(iter(self.flows.values())))
            try:
                inside = self.relay.maker.make(socket.AF_INET, socket.SOCK_DGRAM)
            except OSError:
                return
            inside.setblocking(False)
            inside.connect((INSIDE_HOST, self.port))
            flow = self.flows[client] = UdpFlow(self, client, inside)
            self.relay.watch(inside, flow, selectors.EVENT_READ, 0)
        self.flows.move_to_end(client)
        flow.last = time.monotonic()
        with contextlib.suppress(OSError):
            flow.inside.send(data)

    def drop(self, flow: UdpFlow) -> None:
        del self.flows[flow.client]
        flow.close()

    def expire(self, now: float, idle: float) -> None:
        for flow in [f for f in self.flows.values() if now - f.last > idle]:
            self.drop(flow)

    def close(self) -> None:
        for flow in list(self.flows.values()):
            self.drop(flow)
        self.relay.unwatch(self.listener)
        self.listener.close()


class Handler(Protocol):
    def ready(self, sock: socket.socket, mask: int) -> None: ...


class Relay:
    """The I/O thread: one selector over every listener and relayed connection."""

    def __init__(self, maker: SocketMaker, udp_idle: float) -> None:
        self.maker = maker
        self.udp_idle = udp_idle
        self.selector = selectors.DefaultSelector()
        self.listeners: list[TcpListener | UdpListener] = []
        self.connections: set[Connection] = set()
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="containerlib-ports", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the I/O thread."""
        self._calls.put(fn)
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    def watch(self, sock: socket.socket, handler: Handler, events: int, old: int) -> None:
        """Change the events ``sock`` is watched for from ``old`` to ``events`` (0: not
        registered); the caller keeps track of them, so no lookup is needed."""
        if not events:
            self.selector.unregister(sock)
        elif not old:
            self.selector.register(sock, events, handler)
        else:
            self.selector.modify(sock, events, handler)

    def unwatch(self, sock: socket.socket) -> None:
        if sock in self.selector.get_map():
            self.selector.unregister(sock)

    def add(self, listener: TcpListener | UdpListener) -> None:
        self.listeners.append(listener)
        self.selector.register(listener.listener, selectors.EVENT_READ, listener)

    def stop(self) -> None:
        self._stopping = True

    def _run(self) -> None:
        try:
            period = min(1.0, self.udp_idle / 2)
            expiry = time.monotonic() + period
            while not self._stopping:
                for key, mask in self.selector.select(period):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            while self._wake_r.recv(512):
                                pass
                        while not self._calls.empty():
                            self._calls.get()()
                        continue
                    handler: Handler = key.data
                    if isinstance(handler, Connection | UdpFlow) and handler.closed:
                        continue  # closed by an earlier event of this round
                    handler.ready(key.fileobj, mask)  # type: ignore[arg-type]
                now = time.monotonic()
                if now >= expiry:
                    expiry = now + period
                    for listener in self.listeners:
                        if isinstance(listener, UdpListener):
                            listener.expire(now, self.udp_idle)
        finally:
            for connection in list(self.connections):
                connection.close(reset=True)
            for listener in self.listeners:
                listener.close()
            self.selector.close()
            self._wake_r.close()

    def close(self) -> None:
        self.call(self.stop)
        self.thread.join()
        self._wake_w.close()
