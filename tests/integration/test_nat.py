"""NAT for bridge networks on the real kernel (containerlib.network.nat).

The host's own nftables and sysctls are never touched: each test makes network
namespaces of its own (held by file descriptors; a thread enters one to act there):

- ``host``, where the bridges and the rules are, with ``lo`` up;
- ``container`` namespaces, on a bridge through a veth pair (``10.217.0.2`` ...);
- ``outside``, reached from ``host`` through another veth pair (``192.0.2.1`` on the host
  side, ``192.0.2.2`` there), with no route back to the containers' subnets: only a
  masqueraded connection gets its answers home.

A TCP server in ``outside`` records the address it sees. The nft(8) program lists the
table, independently of the code under test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from pathlib import Path
from typing import TypeVar

import pytest
from pyroute2 import IPRoute  # type: ignore[import-untyped]

from containerlib.errors import ContainerSetupError
from containerlib.linux import netlink
from containerlib.linux import syscalls as sc
from containerlib.network import nat

from .conftest import needs_root

pytestmark = [
    needs_root("network namespaces, nftables and sysctls"),
    pytest.mark.skipif(not shutil.which("nft"), reason="needs nft (apt-get install nftables)"),
]

T = TypeVar("T")
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
IP6_FORWARD = "/proc/sys/net/ipv6/conf/all/forwarding"
#: Long enough for a connection that works, short for one whose packets are dropped.
PATIENCE = 2.0


class Netns:
    """A network namespace of the test's own, alive while its descriptor is open."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def run(self, func: Callable[[], T]) -> T:
        """``func()`` in a thread inside this namespace."""
        return netlink.in_netns(self.fd, func)

    def read(self, path: str) -> str:
        """A file of /proc/sys/net as this namespace has it."""
        return self.run(lambda: Path(path).read_text().strip())

    def write(self, path: str, value: str) -> None:
        self.run(lambda: Path(path).write_text(value + "\n"))

    def nft_list(self) -> str | None:
        """``nft list table inet containerlib`` here, or None if there is no such table."""
        done = self.run(
            lambda: subprocess.run(
                ["nft", "list", "table", "inet", "containerlib"],
                check=False,
                capture_output=True,
                text=True,
            )
        )
        if done.returncode != 0:
            assert "No such file or directory" in done.stderr, done.stderr
            return None
        return done.stdout

    def connect(self, address: str, port: int) -> socket.socket:
        """A TCP connection made from here (raises if it cannot be made)."""
        return self.run(lambda: socket.create_connection((address, port), timeout=PATIENCE))

    def reaches(self, address: str, port: int) -> bool:
        try:
            with self.connect(address, port):
                return True
        except OSError:  # timed out: dropped, or not routed
            return False

    def serve(self, address: str) -> socket.socket:
        """A listening TCP socket on ``address`` here (the kernel answers connections
        before they are accepted)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        server = self.run(lambda: socket.create_server((address, 0), family=family))
        server.settimeout(PATIENCE)
        return server


def _new_netns() -> int:
    """A new network namespace with ``lo`` up and IP forwarding off, as a descriptor."""
    made: list[int | BaseException] = []

    def make() -> None:
        try:
            sc.unshare(sc.CLONE_NEWNET)  # this thread only
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            made.append(fd)
            # A new namespace copies the host's forwarding settings (sysctl
            # net.core.devconf_inherit_init_net is 0), which containerlib's bridges on the
            # host may have turned on meanwhile: start from the kernel's default.
            for path in (IP_FORWARD, IP6_FORWARD):
                if os.path.exists(path):
                    Path(path).write_text("0\n")
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        except BaseException as e:
            made.append(e)

    worker = threading.Thread(target=make)
    worker.start()
    worker.join()
    errors = [m for m in made if isinstance(m, BaseException)]
    fds = [m for m in made if isinstance(m, int)]
    if errors:
        for fd in fds:
            os.close(fd)
        raise errors[0]
    return fds[0]


@pytest.fixture
def make_netns() -> Iterator[Callable[[], Netns]]:
    """Makes network namespaces; they, and all in them, go at the end of the test."""
    fds: list[int] = []

    def make() -> Netns:
        fds.append(_new_netns())
        return Netns(fds[-1])

    yield make
    for fd in fds:
        os.close(fd)


class Lan:
    """``host`` with bridges, containers on them, and ``outside``."""

    def __init__(self, make_netns: Callable[[], Netns]) -> None:
        self.make_netns = make_netns
        self.host = make_netns()
        self.outside = make_netns()
        self.host.run(
            lambda: netlink.add_veth("ext0", "ext0p", bridge=None, netns_fd=self.outside.fd)
        )
        addresses: list[IPv4Interface | IPv6Interface] = [IPv4Interface("192.0.2.1/24")]
        ipv6 = self.host.run(netlink.ipv6_enabled)
        if ipv6:
            addresses.append(IPv6Interface("2001:db8::1/64"))
        netlink.configure(self.host.fd, "ext0", addresses)
        outside: list[IPv4Interface | IPv6Interface] = [IPv4Interface("192.0.2.2/24")]
        if ipv6:
            outside.append(IPv6Interface("2001:db8::2/64"))
        netlink.configure(self.outside.fd, "eth0", outside)
        self.ipv6 = ipv6

    def bridge(self, name: str, *gateways: str) -> None:
        """A bridge in ``host`` with these gateway addresses (address/prefix)."""
        self.host.run(lambda: netlink.ensure_bridge(name, [ip_interface(g) for g in gateways]))

    def container(self, bridge: str, *addresses: str) -> Netns:
        """A namespace on ``bridge`` with these addresses, routed through the bridge's
        gateways (the first address of each subnet)."""
        ns = self.make_netns()
        veth = f"c{bridge[4:]}{ns.fd}"[:9]
        self.host.run(lambda: netlink.add_veth(f"clib{veth}", "p", bridge=bridge, netns_fd=ns.fd))
        ifaces = [ip_interface(a) for a in addresses]
        gateway4 = [next(i.network.hosts()) for i in ifaces if i.version == 4]
        gateway6 = [next(i.network.hosts()) for i in ifaces if i.version == 6]
        netlink.configure(
            ns.fd,
            "eth0",
            ifaces,
            gateway4=IPv4Address(gateway4[0]) if gateway4 else None,
            gateway6=IPv6Address(gateway6[0]) if gateway6 else None,
        )
        return ns


@pytest.fixture
def lan(make_netns: Callable[[], Netns]) -> Lan:
    return Lan(make_netns)


def outside_sees(lan: Lan, container: Netns, server_address: str) -> str:
    """Connect from ``container`` to a server in ``outside``; the client address that the
    server saw."""
    with lan.outside.serve(server_address) as server:
        port = server.getsockname()[1]
        with container.connect(server_address, port):
            accepted, peer = server.accept()
            accepted.close()
    return str(peer[0])


def test_a_container_reaches_the_outside_masqueraded_until_the_rules_are_removed(
    lan: Lan,
) -> None:
    lan.bridge("clib0", "10.217.0.1/16")
    container = lan.container("clib0", "10.217.0.2/16")
    with lan.outside.serve("192.0.2.2") as server:
        port = server.getsockname()[1]
        assert lan.host.read(IP_FORWARD) == "0"
        assert not container.reaches("192.0.2.2", port)  # the host does not route yet
        assert not lan.host.run(nat.table_exists)

        lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
        assert lan.host.read(IP_FORWARD) == "1"
        assert lan.host.run(nat.table_exists)
        with container.connect("192.0.2.2", port) as client:
            accepted, peer = server.accept()
            with accepted:
                client.sendall(b"ping")
                assert accepted.recv(4) == b"ping"
                accepted.sendall(b"pong")
                assert client.recv(4) == b"pong"
        assert peer[0] == "192.0.2.1"  # the host's address, not 10.217.0.2

        lan.host.run(lambda: nat.remove("clib0"))
        assert lan.host.nft_list() is None
        assert not lan.host.run(nat.table_exists)
        assert lan.host.read(IP_FORWARD) == "0"
        assert not container.reaches("192.0.2.2", port)


def test_adding_twice_leaves_one_set_of_rules_for_the_latest_subnets(lan: Lan) -> None:
    lan.bridge("clib0", "10.217.0.1/16")
    lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
    once = lan.host.nft_list()
    assert once is not None
    assert once.count(" masquerade\n") == 1
    assert once.count("\tchain ") == 2
    assert once.count("hook forward") == 1
    lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
    assert lan.host.nft_list() == once

    # Made again: forwarding was turned off behind containerlib's back.
    lan.host.write(IP_FORWARD, "0")
    lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
    assert lan.host.read(IP_FORWARD) == "1"
    assert lan.host.nft_list() == once

    lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16", "10.99.0.0/24"]))
    twice = lan.host.nft_list()
    assert twice is not None
    assert 'ip saddr { 10.99.0.0/24, 10.217.0.0/16 } oifname != "clib0" masquerade' in twice
    assert twice.count(" masquerade\n") == 1
    assert twice.count("\tchain ") == 2
    assert '"clib0" comment "10.217.0.0/16 10.99.0.0/24; rules v1"' in twice
    lan.host.run(lambda: nat.remove("clib0"))
    assert lan.host.nft_list() is None
    assert lan.host.read(IP_FORWARD) == "0"


def test_nothing_outside_opens_a_connection_to_a_container(lan: Lan) -> None:
    lan.bridge("clib0", "10.217.0.1/16")
    container = lan.container("clib0", "10.217.0.2/16")
    lan.outside.run(_route_to_containers)  # outside knows the way to the containers
    with container.serve("10.217.0.2") as server:
        port = server.getsockname()[1]
        # Forwarding on, but not by containerlib: outside gets in, without the rules.
        lan.host.write(IP_FORWARD, "1")
        assert lan.outside.reaches("10.217.0.2", port)
        lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
        assert not lan.outside.reaches("10.217.0.2", port)
        assert lan.host.reaches("10.217.0.2", port)  # the host itself does not forward
        lan.host.run(lambda: nat.remove("clib0"))
        assert lan.host.nft_list() is None
        # containerlib found forwarding on: it leaves it on.
        assert lan.host.read(IP_FORWARD) == "1"


def _route_to_containers() -> None:
    with IPRoute() as ipr:
        ipr.route("add", dst="10.217.0.0/16", gateway="192.0.2.1")


def test_bridges_are_isolated_from_each_other(lan: Lan) -> None:
    lan.bridge("clib0", "10.217.0.1/16")
    lan.bridge("clib1", "10.218.0.1/16")
    first = lan.container("clib0", "10.217.0.2/16")
    neighbour = lan.container("clib0", "10.217.0.3/16")
    other = lan.container("clib1", "10.218.0.2/16")
    with other.serve("10.218.0.2") as far, neighbour.serve("10.217.0.3") as near:
        far_port = far.getsockname()[1]
        near_port = near.getsockname()[1]
        # Forwarding on, but not by containerlib: the host routes between the bridges.
        lan.host.write(IP_FORWARD, "1")
        assert first.reaches("10.218.0.2", far_port)

        lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
        lan.host.run(lambda: nat.add("clib1", ["10.218.0.0/16"]))
        assert not first.reaches("10.218.0.2", far_port)
        assert not other.reaches("10.217.0.3", near_port)
        assert first.reaches("10.217.0.3", near_port)  # the same bridge: switched
        assert lan.host.reaches("10.218.0.2", far_port)  # from the host itself
        assert outside_sees(lan, other, "192.0.2.2") == "192.0.2.1"

        lan.host.run(lambda: nat.remove("clib0"))
        assert lan.host.nft_list() is not None  # clib1 still has its chains
        lan.host.run(lambda: nat.remove("clib1"))
        assert lan.host.nft_list() is None
        assert lan.host.read(IP_FORWARD) == "1"


def test_prune_removes_the_chains_of_bridges_that_are_gone(lan: Lan) -> None:
    lan.bridge("clib0", "10.217.0.1/16")
    lan.bridge("clib1", "10.218.0.1/16")
    lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
    lan.host.run(lambda: nat.add("clib1", ["10.218.0.0/16"]))

    def alive(bridge: str) -> bool:
        return bridge in netlink.links()  # in the thread that prunes, in host

    assert lan.host.run(lambda: nat.prune(alive)) == []
    lan.host.run(lambda: netlink.delete_link("clib1"))  # as if its owner had crashed
    assert lan.host.run(lambda: nat.prune(alive)) == ["clib1"]
    listing = lan.host.nft_list()
    assert listing is not None
    assert "clib1" not in listing
    assert "chain post-clib0" in listing
    assert lan.host.read(IP_FORWARD) == "1"

    lan.host.run(lambda: netlink.delete_link("clib0"))
    assert lan.host.run(lambda: nat.prune(alive)) == ["clib0"]
    assert lan.host.nft_list() is None
    assert lan.host.read(IP_FORWARD) == "0"
    assert lan.host.run(lambda: nat.prune(alive)) == []


def test_ipv6_is_masqueraded_and_its_forwarding_restored(lan: Lan) -> None:
    if not lan.ipv6:
        pytest.skip("IPv6 is off in new network namespaces here")
    lan.bridge("clib6", "10.219.0.1/16", "fd17::1/64")
    container = lan.container("clib6", "10.219.0.2/16", "fd17::2/64")
    assert lan.host.read(IP6_FORWARD) == "0"
    lan.host.run(lambda: nat.add("clib6", ["10.219.0.0/16", "fd17::/64"]))
    assert lan.host.read(IP6_FORWARD) == "1"
    assert lan.host.read(IP_FORWARD) == "1"
    assert outside_sees(lan, container, "2001:db8::2") == "2001:db8::1"
    assert outside_sees(lan, container, "192.0.2.2") == "192.0.2.1"
    lan.host.run(lambda: nat.remove("clib6"))
    assert lan.host.read(IP6_FORWARD) == "0"
    assert lan.host.read(IP_FORWARD) == "0"


def test_an_ipv4_bridge_leaves_ipv6_forwarding_alone(lan: Lan) -> None:
    lan.host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
    assert lan.host.read(IP6_FORWARD) == "0" if lan.ipv6 else True
    assert lan.host.read(IP_FORWARD) == "1"
    lan.host.run(lambda: nat.remove("clib0"))


def test_removing_what_is_not_there_is_no_error(make_netns: Callable[[], Netns]) -> None:
    host = make_netns()
    host.run(lambda: nat.remove("clib0"))
    assert host.run(lambda: nat.prune(lambda bridge: False)) == []
    host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
    host.run(lambda: nat.remove("clib9"))  # another bridge's
    assert host.run(nat.table_exists)
    host.run(lambda: nat.remove("clib0"))
    host.run(lambda: nat.remove("clib0"))
    assert host.nft_list() is None


def test_a_refused_transaction_names_the_step_and_changes_nothing(
    make_netns: Callable[[], Netns],
) -> None:
    host = make_netns()
    # Someone made a chain of that name for another hook: nft refuses to change its type.
    done = host.run(
        lambda: subprocess.run(
            [
                "nft",
                "add table inet containerlib; "
                "add chain inet containerlib fwd-clib0 { type filter hook input priority 0; }",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
    )
    assert done.returncode == 0, done.stderr
    with pytest.raises(ContainerSetupError) as e:
        host.run(lambda: nat.add("clib0", ["10.217.0.0/16"]))
    assert str(e.value).startswith("add NAT rules for bridge 'clib0': ")
    assert "(nft: Error: " in str(e.value)
    assert host.read(IP_FORWARD) == "0"  # not turned on for rules that are not there
    listing = host.nft_list()
    assert listing is not None
    assert "post-clib0" not in listing  # the transaction was all or nothing


CHURN = textwrap.dedent(
    """
    import os, sys
    from containerlib.linux import syscalls as sc
    from containerlib.network import nat

    sc.setns(int(sys.argv[1]), sc.CLONE_NEWNET)  # single-threaded: the whole process moves
    bridge = sys.argv[2]
    chains = ("post-" + bridge, "fwd-" + bridge)
    for _ in range(int(sys.argv[3])):
        nat.add(bridge, [sys.argv[4]])
        # While this bridge has its chains, forwarding stays on and the chains stay.
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            assert f.read() == "1\\n", "forwarding off under a bridge's feet"
        listing = nat._read_table()
        assert listing is not None and all(c in listing.chains for c in chains), listing
        nat.remove(bridge)
    """
)


def test_processes_adding_and_removing_at_once_leave_nothing(
    make_netns: Callable[[], Netns],
) -> None:
    host = make_netns()
    env = {**os.environ, "PYTHONPATH": str(Path(nat.__file__).parents[2])}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CHURN, str(host.fd), f"clib{i}", "25", f"10.{i}.0.0/16"],
            pass_fds=[host.fd],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    failures = []
    for worker in workers:
        _out, err = worker.communicate(timeout=120)
        if worker.returncode != 0:
            failures.append(err.decode())
    assert not failures, failures
    assert host.nft_list() is None
    assert host.read(IP_FORWARD) == "0"


CONTAINER = textwrap.dedent(
    """
    import sys
    from containerlib.linux import syscalls as sc

    sc.setns(int(sys.argv[1]), sc.CLONE_NEWNET)  # before any thread: the whole process moves
    from containerlib import Container, Image

    bridged = Container(Image.from_rootfs(sys.argv[2])).network("bridge")
    result = bridged.run(["sh", "-c", "echo hello | nc -w 5 192.0.2.2 " + sys.argv[3]])
    sys.stdout.write(f"{result.exit_code} {result.stdout!r} {result.stderr!r}")
    """
)


@pytest.mark.usefixtures("state")
def test_a_containerlib_container_on_the_bridge_reaches_the_outside(
    lan: Lan, busybox: Path
) -> None:
    # A process of its own, moved into ``host``: its spawner, and so the bridge and the
    # rules, are made there.
    with lan.outside.serve("192.0.2.2") as server:
        server.settimeout(60)
        port = server.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(Path(nat.__file__).parents[2])}
        with subprocess.Popen(
            [sys.executable, "-c", CONTAINER, str(lan.host.fd), str(busybox), str(port)],
            pass_fds=[lan.host.fd],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as owner:
            try:
                accepted, peer = server.accept()
                with accepted:
                    accepted.settimeout(30)
                    said = accepted.recv(100)
                    seen = (
                        lan.host.nft_list(),
                        lan.host.read(IP_FORWARD),
                    )
            finally:
                out, err = owner.communicate(timeout=120)
        assert owner.returncode == 0, err.decode()
    assert out.decode() == "0 b'' b''"
    assert said == b"hello\n"
    assert peer[0] == "192.0.2.1"  # masqueraded as the host
    listing, forwarding = seen
    assert listing is not None
    assert 'ip saddr 10.217.0.0/16 oifname != "clib0" masquerade' in listing
    assert forwarding == "1"
    # The last container took the bridge, and the bridge its rules.
    assert lan.host.nft_list() is None
    assert lan.host.read(IP_FORWARD) == "0"
    assert lan.host.run(lambda: netlink.links("clib")) == []
