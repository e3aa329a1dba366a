"""NAT for bridge networks: nftables rules that let containers reach beyond the host.

A container on a bridge has a private address (``10.217.0.2``); for its packets to come
back from another network, the host rewrites their source to its own address as they
leave (masquerading, a form of source NAT), and it must route between the bridge and its
other interfaces (IP forwarding). The rules live in the nftables table ``inet
containerlib`` (nft(8), libnftables(3)), driven in-process through ``libnftables.so.1``
with ctypes, in the network namespace of the calling thread.

Each bridge gets two base chains, made and removed together in one transaction:

- ``post-<bridge>`` (nat, postrouting): what comes from the bridge's subnets and leaves
  through another interface is masqueraded;
- ``fwd-<bridge>`` (filter, forward): what comes from the bridge is accepted, except
  towards another containerlib bridge (networks are isolated from each other, as
  Docker's are); what goes to the bridge is accepted for established and related
  connections and dropped otherwise, so nothing outside opens a connection to a
  container (published ports go through a proxy, not through forwarding).

An ``accept`` ends only the chain it is in: a host firewall whose own forward chain drops
by default still has to accept the bridge's traffic itself. The set ``bridges`` notes each
bridge with the subnets its rules were made for, so that :func:`add` for a bridge whose
rules are in place (every container start calls it) changes nothing.

IP forwarding (``net.ipv4.ip_forward``, and ``net.ipv6.conf.all.forwarding`` for a bridge
with an IPv6 subnet) is a setting of the whole network namespace, off by default. Docker
turns it on and leaves it on. containerlib turns it on when a bridge needs it and it is
off, notes that it did in the set ``forwarding`` of its own table, and turns it off again
when the last bridge's chains go and the table with them: the note lives and dies with
the table, so a host ends up as it was. Something else that needs forwarding while
containerlib has it on must turn it on itself, before or after: containerlib only turns
off what it found off. (A network namespace made meanwhile, a container's too, starts
with the host's settings, forwarding on: sysctl ``net.core.devconf_inherit_init_net``.)

All of this is serialised across processes by an flock(2) on :data:`LOCK_FILE`, so that
one process deleting the emptied table never races another one adding a bridge to it.
The lock file stays (in ``/run``, gone at the next boot), as lock files do.

Example (root; ``clib0`` exists)::

    add("clib0", ["10.217.0.0/16"])      # containers on clib0 reach the outside
    remove("clib0")                      # and no more; the table is gone
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import ipaddress
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import attrs

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.linux.netlink import check_ifname

__all__ = ["LOCK_FILE", "TABLE", "add", "prune", "remove", "table_exists"]

#: The nftables table that holds every rule containerlib makes (family ``inet``).
TABLE: Final = "containerlib"
#: The host-wide lock file that serialises changes to the table (made if missing).
LOCK_FILE: Final = "/run/lock/containerlib-nat.lock"

_LIBRARY: Final = "libnftables.so.1"
_NFT_CTX_DEFAULT: Final = 0
_NFT_CTX_OUTPUT_JSON: Final = 1 << 4

_FAMILY: Final = "inet"
_FORWARDING_SET: Final = "forwarding"
_BRIDGES_SET: Final = "bridges"
#: Goes up when the rules change, so that :func:`add` remakes chains an older version made.
_RULES_VERSION: Final = 1
_SUBNETS_NOTED_MAX: Final = 200
#: The base chains of a bridge, by what their names start with.
_CHAIN_PREFIXES: Final = ("post-", "fwd-")
#: Bridges are containerlib's links: named ``clib...``, and only with characters that
#: need no quoting in an nft script (the rules match other bridges by ``clib*``).
_BRIDGE_NAME: Final = re.compile(r"clib[A-Za-z0-9_.-]*")


@attrs.frozen
class _Sysctl:
    name: str
    path: str
    nfproto: str


_FORWARDING: Final = {
    4: _Sysctl("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward", "ipv4"),
    6: _Sysctl("net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf/all/forwarding", "ipv6"),
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- validation and the rules as text (no I/O) ---------------------------------------------


def _check_bridge(bridge: str) -> str:
    check_ifname(bridge, field="bridge")
    if not _BRIDGE_NAME.fullmatch(bridge):
        raise SpecError(
            "bridge",
            f"bridge {bridge!r} is not containerlib's: its name must start with 'clib' and "
            "have only letters, digits, '.', '_' and '-'",
        )
    return bridge


def _check_subnets(subnets: Sequence[str]) -> list[Network]:
    if isinstance(subnets, (str, bytes)):
        raise SpecError("subnets", f"expected a list of subnets, not {subnets!r}")
    networks: list[Network] = []
    for subnet in subnets:
        try:
            if not isinstance(subnet, str):
                raise TypeError(f"a {type(subnet).__name__}, not a string")
            network = ipaddress.ip_network(subnet)
        except (TypeError, ValueError) as e:
            raise SpecError(
                "subnets", f"{subnet!r} is not a subnet such as 10.217.0.0/16: {e}"
            ) from None
        if network not in networks:
            networks.append(network)
    if not networks:
        raise SpecError("subnets", "a bridge needs at least one subnet to masquerade")
    return networks


def _chains(bridge: str) -> tuple[str, str]:
    post, fwd = _CHAIN_PREFIXES
    return post + bridge, fwd + bridge


def _bridge_of(chain: str) -> str | None:
    """The bridge whose base chain ``chain`` is, or None for another chain."""
    for prefix in _CHAIN_PREFIXES:
        if chain.startswith(prefix) and _BRIDGE_NAME.fullmatch(chain[len(prefix) :]):
            return chain[len(prefix) :]
    return None


def _fingerprint(networks: Sequence[Network]) -> str:
    """What the ``bridges`` set notes about a bridge: its subnets (their digest, when
    many would not fit in a comment's 256 bytes) and the rules' version."""
    subnets = " ".join(str(n) for n in networks)
    if len(subnets) > _SUBNETS_NOTED_MAX:
        subnets = "sha256:" + hashlib.sha256(subnets.encode()).hexdigest()[:32]
    return f"{subnets}; rules v{_RULES_VERSION}"


def _add_script(
    bridge: str,
    networks: Sequence[Network],
    *,
    turned_on: Iterable[int] = (),
    noted: bool = False,
) -> str:
    """The nft commands that make the table if missing, note the forwarding of the IP
    versions in ``turned_on`` (4, 6), and (re)make the chains of ``bridge`` and its entry
    in the set ``bridges`` (which is there already if ``noted``): one transaction."""
    t = f"{_FAMILY} {TABLE}"
    post, fwd = _chains(bridge)
    lines = [
        f'add table {t} {{ comment "containerlib: NAT for its bridge networks"; }}',
        f"add set {t} {_FORWARDING_SET} {{ type nf_proto; "
        'comment "IP forwarding containerlib turned on, to turn off with this table"; }',
        f"add set {t} {_BRIDGES_SET} {{ type ifname; "
        'comment "bridges with chains here, and what their rules were made for"; }',
    ]
    versions = sorted({_FORWARDING[v].nfproto for v in turned_on})
    if versions:
        lines.append(f"add element {t} {_FORWARDING_SET} {{ {', '.join(versions)} }}")
    if noted:  # an element's comment cannot be changed: replace the element
        lines.append(f'delete element {t} {_BRIDGES_SET} {{ "{bridge}" }}')
    lines.append(
        f'add element {t} {_BRIDGES_SET} {{ "{bridge}" comment "{_fingerprint(networks)}" }}'
    )
    # "add chain" keeps a chain that is there and "flush chain" empties it, so that the
    # rules below are the only ones whether or not the bridge had chains already.
    lines += [
        f"add chain {t} {post} {{ type nat hook postrouting priority srcnat; policy accept; "
        f'comment "masquerade what leaves {bridge}\'s subnets through another interface"; }}',
        f"flush chain {t} {post}",
    ]
    for version, selector in ((4, "ip"), (6, "ip6")):
        mine = [str(n) for n in networks if n.version == version]
        if mine:
            lines.append(
                f"add rule {t} {post} {selector} saddr {{ {', '.join(mine)} }} "
                f'oifname != "{bridge}" masquerade'
            )
    lines += [
        f"add chain {t} {fwd} {{ type filter hook forward priority filter; policy accept; "
        f'comment "forward from {bridge}, and to it for connections made from it"; }}',
        f"flush chain {t} {fwd}",
        f'add rule {t} {fwd} iifname "{bridge}" oifname != "{bridge}" oifname "clib*" drop '
        'comment "networks are isolated from each other"',
        f'add rule {t} {fwd} iifname "{bridge}" accept',
        f'add rule {t} {fwd} oifname "{bridge}" ct state established,related accept',
        f'add rule {t} {fwd} oifname "{bridge}" drop',
    ]
    return "\n".join(lines) + "\n"


def _remove_script(table: _Table, bridges: Iterable[str]) -> str:
    """The nft commands that delete the chains of ``bridges`` and their entries in the
    set ``bridges``, those that ``table`` has."""
    doomed = set(bridges)
    t = f"{_FAMILY} {TABLE}"
    lines = [f"delete chain {t} {c}" for c in table.chains if _bridge_of(c) in doomed]
    lines += [
        f'delete element {t} {_BRIDGES_SET} {{ "{b}" }}' for b in sorted(table.noted) if b in doomed
    ]
    return "".join(line + "\n" for line in lines)


@attrs.frozen
class _Table:
    """What :func:`_read_table` found: the table's chains, the IP versions whose
    forwarding containerlib turned on, and the bridges noted in the set ``bridges`` with
    their fingerprints."""

    chains: tuple[str, ...] = ()
    turned_on: frozenset[int] = frozenset()
    noted: dict[str, str] = attrs.field(factory=dict)

    @property
    def bridges(self) -> list[str]:
        """Every bridge the table has something of, sorted."""
        return sorted({b for c in self.chains if (b := _bridge_of(c))} | set(self.noted))

    def is_current(self, bridge: str, networks: Sequence[Network]) -> bool:
        """Whether the bridge's chains are there, made by this version for ``networks``."""
        return self.noted.get(bridge) == _fingerprint(networks) and all(
            chain in self.chains for chain in _chains(bridge)
        )


def _parse_table(listing: str) -> _Table:
    """Read ``nft -j list table inet containerlib``."""
    chains: list[str] = []
    turned_on: set[int] = set()
    noted: dict[str, str] = {}
    by_nfproto = {s.nfproto: v for v, s in _FORWARDING.items()}
    for item in json.loads(listing).get("nftables", []):
        if "chain" in item:
            chains.append(str(item["chain"]["name"]))
        elif "set" in item and item["set"].get("name") == _FORWARDING_SET:
            for element in item["set"].get("elem", []):
                if isinstance(element, str) and element in by_nfproto:
                    turned_on.add(by_nfproto[element])
        elif "set" in item and item["set"].get("name") == _BRIDGES_SET:
            for element in item["set"].get("elem", []):
                # An element with a comment is {"elem": {"val": ..., "comment": ...}}.
                inner = element.get("elem", {}) if isinstance(element, dict) else {}
                value = inner.get("val", element)
                if isinstance(value, str):
                    noted[value] = str(inner.get("comment", ""))
    return _Table(tuple(chains), frozenset(turned_on), noted)


def _has_table(listing: str) -> bool:
    """Whether ``nft -j list tables inet`` lists containerlib's table."""
    return any(
        item.get("table", {}).get("name") == TABLE
        for item in json.loads(listing).get("nftables", [])
    )


# --- libnftables ---------------------------------------------------------------------------


def _missing_library(e: OSError) -> ContainerSetupError:
    return ContainerSetupError(
        f"load {_LIBRARY}",
        errno.ENOENT,
        "",
        "bridge networks need libnftables for their NAT rules: install Debian's nftables "
        f"package (apt-get install nftables, which brings libnftables1); {e}",
    )


@functools.cache
def _libnftables() -> Any:
    """The library, loaded once; its functions typed."""
    try:
        lib = ctypes.CDLL(_LIBRARY, use_errno=True)
    except OSError as e:
        raise _missing_library(e) from None
    ctx = ctypes.c_void_p
    for name, restype, argtypes in (
        ("nft_ctx_new", ctx, [ctypes.c_uint32]),
        ("nft_ctx_free", None, [ctx]),
        ("nft_ctx_buffer_output", ctypes.c_int, [ctx]),
        ("nft_ctx_buffer_error", ctypes.c_int, [ctx]),
        ("nft_ctx_get_output_buffer", ctypes.c_char_p, [ctx]),
        ("nft_ctx_get_error_buffer", ctypes.c_char_p, [ctx]),
        ("nft_ctx_output_set_flags", None, [ctx, ctypes.c_uint]),
        ("nft_run_cmd_from_buffer", ctypes.c_int, [ctx, ctypes.c_char_p]),
    ):
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


def _errno_in(text: str) -> int:
    """The errno whose message nft quotes in ``text`` ("Could not process rule: ..."), or
    0 when it quotes none."""
    for code in (
        errno.EPERM,
        errno.EACCES,
        errno.ENOENT,
        errno.EEXIST,
        errno.EBUSY,
        errno.EINVAL,
        errno.EOPNOTSUPP,
        errno.EAFNOSUPPORT,
        errno.ENOMEM,
        errno.ENOSPC,
    ):
        if os.strerror(code) in text:
            return code
    return 0


def _nft_error(step: str, text: str) -> ContainerSetupError:
    # nft's error names the command and underlines the part it rejects: keep the words.
    lines = [line.strip() for line in text.splitlines()]
    said = "; ".join(line for line in lines if line and set(line) - set("^~ "))
    code = _errno_in(said)
    if code == errno.EPERM:
        said += "; changing nftables needs CAP_NET_ADMIN over the network namespace: run as root"
    return ContainerSetupError(step, code, "", f"nft: {said}" if said else "")


def _nft(commands: str, step: str, *, json_output: bool = False) -> str:
    """Run an nft script (one transaction) in the calling thread's network namespace.

    Returns:
        What nft printed (JSON with ``json_output``).

    Raises:
        ContainerSetupError: naming ``step`` and quoting nft's error.
    """
    lib = _libnftables()
    ctx = lib.nft_ctx_new(_NFT_CTX_DEFAULT)
    if not ctx:
        raise ContainerSetupError(step, errno.ENOMEM, "", "nft_ctx_new failed")
    try:
        if lib.nft_ctx_buffer_output(ctx) != 0 or lib.nft_ctx_buffer_error(ctx) != 0:
            raise ContainerSetupError(step, errno.ENOMEM, "", "cannot buffer nft's output")
        if json_output:
            lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON)
        failed = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        if failed:
            error: bytes | None = lib.nft_ctx_get_error_buffer(ctx)
            raise _nft_error(step, (error or b"").decode(errors="replace"))
        output: bytes | None = lib.nft_ctx_get_output_buffer(ctx)
        return (output or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)


