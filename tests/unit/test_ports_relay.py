"""The published-port relay (containerlib.network.relay) on real loopback sockets.

No namespace is joined here: the relay's sockets "inside" are made in the test's own
network namespace, so the relay runs without root between a client and a server that are
both on 127.0.0.1. Every test runs twice: with splice(2) through a pipe (the relay's
normal path) and with the copy through a buffer that it falls back to.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containerlib.network import relay as relay_module
from containerlib.network.ports import bind_host

#: Seconds any socket in these tests waits before the test fails (never reached when
#: the relay works).
WAIT = 30.0
MIB = 1024 * 1024


class _LocalMaker:
    """A socket maker for the test's own namespace."""

    def make(self, family: int, kind: int) -> socket.socket:
        return socket.socket(family, kind)

    def close(self) -> None:
        pass


Serve = Callable[[socket.socket], None]


class _Server:
    """A TCP server on 127.0.0.1 that runs ``serve`` in a thread for each connection and
    keeps what each one raised."""

    def __init__(self, serve: Serve) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.serve = serve
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(WAIT)
        try:
            with conn:
                self.serve(conn)
        except BaseException as e:  # the test looks at it
            self.errors.append(e)
        finally:
            self.done.set()

    def close(self) -> None:
        # shutdown wakes the accept() of the thread; close alone would not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(WAIT)
        for t in self.threads:
            t.join(WAIT)


@pytest.fixture(params=["splice", "copy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the relay moves bytes: ``splice`` (its normal path) or ``copy`` (the path it
    takes where splice(2) is refused)."""
    if request.param == "copy":
        monkeypatch.setattr(relay_module, "_splice_works", False)
    elif not relay_module._splice_works:
        pytest.skip("no splice(2) here")
    return str(request.param)


@pytest.fixture
def relay() -> Iterator[relay_module.Relay]:
    relay = relay_module.Relay(_LocalMaker(), udp_idle=60.0)
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture
def publish(relay: relay_module.Relay) -> Iterator[Callable[[Serve], tuple[int, _Server]]]:
    """Start a server running ``serve`` and relay a host port to it: (that port, the
    server)."""
    servers: list[_Server] = []

    def publish(serve: Serve) -> tuple[int, _Server]:
        server = _Server(serve)
        servers.append(server)
        host = bind_host(server.port)
        listener = relay_module.TcpListener(relay, host.sock, server.port)
        relay.call(lambda: relay.add(listener))
        return host.published.host_port, server

    yield publish
    for server in servers:
        server.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def _read_all(sock: socket.socket) -> bytes:
    got = bytearray()
    while chunk := sock.recv(MIB):
        got += chunk
    return bytes(got)


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(MIB):
        conn.sendall(data)


def _digest_of_all(conn: socket.socket) -> None:
    """Read to the client's half-close, then answer with the SHA-256 of what came."""
    digest = hashlib.sha256()
    while data := conn.recv(MIB):
        digest.update(data)
    conn.sendall(digest.hexdigest().encode())


def _pipes() -> set[str]:
    """This process's open pipes, as their links in /proc/self/fd (``pipe:[inode]``).

    Other threads of the test process may open pipes of their own meanwhile, so the
    tests look for particular pipes rather than count them."""
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue  # the descriptor of the listing itself, closed already
        if link.startswith("pipe:"):
            found.add(link)
    return found


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` while reading the answer, half-close, and read the answer to its
    end."""
    with _connect(port) as sock:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_read_all(sock)))
        reader.start()
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reader.join(WAIT * 4)
    assert got, "the answer did not end"
    return got[0]


@pytest.mark.usefixtures("path")
def test_sixty_four_mib_go_both_ways_intact(
    publish: Callable[[Serve], tuple[int, _Server]],
) -> None:
    port, server = publish(_echo)
    data = os.urandom(64 * MIB)
    got = _exchange(port, data)
    assert len(got) == len(data)
    assert _sha(got) == _sha(data)
    assert server.errors == []


@pytest.mark.usefixtures("path")
def test_a_client_that_half_closes_still_gets_the_whole_answer(
    publish: Callable[[Serve], tuple[int, _Server]],
) -> None:
    port, server = publish(_digest_of_all)
    data = os.urandom(16 * MIB + 12345)
    with _connect(port) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        assert _read_all(sock).decode() == _sha(data)
    assert server.errors == []


@pytest.mark.usefixtures("path")
def test_a_server_that_closes_first_is_read_to_its_end(
    publish: Callable[[Serve], tuple[int, _Server]],
) -> None:
    told = b"".join(b"%d\n" % i for i in range(1_000_000))  # 6.9 MB, in order

    def tell_and_close(conn: socket.socket) -> None:
        conn.sendall(told)

    port, _server = publish(tell_and_close)
    with _connect(port) as sock:
        got = _read_all(sock)
        # The server's end reached the client as an end, not a reset; the client's own
        # side is still open, and writing on it does not fail at once.
        sock.sendall(b"late")
    assert len(got) == len(told)
    assert got == told


@pytest.mark.usefixtures("path")
def test_a_server_reset_resets_the_client(
    publish: Callable[[Serve], tuple[int, _Server]],
) -> None:
    def read_then_reset(conn: socket.socket) -> None:
        conn.recv(5)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    port, _server = publish(read_then_reset)
    with _connect(port) as sock:
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            _read_all(sock)


@pytest.mark.usefixtures("path")
def test_a_client_reset_ends_the_servers_connection(
    publish: Callable[[Serve], tuple[int, _Server]],
) -> None:
    def stream(conn: socket.socket) -> None:
        chunk = bytes(MIB)
        while True:
            conn.sendall(chunk)  # until the relay passes the client's reset on

    port, server = publish(stream)
    with _connect(port) as sock:
        assert len(sock.recv(4096)) > 0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert server.done.wait(WAIT), "the server kept sending to a client that was reset"
    assert len(server.errors) == 1
    error = server.errors[0]
    assert isinstance(error, OSError)
    assert error.errno in (errno.ECONNRESET, errno.EPIPE)


def test_the_splice_path_holds_two_pipes_a_connection_and_closes_them(
    path: str, publish: Callable[[Serve], tuple[int, _Server]], relay: relay_module.Relay
) -> None:
    port, _server = publish(_echo)
    with _connect(port) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        (connection,) = relay.connections
        held = {
            f"pipe:[{os.fstat(fd).st_ino}]"
            for direction in (connection.up, connection.down)
            if isinstance(direction, relay_module.SpliceDirection)
            for fd in (direction.r, direction.w)
        }
        assert len(held) == (2 if path == "splice" else 0)  # a pipe each way
        assert held <= _pipes()
        sock.shutdown(socket.SHUT_WR)
        assert _read_all(sock) == b""
    # Both ends have closed: the relay closes the connection, and its pipes with it.
    deadline = time.monotonic() + WAIT
    while relay.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not relay.connections
    assert not held & _pipes()
    assert relay_module._splice_works == (path == "splice")


def test_a_refused_splice_falls_back_to_copying(
    monkeypatch: pytest.MonkeyPatch, publish: Callable[[Serve], tuple[int, _Server]]
) -> None:
    """As under a seccomp filter that refuses splice(2): the first connection goes on
    by copying, and so do later ones."""
    if not relay_module._splice_works:
        pytest.skip("no splice(2) here")
    monkeypatch.setattr(relay_module, "_splice_works", True)  # restored after the test

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "splice", refuse)
    port, _server = publish(_echo)
    data = os.urandom(3 * MIB)
    for _ in range(2):
        assert _sha(_exchange(port, data)) == _sha(data)
    assert relay_module._splice_works is False
