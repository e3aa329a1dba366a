"""Bridge networking: a container joins a host bridge through a veth pair.

``Container.network("bridge")`` puts the container on the bridge ``clib0`` (addresses
from ``10.217.0.0/16``, ``CONTAINERLIB_BRIDGE_SUBNET`` for another): the spawner, before the
container's process gets its plan, leases it an address (:mod:`containerlib.network.ipam`),
makes the bridge if it is not there, and a veth pair whose container end is made straight
inside the container's network namespace as ``eth0`` (:mod:`containerlib.linux.netlink`),
with the address and a default route through the bridge. When the container ends its
lease is released; the veth pair went with its namespace; the last container on a bridge
removes it. All of that happens under one lock on the network's state directory, so that
a bridge is never removed while another process is attaching a container to it.

The host reaches a container at its address, and the containers on one bridge reach each
other. Root only: a non-root user's containers would need slirp4netns or pasta.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from typing import Final

import attrs

from containerlib.errors import ContainerSetupError
from containerlib.linux import netlink
from containerlib.network.ipam import Ipam, Lease
from containerlib.runtime.records import locked

__all__ = ["DEFAULT_BRIDGE", "DEFAULT_SUBNET", "BridgeNetwork", "attach", "detach", "veth_name"]

DEFAULT_BRIDGE: Final = "clib0"
DEFAULT_SUBNET: Final = "10.217.0.0/16"


@attrs.frozen(kw_only=True)
class BridgeNetwork:
    """A bridge network: its name, its bridge interface, its subnet, and the directory
    that holds its leases (``<run root>/networks``)."""

    name: str
    bridge: str
    subnet: str
    state_dir: str

    @property
    def ipam(self) -> Ipam:
        return Ipam(os.path.join(self.state_dir, f"{self.name}.json"), [self.subnet])


def veth_name(container_id: str) -> str:
    """The host end of a container's veth pair: ``clib`` and the id's start (15 bytes)."""
    return netlink.check_ifname("clib" + container_id[:11])


def attach(net: BridgeNetwork, container_id: str, netns_fd: int) -> Lease:
    """Put the container whose network namespace is ``netns_fd`` on ``net``; returns its
    lease. Nothing is left when it fails.

    Raises:
        ContainerSetupError: the pool is exhausted, or a kernel step failed (naming it).
    """
    os.makedirs(net.state_dir, mode=0o700, exist_ok=True)
    with locked(net.state_dir):
        ipam = net.ipam
        (lease,) = ipam.allocate(container_id)
        host = veth_name(container_id)
        try:
            gateway = ipaddress.IPv4Interface(f"{lease.gateway}/{lease.address.network.prefixlen}")
            netlink.ensure_bridge(net.bridge, [gateway])
            netlink.add_veth(host, "eth0", bridge=net.bridge, netns_fd=netns_fd)
            netlink.configure(netns_fd, "eth0", [lease.address], gateway4=gateway.ip)
        except BaseException:
            netlink.delete_link(host)
            ipam.release(container_id)
            _remove_if_unused(net, ipam)
            raise
    return lease


def detach(net: BridgeNetwork, container_id: str) -> None:
    """Take the container off ``net`` once it has ended: its lease, its veth pair (gone
    with its namespace already, as a rule) and, with the last container, the bridge."""
    with locked(net.state_dir):
        netlink.delete_link(veth_name(container_id))
        ipam = net.ipam
        ipam.release(container_id)
        _remove_if_unused(net, ipam)


def _remove_if_unused(net: BridgeNetwork, ipam: Ipam) -> None:
    if ipam.leases():
        return
    netlink.delete_link(net.bridge)
    with contextlib.suppress(ContainerSetupError):
        ipam.remove()
    with contextlib.suppress(OSError):
        os.rmdir(net.state_dir)  # the last network of this run root
