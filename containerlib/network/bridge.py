"""Bridge networks: a container joins a host bridge through a veth pair.

``Container.network("bridge")`` puts the container on the default bridge ``clib0``
(addresses from ``10.217.0.0/16``, ``CONTAINERLIB_BRIDGE_SUBNET`` for another);
``Container.network(Network("name"))`` on a user-defined network: a bridge of its own
(``clibn`` and ten hex digits of the name's hash), a subnet given or picked at its first
use (the first ``/24`` of ``10.218.0.0/16`` that no route of the host and no other network
uses), an IPv6 subnet too if asked, and its members find each other by name: each member's
/etc/hosts lists the others' addresses with their hostnames and aliases, and is rewritten
as members come and go (see :mod:`containerlib.network.etcfiles`).

The spawner, before the container's process gets its plan, leases it an address
(:mod:`containerlib.network.ipam`), makes the bridge if it is not there, and a veth pair
whose container end is made straight inside the container's network namespace as ``eth0``
(:mod:`containerlib.linux.netlink`), with the addresses and default routes through the
bridge. When the container ends its lease is released; the veth pair went with its
namespace; the last container on a bridge removes it and the network's state. All of that
happens under one lock on the networks' state directory, so that a bridge is never removed
while another process is attaching a container to it.

That directory is the host's, not a run root's: ``/run/containerlib-networks/net-<inode>``,
one per network namespace (named by the inode of its ``/proc/self/ns/net``), since bridges
and addresses are the namespace's. Two programs with different run roots (a test session
and a user's containers) share ``clib0`` and its addresses safely; a benchmark in a
network namespace of its own gets state of its own. The directory and its parent go with
the last network.

The host reaches a container at its address, and the containers on one network reach each
other; two networks do not reach each other. Root only: a non-root user's containers use
pasta or slirp4netns instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import attrs

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.network import etcfiles
from containerlib.runtime.records import alive, locked_dir, start_time

if TYPE_CHECKING:
    from containerlib.network.ipam import Ipam, Lease

__all__ = [
    "AUTO_POOL",
    "DEFAULT_BRIDGE",
    "DEFAULT_SUBNET",
    "NETWORK_ROOT",
    "BridgeNetwork",
    "attach",
    "check_network_name",
    "detach",
    "network_state_dir",
    "user_bridge_name",
    "veth_name",
]

DEFAULT_BRIDGE: Final = "clib0"
DEFAULT_SUBNET: Final = "10.217.0.0/16"
#: Where the subnets of user-defined networks are picked from, a /24 each.
AUTO_POOL: Final = "10.218.0.0/16"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_RESERVED: Final = ("none", "host", "bridge", "default")
#: Where the networks' state is, a directory per network namespace.
NETWORK_ROOT: Final = "/run/containerlib-networks"


def network_state_dir() -> str:
    """The networks' state directory of this process's network namespace (which it
    may not have made yet).

    Example:
        >>> network_state_dir()  # doctest: +SKIP
        '/run/containerlib-networks/net-4026531840'
    """
    return os.path.join(NETWORK_ROOT, f"net-{os.stat('/proc/self/ns/net').st_ino}")


def check_network_name(name: object) -> str:
    """``name`` if it may name a user-defined network (Docker's rule: a letter or digit,
    then letters, digits, ``_``, ``.`` or ``-``, at most 64), else SpecError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(
            "network",
            f"{name!r} is not a network name (a letter or digit, then letters, digits, "
            "'_', '.' or '-', 64 at most)",
        )
    if name in _RESERVED:
        raise SpecError("network", f"{name!r} is a built-in network mode, not a network name")
    return name


def user_bridge_name(name: str) -> str:
    """The bridge interface of the user-defined network ``name`` (15 bytes)."""
    return "clibn" + hashlib.sha256(name.encode()).hexdigest()[:10]


