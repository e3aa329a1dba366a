"""User-defined networks and a container's /etc/hosts, /etc/hostname and /etc/resolv.conf,
on the real kernel: members reach each other by name, the files are bind-mounted and kept
current, and nothing is left after."""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image, Network, SpecError
from containerlib.linux import netlink
from containerlib.network.bridge import network_state_dir, user_bridge_name

from .conftest import ROOT, needs_root

pytestmark = pytest.mark.usefixtures("state")

SERVE = "exec nc -ll -p 7000 -e echo hello from $(hostname)"


def _files(c: Container) -> list[str]:
    out = c.run(
        ["sh", "-c", "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf"]
    )
    assert out.exit_code == 0, out.stderr
    return out.stdout.decode().split("--\n")


def test_a_container_gets_its_hostname_hosts_and_resolv_conf(image: Image) -> None:
    c = Container(image).hostname("web1").add_host("db.internal", "192.0.2.10")
    hostname, hosts, resolv = _files(c.dns(["192.0.2.53", "2001:db8::53"], search=["example.com"]))
    assert hostname == "web1\n"
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    assert "192.0.2.10\tdb.internal\n" in hosts
    assert resolv == "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.com\n"
    # Without .dns(): the host's servers, but for its loopback ones (the container's
    # loopback is its own).
    host_servers = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver") and not ipaddress.ip_address(line.split()[1]).is_loopback
    ]
    _, _, resolv = _files(Container(image))
    assert [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")] == (
        host_servers or ["8.8.8.8", "8.8.4.4"]
    )


def test_the_hostname_defaults_to_the_id_and_the_files_are_mounts(image: Image) -> None:
    with Container(image).start(["sleep", "30"]) as box:
        assert box.exec(["cat", "/etc/hostname"]).stdout == box.id[:12].encode() + b"\n"
        mounts = box.exec(["cat", "/proc/self/mountinfo"]).stdout.decode()
        targets = {line.split()[4] for line in mounts.splitlines()}
        assert {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} <= targets
        # The container's root may change them, as Docker's may.
        assert box.exec(["sh", "-c", "echo 192.0.2.7 extra >> /etc/hosts"]).exit_code == 0
        box.kill()


def test_a_read_only_rootfs_has_them_and_a_mount_of_its_own_wins(
    image: Image, tmp_path: Path
) -> None:
    hostname, hosts, _ = _files(Container(image).read_only().hostname("ro"))
    assert hostname == "ro\n"
    assert "localhost" in hosts
    mine = tmp_path / "hosts"
    mine.write_text("192.0.2.99 mine\n")
    _, hosts, _ = _files(Container(image).mount(mine, "/etc/hosts"))
    assert hosts == "192.0.2.99 mine\n"


def test_the_files_are_not_in_a_built_image(image: Image) -> None:
    built = image.run("echo built > /built")
    files = Container(built).tmpfs("/etc").run(["ls", "-A", "/etc"])
    assert files.stdout == b""  # the step's /etc/hosts etc. were mounts, not files
    assert Container(built).run(["cat", "/built"]).stdout == b"built\n"


def test_bad_network_settings_are_clear_errors() -> None:
    for name in ("host", "bridge", "a b", "", "x" * 65, "-x"):
        with pytest.raises(SpecError, match="network"):
            Network(name)
    with pytest.raises(SpecError, match="subnet"):
        Network("n", subnet="10.0.0.0/33")
    with pytest.raises(SpecError, match="IPv4"):
        Network("n", subnet="fd00::/64")
    with pytest.raises(SpecError, match=r"bridge.*16 bytes"):
        Network("n", bridge="clib-0123456789a")  # the kernel's limit is 15
    c = Container("/")
    with pytest.raises(SpecError, match="aliases"):
        c.network(Network("n"), aliases=["bad alias"])
    with pytest.raises(SpecError, match="aliases"):
        c.network("bridge", aliases=["db"])
    with pytest.raises(SpecError, match="dns"):
        c.dns(["not-an-address"])
    with pytest.raises(SpecError, match="add_host"):
        c.add_host("db", "999.1.1.1")
    with pytest.raises(SpecError, match="add_host"):
        c.add_host("bad name", "192.0.2.1")


@needs_root("a bridge and veth pairs on the host")
def test_members_of_a_network_reach_each_other_by_name_and_alias(image: Image) -> None:
    net = Network("clibtest-app")
    server = Container(image).network(net, aliases=["db"]).hostname("dbhost")
    with server.start(["sh", "-c", SERVE]) as db:
        assert db.ip is not None
        assert ipaddress.ip_address(db.ip) in ipaddress.ip_network("10.218.0.0/16")
        assert user_bridge_name("clibtest-app") in netlink.links()
        assert [(m.id, m.address, m.names) for m in net.members()] == [
            (db.id, db.ip, ("dbhost", "db"))
        ]
        client = Container(image).network(net)
        for name in ("db", "dbhost"):
            out = client.run(["sh", "-c", f"nc -w 5 {name} 7000 </dev/null"])
            assert out.stdout == b"hello from dbhost\n", out.stderr
        # A container on the default bridge or on another network does not get there.
        for other in (
            Container(image).network("bridge"),
            Container(image).network(Network("clibtest-other")),
        ):
            out = other.run(["nc", "-w", "2", db.ip, "7000"], input=b"")
            assert out.exit_code != 0
            assert other.run(["nc", "-w", "2", "db", "7000"], input=b"").exit_code != 0
    assert not netlink.links()
    assert not net.members()


