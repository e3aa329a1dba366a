"""Address management for a container network: leases from a subnet, kept in a locked file.

A network has one IPv4 subnet and optionally one IPv6 subnet (dual stack). Its gateway, the
bridge's own address, is the subnet's first host address; each container gets one address
per family from the rest, never the network address (nor, in IPv4, the broadcast
address). Addresses are handed out round robin, as CNI's ``host-local`` plugin does: the
next free one after the last handed out, so that an address just released is not given to
the next container while a peer may still hold it in its ARP or DNS cache.

The leases live in a JSON file shared by every process that starts containers on the
network. Each change reads it, changes it and replaces it whole (a temporary file renamed
over it) while holding an ``flock(2)`` on ``<state>.lock``; the kernel drops that lock with
the process, so a crash never leaves it held, and a lease whose container died with its
owner is swept up by :meth:`Ipam.prune`. See ``flock(2)`` and ``rename(2)``.

Example:
    >>> ipam = Ipam(tmp / "clib0.json", ["10.88.0.0/24"])  # doctest: +SKIP
    >>> [str(lease.address) for lease in ipam.allocate("3f2a", name="web")]  # doctest: +SKIP
    ['10.88.0.2/24']
    >>> ipam.lookup("web")[0].gateway  # doctest: +SKIP
    IPv4Address('10.88.0.1')
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

import attrs

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.network.subnets import Address, Interface, Network, Subnet, parse_subnets

__all__ = ["AddressLike", "Ipam", "Lease"]

#: What :meth:`Ipam.allocate` accepts as an asked address.
AddressLike: TypeAlias = str | ipaddress.IPv4Address | ipaddress.IPv6Address

_VERSION: Final = 1
#: Names and aliases end up in /etc/hosts and in DNS answers: one label-like word each.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_MAX_NAME: Final = 253


@attrs.frozen(kw_only=True)
class Lease:
    """One address of one container on a network.

    Attributes:
        owner: the container's id.
        address: the address with the subnet's prefix length, e.g. ``10.88.0.2/24``.
        gateway: the network's gateway in the same family (the bridge's address).
        name: the container's name on the network, None if it has none.
        aliases: more names the container answers to on the network.
    """

    owner: str
    address: Interface
    gateway: Address
    name: str | None = None
    aliases: tuple[str, ...] = ()


@attrs.frozen
class _Entry:
    """One container's leases as the state file holds them: an address per pool."""

    owner: str
    addresses: tuple[int, ...]  # in the order of Ipam.subnets
    name: str | None
    aliases: tuple[str, ...]
    line: str  # its line in the state file, made once: writing stays cheap with many leases

    @classmethod
    def make(
        cls,
        owner: str,
        addresses: tuple[int, ...],
        texts: list[str],
        name: str | None,
        aliases: tuple[str, ...],
    ) -> _Entry:
        doc = {"owner": owner, "addresses": texts, "name": name, "aliases": list(aliases)}
        return cls(owner, addresses, name, aliases, json.dumps(doc))


@attrs.define
class _State:
    entries: list[_Entry]
    last: list[int | None]  # the last address handed out, per pool


