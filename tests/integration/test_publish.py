"""Published ports and connect() through the Container API, on the real kernel: a server
in a container answers the host; the host's loopback is not the container's."""

from __future__ import annotations

import errno
import socket
import time
from pathlib import Path

import pytest

import containerlib
from containerlib import Container, ContainerSetupError, Image, SpecError
from containerlib.errors import ContainerNotRunning
from tests.integration.conftest import http_get

pytestmark = pytest.mark.usefixtures("state")

PAGE = "served from a container\n"
HTTPD = f"mkdir -p /www && printf '{PAGE}' > /www/index.html && exec httpd -f -p 8080 -h /www"


def _free(port: int) -> bool:
    """No socket listens on ``port`` (one in TIME_WAIT after a connection may remain)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_server_in_a_container_answers_through_a_published_port(image: Image) -> None:
    with Container(image).publish(8080).start(["sh", "-c", HTTPD]) as box:
        (port,) = box.ports
        assert (port.container_port, port.protocol, port.host_ip) == (8080, "tcp", "127.0.0.1")
        assert http_get(f"http://127.0.0.1:{port.host_port}/") == PAGE
        host_port = port.host_port
        assert box.host_port(8080) == host_port
        with pytest.raises(
            SpecError, match=r"port 8080/udp .* not published \(published: 8080/tcp\)"
        ):
            box.host_port(8080, "udp")
        assert box.status == "running"
        box.kill()
        box.wait()
        assert box.status == "exited"
    # Gone with the container: the port is free again, and nothing is published.
    assert box.ports == []
    assert _free(host_port)


def test_a_given_host_port_and_a_taken_one(image: Image, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        marker = tmp_path / "ran"
        tmp_path.chmod(0o777)
        c = Container(image).mount(tmp_path, "/out", read_only=False).publish(8080, busy)
        with pytest.raises(ContainerSetupError, match=f"127.0.0.1:{busy}") as e:
            c.start(["touch", "/out/ran"])
        assert e.value.errno == errno.EADDRINUSE
        # Refused before anything ran.
        assert not marker.exists()
    with Container(image).publish(8080, busy).start(["sh", "-c", HTTPD]) as box:
        assert box.ports[0].host_port == busy
        assert http_get(f"http://127.0.0.1:{busy}/") == PAGE


def test_connect_reaches_an_unpublished_port_from_inside(image: Image) -> None:
    with Container(image).start(["nc", "-l", "-p", "9000", "-e", "cat"]) as box:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = box.connect(9000, timeout=5)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with sock:
            sock.sendall(b"ping\n")
            assert sock.recv(100) == b"ping\n"
    with pytest.raises(ContainerNotRunning):
        box.connect(9000)


def test_the_hosts_loopback_is_not_the_containers(image: Image) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = Container(image).run(["nc", "-w", "2", "127.0.0.1", str(port)], input=b"x")
    assert result.exit_code != 0


def test_bad_publications_are_refused(image: Image) -> None:
    with pytest.raises(SpecError, match="container_port"):
        Container(image).publish(0)
    with pytest.raises(SpecError, match="host_port"):
        Container(image).publish(80, 70000)
    with pytest.raises(SpecError, match="protocol"):
        Container(image).publish(80, protocol="sctp")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="host_ip"):
        Container(image).publish(80, host_ip="localhost")
    with pytest.raises(SpecError, match="host's network"):
        Container(image).network("host").publish(80).start(["true"])


def test_a_detached_container_keeps_its_published_port(
    image: Image, roots: dict[str, str], adopter: None
) -> None:
    box = Container(image).publish(8080).start(["sh", "-c", HTTPD], detach=True)
    try:
        (port,) = containerlib.get(box.id).ports
        assert port.container_port == 8080
        # Served by its keeper, not by this process.
        assert http_get(f"http://127.0.0.1:{port.host_port}/") == PAGE
        with box.connect(8080) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert PAGE.encode() in sock.makefile("rb").read()
        # Its keeper runs the proxy's threads, and still starts exec'd processes.
        assert box.exec(["cat", "/www/index.html"]).stdout == PAGE.encode()
    finally:
        box.remove(force=True)
    assert _free(port.host_port)


def test_a_taken_port_leaves_no_detached_container(image: Image, adopter: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(ContainerSetupError, match=f"127.0.0.1:{busy}"):
            Container(image).publish(80, busy).start(["true"], detach=True, name="nope")
    assert containerlib.list(all=True) == []