@needs_root("a bridge and veth pairs on the host")
def test_a_bridge_name_taken_by_another_interface_is_a_clear_error(image: Image) -> None:
    with pytest.raises(ContainerSetupError, match="'lo' exists, and containerlib did not make it"):
        Container(image).network(Network("clibtest-lo", bridge="lo")).run(["true"])
    assert "lo" in netlink.links("")  # untouched


@needs_root("a bridge and veth pairs on the host")
def test_hosts_is_kept_current_as_members_come_and_go(image: Image) -> None:
    net = Network("clibtest-hosts")
    member = Container(image).network(net)
    with member.hostname("first").start(["sleep", "60"]) as first:
        with member.hostname("second").start(["sleep", "60"]) as second:
            hosts = first.exec(["cat", "/etc/hosts"]).stdout.decode()
            assert f"{second.ip}\tsecond\n" in hosts
            assert f"{first.ip}\tfirst\n" in second.exec(["cat", "/etc/hosts"]).stdout.decode()
            assert first.exec(["ping", "-c", "1", "-W", "5", "second"]).exit_code == 0
            second.kill()
            second.wait()
        hosts = first.exec(["cat", "/etc/hosts"]).stdout.decode()
        assert "second" not in hosts
        assert f"{first.ip}\tfirst\n" in hosts  # its own entry stays
        first.kill()


@needs_root("a bridge and veth pairs on the host")
def test_a_detached_member_is_found_by_its_name(image: Image) -> None:
    net = Network("clibtest-detached")
    box = Container(image).network(net).start(["sh", "-c", SERVE], detach=True, name="clibtest-web")
    try:
        assert box.ip is not None
        assert [m.address for m in net.members()] == [box.ip]
        out = (
            Container(image).network(net).run(["sh", "-c", "nc -w 5 clibtest-web 7000 </dev/null"])
        )
        assert out.stdout == f"hello from {box.id[:12]}\n".encode(), out.stderr
    finally:
        box.stop(timeout=0)
        box.remove()
    assert not netlink.links()


@needs_root("a bridge and veth pairs on the host")
@pytest.mark.skipif(not os.path.exists("/proc/net/if_inet6"), reason="no IPv6 on this host")
def test_an_ipv6_network_gives_both_families(image: Image) -> None:
    net = Network("clibtest-v6", ipv6=True)
    with Container(image).network(net).hostname("six").start(["sleep", "60"]) as six:
        addrs = six.exec(["ip", "-o", "addr", "show", "eth0"]).stdout.decode()
        words = addrs.split()
        v6 = [words[i + 1].split("/")[0] for i, w in enumerate(words) if w == "inet6"]
        v6 = [a for a in v6 if not a.startswith("fe80")]
        assert len(v6) == 1
        assert ipaddress.ip_address(v6[0]) in ipaddress.ip_network("fd00::/8")
        peer = Container(image).network(net).run(["ping", "-6", "-c", "1", "-W", "5", v6[0]])
        assert peer.exit_code == 0, peer.stderr
        six.kill()
    assert not netlink.links()


@pytest.mark.skipif(ROOT, reason="as a non-root user")
def test_a_network_needs_root(image: Image) -> None:
    with pytest.raises(SpecError, match="needs root"):
        Container(image).network(Network("n")).run(["true"])


@needs_root("a bridge and veth pairs on the host")
def test_prune_sweeps_up_a_member_that_ended_without_leaving(roots: dict[str, str]) -> None:
    """As when a spawner is killed between a container's end and its detach: a member
    whose process is gone still holds its lease and the bridge."""
    import subprocess

    import containerlib
    from containerlib.network.bridge import attach

    net = Network("clibtest-crash")
    bridge = net._bridge()
    sleeper = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        time.sleep(0.2)  # unshare has made the namespace and exec'd sleep
        fd = os.open(f"/proc/{sleeper.pid}/ns/net", os.O_RDONLY)
        try:
            attach(bridge, "c" * 32, fd, hostname="crashed", pid=sleeper.pid)
        finally:
            os.close(fd)
        assert [m.id for m in net.members()] == ["c" * 32]
        containerlib.prune()  # it is alive: it stays
        assert [m.id for m in net.members()] == ["c" * 32]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert user_bridge_name("clibtest-crash") in netlink.links()
    containerlib.prune()
    assert not net.members()
    assert user_bridge_name("clibtest-crash") not in netlink.links()
    assert not os.path.exists(network_state_dir())


@pytest.mark.skipif(ROOT, reason="as a non-root user")
def test_a_non_root_user_cannot_join_a_network_namespace(image: Image) -> None:
    with pytest.raises(SpecError, match="needs root"):
        Container(image).network(netns="/proc/self/ns/net").run(["true"])
