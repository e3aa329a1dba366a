"""Bridges, veth pairs, addresses and routes on the real kernel (containerlib.linux.netlink).

Nothing here touches the host's own network. Each test makes its own network namespaces
(a thread unshares one and keeps a descriptor of it): a "host" ``H`` holding the bridge,
and "containers" ``A`` and ``B``. The library runs in ``H`` through :func:`in_netns`, and
traffic is TCP between sockets made inside the namespaces. At the end of each test the
namespaces are released (no descriptor, no thread left in them), and at the end of the
module no new ``clib`` link is in the host's real namespace (read only).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute  # type: ignore[import-untyped]

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.linux import syscalls as sc
from containerlib.linux.netlink import (
    add_veth,
    check_ifname,
    configure,
    delete_link,
    ensure_bridge,
    in_netns,
    ipv6_enabled,
    links,
)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: makes network namespaces and links")

BRIDGE = "clibtest0"
GW4 = IPv4Interface("10.99.0.1/24")
A4 = IPv4Interface("10.99.0.2/24")
B4 = IPv4Interface("10.99.0.3/24")
#: A second network on the bridge, reachable from A and B only through their gateway.
FAR4 = IPv4Interface("10.98.0.1/24")
GW6 = IPv6Interface("fd99::1/64")
A6 = IPv6Interface("fd99::2/64")
B6 = IPv6Interface("fd99::3/64")
FAR6 = IPv6Interface("fd98::1/64")


def _ns_inode(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


@pytest.fixture(scope="module", autouse=True)
def host_untouched() -> Iterator[None]:
    """No new ``clib`` link in the host's real namespace once the module is done."""
    before = set(links()) if ROOT else set()
    yield
    if ROOT:
        assert set(links()) <= before, f"links left on the host: {set(links()) - before}"


@pytest.fixture
def new_netns() -> Iterator[Callable[[], int]]:
    """Make network namespaces: each call returns a descriptor of a new one. At the end
    the descriptors are closed, and no descriptor or thread of this process is left in
    any of them, so the kernel frees them with what they hold."""
    made: list[tuple[int, str]] = []

    def make() -> int:
        box: list[int] = []

        def unshare() -> None:
            sc.unshare(sc.CLONE_NEWNET)
            box.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))

        worker = threading.Thread(target=unshare)
        worker.start()
        worker.join()
        (fd,) = box
        made.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
        return fd

    yield make
    for fd, _ in made:
        os.close(fd)
    ours = {name for _, name in made}
    # A thread that entered one has finished its Python work once joined, but the kernel
    # may take a moment more to end it: wait for that, not for a set time.
    deadline = time.monotonic() + 30
    while True:
        fds = {str(p): _ns_inode(str(p)) for p in Path("/proc/self/fd").iterdir()}
        tasks = {
            str(t): _ns_inode(str(t / "ns" / "net")) for t in Path("/proc/self/task").iterdir()
        }
        held = {k: v for k, v in (fds | tasks).items() if v in ours}
        if not held or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not held, f"network namespaces still held: {held}"


