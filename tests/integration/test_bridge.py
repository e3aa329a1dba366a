"""Bridge networking on the real kernel: containers on the host bridge clib0 reach each
other and are reached from the host at their own addresses; nothing is left after."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image
from containerlib.linux import netlink

from .conftest import CGROUP_PARENT, cgroup_dirs, needs_root

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


OTHER_PROGRAM = """
import sys
from containerlib import Container, Image
done = Container(Image.from_rootfs(sys.argv[1])).network("bridge").run(
    ["sh", "-c", "ip -4 -o addr show dev eth0"]
)
sys.stdout.write(done.stdout.decode())
sys.exit(done.exit_code)
"""


@needs_root("a bridge and veth pairs on the host")
def test_programs_with_run_roots_of_their_own_share_the_bridge(
    image: Image, busybox: Path, tmp_path: Path
) -> None:
    """The bridge and its addresses are the host's: another program, with a run root of
    its own (a test session beside a user's containers), gets another address, and its
    container's end does not take the bridge from under this one's."""
    other_parent = f"{CGROUP_PARENT}-other"
    env = {
        **os.environ,
        "CONTAINERLIB_RUN_ROOT": str(tmp_path / "run"),
        "CONTAINERLIB_DATA_ROOT": str(tmp_path / "data"),
        "CONTAINERLIB_CGROUP_PARENT": other_parent,
    }
    with Container(image).network("bridge").start(["sh", "-c", SERVE]) as server:
        other = subprocess.run(
            [sys.executable, "-c", OTHER_PROGRAM, str(busybox)],
            env=env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        assert other.returncode == 0, other.stderr.decode()
        other_ip = other.stdout.split()[3].decode().split("/")[0]
        assert other_ip.startswith("10.217.")
        assert other_ip != server.ip
        assert "clib0" in netlink.links()  # the other program's last container left it
        assert server.ip is not None
        with _connect(server.ip, 7000) as sock:
            assert sock.makefile("rb").read().startswith(b"hello from ")
    assert not netlink.links()
    assert not cgroup_dirs(parents=True, under=other_parent)