@attrs.frozen(kw_only=True)
class BridgeNetwork:
    """A bridge network as a plan carries it (see :attr:`Plan.bridge`).

    Attributes:
        name: ``"bridge"`` or a user-defined network's name.
        bridge: its bridge interface.
        subnet: its IPv4 subnet; None to pick one at its first use.
        ipv6: it has an IPv6 subnet as well.
        subnet6: that subnet; None to pick one (a /64 of ``fd00::/8`` from the name).
        state_dir: the directory holding the networks' state (:func:`network_state_dir`).
        resolve: members find each other by name (user-defined networks).
    """

    name: str
    bridge: str
    subnet: str | None
    state_dir: str
    ipv6: bool = False
    subnet6: str | None = None
    resolve: bool = False

    def ipam(self, subnets: Sequence[str]) -> Ipam:
        from containerlib.network.ipam import Ipam

        return Ipam(os.path.join(self.state_dir, f"{self.name}.json"), subnets)

    @property
    def conf_path(self) -> str:
        return os.path.join(self.state_dir, f"{self.name}.net.json")

    def read_conf(self) -> dict[str, object] | None:
        """The network's state beside its leases (its subnets, its members' hosts files),
        None if it is not in use."""
        try:
            with open(self.conf_path, encoding="utf-8") as f:
                conf = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ContainerSetupError(
                f"read network state {self.conf_path}", errno.EIO, "", str(e)
            ) from None
        if not isinstance(conf, dict):
            raise ContainerSetupError(
                f"read network state {self.conf_path}", errno.EIO, "", "not an object"
            )
        return conf

    def leases(self) -> list[Lease]:
        """The leases of the network now; empty when it is not in use."""
        conf = self.read_conf()
        if conf is None:
            return []
        return self.ipam(_subnets(conf)).leases()


def veth_name(container_id: str) -> str:
    """The host end of a container's veth pair: ``clib`` and the id's start (15 bytes)."""
    from containerlib.linux import netlink

    return netlink.check_ifname("clib" + container_id[:11])


#: What :func:`attach` calls, under the network's lock, to write the container's files:
#: with its addresses and the part of /etc/hosts listing the other members.
WriteHosts = Callable[[Sequence[str], str], None]


def attach(
    net: BridgeNetwork,
    container_id: str,
    netns_fd: int,
    *,
    hostname: str | None = None,
    names: Sequence[str] = (),
    hosts_path: str | None = None,
    write_hosts: WriteHosts | None = None,
    pid: int | None = None,
) -> list[Lease]:
    """Put the container whose network namespace is ``netns_fd`` on ``net``; returns its
    leases (one per address family). Nothing is left when it fails.

    Args:
        hostname: its name on the network (None: none).
        names: more names it answers to there.
        hosts_path: its /etc/hosts on the host, which the other members' arrivals and
            departures rewrite (on a network with ``resolve``).
        write_hosts: called with its addresses and the other members' part of /etc/hosts.
        pid: its first process, by which :func:`prune` tells that it has ended.

    Raises:
        ContainerSetupError: the pool is exhausted, no subnet is free, or a kernel step
            failed (naming it).
    """
    from containerlib.linux import netlink

    with locked_dir(net.state_dir):
        conf = net.read_conf()
        fresh = conf is None
        if fresh and not net.bridge.startswith("clib") and net.bridge in netlink.links(""):
            _remove_state_dir(net.state_dir)  # the state of no network
            raise ContainerSetupError(
                f"make bridge {net.bridge}",
                errno.EEXIST,
                container_id,
                f"an interface named {net.bridge!r} exists, and containerlib did not make it",
            )
        if conf is None:
            conf = {
                "bridge": net.bridge,
                "subnets": _pick_subnets(net),
                "resolve": net.resolve,
                "members": {},
            }
        ipam = net.ipam(_subnets(conf))
        # Every name goes in as an alias: two containers may share a hostname or an alias
        # (a detached container's name is unique among them already).
        aliases = list(dict.fromkeys([hostname, *names] if hostname else names))
        leases = ipam.allocate(container_id, aliases=aliases if net.resolve else ())
        host = veth_name(container_id)
        try:
            gateways = [
                ipaddress.ip_interface(f"{lease.gateway}/{lease.address.network.prefixlen}")
                for lease in leases
            ]
            if fresh:
                _write_conf(net, conf)
            netlink.ensure_bridge(net.bridge, gateways)
            _nat_add(net, [str(lease.address.network) for lease in leases])
            netlink.add_veth(host, "eth0", bridge=net.bridge, netns_fd=netns_fd)
            gw4 = [g.ip for g in gateways if g.version == 4]
            gw6 = [g.ip for g in gateways if g.version == 6]
            netlink.configure(
                netns_fd,
                "eth0",
                [lease.address for lease in leases],
                gateway4=gw4[0] if gw4 else None,
                gateway6=gw6[0] if gw6 else None,
            )
            started = start_time(pid) if pid is not None else None
            _members_of(conf)[container_id] = {"hosts": hosts_path, "pid": pid, "started": started}
            _write_conf(net, conf)
            if write_hosts is not None:
                others = ipam.leases() if net.resolve else []
                write_hosts(
                    [str(lease.address.ip) for lease in leases],
                    _members(net.name, others, container_id),
                )
            if net.resolve:
                _rewrite_members(net, ipam, conf, container_id)
        except BaseException:
            netlink.delete_link(host)
            _leave(net, ipam, conf, container_id)
            raise
    return leases


