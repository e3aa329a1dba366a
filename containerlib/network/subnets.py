"""The subnets of a container network: which addresses are reserved and which may be leased.

A network has one IPv4 subnet and optionally one IPv6 subnet. The first host address is
the gateway (the bridge's own address); the network address is never handed out, nor, in
IPv4, the broadcast address. IPv6 has no broadcast, so its last address is an ordinary one
(as in CNI's ``host-local`` plugin). See ``ip-address(8)`` and RFC 4291 for the IPv6
address ranges that cannot be a container's.

Example:
    >>> (v4,) = parse_subnets(["10.88.0.0/24"])
    >>> str(v4.address(v4.gateway)), v4.size
    ('10.88.0.1', 253)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final, TypeAlias

import attrs

from containerlib.errors import SpecError

__all__ = ["Address", "Interface", "Network", "Subnet", "parse_subnets"]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Interface: TypeAlias = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_MIN_V4_ADDRESSES: Final = 4
_MAX_V6_PREFIX: Final = 120
# Ranges whose addresses cannot be given to a container on a bridge.
_V4_UNUSABLE: Final = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved (240.0.0.0/4)"),
)
_V6_UNUSABLE: Final = (
    (ipaddress.IPv6Network("::/96"), "unspecified, loopback or IPv4-compatible (::/96)"),
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped (::ffff:0:0/96)"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local (fe80::/10)"),
    (ipaddress.IPv6Network("ff00::/8"), "multicast (ff00::/8)"),
)


@attrs.frozen
class Subnet:
    """One subnet of a network, with its addresses as integers (cheap to compare and count).

    Attributes:
        network: the subnet.
        gateway: its gateway, the first host address.
        first: the first address a container may get (the one after the gateway).
        last: the last one (before the broadcast address in IPv4, the very last in IPv6).
    """

    network: Network
    gateway: int
    first: int
    last: int

    @classmethod
    def of(cls, network: Network) -> Subnet:
        """The reserved and leasable addresses of ``network`` (which is not checked)."""
        base = int(network.network_address)
        top = int(network.broadcast_address)
        # IPv6 has no broadcast: its last address is an ordinary one (as in CNI host-local).
        last = top - 1 if network.version == 4 else top
        return cls(network=network, gateway=base + 1, first=base + 2, last=last)

    @property
    def size(self) -> int:
        """How many addresses containers may get."""
        return self.last - self.first + 1

    def reserved(self) -> str:
        """Which addresses are kept from containers, in words."""
        return "network, gateway, broadcast" if self.network.version == 4 else "network, gateway"

    def next_free(self, used: set[int], after: int | None) -> int:
        """The first address not in ``used`` after ``after``, wrapping round; ``used`` must
        leave one free."""
        start = after + 1 if after is not None and self.first <= after < self.last else self.first
        candidate = start
        while candidate in used:
            candidate = candidate + 1 if candidate < self.last else self.first
        return candidate

    def interface(self, address: int) -> Interface:
        """``address`` with the subnet's prefix length."""
        if self.network.version == 4:
            return ipaddress.IPv4Interface((address, self.network.prefixlen))
        return ipaddress.IPv6Interface((address, self.network.prefixlen))

    def address(self, address: int) -> Address:
        """``address`` as an address of the subnet's family."""
        if self.network.version == 4:
            return ipaddress.IPv4Address(address)
        return ipaddress.IPv6Address(address)


def parse_subnets(subnets: Sequence[str]) -> tuple[Subnet, ...]:
    """Check a network's subnets, as a user gave them.

    Args:
        subnets: one IPv4 subnet and at most one IPv6 subnet in CIDR form.

    Returns:
        The subnets, IPv4 first.

    Raises:
        SpecError: ``subnets[i]`` is malformed, has host bits set, is a single address, is
            too small (IPv4 needs 4 addresses, IPv6 a /120), lies in a range no container
            can use (loopback, link-local, multicast, IPv4-mapped...) or is a second subnet
            of its family; or there is no IPv4 subnet.
    """
    if isinstance(subnets, str):
        raise SpecError("subnets", f"expected a list of subnets, not the string {subnets!r}")
    by_family: dict[int, Subnet] = {}
    for i, text in enumerate(subnets):
        field = f"subnets[{i}]"
        if not isinstance(text, str):
            raise SpecError(field, f"expected a subnet such as '10.88.0.0/16', got {text!r}")
        if "/" not in text:
            raise SpecError(field, f"{text!r} has no prefix length (e.g. '{text}/24')")
        try:
            network = ipaddress.ip_network(text)
        except ValueError as e:
            if "host bits set" in str(e):
                near = ipaddress.ip_network(text, strict=False)
                raise SpecError(
                    field, f"{text!r} has host bits set; did you mean {near}?"
                ) from None
            raise SpecError(field, f"{text!r} is not a subnet: {e}") from None
        if network.prefixlen == network.max_prefixlen:
            raise SpecError(field, f"{text!r} is a single address, not a subnet")
        if network.version == 4 and network.num_addresses < _MIN_V4_ADDRESSES:
            raise SpecError(
                field,
                f"{text!r} is too small: a subnet needs a network, a gateway, a broadcast "
                "and a container address (/30 or larger)",
            )
        if network.version == 6 and network.prefixlen > _MAX_V6_PREFIX:
            raise SpecError(field, f"{text!r} is too small: use /{_MAX_V6_PREFIX} or larger")
        unusable = _V4_UNUSABLE if network.version == 4 else _V6_UNUSABLE
        for bad, what in unusable:
            if network.overlaps(bad):
                raise SpecError(field, f"{text!r} overlaps the {what} range")
        if network.version in by_family:
            raise SpecError(
                field,
                f"a second IPv{network.version} subnet ({text!r} besides "
                f"{by_family[network.version].network}); a network has one per family",
            )
        by_family[network.version] = Subnet.of(network)
    if 4 not in by_family:
        raise SpecError("subnets", "a network needs an IPv4 subnet (and may add an IPv6 one)")
    return tuple(by_family[v] for v in sorted(by_family))
