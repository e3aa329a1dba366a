"""Published ports through the userspace proxy (containerlib.network.ports), on the real
kernel: busybox servers in real containers, reached from the host through the proxy.

As root the proxy joins the container's network namespace from a thread; as ``nobody``
(the nox session ``rootless``) the container is in a user namespace of its own and the
proxy uses a helper process that joins it. Both run every test here.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image, SpecError
from containerlib.container import RunningContainer
from containerlib.network import nssockets, relay
from containerlib.network.ports import PortProxy, PublishedPort

from .conftest import ROOT

pytestmark = pytest.mark.usefixtures("state")

HTTP_PORT = 8080
ECHO_PORT = 9000
PAGE = "hello from the container\n"
#: A shell that serves a page with httpd and echoes every connection on ECHO_PORT with cat.
SERVERS = (
    f"mkdir -p /srv/www && printf '{PAGE}' > /srv/www/index.html"
    f" && httpd -p {HTTP_PORT} -h /srv/www"
    f" && exec nc -ll -p {ECHO_PORT} -e cat"
)


def _until_listening(proxy: PortProxy, port: int) -> None:
    """Wait until something listens on ``port`` inside (the servers start in the
    background)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            proxy.connect(port, timeout=5).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def servers(image: Image) -> Iterator[RunningContainer]:
    with Container(image).start(["sh", "-c", SERVERS]) as running:
        yield running


@pytest.fixture(params=["auto", "helper"])
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How sockets are made inside: ``auto`` (a thread as root, the helper process as
    ``nobody``), or ``helper``: the helper process even where a thread could join."""
    if request.param == "helper":

        def refuse(netns: int) -> None:
            raise PermissionError(errno.EPERM, "refused by the test")

        monkeypatch.setattr(nssockets, "_ThreadMaker", refuse)
    return str(request.param)


@pytest.fixture
def proxy(servers: RunningContainer, driver: str) -> Iterator[PortProxy]:
    with PortProxy(f"/proc/{servers.pid}/ns/net") as proxy:
        _until_listening(proxy, HTTP_PORT)
        _until_listening(proxy, ECHO_PORT)
        yield proxy


def _echo(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and read the answer to its end (the echo server's
    ``cat`` ends when its input does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        got = bytearray()

        def read() -> None:
            while chunk := sock.recv(1 << 20):
                got.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reader.join()
        return bytes(got)


def _our_threads() -> list[str]:
    names = ("containerlib-ports", "containerlib-netns")
    return [t.name for t in threading.enumerate() if t.name in names]


def _our_helpers() -> list[int]:
    """This process's children that run the proxy's helper (a ``-c`` script calling
    setns)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if ppid == os.getpid() and b"setns" in cmdline:
                found.append(int(entry.name))
    return found


def test_an_http_get_through_the_published_port_returns_the_file(proxy: PortProxy) -> None:
    web = proxy.publish(HTTP_PORT)
    with urllib.request.urlopen(f"http://127.0.0.1:{web.host_port}/index.html", timeout=30) as r:
        assert r.status == 200
        assert r.read().decode() == PAGE


def test_a_free_host_port_is_picked_when_none_is_given(proxy: PortProxy) -> None:
    first = proxy.publish(ECHO_PORT)
    second = proxy.publish(ECHO_PORT)
    assert first == PublishedPort(
        host_ip="127.0.0.1", host_port=first.host_port, container_port=ECHO_PORT, protocol="tcp"
    )
    assert first.host_port > 0
    assert second.host_port not in (0, first.host_port)
    assert proxy.ports == [first, second]
    assert _echo(second.host_port, b"both work") == b"both work"


def test_a_given_host_port_is_used(proxy: PortProxy) -> None:
    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    published = proxy.publish(ECHO_PORT, port)
    assert published.host_port == port
    assert _echo(port, b"given") == b"given"


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size and (chunk := sock.recv(size - len(got))):
        got += chunk
    return bytes(got)


