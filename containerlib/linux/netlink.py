"""Network links over rtnetlink: bridges, veth pairs, addresses and default routes.

A container on a bridge network has its own network namespace holding one end of a veth
pair (a virtual cable, veth(4)), named ``eth0`` there; the other end stays on the host,
enslaved to a bridge (a virtual switch, ip-link(8) ``type bridge``) that carries the
network's gateway address. The kernel is driven through rtnetlink(7) with pyroute2.

Every function works in the network namespace of the *calling thread*, where it opens its
own netlink socket, so that a caller can run it in a namespace of its choice from a
thread that entered it with setns(2). :func:`in_netns` runs one call that way: a
short-lived thread enters the namespace, does the work and ends, and the caller's thread
never changes namespace.

Example, on the host (root)::

    ensure_bridge("clib0", [IPv4Interface("10.88.0.1/16")])
    add_veth("clib3f2a", "clib3f2ap", bridge="clib0", netns_fd=fd)
    configure(fd, "eth0", [IPv4Interface("10.88.0.2/16")], gateway4=IPv4Address("10.88.0.1"))
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any, Final, TypeVar

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.linux.syscalls import setns

__all__ = [
    "IFNAME_MAX",
    "add_veth",
    "check_ifname",
    "configure",
    "delete_link",
    "ensure_bridge",
    "in_netns",
    "ipv6_enabled",
    "links",
]

T = TypeVar("T")
Address = IPv4Interface | IPv6Interface

#: The longest interface name in bytes: ``IFNAMSIZ`` (16) less the terminating NUL.
IFNAME_MAX: Final = 15
#: The smallest MTU IPv4 works with (RFC 791), and the largest a link can have.
MTU_MIN: Final = 68
MTU_MAX: Final = 65535

_CLONE_NEWNET: Final = 0x40000000
#: ``IFA_F_NODAD``: an IPv6 address usable at once, without duplicate address detection.
_IFA_F_NODAD: Final = 0x02
_RT_SCOPE_UNIVERSE: Final = 0


# --- validation ---------------------------------------------------------------------------


def check_ifname(name: str, *, field: str = "ifname") -> str:
    """Check that ``name`` can name a network interface.

    Args:
        name: the name: 1 to 15 bytes (UTF-8), no ``/``, ``:`` or whitespace, not ``.``
            or ``..`` (the rules of the kernel's ``dev_valid_name`` plus ``:``, which
            ip-link(8) would read as an alias).
        field: the name of the field it came from, for the error.

    Returns:
        ``name``, unchanged.

    Raises:
        SpecError: naming the bad name and what is wrong with it.
    """
    if not isinstance(name, str):
        raise SpecError(field, f"interface name must be a string, not {type(name).__name__}")
    size = len(name.encode())
    if not 1 <= size <= IFNAME_MAX:
        raise SpecError(
            field,
            f"interface name {name!r} has {size} bytes; it may have 1 to {IFNAME_MAX} "
            f"(the kernel's {IFNAME_MAX}-byte limit)",
        )
    if name in (".", ".."):
        raise SpecError(field, f"interface name {name!r} is not allowed")
    bad = sorted({c for c in name if c in "/:" or c.isspace() or c == "\0"})
    if bad:
        raise SpecError(field, f"interface name {name!r} may not contain {''.join(bad)!r}")
    return name


def _check_mtu(mtu: int | None) -> None:
    if mtu is not None and (
        isinstance(mtu, bool) or not isinstance(mtu, int) or not MTU_MIN <= mtu <= MTU_MAX
    ):
        raise SpecError("mtu", f"MTU {mtu!r} is not a whole number from {MTU_MIN} to {MTU_MAX}")


def _check_addresses(addresses: Sequence[Address]) -> list[Address]:
    if isinstance(addresses, (str, bytes)):
        raise SpecError("addresses", f"expected a list of addresses, not {addresses!r}")
    checked = list(addresses)
    for address in checked:
        if not isinstance(address, (IPv4Interface, IPv6Interface)):
            raise SpecError(
                "addresses",
                f"{address!r} is not an IPv4Interface or IPv6Interface (address/prefix)",
            )
    return checked


def _check_netns_fd(netns_fd: int) -> None:
    if isinstance(netns_fd, bool) or not isinstance(netns_fd, int) or netns_fd < 0:
        raise SpecError("netns_fd", f"{netns_fd!r} is not a file descriptor")


# --- plumbing -----------------------------------------------------------------------------


def _setup_error(step: str, err: int) -> ContainerSetupError:
    detail = ""
    if err == errno.EPERM:
        detail = "needs CAP_NET_ADMIN over the network namespace: run as root"
    return ContainerSetupError(step, err, "", detail)


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn a netlink or OS failure inside the block into a ContainerSetupError naming
    ``what``."""
    try:
        yield
    except ContainerSetupError:
        raise
    except NetlinkError as e:
        raise _setup_error(what, int(e.code)) from e
    except OSError as e:
        raise _setup_error(what, e.errno or 0) from e


