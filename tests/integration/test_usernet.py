"""User-mode networking (pasta, slirp4netns) through the Container API, on the real kernel.

As a non-root user (the nox session ``rootless``, or this file run as ``nobody``),
``network("bridge")`` is a user-mode network; root asks for ``"pasta"`` or
``"slirp4netns"`` by name (root's ``"bridge"`` is the real bridge: test_bridge.py). A
program that is not installed skips its cases, saying which package to install.

Traffic stays on the host: the container reaches a server this test runs on the host's
``127.0.0.1``, through the gateway, only when ``host_loopback`` lets it. A non-root user's
program opens /dev/net/tun in the container's namespaces, which needs the device readable
and writable by the user (mode 0666, as distributions make it): where it is not, the
non-root cases skip, saying so.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import containerlib
from containerlib import Container, Image, SpecError
from containerlib.network import usernet

pytestmark = pytest.mark.usefixtures("state")

ROOT = os.geteuid() == 0
GREETING = b"from the host's loopback\n"


@pytest.fixture(params=["bridge", "pasta", "slirp4netns"])
def mode(request: pytest.FixtureRequest) -> str:
    """A network mode that runs a user-mode network program here."""
    name = str(request.param)
    if name == "bridge":
        if ROOT:
            pytest.skip("root's 'bridge' is the real bridge (test_bridge.py)")
        if usernet.available() is None:
            pytest.skip("neither pasta nor slirp4netns is installed (passt, slirp4netns)")
    elif shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (Debian package {usernet.PACKAGES[name]})")
    if not ROOT and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        pytest.skip("/dev/net/tun is not readable and writable by this user (chmod 0666)")
    return name


def _tool(mode: str) -> str:
    return usernet.available() or "" if mode == "bridge" else mode


class _Server:
    """An HTTP server on the host's 127.0.0.1 that answers every request with
    :data:`GREETING` (a length-delimited answer: the client stops reading after it,
    whether or not the end of the connection reaches it)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while select.select([self.sock, self._stop_r], [], [])[0] != [self._stop_r]:
            conn, _ = self.sock.accept()
            self.connections += 1
            with conn:
                conn.settimeout(10)
                request = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in request and (chunk := conn.recv(4096)):
                        request += chunk
                    head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(GREETING)}\r\n\r\n"
                    conn.sendall(head.encode() + GREETING)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join()
        self.sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    try:
        yield s
    finally:
        s.close()


def _tool_processes() -> set[int]:
    """This user's pasta and slirp4netns processes."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            # Debian's pasta is passt (passt.avx2 once it has picked its build).
            name = (entry / "comm").read_text()
            ours = entry.stat().st_uid == os.geteuid()
            if ours and name.startswith(("pasta", "passt", "slirp4netns")):
                found.add(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _the_new_tool(before: set[int], container_pid: int) -> int:
    """The one program started since ``before``; where this user may read its
    descriptors (pasta may make itself non-dumpable), also that it holds the network
    namespace of ``container_pid``."""
    (pid,) = _tool_processes() - before
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except PermissionError:
        return pid
    assert os.readlink(f"/proc/{container_pid}/ns/net") in links
    return pid


def _has_ended(pid: int, pidfd: int) -> bool:
    """The process ``pid`` (held by ``pidfd``) has exited and been reaped."""
    return bool(select.select([pidfd], [], [], 0)[0]) and not Path(f"/proc/{pid}").exists()


def test_the_container_has_an_address_and_a_default_route(image: Image, mode: str) -> None:
    result = Container(image).network(mode).run(["sh", "-c", "ip -4 addr; ip route"])
    out = result.stdout.decode()
    assert result.exit_code == 0, result.stderr
    assert f"inet {usernet.ADDRESS}/24" in out
    assert f"default via {usernet.GATEWAY} dev {usernet.IFNAME}" in out
    assert "inet 127.0.0.1/8" in out  # the loopback is up too


def test_with_host_loopback_the_gateway_is_the_hosts_loopback(
    image: Image, mode: str, server: _Server
) -> None:
    result = (
        Container(image)
        .network(mode, host_loopback=True)
        .run(["wget", "-q", "-O", "-", f"http://{usernet.GATEWAY}:{server.port}/"], timeout=60)
    )
    assert (result.exit_code, result.stdout) == (0, GREETING), result.stderr
    assert server.connections == 1


def test_without_host_loopback_the_hosts_loopback_is_out_of_reach(
    image: Image, mode: str, server: _Server
) -> None:
    # The container's own 127.0.0.1 is not the host's (pasta would forward the host's
    # listening ports there by default), and with slirp4netns the gateway refuses. With
    # pasta the gateway is not tried: without the mapping, pasta sends the connection
    # out to the host's network, and the tests send nothing off the host.
    targets = ["127.0.0.1"]
    if _tool(mode) == "slirp4netns":
        targets.append(usernet.GATEWAY)
    script = "; ".join(
        f"wget -q -O - http://{t}:{server.port}/ && echo reached {t}" for t in targets
    )
    result = Container(image).network(mode).run(["sh", "-c", script + "; true"], timeout=60)
    assert result.exit_code == 0, result.stderr
    assert b"reached" not in result.stdout
    assert GREETING not in result.stdout
    assert server.connections == 0


def test_the_program_ends_with_an_attached_container(image: Image, mode: str) -> None:
    before = _tool_processes()
    with Container(image).network(mode).start(["sleep", "60"]) as box:
        tool = _the_new_tool(before, box.pid)
        pidfd = os.pidfd_open(tool)
        try:
            assert not _has_ended(tool, pidfd)
            box.kill()
            box.wait()
            assert _has_ended(tool, pidfd)
        finally:
            os.close(pidfd)


def test_the_program_ends_with_a_detached_container(image: Image, mode: str, adopter: None) -> None:
    before = _tool_processes()
    box = Container(image).network(mode).start(["sleep", "60"], detach=True)
    try:
        pid = box.pid
        assert pid is not None
        tool = _the_new_tool(before, pid)
        pidfd = os.pidfd_open(tool)
        try:
            # The container's keeper runs it, not this process.
            assert os.getpid() != int(Path(f"/proc/{tool}/stat").read_text().split()[3])
            box.kill()
            box.wait()
            assert _has_ended(tool, pidfd)
        finally:
            os.close(pidfd)
    finally:
        box.remove(force=True)
    assert containerlib.list(all=True) == []


@pytest.mark.parametrize("asked", ["bridge", "pasta", "slirp4netns"])
def test_without_the_programs_a_clear_error_before_anything_is_made(
    image: Image, asked: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if asked == "bridge" and ROOT:
        pytest.skip("root's 'bridge' is the real bridge, which needs neither program")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    # An environment of its own: a plan made for this container before is not reused.
    box = Container(image).env(PROBE=f"no-{asked}").network(asked)
    packages = ["passt", "slirp4netns"] if asked == "bridge" else [usernet.PACKAGES[asked]]
    with pytest.raises(SpecError, match=r"\bnetwork\b") as caught:
        box.run(["true"])
    for package in packages:
        assert package in str(caught.value)
    with pytest.raises(SpecError):
        box.start(["true"], detach=True)
    assert containerlib.list(all=True) == []