def test_twenty_concurrent_connections_each_get_their_own_data_back(proxy: PortProxy) -> None:
    """Twenty connections open at once, each echoing its own data at the same time.

    They are opened one after another, each until its first bytes come back: busybox
    ``nc -ll`` listens with a backlog of 2, and a burst of connections overflows it (the
    container's kernel then resets some, which the proxy passes on as resets)."""
    port = proxy.publish(ECHO_PORT).host_port
    sent = {i: f"connection {i};".encode() * (1000 + 37 * i) for i in range(20)}
    results: dict[int, bytes] = {}
    socks = []
    try:
        for i in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            socks.append(sock)
            first = f"connection {i};".encode()
            sock.sendall(first)
            assert _recv_exactly(sock, len(first)) == first

        def one(i: int) -> None:
            sock = socks[i]
            rest = sent[i][len(f"connection {i};") :]

            def write() -> None:
                sock.sendall(rest)
                sock.shutdown(socket.SHUT_WR)

            writer = threading.Thread(target=write)
            writer.start()
            results[i] = f"connection {i};".encode() + sock.makefile("rb").read()
            writer.join()

        workers = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        for sock in socks:
            sock.close()
    assert results == sent


def test_a_client_that_does_not_read_is_stalled_not_buffered(proxy: PortProxy) -> None:
    """The echo server's answers pile up unread: the proxy stops reading from the server,
    the server stops reading from the proxy, and so the client's sending stalls, long
    before all it offers is taken (kernel socket buffers hold some tens of MiB at most)."""
    port = proxy.publish(ECHO_PORT).host_port
    offered = 512 * 1024 * 1024
    chunk = bytes(1024 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.settimeout(3)
        stalled = False
        while sent < offered and not stalled:
            try:
                sent += sock.send(chunk)
            except TimeoutError:
                stalled = True
    assert stalled
    assert sent < 128 * 1024 * 1024


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")
def test_a_port_may_be_published_on_the_ipv6_loopback(proxy: PortProxy) -> None:
    try:
        published = proxy.publish(ECHO_PORT, host_ip="::1")
    except ContainerSetupError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            pytest.skip("the host has no ::1")
        raise
    assert published.host_ip == "::1"
    with socket.create_connection(("::1", published.host_port), timeout=30) as sock:
        sock.sendall(b"six")
        sock.shutdown(socket.SHUT_WR)
        assert sock.makefile("rb").read() == b"six"


def test_a_taken_host_port_fails_at_publish_naming_it(proxy: PortProxy) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ContainerSetupError) as failure:
            proxy.publish(ECHO_PORT, port)
    assert failure.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{port}" in str(failure.value)
    assert proxy.ports == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0,), "publish container_port"),
        ((70000,), "publish container_port"),
        ((True,), "publish container_port"),
        ((80, -1), "publish host_port"),
        ((80, None, "sctp"), "publish protocol"),
        ((80, None, "tcp", "localhost"), "publish host_ip"),
    ],
)
def test_bad_ports_protocols_and_addresses_are_spec_errors(
    proxy: PortProxy, args: tuple[object, ...], field: str
) -> None:
    with pytest.raises(SpecError) as failure:
        proxy.publish(*args)  # type: ignore[arg-type]
    assert failure.value.field == field
    assert proxy.ports == []


SIOCGSKNS = 0x894C  # the network namespace of a socket, as a descriptor (sock_ioctl)


def test_connect_gives_a_socket_connected_inside(
    proxy: PortProxy, servers: RunningContainer
) -> None:
    with proxy.connect(ECHO_PORT) as sock:
        netns = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
        try:
            assert os.fstat(netns).st_ino == os.stat(f"/proc/{servers.pid}/ns/net").st_ino
        finally:
            os.close(netns)
        sock.sendall(b"direct")
        sock.shutdown(socket.SHUT_WR)
        assert sock.makefile("rb").read() == b"direct"
    with pytest.raises(ConnectionRefusedError, match=r"127\.0\.0\.1:9999"):
        proxy.connect(9999)


def test_a_refused_connection_inside_resets_the_client(proxy: PortProxy) -> None:
    port = proxy.publish(9999).host_port  # nothing listens on 9999 inside

    def connect_and_read() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            return sock.recv(1)

    # The proxy accepted, failed to connect inside, and reset: the client sees the reset
    # when it reads, or already in connect() if it came that fast.
    with pytest.raises(ConnectionResetError):
        connect_and_read()


