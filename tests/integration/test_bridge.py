"""Bridge networking on the real kernel: containers on the host bridge clib0 reach each
other and are reached from the host at their own addresses; nothing is left after."""

from __future__ import annotations

import errno
import socket
import time

import pytest

from containerlib import Container, ContainerSetupError, Image
from containerlib.linux import netlink

from .conftest import needs_root

pytestmark = pytest.mark.usefixtures("state")

SERVE = "exec nc -ll -p 7000 -e echo hello from $(hostname)"


def _connect(ip: str, port: int) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection((ip, port), timeout=5)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@needs_root("a bridge and veth pairs on the host")
def test_containers_on_the_bridge_reach_each_other_and_the_host_reaches_them(
    image: Image,
) -> None:
    bridged = Container(image).network("bridge")
    with bridged.hostname("server").start(["sh", "-c", SERVE]) as server:
        ip = server.ip
        assert ip is not None
        assert ip.startswith("10.217.")
        assert "clib0" in netlink.links()
        with _connect(ip, 7000) as sock:  # from the host, to the container's address
            assert sock.makefile("rb").read() == b"hello from server\n"
        client = bridged.run(["nc", "-w", "5", ip, "7000"], input=b"")
        assert client.stdout == b"hello from server\n"
        # A container with the default network reaches nothing of it.
        alone = Container(image).run(["nc", "-w", "2", ip, "7000"], input=b"")
        assert alone.exit_code != 0
    assert not netlink.links()  # the last container took the bridge with it


@needs_root("a bridge and veth pairs on the host")
def test_fifty_containers_get_distinct_addresses(image: Image) -> None:
    bridged = Container(image).network("bridge")
    boxes = [bridged.start(["sleep", "60"]) for _ in range(50)]
    try:
        ips = [box.ip for box in boxes]
        assert len(set(ips)) == 50
        assert None not in ips
        assert "10.217.0.1" not in ips  # the bridge's own
    finally:
        for box in boxes:
            box.kill()
        for box in boxes:
            box.wait()
    assert not netlink.links()


@needs_root("a bridge and veth pairs on the host")
def test_an_exhausted_pool_is_a_clear_error_and_leaves_nothing(
    image: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTAINERLIB_BRIDGE_SUBNET", "10.218.0.0/30")  # room for one
    small = Container(image).network("bridge").hostname("small")
    with small.start(["sleep", "60"]) as only:
        assert only.ip == "10.218.0.2"
        with pytest.raises(ContainerSetupError, match="all 1 others are taken") as e:
            small.run(["true"])
        assert e.value.errno == errno.ENOSPC
    assert not netlink.links()
