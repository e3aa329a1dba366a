"""User-defined networks: ``Container(...).network(Network("backend"), aliases=["db"])``.

A :class:`Network` is a name (and, if wanted, a subnet): the network comes into being with
its first member and goes with its last, as a ``clib0``-like bridge of its own (see
:mod:`containerlib.network.bridge`). Its members reach each other by hostname, by name
(``start(detach=True, name=...)``) and by alias, through their /etc/hosts, which is kept
current as members come and go (Docker answers the same names with a DNS server of its own;
/etc/hosts needs no server and works for every resolver). Two networks do not reach each
other. Root only, as bridges are.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import attrs

from containerlib.errors import SpecError

if TYPE_CHECKING:
    from containerlib.network.bridge import BridgeNetwork

__all__ = ["Member", "Network"]


def _check_name(value: object) -> str:
    from containerlib.network.bridge import check_network_name

    return check_network_name(value)


def _check_subnet(value: object, version: int) -> str | None:
    if value is None:
        return None
    field = "subnet" if version == 4 else "subnet6"
    try:
        net = ipaddress.ip_network(str(value))
    except ValueError as e:
        raise SpecError(field, f"{value!r} is not a subnet: {e}") from None
    if net.version != version:
        raise SpecError(field, f"{value!r} is not an IPv{version} subnet")
    return str(net)


@attrs.frozen
class Member:
    """A container on a network: its id, address and the names it answers to."""

    id: str
    address: str
    names: tuple[str, ...]


@attrs.frozen
class Network:
    """A user-defined bridge network whose members find each other by name.

    Args:
        name: the network's name (a letter or digit, then letters, digits, ``_``, ``.``
            or ``-``; not ``none``, ``host`` or ``bridge``).
        subnet: its IPv4 subnet; by default a free ``/24`` of ``10.218.0.0/16`` is picked
            when its first member starts.
        ipv6: give the members IPv6 addresses as well.
        subnet6: the IPv6 subnet (implies ``ipv6``); by default a unique local ``/64``
            derived from the name.
        bridge: the bridge interface's name (15 bytes at most; Docker's
            ``com.docker.network.bridge.name``); by default ``clibn`` and ten hex digits
            of the name's hash. It must not be taken by an interface containerlib did
            not make.

    Example:
        >>> backend = Network("backend")
        >>> db = Container(image).network(backend, aliases=["db"])  # doctest: +SKIP
        >>> with db.start(["httpd", "-f", "-p", "80"]):  # doctest: +SKIP
        ...     Container(image).network(backend).run(["wget", "-qO-", "http://db/"])
    """

    name: str = attrs.field(converter=_check_name)
    subnet: str | None = attrs.field(default=None, kw_only=True)
    ipv6: bool = attrs.field(default=False, kw_only=True)
    subnet6: str | None = attrs.field(default=None, kw_only=True)
    bridge: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "subnet", _check_subnet(self.subnet, 4))
        object.__setattr__(self, "subnet6", _check_subnet(self.subnet6, 6))
        if self.subnet6 is not None:
            object.__setattr__(self, "ipv6", True)
        if self.bridge is not None:
            from containerlib.linux.netlink import check_ifname

            check_ifname(self.bridge, field="bridge")

    def members(self) -> list[Member]:
        """The containers on this network now.

        Example:
            >>> backend = Network("backend")
            >>> db = Container(image).network(backend, aliases=["db"])  # doctest: +SKIP
            >>> with db.start(["sleep", "60"]):  # doctest: +SKIP
            ...     [m.names for m in backend.members()]
            [('db',)]
        """
        net = self._bridge()
        return [
            Member(
                id=lease.owner,
                address=str(lease.address.ip),
                names=tuple(n for n in (lease.name, *lease.aliases) if n),
            )
            for lease in net.leases()
            if lease.address.version == 4
        ]

    def _bridge(self) -> BridgeNetwork:
        from containerlib.network.bridge import (
            BridgeNetwork,
            network_state_dir,
            user_bridge_name,
        )

        return BridgeNetwork(
            name=self.name,
            bridge=self.bridge or user_bridge_name(self.name),
            subnet=self.subnet,
            state_dir=network_state_dir(),
            ipv6=self.ipv6,
            subnet6=self.subnet6,
            resolve=True,
        )