@pytest.mark.usefixtures("driver")
def test_close_frees_the_host_port_and_ends_every_thread_and_helper(
    servers: RunningContainer,
) -> None:
    before = set(_our_threads())
    proxy = PortProxy(f"/proc/{servers.pid}/ns/net")
    _until_listening(proxy, ECHO_PORT)
    port = proxy.publish(ECHO_PORT).host_port
    idle = socket.create_connection(("127.0.0.1", port), timeout=30)
    assert _echo(port, b"before close") == b"before close"
    proxy.close()
    proxy.close()  # a second close does nothing
    with idle, pytest.raises(ConnectionResetError):  # the proxy reset it
        idle.recv(1)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
    assert set(_our_threads()) == before
    assert _our_helpers() == []
    with pytest.raises(ContainerSetupError, match="closed"):
        proxy.publish(ECHO_PORT)


@pytest.mark.usefixtures("driver")
def test_a_descriptor_of_the_namespace_may_be_given(servers: RunningContainer) -> None:
    fd = os.open(f"/proc/{servers.pid}/ns/net", os.O_RDONLY)
    try:
        with PortProxy(fd) as proxy:
            os.close(fd)  # the proxy keeps its own
            fd = -1
            _until_listening(proxy, ECHO_PORT)
            port = proxy.publish(ECHO_PORT).host_port
            assert _echo(port, b"by descriptor") == b"by descriptor"
    finally:
        if fd >= 0:
            os.close(fd)


def test_a_namespace_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(ContainerSetupError) as failure:
        PortProxy(str(tmp_path / "nope"))
    assert failure.value.errno == errno.ENOENT
    assert str(tmp_path / "nope") in str(failure.value)


# -- UDP, relayed to a namespace of the test's own -------------------------------------------