def detach(net: BridgeNetwork, container_id: str) -> None:
    """Take the container off ``net`` once it has ended: its lease, its veth pair (gone
    with its namespace already, as a rule), its name from the other members' /etc/hosts
    and, with the last container, the bridge and the network's state."""
    from containerlib.linux import netlink

    # Outside the lock: deleting a network device waits for the kernel (RCU grace
    # periods, 15 to 30 ms here), and the veth pair is this container's alone, so the
    # starts of others on the network need not wait for it.
    netlink.delete_link(veth_name(container_id))
    with locked_dir(net.state_dir, create=False) as there:
        if not there:
            return
        conf = net.read_conf()
        if conf is None:
            return
        _leave(net, net.ipam(_subnets(conf)), conf, container_id)


def prune(state_dir: str) -> list[str]:
    """Sweep up what containers that ended without :func:`detach` left on the networks of
    ``state_dir`` (their spawner was killed): their leases, their names in the others'
    /etc/hosts, and bridges left without members. Returns the containers' ids."""
    released: list[str] = []
    with locked_dir(state_dir, create=False) as there:
        for entry in sorted(os.listdir(state_dir)) if there else ():
            if not entry.endswith(".net.json"):
                continue
            name = entry[: -len(".net.json")]
            net = BridgeNetwork(name=name, bridge="", subnet=None, state_dir=state_dir)
            conf = net.read_conf()
            if conf is None:
                continue
            members = _members_of(conf)
            bridge = conf.get("bridge")
            net = attrs.evolve(
                net,
                bridge=bridge if isinstance(bridge, str) else "",
                resolve=bool(conf.get("resolve")),
            )
            ipam = net.ipam(_subnets(conf))

            def live(owner: str, members: dict[str, dict[str, object]] = members) -> bool:
                info = members.get(owner)
                return isinstance(info, dict) and _alive(info.get("pid"), info.get("started"))

            gone = {lease.owner for lease in ipam.leases() if not live(lease.owner)}
            gone |= {owner for owner in members if not live(owner)}
            for owner in sorted(gone):
                _leave(net, ipam, conf, owner)
            released += sorted(gone)
        # NAT chains of bridges that are gone (a crash between the two).
        from containerlib.linux import netlink
        from containerlib.network import nat

        if nat.table_exists():
            present = set(netlink.links(""))
            nat.prune(lambda bridge: bridge in present)
    return released


def _alive(pid: object, started: object) -> bool:
    if not isinstance(pid, int):
        return False
    return alive(pid, started if isinstance(started, int) else None)


def _leave(net: BridgeNetwork, ipam: Ipam, conf: dict[str, object], owner: str) -> None:
    """Take ``owner`` off the network's state (its lease, its entry, its name in the other
    members' /etc/hosts); the network goes with its last member."""
    ipam.release(owner)
    if _members_of(conf).pop(owner, None) is not None and ipam.leases():
        _write_conf(net, conf)
    if net.resolve:
        _rewrite_members(net, ipam, conf, owner)
    _remove_if_unused(net, ipam, conf)


def _members(network: str, leases: Sequence[Lease], but: str) -> str:
    return etcfiles.member_lines(
        network,
        (
            (str(lease.address.ip), [n for n in (lease.name, *lease.aliases) if n])
            for lease in leases
            if lease.owner != but
        ),
    )