def _read_table() -> _Table | None:
    """Containerlib's table in the calling thread's network namespace, or None."""
    tables = _nft(f"list tables {_FAMILY}", "list nftables tables", json_output=True)
    if not _has_table(tables):
        return None
    listing = _nft(
        f"list table {_FAMILY} {TABLE}", f"list nftables table {TABLE!r}", json_output=True
    )
    return _parse_table(listing)


# --- IP forwarding -------------------------------------------------------------------------


def _forwarding_on(version: int) -> bool:
    sysctl = _FORWARDING[version]
    # /proc/sys/net is resolved in the network namespace of the thread that opens it.
    try:
        with open(sysctl.path, encoding="ascii") as f:
            return f.read().strip() != "0"
    except OSError as e:
        detail = "the kernel has no IPv6" if version == 6 and e.errno == errno.ENOENT else ""
        raise ContainerSetupError(f"read {sysctl.name}", e.errno or 0, "", detail) from None


def _set_forwarding(version: int, on: bool) -> None:
    sysctl = _FORWARDING[version]
    try:
        with open(sysctl.path, "w", encoding="ascii") as f:
            f.write("1\n" if on else "0\n")
    except OSError as e:
        raise ContainerSetupError(
            f"set {sysctl.name} to {int(on)}", e.errno or 0, "", "/proc/sys must be writable"
        ) from None