#: A UDP echo server that answers each datagram with the sender's port and the datagram.
UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 9001))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(b"%d:" % peer[1] + data, peer)
"""


@pytest.fixture
def udp_echo() -> Iterator[int]:
    """A UDP echo server in a user and network namespace of its own: its pid."""
    server = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" -I -S -c "$1"',
            sys.executable,
            UDP_ECHO,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"ready\n"
        yield server.pid
    finally:
        server.kill()
        server.wait()
        assert server.stdout is not None
        server.stdout.close()


def _ask(sock: socket.socket, data: bytes) -> tuple[int, bytes]:
    sock.send(data)
    port, _, echoed = sock.recv(65536).partition(b":")
    return int(port), echoed


@pytest.mark.usefixtures("driver")
def test_udp_clients_each_get_their_own_socket_inside(udp_echo: int) -> None:
    with PortProxy(f"/proc/{udp_echo}/ns/net") as proxy:
        published = proxy.publish(9001, protocol="udp")
        assert published.protocol == "udp"
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            for s in (a, b):
                s.settimeout(30)
                s.connect(("127.0.0.1", published.host_port))
            a_port, echoed = _ask(a, b"from a")
            assert echoed == b"from a"
            b_port, echoed = _ask(b, b"from b")
            assert echoed == b"from b"
            assert a_port != b_port
            assert _ask(a, b"again") == (a_port, b"again")


@pytest.mark.usefixtures("driver")
def test_an_idle_udp_client_loses_its_socket_inside(udp_echo: int) -> None:
    with PortProxy(f"/proc/{udp_echo}/ns/net", udp_idle=0.2) as proxy:
        port = proxy.publish(9001, protocol="udp").host_port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(30)
            client.connect(("127.0.0.1", port))
            first, _ = _ask(client, b"one")
            deadline = time.monotonic() + 30
            while (seen := _ask(client, b"later")[0]) == first and time.monotonic() < deadline:
                time.sleep(0.5)
            assert seen != first


def test_a_taken_udp_port_fails_at_publish(udp_echo: int) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken,
        PortProxy(f"/proc/{udp_echo}/ns/net") as proxy,
    ):
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ContainerSetupError) as failure:
            proxy.publish(9001, port, "udp")
        assert failure.value.errno == errno.EADDRINUSE
        assert f"127.0.0.1:{port}" in str(failure.value)


@pytest.mark.skipif(ROOT, reason="rootless: root may enter every namespace")
def test_a_namespace_of_another_user_is_refused_saying_so() -> None:
    with pytest.raises(ContainerSetupError) as failure:
        PortProxy("/proc/1/ns/net")  # the host's, owned by root
    assert failure.value.errno in (errno.EACCES, errno.EPERM)
    assert "/proc/1/ns/net" in str(failure.value)
    assert _our_threads() == []
    assert _our_helpers() == []


# -- streams through the relay (splice(2) through a pipe, where the kernel allows it) ----------

DIGEST_PORT = 9002
TELL_PORT = 9003
ZEROS_PORT = 9004
TOLD = b"".join(b"%d\n" % i for i in range(1, 1_000_001))  # what `seq 1 1000000` writes
#: Servers that answer with the SHA-256 of all they read, tell TOLD without reading and
#: close, and send zeros until the client goes.
STREAMS = (
    f"nc -ll -p {DIGEST_PORT} -e sha256sum & nc -ll -p {TELL_PORT} -e seq 1 1000000 &"
    f" exec nc -ll -p {ZEROS_PORT} -e cat /dev/zero"
)


@pytest.fixture
def streams(image: Image, driver: str) -> Iterator[tuple[PortProxy, RunningContainer]]:
    with (
        Container(image).start(["sh", "-c", STREAMS]) as running,
        PortProxy(f"/proc/{running.pid}/ns/net") as proxy,
    ):
        for port in (DIGEST_PORT, TELL_PORT, ZEROS_PORT):
            _until_listening(proxy, port)
        yield proxy, running


def test_sixty_four_mebibytes_go_both_ways_intact(proxy: PortProxy) -> None:
    port = proxy.publish(ECHO_PORT).host_port
    data = os.urandom(64 * 1024 * 1024)
    got = _echo(port, data)
    assert len(got) == len(data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert relay._splice_works  # the relay spliced, it did not fall back to copying


def test_a_client_that_half_closes_gets_the_whole_answer(
    streams: tuple[PortProxy, RunningContainer],
) -> None:
    proxy, _ = streams
    port = proxy.publish(DIGEST_PORT).host_port
    data = os.urandom(64 * 1024 * 1024 + 4321)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").read()
    assert answer == f"{hashlib.sha256(data).hexdigest()}  -\n".encode()


def test_a_server_that_closes_first_is_read_to_its_end(
    streams: tuple[PortProxy, RunningContainer],
) -> None:
    proxy, _ = streams
    port = proxy.publish(TELL_PORT).host_port
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        got = sock.makefile("rb").read()
    assert len(got) == len(TOLD)
    assert got == TOLD


def _connections_to(running: RunningContainer, port: int) -> list[str]:
    """The TCP connections in the container's network namespace from or to ``port``,
    but for its listening socket (proc_net_tcp: hex addresses, state 0A is LISTEN)."""
    lines = Path(f"/proc/{running.pid}/net/tcp").read_text().splitlines()[1:]
    found = []
    for line in lines:
        local, remote, state = line.split()[1:4]
        if state != "0A" and f":{port:04X}" in (local[-5:], remote[-5:]):
            found.append(line.strip())
    return found


def test_a_client_reset_ends_the_connection_inside(
    streams: tuple[PortProxy, RunningContainer],
) -> None:
    proxy, running = streams
    port = proxy.publish(ZEROS_PORT).host_port
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        got = b""
        while len(got) < 4 * 1024 * 1024:
            got += sock.recv(1 << 20)
        assert got.count(0) == len(got)
        assert _connections_to(running, ZEROS_PORT) != []
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The proxy passes the reset on: the connection inside goes, and the server (its
    # `cat` ended by the broken connection) serves the next client.
    deadline = time.monotonic() + 30
    while (left := _connections_to(running, ZEROS_PORT)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        assert sock.recv(4096).count(0) > 0