def _rewrite_members(net: BridgeNetwork, ipam: Ipam, conf: dict[str, object], skip: str) -> None:
    """Rewrite the network members' part of each member's /etc/hosts (but ``skip``'s)."""
    leases = ipam.leases()
    for owner, info in _members_of(conf).items():
        path = info.get("hosts") if isinstance(info, dict) else None
        if owner == skip or not isinstance(path, str):
            continue
        with contextlib.suppress(OSError):  # a member that just ended
            head = etcfiles.without_members(path)
            etcfiles.rewrite(path, head + _members(net.name, leases, owner))


def _members_of(conf: dict[str, object]) -> dict[str, dict[str, object]]:
    """The network's members: id -> their /etc/hosts path (``hosts``) and first process
    (``pid``, ``started``: its start time, to tell a reused pid)."""
    members = conf.setdefault("members", {})
    if not isinstance(members, dict):
        raise ContainerSetupError("read network state", errno.EIO, "", "bad members")
    return members


def _subnets(conf: dict[str, object]) -> list[str]:
    subnets = conf.get("subnets")
    if not isinstance(subnets, list) or not all(isinstance(s, str) for s in subnets):
        raise ContainerSetupError("read network state", errno.EIO, "", "no subnets in it")
    return subnets


def _write_conf(net: BridgeNetwork, conf: dict[str, object]) -> None:
    temp = net.conf_path + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(conf, f)
    os.rename(temp, net.conf_path)


def _pick_subnets(net: BridgeNetwork) -> list[str]:
    """The subnets of a network at its first use: those it was given, else free ones."""
    subnets = [net.subnet] if net.subnet is not None else [_free_subnet4(net)]
    if net.ipv6:
        subnets.append(net.subnet6 if net.subnet6 is not None else _subnet6(net.name))
    return subnets


def _taken_networks(net: BridgeNetwork) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks this host routes already, and those of the networks in use here."""
    from containerlib.linux import netlink

    taken = [ipaddress.ip_network(r, strict=False) for r in netlink.routed_networks()]
    with contextlib.suppress(OSError):
        for entry in os.listdir(net.state_dir):
            if entry.endswith(".net.json"):
                other = BridgeNetwork(
                    name=entry[: -len(".net.json")], bridge="", subnet=None, state_dir=net.state_dir
                )
                with contextlib.suppress(ContainerSetupError):
                    conf = other.read_conf()
                    if conf is not None:
                        taken += [ipaddress.ip_network(s) for s in _subnets(conf)]
    return taken


def _free_subnet4(net: BridgeNetwork) -> str:
    taken = [n for n in _taken_networks(net) if n.version == 4]
    for candidate in ipaddress.IPv4Network(AUTO_POOL).subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise ContainerSetupError(
        f"pick a subnet for network {net.name}",
        errno.ENOSPC,
        "",
        f"every /24 of {AUTO_POOL} is in use; give the network a subnet",
    )


def _subnet6(name: str) -> str:
    """A unique local /64 for the network ``name``: ``fd`` and 56 bits of its hash."""
    digest = hashlib.sha256(b"containerlib network " + name.encode()).digest()
    prefix = bytes([0xFD]) + digest[:7] + bytes(8)
    return str(ipaddress.IPv6Network((prefix, 64)))


def _nat_add(net: BridgeNetwork, subnets: list[str]) -> None:
    from containerlib.network import nat

    nat.add(net.bridge, subnets)


def _nat_remove(net: BridgeNetwork) -> None:
    from containerlib.network import nat

    nat.remove(net.bridge)


def _remove_if_unused(net: BridgeNetwork, ipam: Ipam, conf: dict[str, object]) -> None:
    from containerlib.linux import netlink

    if ipam.leases():
        return
    bridge = conf.get("bridge")
    netlink.delete_link(bridge if isinstance(bridge, str) else net.bridge)
    _nat_remove(net)
    with contextlib.suppress(ContainerSetupError):
        ipam.remove()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(net.conf_path)
    _remove_state_dir(net.state_dir)  # the last network of this namespace


def _remove_state_dir(state_dir: str) -> None:
    """Remove the networks' state directory if it is empty, and then the directory of
    all of them if that is empty too (those who make it again wait for it: see
    :func:`~containerlib.runtime.records.locked_dir`)."""
    with contextlib.suppress(OSError):
        os.rmdir(state_dir)
        if os.path.dirname(state_dir) == NETWORK_ROOT:
            os.rmdir(NETWORK_ROOT)