# --- the lock ------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Hold the host-wide NAT lock (every network namespace of the host shares it)."""
    step = f"lock {LOCK_FILE!r}"
    try:
        os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
        # Read-only is enough for flock, and works on a file another user made.
        fd = os.open(LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise ContainerSetupError(step, e.errno or 0, "") from None
    try:
        owner = os.fstat(fd)
        if not stat.S_ISREG(owner.st_mode) or owner.st_uid not in (0, os.geteuid()):
            # A file someone else made could be held locked by them for ever.
            raise ContainerSetupError(
                step,
                errno.EPERM,
                "",
                f"it belongs to uid {owner.st_uid}, not root: remove it",
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            raise ContainerSetupError(step, e.errno or 0, "") from None
        yield
    finally:
        os.close(fd)


# --- the public verbs ----------------------------------------------------------------------


def add(bridge: str, subnets: Sequence[str]) -> None:
    """Let the containers on ``bridge`` reach beyond the host, masqueraded as the host.

    Makes the table ``inet containerlib`` if it is missing, and the chains of ``bridge``
    (again: calling it twice leaves one set of rules, for the subnets of the last call),
    in one transaction, in the calling thread's network namespace. Turns on IP
    forwarding for the IP versions of ``subnets`` when it is off, and notes that it did
    in the table, for :func:`remove` to turn it off again. Rules in place for the same
    subnets are trusted and left alone: the call then costs two listings.

    Args:
        bridge: the bridge, a containerlib link (``clib...``), for example ``"clib0"``.
        subnets: its subnets, for example ``["10.217.0.0/16", "fd17::/64"]``.

    Raises:
        SpecError: a bad bridge name or subnet; nothing was changed.
        ContainerSetupError: libnftables is missing, nft refused (its error quoted), or
            forwarding could not be turned on; nothing of this call is left.

    Example::

        add("clib0", ["10.217.0.0/16"])
    """
    name = _check_bridge(bridge)
    networks = _check_subnets(subnets)
    _libnftables()
    with _locked():
        table = _read_table() or _Table()
        turned_on = [v for v in sorted({n.version for n in networks}) if not _forwarding_on(v)]
        if not turned_on and table.is_current(name, networks):
            return  # remaking the same rules costs the kernel a grace period or two
        # Noted before it is turned on: a crash in between leaves a note about forwarding
        # that is still off, and turning it "off" again with the table is harmless.
        _nft(
            _add_script(name, networks, turned_on=turned_on, noted=name in table.noted),
            f"add NAT rules for bridge {name!r}",
        )
        try:
            for version in turned_on:
                _set_forwarding(version, True)
        except BaseException:
            with contextlib.suppress(ContainerSetupError):
                _remove_bridges({name})
            raise


def remove(bridge: str) -> None:
    """Remove the NAT rules of ``bridge``; with the last bridge's, the table, turning IP
    forwarding off again if :func:`add` turned it on. Rules or a table that are not
    there are no error; without libnftables there is nothing to remove.

    Args:
        bridge: the bridge, for example ``"clib0"``.

    Raises:
        SpecError: a bad bridge name.
        ContainerSetupError: nft refused (its error quoted), or forwarding could not be
            turned off.
    """
    name = _check_bridge(bridge)
    if not _have_library():
        return
    with _locked():
        _remove_bridges({name})


def table_exists() -> bool:
    """Whether the table ``inet containerlib`` exists in the calling thread's network
    namespace (False without libnftables: then nothing can have made it).

    Raises:
        ContainerSetupError: the tables could not be listed.
    """
    if not _have_library():
        return False
    with _locked():
        return _read_table() is not None


def prune(bridges_alive: Callable[[str], bool]) -> list[str]:
    """Remove the rules of bridges that are gone (their owner crashed), and the table if
    that leaves it without chains, turning IP forwarding off again as :func:`remove`
    does.

    Args:
        bridges_alive: tells whether a bridge still exists; called with each bridge that
            has chains, under the lock, for example
            ``lambda name: name in netlink.links()``.

    Returns:
        The bridges whose rules were removed, sorted.

    Raises:
        ContainerSetupError: nft refused (its error quoted), or forwarding could not be
            turned off.
    """
    if not _have_library():
        return []
    with _locked():
        table = _read_table()
        if table is None:
            return []
        dead = [bridge for bridge in table.bridges if not bridges_alive(bridge)]
        if dead or not table.chains:
            _remove_bridges(set(dead))
        return dead


def _have_library() -> bool:
    try:
        _libnftables()
    except ContainerSetupError:
        return False
    return True


def _remove_bridges(bridges: set[str]) -> None:
    """Delete the chains of ``bridges``, or the whole table when no other chain is left.
    The caller holds the lock."""
    table = _read_table()
    if table is None:
        return
    if any(_bridge_of(c) not in bridges for c in table.chains):
        script = _remove_script(table, bridges)
        if script:
            _nft(script, f"remove NAT rules of {', '.join(sorted(bridges))}")
        return
    # Forwarding goes off before the table, its note, goes: a crash in between leaves the
    # table, which the next remove or prune deletes, and forwarding as it was found.
    for version in sorted(table.turned_on):
        _set_forwarding(version, False)
    _nft(f"delete table {_FAMILY} {TABLE}\n", f"delete nftables table {TABLE!r}")
