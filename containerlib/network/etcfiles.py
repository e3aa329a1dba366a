"""A container's ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf``.

As Docker does, containerlib writes these three files for each container it starts (not
for an OCI bundle, whose caller makes them) and bind-mounts them over the image's: they
live beside the container's writable layer on the host (``<data root>/containers/<id>/``),
not in it, so they work with a read-only rootfs, never end up in a committed layer, and the
host can rewrite them while the container runs: the ``/etc/hosts`` of the members of a
user-defined network (:class:`containerlib.Network`) is kept current as members come and
go. They are rewritten in place (the bind mount holds the inode).

- ``/etc/hostname``: the container's hostname.
- ``/etc/hosts``: the localhost entries; on a network, the container's own address with its
  hostname, name and aliases; on a user-defined network, every other member's; then the
  entries of :meth:`Container.add_host`. With the host's network: the host's own file, then
  those entries.
- ``/etc/resolv.conf``: with :meth:`Container.dns`, exactly what it gives. Otherwise the
  host's file; with a network of its own, without the host's loopback name servers
  (127.0.0.0/8, ``::1``: the container's loopback is its own), taken from systemd-resolved's
  upstream list when the host points at its stub (127.0.0.53), and Google's public servers
  when nothing is left, as Docker does.

A container whose mounts cover one of these paths (or ``/etc``) keeps the mount it asked for.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

__all__ = [
    "ETC_FILES",
    "EtcFiles",
    "hosts_file",
    "member_lines",
    "resolv_conf",
    "rewrite",
    "without_members",
    "write_files",
]

#: The files, by their name beside the writable layer and their path in the container.
ETC_FILES: Final = (("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"),
                    ("resolv.conf", "/etc/resolv.conf"))  # fmt: skip

_LOCALHOST: Final = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
#: What marks the part of /etc/hosts that lists a network's other members.
MEMBERS_MARK: Final = "# containerlib: the other members of network "
#: Docker's fallback when the host has no name server a container can reach.
_FALLBACK_DNS: Final = ("8.8.8.8", "8.8.4.4")
_SYSTEMD_STUB: Final = "127.0.0.53"
_SYSTEMD_UPSTREAM: Final = "/run/systemd/resolve/resolv.conf"


@attrs.frozen(kw_only=True)
class EtcFiles:
    """What a container's three files are made of (see the module's description), as the
    plan carries it; the spawner adds what only it knows (the container's address on its
    network, the other members) when it writes them.

    Attributes:
        names: the names the container answers to on its network besides its hostname
            (its name, its aliases).
        extra_hosts: ``(hostname, address)`` entries of :meth:`Container.add_host`.
        host_network: the container is on the host's network.
        dns: the name servers of :meth:`Container.dns`; None for the host's.
        dns_search: its search domains; None for the host's.
        dns_options: its resolver options; None for the host's.
    """

    names: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()
    host_network: bool = False
    dns: tuple[str, ...] | None = None
    dns_search: tuple[str, ...] | None = None
    dns_options: tuple[str, ...] | None = None


def member_lines(network: str, members: Iterable[tuple[str, Sequence[str]]]) -> str:
    """The part of /etc/hosts listing a network's other members, ``(address, names)``
    each; empty for none."""
    lines = [f"{address}\t{' '.join(names)}\n" for address, names in members if names]
    return (MEMBERS_MARK + network + "\n" + "".join(lines)) if lines else ""


def hosts_file(
    etc: EtcFiles,
    hostname: str,
    own: Sequence[str] = (),
    members: str = "",
) -> str:
    """The /etc/hosts of a container: ``own`` are its addresses on its network (they get
    its hostname and names), ``members`` the part made by :func:`member_lines`."""
    if etc.host_network:
        head = _read_text("/etc/hosts")
        if head and not head.endswith("\n"):
            head += "\n"
    else:
        head = _LOCALHOST
    names = " ".join(dict.fromkeys((hostname, *etc.names)))
    mine = "".join(f"{address}\t{names}\n" for address in own)
    extra = "".join(f"{address}\t{name}\n" for name, address in etc.extra_hosts)
    return head + mine + extra + members


def resolv_conf(etc: EtcFiles, host: str | None = None, upstream: str | None = None) -> str:
    """The /etc/resolv.conf of a container (see the module's description).

    Args:
        etc: what the container asked for.
        host: the host's /etc/resolv.conf; read by default.
        upstream: systemd-resolved's list of upstream servers; read by default.
    """
    if host is None:
        host = _read_text("/etc/resolv.conf")
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    other: list[str] = []
    for line in host.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options += words[1:]
        else:
            other.append(line)
    if etc.host_network and etc.dns is None and etc.dns_search is None and etc.dns_options is None:
        return host
    if etc.dns is not None:
        servers = list(etc.dns)
    elif not etc.host_network:
        if servers and all(s == _SYSTEMD_STUB for s in servers):
            servers = [
                w[1]
                for w in (
                    x.split() for x in (upstream or _read_text(_SYSTEMD_UPSTREAM)).splitlines()
                )
                if len(w) > 1 and w[0] == "nameserver"
            ]
        servers = [s for s in servers if not _loopback(s)] or list(_FALLBACK_DNS)
    if etc.dns_search is not None:
        search = list(etc.dns_search)
    if etc.dns_options is not None:
        options = list(etc.dns_options)
    out = [f"nameserver {s}\n" for s in servers]
    if search:
        out.append("search " + " ".join(search) + "\n")
    if options:
        out.append("options " + " ".join(options) + "\n")
    return "".join(out)


def write_files(directory: str, files: dict[str, str], owner: tuple[int, int] | None) -> None:
    """Write ``files`` (name: text) in ``directory``, in place (see :func:`rewrite`); with
    ``owner``, owned by that host uid and gid (a user namespace's root)."""
    for name, text in files.items():
        path = os.path.join(directory, name)
        rewrite(path, text)
        if owner is not None:
            os.chown(path, *owner)


def rewrite(path: str, text: str) -> None:
    """Replace the content of ``path`` in place, keeping its inode (a bind mount of it in
    a container sees the new content); made, mode 0644, if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def without_members(path: str) -> str:
    """The head of the /etc/hosts at ``path``: what precedes the network members' part."""
    text = _read_text(path)
    at = text.find(MEMBERS_MARK)
    return text if at < 0 else text[:at]


def _loopback(server: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(server.split("%", maxsplit=1)[0]).is_loopback
    return False


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""