class Ipam:
    """The address pools of one network and their leases, shared through a state file.

    Every method may be called from any number of threads and processes at once: changes
    are serialised by a lock on ``<state>.lock`` and the state file is replaced whole, so a
    reader sees it before or after a change, never half way. :meth:`remove` deletes both
    files once the network has no lease left.

    Args:
        state: the JSON file holding the leases; it need not exist (an empty pool). Its
            directory is created, mode 0700, when the first lease is written.
        subnets: one IPv4 subnet and at most one IPv6 subnet, in CIDR form
            (``["10.88.0.0/16", "fd00:88::/64"]``).

    Raises:
        SpecError: a subnet is malformed, has host bits set, is too small (an IPv4 subnet
            needs at least 4 addresses, an IPv6 one at least 256) or lies in a range no
            container can use (loopback, link-local, multicast, IPv4-mapped...); or two
            subnets of one family are given. Nothing is read or written.

    Example:
        >>> ipam = Ipam("/run/containerlib/net/clib0.json", ["10.88.0.0/24"])  # doctest: +SKIP
        >>> ipam.gateways  # doctest: +SKIP
        (IPv4Address('10.88.0.1'),)
    """

    def __init__(self, state: str | os.PathLike[str], subnets: Sequence[str]) -> None:
        self._path = Path(os.fspath(state))
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._pools = parse_subnets(subnets)
        # The last state read or written, with its bytes: a process that allocates many
        # times in a row reads back what it wrote and need not check it all again.
        self._cache: tuple[bytes, _State] | None = None

    @property
    def path(self) -> Path:
        """The state file."""
        return self._path

    @property
    def subnets(self) -> tuple[Network, ...]:
        """The subnets, IPv4 first."""
        return tuple(pool.network for pool in self._pools)

    @property
    def gateways(self) -> tuple[Address, ...]:
        """Each subnet's gateway (its first host address), in the order of :attr:`subnets`."""
        return tuple(pool.address(pool.gateway) for pool in self._pools)

    @property
    def capacity(self) -> tuple[int, ...]:
        """How many containers each subnet has room for, in the order of :attr:`subnets`."""
        return tuple(pool.size for pool in self._pools)

    def __repr__(self) -> str:
        nets = ", ".join(str(n) for n in self.subnets)
        return f"Ipam({str(self._path)!r}, [{nets}])"

    # -- changes -----------------------------------------------------------------------

    def allocate(
        self,
        owner: str,
        *,
        name: str | None = None,
        aliases: Sequence[str] = (),
        address: AddressLike | Sequence[AddressLike] | None = None,
    ) -> list[Lease]:
        """Lease an address in each subnet to the container ``owner``.

        Args:
            owner: the container's id; it may hold one set of leases at a time.
            name: the container's name on the network (unique on it, compared without
                regard to case, as DNS does); None for none.
            aliases: more names it answers to; several containers may share an alias.
            address: the address to give it instead of the next free one, or one such
                address per family (a list). A family not named gets the next free one.

        Returns:
            The leases, one per subnet, IPv4 first.

        Raises:
            SpecError: ``owner``, ``name`` or an alias is not a plain name, or ``address``
                is malformed, outside the subnets or one of their reserved addresses.
            ContainerSetupError: ``owner`` already holds leases, or another container has
                ``name`` (``EEXIST``); the asked address is leased (``EADDRINUSE``); a
                subnet has no free address (``ENOSPC``); the state file is unreadable,
                corrupt or cannot be written. Nothing changes when it is raised.
        """
        _check_name("owner", owner)
        if name is not None:
            _check_name("name", name)
        if isinstance(aliases, str):
            raise SpecError("aliases", f"expected a list of names, not the string {aliases!r}")
        alias_list = tuple(aliases)
        for i, alias in enumerate(alias_list):
            _check_name(f"aliases[{i}]", alias)
        asked = self._asked(address)
        step = f"allocate an address on {', '.join(str(n) for n in self.subnets)}"

        with self._locked():
            state = self._read()
            for entry in state.entries:
                if entry.owner == owner:
                    held = ", ".join(str(lease.address) for lease in self._leases_of(entry))
                    raise ContainerSetupError(
                        step, errno.EEXIST, owner, f"it already holds {held}; release it first"
                    )
            for entry in state.entries:
                if name is not None and entry.name and entry.name.casefold() == name.casefold():
                    raise ContainerSetupError(
                        step,
                        errno.EEXIST,
                        owner,
                        f"the name {name!r} is taken by container {entry.owner}",
                    )
            chosen: list[int] = []
            for i, pool in enumerate(self._pools):
                used = {entry.addresses[i] for entry in state.entries}
                want = asked[i]
                if want is not None:
                    if want in used:
                        holder = next(e.owner for e in state.entries if e.addresses[i] == want)
                        raise ContainerSetupError(
                            step,
                            errno.EADDRINUSE,
                            owner,
                            f"{pool.address(want)} is leased to container {holder}",
                        )
                    chosen.append(want)
                    continue
                if len(used) >= pool.size:
                    raise ContainerSetupError(
                        step,
                        errno.ENOSPC,
                        owner,
                        f"{pool.network} has {pool.network.num_addresses} addresses, "
                        f"{pool.network.num_addresses - pool.size} reserved "
                        f"({pool.reserved()}), and all {pool.size} others are taken",
                    )
                chosen.append(pool.next_free(used, state.last[i]))
                # An asked address leaves the round robin where it was.
                state.last[i] = chosen[-1]
            texts = [str(p.interface(a)) for p, a in zip(self._pools, chosen, strict=True)]
            entry = _Entry.make(owner, tuple(chosen), texts, name, alias_list)
            state.entries.append(entry)
            self._write(state)
        return self._leases_of(entry)

    def release(self, owner: str) -> None:
        """Give back the leases of ``owner``; nothing happens if it holds none.

        Raises:
            ContainerSetupError: the state file is unreadable, corrupt or cannot be written.
        """
        if not self._path.parent.is_dir():
            return  # nothing was ever leased: create nothing
        with self._locked():
            state = self._read()
            kept = [entry for entry in state.entries if entry.owner != owner]
            if len(kept) != len(state.entries):
                state.entries = kept
                self._write(state)

    def prune(self, alive: Callable[[str], bool]) -> list[str]:
        """Drop the leases of the containers that are gone, e.g. after their owner crashed.

        It also removes the temporary file of a change that was killed half way.

        Args:
            alive: tells whether the container with this id still exists. It is called
                with the lock held, so it must not call this network's :class:`Ipam`.

        Returns:
            The owners whose leases were dropped, in the order they were leased.

        Raises:
            ContainerSetupError: the state file is unreadable, corrupt or cannot be written.
        """
        if not self._path.parent.is_dir():
            return []
        with self._locked():
            state = self._read()
            dead = [entry.owner for entry in state.entries if not alive(entry.owner)]
            if dead:
                gone = set(dead)
                state.entries = [entry for entry in state.entries if entry.owner not in gone]
                self._write(state)
            self._remove_temporaries()
        return dead

    def remove(self) -> None:
        """Remove the state file and its lock, once no container holds a lease.

        Call it when the network goes away; nothing of it is left in the directory
        (which is kept). Using the :class:`Ipam` again starts from an empty pool.

        Raises:
            ContainerSetupError: containers still hold leases (``EBUSY``, naming them), or
                the state file is unreadable or corrupt; nothing is removed then.
        """
        if not self._path.parent.is_dir():
            return
        with self._locked():
            state = self._read()
            if state.entries:
                owners = ", ".join(entry.owner for entry in state.entries)
                raise ContainerSetupError(
                    f"remove the address leases {str(self._path)!r}",
                    errno.EBUSY,
                    "",
                    f"held by {owners}; release or prune them first",
                )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._remove_temporaries()
            self._cache = None
            # Last, and with the lock held: a waiter finds its lock file gone and retries.
            os.unlink(self._lock_path)

    # -- queries -------------------------------------------------------------------------

    def leases(self) -> list[Lease]:
        """Every lease, in the order they were made (a container's IPv4 lease first).

        Raises:
            ContainerSetupError: the state file is unreadable or corrupt.
        """
        # No lock: the file is replaced whole, so this reads a state before or after a change.
        return [lease for entry in self._read().entries for lease in self._leases_of(entry)]

    def lookup(self, name_or_alias: str) -> list[Lease]:
        """The leases of the containers that answer to a name, without regard to case.

        Returns:
            The leases of the container with that name, then those of the containers with
            that alias; empty if none answers to it.

        Raises:
            ContainerSetupError: the state file is unreadable or corrupt.
        """
        key = name_or_alias.casefold()
        entries = self._read().entries
        named = [e for e in entries if e.name is not None and e.name.casefold() == key]
        aliased = [
            e for e in entries if e not in named and any(a.casefold() == key for a in e.aliases)
        ]
        return [lease for entry in named + aliased for lease in self._leases_of(entry)]

    # -- helpers -----------------------------------------------------------------------

    def _leases_of(self, entry: _Entry) -> list[Lease]:
        return [
            Lease(
                owner=entry.owner,
                address=pool.interface(address),
                gateway=pool.address(pool.gateway),
                name=entry.name,
                aliases=entry.aliases,
            )
            for pool, address in zip(self._pools, entry.addresses, strict=True)
        ]

    def _asked(self, address: AddressLike | Sequence[AddressLike] | None) -> list[int | None]:
        """The asked address per pool (None: the next free one), checked against the pools."""
        asked: list[int | None] = [None] * len(self._pools)
        if address is None:
            return asked
        items: list[AddressLike]
        if isinstance(address, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            items, several = [address], False
        else:
            items, several = list(address), True
        for i, item in enumerate(items):
            field = f"address[{i}]" if several else "address"
            try:
                ip = item if not isinstance(item, str) else ipaddress.ip_address(item)
            except ValueError:
                raise SpecError(field, f"{item!r} is not an IP address") from None
            if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise SpecError(field, f"expected an IP address, got {type(item).__name__}")
            at = next((k for k, p in enumerate(self._pools) if p.network.version == ip.version), -1)
            if at < 0:
                raise SpecError(field, f"{ip}: this network has no IPv{ip.version} subnet")
            pool = self._pools[at]
            if asked[at] is not None:
                raise SpecError(field, f"{ip}: more than one IPv{ip.version} address asked for")
            value = int(ip)
            if ip not in pool.network:
                raise SpecError(field, f"{ip} is outside the subnet {pool.network}")
            if value == pool.gateway:
                raise SpecError(field, f"{ip} is the gateway of {pool.network}")
            if not pool.first <= value <= pool.last:
                what = "network" if value < pool.first else "broadcast"
                raise SpecError(field, f"{ip} is the {what} address of {pool.network}")
            asked[at] = value
        return asked

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        step = f"lock the address leases {str(self._lock_path)!r}"
        try:
            _make_private_dirs(self._path.parent)
        except OSError as e:
            raise ContainerSetupError(step, e.errno or errno.EIO, "") from e
        while True:
            try:
                fd = os.open(
                    self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
                )
            except OSError as e:
                raise ContainerSetupError(step, e.errno or errno.EIO, "") from e
            try:
                # Blocks while another thread or process changes the leases; the kernel
                # drops the lock if that one dies.
                fcntl.flock(fd, fcntl.LOCK_EX)
                # remove() may have unlinked the file while we waited: a lock on it would
                # exclude nobody who opens the path afresh.
                held = os.fstat(fd)
                try:
                    now = os.stat(self._lock_path, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    yield
                    return
            finally:
                os.close(fd)

    def _read(self) -> _State:
        path = self._path
        step = f"read the address leases {str(path)!r}"
        try:
            # O_NONBLOCK: a FIFO planted in its place must not hang the caller.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return _State([], [None] * len(self._pools))
        except OSError as e:
            raise ContainerSetupError(step, e.errno or errno.EIO, "") from e
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            data = b""
            if regular:
                with os.fdopen(fd, "rb", closefd=False) as f:
                    data = f.read()
        except OSError as e:
            raise ContainerSetupError(step, e.errno or errno.EIO, "") from e
        finally:
            os.close(fd)
        try:
            if not regular:
                raise ValueError("it is not a regular file")
            cache = self._cache
            if cache is not None and cache[0] == data:
                return _State(list(cache[1].entries), list(cache[1].last))
            state = self._parse(json.loads(data))
            self._cache = (data, _State(list(state.entries), list(state.last)))
            return state
        except (ValueError, RecursionError) as e:
            bad_json = isinstance(e, json.JSONDecodeError | UnicodeDecodeError | RecursionError)
            detail = f"it is not JSON: {e}" if bad_json else str(e)
            raise ContainerSetupError(
                step,
                errno.EUCLEAN,
                "",
                f"{detail}; it was left as it is, since starting afresh could hand out "
                "addresses in use: fix it, or remove it once no container uses the network",
            ) from e

    def _parse(self, doc: Any) -> _State:
        """The state in ``doc``, checked as fully as hostile input must be."""
        if not isinstance(doc, dict) or doc.get("version") != _VERSION:
            raise ValueError(f"not a version {_VERSION} lease file")
        subnets = doc.get("subnets")
        leases = doc.get("leases")
        last = doc.get("last")
        if not isinstance(leases, list) or not isinstance(last, list):
            raise ValueError("'leases' and 'last' must be lists")
        ours = [str(n) for n in self.subnets]
        if subnets != ours:
            if leases:
                raise ValueError(f"its leases are for the subnets {subnets!r}, not {ours!r}")
            return _State([], [None] * len(self._pools))  # nothing leased: the network changed
        if len(last) != len(self._pools):
            raise ValueError("'last' must hold one address (or null) per subnet")
        state = _State([], [])
        for pool, item in zip(self._pools, last, strict=True):
            state.last.append(None if item is None else _parse_address(pool, item, "last"))
        owners: set[str] = set()
        names: set[str] = set()
        used: list[set[int]] = [set() for _ in self._pools]
        for n, raw in enumerate(leases):
            where = f"lease {n}"
            if not isinstance(raw, dict):
                raise ValueError(f"{where} is not an object")
            owner, name = raw.get("owner"), raw.get("name")
            aliases, addresses = raw.get("aliases", []), raw.get("addresses")
            owner = _check_name(f"{where}: owner", owner)
            if name is not None:
                _check_name(f"{where}: name", name)
            if not isinstance(aliases, list):
                raise ValueError(f"{where}: aliases must be a list")
            for alias in aliases:
                _check_name(f"{where}: alias", alias)
            if not isinstance(addresses, list) or len(addresses) != len(self._pools):
                raise ValueError(f"{where}: 'addresses' must hold one address per subnet")
            if owner in owners:
                raise ValueError(f"{where}: container {owner} holds two leases")
            owners.add(owner)
            if name is not None:
                if name.casefold() in names:
                    raise ValueError(f"{where}: the name {name!r} is leased twice")
                names.add(name.casefold())
            values: list[int] = []
            for i, (pool, text) in enumerate(zip(self._pools, addresses, strict=True)):
                value = _parse_interface(pool, text, where)
                if value in used[i]:
                    raise ValueError(f"{where}: {text} is leased twice")
                used[i].add(value)
                values.append(value)
            texts = [str(p.interface(v)) for p, v in zip(self._pools, values, strict=True)]
            state.entries.append(_Entry.make(owner, tuple(values), texts, name, tuple(aliases)))
        return state

    @property
    def _temp_prefix(self) -> str:
        return f".{self._path.name}."

    def _remove_temporaries(self) -> None:
        """Remove what a writer killed between making its file and renaming it left."""
        # Only with the lock held: then no other writer has a temporary file in flight.
        prefix = self._temp_prefix
        with contextlib.suppress(FileNotFoundError), os.scandir(self._path.parent) as items:
            for item in items:
                if item.name.startswith(prefix) and item.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(item.path)

    def _write(self, state: _State) -> None:
        head = {
            "version": _VERSION,
            "subnets": [str(n) for n in self.subnets],
            "last": [
                None if value is None else str(pool.address(value))
                for pool, value in zip(self._pools, state.last, strict=True)
            ],
        }
        # One lease a line, each encoded once (see _Entry.line): readable, and cheap to
        # write however many leases there are.
        leases = ",\n".join(entry.line for entry in state.entries)
        text = json.dumps(head)[:-1] + (
            f', "leases": [\n{leases}\n]}}\n' if leases else ', "leases": []}\n'
        )
        data = text.encode()
        path = self._path
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=self._temp_prefix)
        except OSError as e:
            raise ContainerSetupError(
                f"write the address leases {str(path)!r}", e.errno or errno.EIO, "", ""
            ) from e
        try:
            # No fsync: the leases matter only while containers run, and those do not
            # outlive the machine; a crashed process leaves the page cache as it was.
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            self._cache = (data, state)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ContainerSetupError(
                f"write the address leases {str(path)!r}", e.errno or errno.EIO, "", ""
            ) from e


# -- checks ------------------------------------------------------------------------------


def _check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > _MAX_NAME:
        raise SpecError(
            field,
            f"{value!r} is not a valid name: letters, digits, '_', '.' and '-', "
            f"starting with a letter or digit, at most {_MAX_NAME} characters",
        )
    return value


def _parse_address(pool: Subnet, text: object, where: str) -> int:
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text!r} is not an address")
    ip = ipaddress.ip_address(text)
    value = int(ip)
    if ip.version != pool.network.version or not pool.first <= value <= pool.last:
        raise ValueError(f"{where}: {text} is not an address for containers in {pool.network}")
    return value


def _parse_interface(pool: Subnet, text: object, where: str) -> int:
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text!r} is not an address")
    address, slash, prefix = text.partition("/")
    if not slash or prefix != str(pool.network.prefixlen):
        raise ValueError(f"{where}: {text} does not have the prefix of {pool.network}")
    return _parse_address(pool, address, where)


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each mode 0700."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # whatever the umask