@contextlib.contextmanager
def _rtnl() -> Iterator[Any]:
    """An rtnetlink socket in the calling thread's network namespace, closed at the end.
    It joins no multicast group: nothing here listens for events."""
    with _step("open rtnetlink socket"):
        ipr = IPRoute(groups=0)
    try:
        yield ipr
    finally:
        ipr.close()


def _link(ipr: Any, name: str) -> tuple[int, str | None] | None:
    """The index and kind (``"bridge"``, ``"veth"``, None for a plain device) of the link
    ``name``, or None if there is none."""
    try:
        (msg,) = ipr.link("get", ifname=name)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise
    kind = msg.get(("linkinfo", "kind"))
    return int(msg["index"]), (str(kind) if kind is not None else None)


def _index(ipr: Any, name: str) -> int | None:
    found = _link(ipr, name)
    return found[0] if found else None


def _family(address: Address | IPv4Address | IPv6Address) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _add_address(ipr: Any, index: int, address: Address, ifname: str) -> None:
    flags = _IFA_F_NODAD if address.version == 6 else 0
    with _step(f"add address {address} to {ifname!r}"):
        try:
            ipr.addr(
                "add",
                index=index,
                family=_family(address),
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                flags=flags,
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:  # there already: what was asked for
                raise


def _addresses_of(ipr: Any, index: int) -> set[Address]:
    """The global-scope addresses on link ``index``."""
    found: set[Address] = set()
    for msg in ipr.addr("dump", index=index):
        if msg["scope"] != _RT_SCOPE_UNIVERSE:
            continue
        text = f"{msg.get('address')}/{msg['prefixlen']}"
        found.add(IPv4Interface(text) if msg["family"] == socket.AF_INET else IPv6Interface(text))
    return found


def ipv6_enabled(ifname: str = "default") -> bool:
    """Whether IPv6 works on ``ifname`` in the calling thread's network namespace.

    Args:
        ifname: an interface, or ``"default"`` for those made from now on.

    Returns:
        False if the kernel has no IPv6, there is no such interface, or
        ``net.ipv6.conf.<ifname>.disable_ipv6`` is set.
    """
    check_ifname(ifname)
    try:
        # /proc/sys/net is resolved in the opening thread's network namespace.
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", encoding="ascii") as f:
            return f.read().strip() == "0"
    except FileNotFoundError:
        return False


def _no_ipv6(ifname: str) -> ContainerSetupError:
    return ContainerSetupError(
        f"configure IPv6 on {ifname!r}",
        errno.EAFNOSUPPORT,
        "",
        "IPv6 is off in this network namespace (net.ipv6.conf.*.disable_ipv6)",
    )


def in_netns(netns_fd: int, func: Callable[[], T]) -> T:
    """Run ``func`` in another network namespace and return what it returns.

    A new thread enters the namespace with setns(2), calls ``func`` and ends; the calling
    thread stays where it is. Sockets ``func`` creates belong to that namespace for good,
    which makes this the way to open a connection from inside a container's network.

    Args:
        netns_fd: a descriptor of a network namespace (``/proc/PID/ns/net``).
        func: what to run there.

    Returns:
        What ``func`` returned.

    Raises:
        ContainerSetupError: the namespace could not be entered.
        BaseException: whatever ``func`` raised, re-raised in the caller's thread.
    """
    _check_netns_fd(netns_fd)
    outcome: list[Any] = []

    def enter_and_run() -> None:
        try:
            try:
                setns(netns_fd, _CLONE_NEWNET)
            except OSError as e:
                raise _setup_error(
                    f"enter network namespace (fd {netns_fd})", e.errno or 0
                ) from None
            outcome.append((True, func()))
        except BaseException as e:  # handed to the caller, who re-raises it
            outcome.append((False, e))

    worker = threading.Thread(target=enter_and_run, name="clib-netns", daemon=True)
    worker.start()
    worker.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


# --- bridges and links --------------------------------------------------------------------


def ensure_bridge(name: str, addresses: Sequence[Address], *, mtu: int | None = None) -> int:
    """Make sure a bridge ``name`` exists in the calling thread's network namespace, with
    exactly ``addresses`` (IPv6 ones usable at once: no duplicate address detection) and
    up. Calling it again with the same arguments changes nothing.

    Global addresses on the bridge that are not in ``addresses`` are removed; the
    kernel's link-local IPv6 address stays.

    Args:
        name: the bridge's name, for example ``"clib0"``.
        addresses: its addresses with their prefix, for example ``10.88.0.1/16``: the
            gateway of the containers on it.
        mtu: its MTU; None keeps the kernel's (that of its ports).

    Returns:
        The bridge's interface index.

    Raises:
        SpecError: a bad name, address or MTU; nothing was changed.
        ContainerSetupError: a link of that name exists and is no bridge, or a kernel call
            failed (the step names which).
    """
    check_ifname(name, field="bridge")
    wanted = _check_addresses(addresses)
    _check_mtu(mtu)
    with _rtnl() as ipr:
        with _step(f"look up bridge {name!r}"):
            found = _link(ipr, name)
        index, kind = found if found else (None, None)
        if index is not None and kind != "bridge":
            raise ContainerSetupError(
                f"create bridge {name!r}",
                errno.EEXIST,
                "",
                f"a {kind!r} link has that name, not a bridge"
                if kind
                else "a device that is not a bridge has that name",
            )
        if any(a.version == 6 for a in wanted) and not ipv6_enabled(
            name if index is not None else "default"
        ):
            raise _no_ipv6(name)
        if index is None:
            with _step(f"create bridge {name!r}"):
                try:
                    ipr.link("add", ifname=name, kind="bridge", **({"mtu": mtu} if mtu else {}))
                except NetlinkError as e:
                    if e.code != errno.EEXIST:  # made meanwhile by someone else: use it
                        raise
                found = _link(ipr, name)
                if found is None:
                    raise NetlinkError(errno.ENODEV)
                index, kind = found
                if kind != "bridge":
                    raise NetlinkError(errno.EEXIST)
        elif mtu is not None:
            with _step(f"set MTU {mtu} on bridge {name!r}"):
                ipr.link("set", index=index, mtu=mtu)
        with _step(f"read addresses of bridge {name!r}"):
            present = _addresses_of(ipr, index)
        for stale in present - set(wanted):
            with _step(f"remove address {stale} from bridge {name!r}"):
                try:
                    ipr.addr(
                        "del",
                        index=index,
                        family=_family(stale),
                        address=str(stale.ip),
                        prefixlen=stale.network.prefixlen,
                    )
                except NetlinkError as e:
                    if e.code != errno.EADDRNOTAVAIL:  # gone meanwhile
                        raise
        for address in wanted:
            if address not in present:
                _add_address(ipr, index, address, name)
        with _step(f"set bridge {name!r} up"):
            ipr.link("set", index=index, state="up")
        return index


def add_veth(
    host_name: str,
    peer_name: str,
    *,
    bridge: str | None,
    netns_fd: int,
    peer_ifname: str = "eth0",
    mtu: int | None = None,
) -> None:
    """Make a veth pair between the calling thread's network namespace and ``netns_fd``.

    The host end ``host_name`` stays here, enslaved to ``bridge`` and up; its peer is
    made directly inside the namespace ``netns_fd`` as ``peer_ifname`` (down: see
    :func:`configure`). The pair is made in one netlink request, so the peer never shows
    up on the host. On any failure nothing is left: a pair that was made is deleted.

    Args:
        host_name: the host end's name, for example ``"clib3f2a"``.
        peer_name: the peer's name on the host side. The peer is made straight in the
            namespace under ``peer_ifname``, so this name is only checked; it never
            appears on the host.
        bridge: the bridge to enslave the host end to, or None for none.
        netns_fd: a descriptor of the container's network namespace
            (``/proc/PID/ns/net``).
        peer_ifname: the peer's name inside that namespace.
        mtu: the MTU of both ends; None keeps the kernel's default (1500).

    Raises:
        SpecError: a bad name, descriptor or MTU; nothing was made.
        ContainerSetupError: the bridge is missing, the name is taken, the descriptor is
            no network namespace, or another kernel call failed; nothing was left.
    """
    check_ifname(host_name, field="host_name")
    check_ifname(peer_name, field="peer_name")
    check_ifname(peer_ifname, field="peer_ifname")
    if bridge is not None:
        check_ifname(bridge, field="bridge")
    _check_netns_fd(netns_fd)
    _check_mtu(mtu)
    sized = {"mtu": mtu} if mtu else {}
    with _rtnl() as ipr:
        master = None
        if bridge is not None:
            with _step(f"look up bridge {bridge!r}"):
                master = _index(ipr, bridge)
            if master is None:
                raise ContainerSetupError(f"look up bridge {bridge!r}", errno.ENODEV, "")
        with _step(
            f"create veth {host_name!r} with peer {peer_ifname!r} in network namespace "
            f"(fd {netns_fd})"
        ):
            ipr.link(
                "add",
                ifname=host_name,
                kind="veth",
                peer={"ifname": peer_ifname, "net_ns_fd": netns_fd, **sized},
                **sized,
            )
        try:
            with _step(f"look up veth {host_name!r}"):
                index = _index(ipr, host_name)
                if index is None:
                    raise NetlinkError(errno.ENODEV)
            if master is not None:
                with _step(f"add veth {host_name!r} to bridge {bridge!r}"):
                    ipr.link("set", index=index, master=master)
            with _step(f"set veth {host_name!r} up"):
                ipr.link("set", index=index, state="up")
        except BaseException:
            # Deleting one end deletes the pair, the peer in the namespace too.
            with contextlib.suppress(NetlinkError, OSError):
                ipr.link("del", ifname=host_name)
            raise


def configure(
    netns_fd: int,
    ifname: str,
    addresses: Sequence[Address],
    gateway4: IPv4Address | None = None,
    gateway6: IPv6Address | None = None,
    mtu: int | None = None,
) -> None:
    """Set up a container's interface inside its network namespace: ``addresses`` on
    ``ifname`` (IPv6 ones usable at once), ``ifname`` and ``lo`` up, and default routes via
    the gateways. Calling it again with the same arguments changes nothing.

    The work is done by a short-lived thread inside the namespace (:func:`in_netns`).

    Args:
        netns_fd: a descriptor of the container's network namespace.
        ifname: the interface there, for example ``"eth0"``.
        addresses: its addresses with their prefix, for example ``10.88.0.2/16``.
        gateway4: the IPv4 default gateway, or None for no IPv4 default route.
        gateway6: the IPv6 default gateway, or None for no IPv6 default route.
        mtu: the interface's MTU; None leaves it.

    Raises:
        SpecError: a bad name, address, gateway or MTU; nothing was changed.
        ContainerSetupError: the namespace could not be entered, has no such interface,
            has IPv6 disabled while IPv6 was asked for, or a kernel call failed.
    """
    _check_netns_fd(netns_fd)
    check_ifname(ifname)
    wanted = _check_addresses(addresses)
    _check_mtu(mtu)
    if gateway4 is not None and not isinstance(gateway4, IPv4Address):
        raise SpecError("gateway4", f"{gateway4!r} is not an IPv4Address")
    if gateway6 is not None and not isinstance(gateway6, IPv6Address):
        raise SpecError("gateway6", f"{gateway6!r} is not an IPv6Address")
    in_netns(netns_fd, lambda: _configure_here(ifname, wanted, gateway4, gateway6, mtu))


def _configure_here(
    ifname: str,
    addresses: list[Address],
    gateway4: IPv4Address | None,
    gateway6: IPv6Address | None,
    mtu: int | None,
) -> None:
    with _rtnl() as ipr:
        with _step(f"look up {ifname!r} in the network namespace"):
            index = _index(ipr, ifname)
            loopback = _index(ipr, "lo")
        if index is None:
            raise ContainerSetupError(f"look up {ifname!r} in the namespace", errno.ENODEV, "")
        wants_ipv6 = gateway6 is not None or any(a.version == 6 for a in addresses)
        if wants_ipv6 and not ipv6_enabled(ifname):
            raise _no_ipv6(ifname)
        if loopback is not None:
            with _step("set 'lo' up"):
                ipr.link("set", index=loopback, state="up")
        if mtu is not None:
            with _step(f"set MTU {mtu} on {ifname!r}"):
                ipr.link("set", index=index, mtu=mtu)
        with _step(f"set {ifname!r} up"):
            ipr.link("set", index=index, state="up")
        for address in addresses:
            _add_address(ipr, index, address, ifname)
        for gateway in (gateway4, gateway6):
            if gateway is None:
                continue
            default = "0.0.0.0/0" if gateway.version == 4 else "::/0"
            with _step(f"add default route via {gateway} on {ifname!r}"):
                ipr.route(
                    "replace",
                    family=_family(gateway),
                    dst=default,
                    gateway=str(gateway),
                    oif=index,
                )


def delete_link(name: str) -> bool:
    """Delete the link ``name`` in the calling thread's network namespace. Deleting one end
    of a veth pair deletes the other too, wherever it is.

    Args:
        name: the link's name.

    Returns:
        True if it was deleted, False if there was no such link.

    Raises:
        SpecError: a bad name.
        ContainerSetupError: the kernel refused.
    """
    check_ifname(name)
    with _rtnl() as ipr, _step(f"delete link {name!r}"):
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return False
            raise
    return True


def links(prefix: str = "clib") -> list[str]:
    """The names of the links in the calling thread's network namespace that start with
    ``prefix``, sorted: what containerlib made, to find leaks and to prune.

    Args:
        prefix: the start of the names to list; ``""`` lists all.

    Returns:
        The names, sorted.

    Raises:
        ContainerSetupError: the links could not be read.
    """
    with _rtnl() as ipr, _step("list links"):
        names = [str(msg.get("ifname")) for msg in ipr.link("dump")]
    return sorted(name for name in names if name.startswith(prefix))


def routed_networks() -> list[str]:
    """The destinations (``10.0.0.0/8``, ``fd00::/64``...) of the routes of the main
    table in the calling thread's network namespace, default routes left out: the
    networks a new one must not overlap.

    Raises:
        ContainerSetupError: the routes could not be read.
    """
    out = []
    with _rtnl() as ipr, _step("list routes"):
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.get_routes(family=family, table=254):
                dst, length = msg.get_attr("RTA_DST"), msg["dst_len"]
                if dst is not None and length:
                    out.append(f"{dst}/{length}")
    return out