def _listen(netns: int, address: IPv4Interface | IPv6Interface) -> socket.socket:
    """A TCP server socket inside ``netns`` on ``address``."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return in_netns(netns, lambda: socket.create_server((str(address.ip), 0), family=family))


def _exchange(netns: int, server: socket.socket) -> str:
    """Connect from inside ``netns`` to ``server``, send a line and read it on the server.

    Returns:
        The address the server saw the connection come from.
    """
    host, port = server.getsockname()[:2]
    client = in_netns(netns, lambda: socket.socket(server.family, socket.SOCK_STREAM))
    with client:
        client.settimeout(20)
        server.settimeout(20)
        client.connect((host, port))
        client.sendall(b"hello\n")
        conn, peer = server.accept()
        with conn:
            conn.settimeout(20)
            assert conn.recv(6) == b"hello\n"
    return str(peer[0])


def _rtnl_in(netns: int, work: Callable[[Any], Any]) -> Any:
    """Run ``work`` with an IPRoute inside ``netns``: for setting up what the library
    would not make (a dummy link) and for reading what the kernel holds."""

    def run() -> Any:
        with IPRoute() as ipr:
            return work(ipr)

    return in_netns(netns, run)


@pytest.fixture
def bridged(new_netns: Callable[[], int]) -> tuple[int, int, int]:
    """H with the bridge (10.99.0.1/24 and 10.98.0.1/24), A and B on it with their
    addresses and default routes through the bridge; returns the three descriptors."""
    h, a, b = new_netns(), new_netns(), new_netns()
    in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4, FAR4]))
    for ns, name, address in ((a, "clibtA", A4), (b, "clibtB", B4)):
        in_netns(h, lambda: add_veth(name, name + "p", bridge=BRIDGE, netns_fd=ns))  # noqa: B023
        configure(ns, "eth0", [address], gateway4=GW4.ip)
    return h, a, b


# --- interface names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eth0", "clib0", "a", "x" * 15, "clib3f2a-é"])
def test_valid_names_pass(name: str) -> None:
    assert check_ifname(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "0 bytes"),
        ("x" * 16, "16 bytes"),
        ("clib3f2ab-ééé", "16 bytes"),  # 13 characters, 16 bytes in UTF-8
        (".", "not allowed"),
        ("..", "not allowed"),
        ("a/b", "'/'"),
        ("eth0:1", "':'"),
        ("a b", "' '"),
        ("a\tb", "'\\t'"),
    ],
)
def test_invalid_names_are_spec_errors(name: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        check_ifname(name, field="network.bridge")
    assert caught.value.field == "network.bridge"
    assert repr(name) in str(caught.value)
    assert reason in str(caught.value)


def test_a_long_name_names_the_limit() -> None:
    with pytest.raises(SpecError, match=r"'clibabcdefghijkl' has 16 bytes.*15-byte limit"):
        check_ifname("clibabcdefghijkl")


# --- on the kernel ------------------------------------------------------------------------


@needs_root
def test_containers_on_a_bridge_reach_each_other_and_the_host(
    bridged: tuple[int, int, int],
) -> None:
    h, a, b = bridged
    assert in_netns(h, links) == ["clibtA", "clibtB", BRIDGE]
    assert in_netns(a, lambda: links("")) == ["eth0", "lo"]
    with _listen(b, B4) as server:
        assert _exchange(a, server) == str(A4.ip)
    with _listen(h, GW4) as server:
        assert _exchange(a, server) == str(A4.ip)
    # 10.98.0.1 is on no network of A's: it goes through the default route.
    with _listen(h, FAR4) as server:
        assert _exchange(b, server) == str(B4.ip)
    with _listen(a, IPv4Interface("127.0.0.1/8")) as server:  # lo is up
        assert _exchange(a, server) == "127.0.0.1"


@needs_root
def test_deleting_the_host_end_cuts_the_container_off(bridged: tuple[int, int, int]) -> None:
    h, a, b = bridged
    assert in_netns(h, lambda: delete_link("clibtA")) is True
    assert in_netns(h, links) == ["clibtB", BRIDGE]
    assert in_netns(a, lambda: links("")) == ["lo"]  # the pair goes as one
    with _listen(b, B4) as server, pytest.raises(OSError, match=r"unreachable|No route") as caught:
        _exchange(a, server)
    assert caught.value.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    assert in_netns(h, lambda: delete_link("clibtA")) is False


@needs_root
def test_ipv6_addresses_work_at_once(new_netns: Callable[[], int]) -> None:
    h, a, b = new_netns(), new_netns(), new_netns()
    if not in_netns(h, ipv6_enabled):
        pytest.skip("IPv6 is disabled in new network namespaces on this host")
    in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4, GW6, FAR6]))
    for ns, name, address in ((a, "clibtA", A6), (b, "clibtB", B6)):
        in_netns(h, lambda: add_veth(name, name + "p", bridge=BRIDGE, netns_fd=ns))  # noqa: B023
        configure(ns, "eth0", [address], gateway6=GW6.ip)
    with _listen(b, B6) as server:
        assert _exchange(a, server) == str(A6.ip)
    with _listen(h, FAR6) as server:  # through the default route
        assert _exchange(a, server) == str(A6.ip)


@needs_root
def test_ensure_bridge_is_idempotent_and_sets_exactly_its_addresses(
    new_netns: Callable[[], int],
) -> None:
    h = new_netns()
    first = in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4], mtu=1400))
    assert in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4], mtu=1400)) == first
    assert in_netns(h, links) == [BRIDGE]

    def state(ipr: Any) -> tuple[int, bool, set[Any]]:
        (link,) = ipr.link("get", index=first)
        found = {
            ip_interface(f"{m.get('address')}/{m['prefixlen']}")
            for m in ipr.addr("dump", index=first)
            if m["scope"] == 0
        }
        return link.get("mtu"), bool(link["flags"] & 1), found

    assert _rtnl_in(h, state) == (1400, True, {GW4})
    in_netns(h, lambda: ensure_bridge(BRIDGE, [FAR4]))
    assert _rtnl_in(h, state) == (1400, True, {FAR4})
    # What the user sees: the old address is no longer the host's.
    with pytest.raises(OSError, match="Cannot assign requested address") as caught:
        _listen(h, GW4)
    assert caught.value.errno == errno.EADDRNOTAVAIL


@needs_root
def test_a_link_of_another_kind_is_not_taken_for_the_bridge(
    new_netns: Callable[[], int],
) -> None:
    h = new_netns()
    _rtnl_in(h, lambda ipr: ipr.link("add", ifname=BRIDGE, kind="veth", peer="clibtestpeer"))
    refused = r"create bridge 'clibtest0'.*a 'veth' link has that name, not a bridge"
    with pytest.raises(ContainerSetupError, match=refused) as caught:
        in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4]))
    assert caught.value.errno == errno.EEXIST
    addresses = _rtnl_in(h, lambda ipr: [m.get("address") for m in ipr.addr("dump")])
    assert str(GW4.ip) not in addresses


@needs_root
def test_a_name_too_long_is_refused_before_anything_is_made(
    new_netns: Callable[[], int],
) -> None:
    h, a = new_netns(), new_netns()
    with pytest.raises(SpecError, match="15-byte limit"):
        in_netns(h, lambda: ensure_bridge("clibbridge-toolong"[:16], [GW4]))
    with pytest.raises(SpecError, match=r"host_name: .*16 bytes"):
        in_netns(h, lambda: add_veth("clib0123456789ab", "clibp", bridge=None, netns_fd=a))
    assert in_netns(h, lambda: links("")) == ["lo"]
    assert in_netns(a, lambda: links("")) == ["lo"]


@needs_root
def test_a_bad_namespace_descriptor_leaves_no_link(
    new_netns: Callable[[], int], tmp_path: Path
) -> None:
    h = new_netns()
    in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4]))
    not_netns = os.open(tmp_path / "not-a-netns", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC)
    try:
        with pytest.raises(ContainerSetupError, match=r"create veth 'clibtA'") as caught:
            in_netns(h, lambda: add_veth("clibtA", "clibtAp", bridge=BRIDGE, netns_fd=not_netns))
    finally:
        os.close(not_netns)
    assert caught.value.errno in (errno.EINVAL, errno.EBADF)
    assert in_netns(h, lambda: links("")) == [BRIDGE, "lo"]


@needs_root
def test_a_failure_after_the_pair_is_made_removes_it(new_netns: Callable[[], int]) -> None:
    h, a = new_netns(), new_netns()
    # A veth takes no ports: the pair is made, then enslaving it fails.
    _rtnl_in(h, lambda ipr: ipr.link("add", ifname="clibtx", kind="veth", peer="clibty"))
    with pytest.raises(ContainerSetupError, match="add veth 'clibtA' to bridge 'clibtx'"):
        in_netns(h, lambda: add_veth("clibtA", "clibtAp", bridge="clibtx", netns_fd=a))
    assert in_netns(h, lambda: links("")) == ["clibtx", "clibty", "lo"]
    assert in_netns(a, lambda: links("")) == ["lo"]


@needs_root
def test_a_missing_bridge_or_interface_is_named(new_netns: Callable[[], int]) -> None:
    h, a = new_netns(), new_netns()
    with pytest.raises(ContainerSetupError, match=r"bridge 'clibnone'.*No such device"):
        in_netns(h, lambda: add_veth("clibtA", "clibtAp", bridge="clibnone", netns_fd=a))
    assert in_netns(h, lambda: links("")) == ["lo"]
    with pytest.raises(ContainerSetupError, match=r"look up 'eth0' in the namespace: No such"):
        configure(a, "eth0", [A4], gateway4=IPv4Address("10.99.0.1"))


@needs_root
def test_configure_is_idempotent_and_sets_the_mtu(new_netns: Callable[[], int]) -> None:
    h, a = new_netns(), new_netns()
    in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4]))
    in_netns(h, lambda: add_veth("clibtA", "clibtAp", bridge=BRIDGE, netns_fd=a, mtu=1300))
    for _ in range(2):
        configure(a, "eth0", [A4], gateway4=GW4.ip, mtu=1280)

    def state(ipr: Any) -> tuple[int, list[str], list[str]]:
        (index,) = ipr.link_lookup(ifname="eth0")
        (link,) = ipr.link("get", index=index)
        addresses = [m.get("address") for m in ipr.addr("dump", index=index)]
        gateways = [r.get("gateway") for r in ipr.route("dump", family=socket.AF_INET)]
        return link.get("mtu"), addresses, [g for g in gateways if g]

    mtu, addresses, gateways = _rtnl_in(a, state)
    assert (mtu, gateways) == (1280, [str(GW4.ip)])
    assert addresses.count(str(A4.ip)) == 1
    host_mtu = _rtnl_in(h, lambda ipr: ipr.link("get", ifname="clibtA")[0].get("mtu"))
    assert host_mtu == 1300


def _disable_ipv6(netns: int) -> None:
    """Turn IPv6 off in ``netns`` for the links there and those made later."""

    def write() -> None:
        # /proc/sys/net is this thread's namespace's: the same links as netlink shows.
        assert sorted(os.listdir("/proc/sys/net/ipv6/conf")) == sorted(
            ["all", "default", *links("")]
        )
        for which in ("all", "default"):
            Path(f"/proc/sys/net/ipv6/conf/{which}/disable_ipv6").write_text("1")

    in_netns(netns, write)


@needs_root
def test_ipv6_asked_where_it_is_off_is_a_clear_error(new_netns: Callable[[], int]) -> None:
    h, a = new_netns(), new_netns()
    if not in_netns(h, ipv6_enabled):
        pytest.skip("IPv6 is disabled in new network namespaces on this host")
    _disable_ipv6(h)
    with pytest.raises(ContainerSetupError, match=r"IPv6 on 'clibtest0'.*disable_ipv6") as caught:
        in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4, GW6]))
    assert caught.value.errno == errno.EAFNOSUPPORT
    assert in_netns(h, lambda: links("")) == ["lo"]  # checked before the bridge was made
    in_netns(h, lambda: ensure_bridge(BRIDGE, [GW4]))
    _disable_ipv6(a)
    in_netns(h, lambda: add_veth("clibtA", "clibtAp", bridge=BRIDGE, netns_fd=a))
    with pytest.raises(ContainerSetupError, match=r"IPv6 on 'eth0'.*disable_ipv6"):
        configure(a, "eth0", [A4, A6], gateway4=GW4.ip)


@needs_root
def test_bad_input_is_a_spec_error(new_netns: Callable[[], int]) -> None:
    a = new_netns()
    with pytest.raises(SpecError, match="addresses"):
        configure(a, "eth0", ["10.0.0.2/24"])  # type: ignore[list-item]
    with pytest.raises(SpecError, match="gateway6"):
        configure(a, "eth0", [A4], gateway6=IPv4Address("10.0.0.1"))  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="mtu"):
        configure(a, "eth0", [A4], mtu=20)
    with pytest.raises(SpecError, match="netns_fd"):
        configure(-1, "eth0", [A4])
    assert IPv6Address("fd99::1") == GW6.ip  # the constants above are what they say
