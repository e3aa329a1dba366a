"""Address leases (containerlib.network.ipam): real state files, real processes."""

from __future__ import annotations

import errno
import ipaddress
import json
import multiprocessing
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.network.ipam import Ipam, Lease
from containerlib.network.subnets import parse_subnets

FORK = multiprocessing.get_context("fork")


def addresses(leases: list[Lease]) -> list[str]:
    return [str(lease.address.ip) for lease in leases]


def file_addresses(path: Path) -> dict[str, list[str]]:
    """What the state file says: owner -> its addresses (read as JSON, not through Ipam)."""
    doc = json.loads(path.read_bytes())
    return {lease["owner"]: lease["addresses"] for lease in doc["leases"]}


def v4_usable(subnet: str) -> list[str]:
    net = ipaddress.IPv4Network(subnet)
    hosts = [str(h) for h in net.hosts()]
    return hosts[1:]  # hosts() leaves out network and broadcast; the first is the gateway


# -- many containers -----------------------------------------------------------------------


def test_fifty_containers_get_distinct_addresses_none_reserved(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.88.0.0/24"])
    got = [ipam.allocate(f"c{i}")[0] for i in range(50)]
    ips = [lease.address.ip for lease in got]
    assert len(set(ips)) == 50
    net = ipaddress.IPv4Network("10.88.0.0/24")
    for lease in got:
        assert lease.address.network == net
        assert lease.address.ip not in (net.network_address, net.broadcast_address)
        assert lease.address.ip != ipaddress.IPv4Address("10.88.0.1")
        assert lease.gateway == ipaddress.IPv4Address("10.88.0.1")
    assert ipam.gateways == (ipaddress.IPv4Address("10.88.0.1"),)
    assert Ipam(tmp_path / "net.json", ["10.88.0.0/24"]).leases() == got


def _allocate_many(state: str, worker: int, count: int) -> list[str]:
    ipam = Ipam(state, ["10.77.0.0/16"])
    out = []
    for j in range(count):
        out += addresses(ipam.allocate(f"w{worker}-{j}", name=f"n{worker}-{j}"))
    return out


def test_processes_allocating_at_once_never_share_an_address(tmp_path: Path) -> None:
    state = str(tmp_path / "shared" / "net.json")
    with FORK.Pool(8) as pool:
        results = pool.starmap(_allocate_many, [(state, w, 25) for w in range(8)])
        pool.close()
        pool.join()
    everything = [ip for chunk in results for ip in chunk]
    assert len(everything) == 200
    assert len(set(everything)) == 200
    on_file = file_addresses(Path(state))
    assert len(on_file) == 200
    assert {a[0].split("/")[0] for a in on_file.values()} == set(everything)
    assert set(on_file) == {f"w{w}-{j}" for w in range(8) for j in range(25)}
    assert not [p for p in Path(state).parent.iterdir() if p.name.startswith(".")]  # no temps


def test_threads_allocating_at_once_never_share_an_address(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.66.0.0/24"])
    found: list[list[str]] = []

    def work(t: int) -> None:
        found.append([a for j in range(20) for a in addresses(ipam.allocate(f"t{t}-{j}"))])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [a for chunk in found for a in chunk]
    assert len(flat) == len(set(flat)) == 80
    assert len(file_addresses(tmp_path / "net.json")) == 80


def test_a_thousand_leases_one_by_one(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.55.0.0/22"])
    for i in range(1000):
        ipam.allocate(f"c{i}", name=f"name{i}")
    again = Ipam(tmp_path / "net.json", ["10.55.0.0/22"]).leases()
    assert len({lease.address for lease in again}) == 1000
    assert [lease.owner for lease in again] == [f"c{i}" for i in range(1000)]


# -- exhaustion and round robin ------------------------------------------------------------


def test_exhausted_pool_says_how_big_it_is_and_changes_nothing(tmp_path: Path) -> None:
    subnet = "10.9.0.0/29"
    usable = v4_usable(subnet)
    ipam = Ipam(tmp_path / "net.json", [subnet])
    assert ipam.capacity == (len(usable),)
    for i in range(len(usable)):
        ipam.allocate(f"c{i}")
    before = (tmp_path / "net.json").read_bytes()
    with pytest.raises(ContainerSetupError) as info:
        ipam.allocate("one-too-many", name="late")
    assert info.value.errno == errno.ENOSPC
    text = str(info.value)
    total = ipaddress.IPv4Network(subnet).num_addresses
    assert f"{total} addresses" in text
    assert f"all {len(usable)} others are taken" in text
    assert "one-too-many" in text
    assert subnet in text
    assert (tmp_path / "net.json").read_bytes() == before

    ipam.release("c2")
    (lease,) = ipam.allocate("one-too-many")
    assert str(lease.address.ip) == usable[2]  # the only free one


def test_round_robin_does_not_reuse_a_released_address_at_once(tmp_path: Path) -> None:
    usable = v4_usable("10.9.0.0/29")
    ipam = Ipam(tmp_path / "net.json", ["10.9.0.0/29"])
    assert addresses(ipam.allocate("a")) == [usable[0]]
    assert addresses(ipam.allocate("b")) == [usable[1]]
    ipam.release("a")
    assert addresses(ipam.allocate("c")) == [usable[2]]
    assert addresses(ipam.allocate("d")) == [usable[3]]
    assert addresses(ipam.allocate("e")) == [usable[4]]
    # wraps round to the first free one
    assert addresses(ipam.allocate("f")) == [usable[0]]


def test_thirty_has_room_for_one(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["192.168.7.0/30"])
    assert addresses(ipam.allocate("a")) == ["192.168.7.2"]
    with pytest.raises(ContainerSetupError) as info:
        ipam.allocate("b")
    assert info.value.errno == errno.ENOSPC


# -- hypothesis: a model -------------------------------------------------------------------


ops = st.lists(
    st.tuples(st.sampled_from(["allocate", "release"]), st.integers(min_value=0, max_value=12)),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(prefix=st.integers(min_value=26, max_value=30), third=st.integers(0, 255), steps=ops)
def test_random_allocations_match_a_model(
    prefix: int, third: int, steps: list[tuple[str, int]]
) -> None:
    net = next(ipaddress.IPv4Network(f"10.20.{third}.0/24").subnets(new_prefix=prefix))
    usable = [str(h) for h in net.hosts()][1:]
    model: dict[str, str] = {}
    last: int | None = None
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "net.json"
        ipam = Ipam(state, [str(net)])
        for op, k in steps:
            owner = f"c{k}"
            if op == "release":
                ipam.release(owner)
                model.pop(owner, None)
            elif owner in model:
                with pytest.raises(ContainerSetupError) as info:
                    ipam.allocate(owner)
                assert info.value.errno == errno.EEXIST
            elif len(model) == len(usable):
                with pytest.raises(ContainerSetupError) as info:
                    ipam.allocate(owner)
                assert info.value.errno == errno.ENOSPC
            else:
                taken = set(model.values())
                start = 0 if last is None else (last + 1) % len(usable)
                expect = next(
                    usable[(start + n) % len(usable)]
                    for n in range(len(usable))
                    if usable[(start + n) % len(usable)] not in taken
                )
                (lease,) = ipam.allocate(owner)
                assert str(lease.address.ip) == expect
                model[owner] = expect
                last = usable.index(expect)
            # a fresh reader of the file sees the model
            seen = Ipam(state, [str(net)]).leases()
            assert {lease.owner: str(lease.address.ip) for lease in seen} == model
            ips = [lease.address.ip for lease in seen]
            assert len(set(ips)) == len(ips)
            for ip in ips:
                assert ip in net
                assert ip not in (net.network_address, net.broadcast_address, net[1])


# -- dual stack, asked addresses, names ----------------------------------------------------


def test_dual_stack_gives_one_lease_per_family(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["fd00:88::/120", "10.88.0.0/24"])
    assert [n.version for n in ipam.subnets] == [4, 6]
    v4, v6 = ipam.allocate("c1", name="web")
    assert (v4.address, v4.gateway) == (
        ipaddress.IPv4Interface("10.88.0.2/24"),
        ipaddress.IPv4Address("10.88.0.1"),
    )
    assert (v6.address, v6.gateway) == (
        ipaddress.IPv6Interface("fd00:88::2/120"),
        ipaddress.IPv6Address("fd00:88::1"),
    )
    assert ipam.capacity == (253, 254)  # IPv6 has no broadcast: fd00:88::ff is usable
    assert file_addresses(tmp_path / "net.json") == {"c1": ["10.88.0.2/24", "fd00:88::2/120"]}
    _, last = ipam.allocate("c2", address="fd00:88::ff")
    assert str(last.address) == "fd00:88::ff/120"
    assert ipam.lookup("web") == [v4, v6]


def test_asked_address(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.3.0.0/24", "fd00:3::/64"])
    got = ipam.allocate("a", address=["10.3.0.100", "fd00:3::100"])
    assert addresses(got) == ["10.3.0.100", "fd00:3::100"]
    assert addresses(ipam.allocate("b", address=ipaddress.IPv4Address("10.3.0.7"))) == [
        "10.3.0.7",
        "fd00:3::2",  # the other family: the next free one
    ]
    assert addresses(ipam.allocate("c")) == ["10.3.0.2", "fd00:3::3"]  # round robin unmoved
    before = (tmp_path / "net.json").read_bytes()
    with pytest.raises(ContainerSetupError) as info:
        ipam.allocate("d", address="10.3.0.100")
    assert info.value.errno == errno.EADDRINUSE
    assert "10.3.0.100 is leased to container a" in str(info.value)
    for bad, why in [
        ("10.4.0.5", "outside the subnet 10.3.0.0/24"),
        ("10.3.0.0", "network address"),
        ("10.3.0.1", "gateway"),
        ("10.3.0.255", "broadcast address"),
        ("fd00:3::1", "gateway"),
        ("10.3.0.300", "not an IP address"),
        ("10.3.0.5/24", "not an IP address"),
    ]:
        with pytest.raises(SpecError, match=why) as spec:
            ipam.allocate("d", address=bad)
        assert spec.value.field == "address"
    with pytest.raises(SpecError, match="more than one IPv4") as spec:
        ipam.allocate("d", address=["10.3.0.5", "10.3.0.6"])
    assert spec.value.field == "address[1]"
    only_v4 = Ipam(tmp_path / "v4.json", ["10.3.0.0/24"])
    with pytest.raises(SpecError, match="no IPv6 subnet"):
        only_v4.allocate("d", address="fd00:3::5")
    assert (tmp_path / "net.json").read_bytes() == before


def test_owner_and_name_are_unique_aliases_are_shared(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.5.0.0/24"])
    (web,) = ipam.allocate("c1", name="web", aliases=["frontend", "www"])
    with pytest.raises(ContainerSetupError) as info:
        ipam.allocate("c1")
    assert info.value.errno == errno.EEXIST
    assert "10.5.0.2/24" in str(info.value)
    with pytest.raises(ContainerSetupError) as info:
        ipam.allocate("c2", name="WEB")
    assert info.value.errno == errno.EEXIST
    assert "the name 'WEB' is taken by container c1" in str(info.value)
    (other,) = ipam.allocate("c2", name="api", aliases=["frontend"])
    assert ipam.lookup("Web") == [web]
    assert ipam.lookup("frontend") == [web, other]
    assert ipam.lookup("api") == [other]
    assert ipam.lookup("nobody") == []
    assert web.name == "web"
    assert web.aliases == ("frontend", "www")
    ipam.release("c1")
    assert ipam.allocate("c3", name="web")[0].name == "web"  # free again once released


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"owner": ""}, "owner"),
        ({"owner": "a b"}, "owner"),
        ({"owner": "c", "name": "x\n10.0.0.1 evil"}, "name"),
        ({"owner": "c", "name": "-x"}, "name"),
        ({"owner": "c", "aliases": ["ok", "not ok"]}, "aliases[1]"),
        ({"owner": "c", "aliases": "www"}, "aliases"),
    ],
)
def test_bad_names_are_spec_errors(tmp_path: Path, kwargs: dict[str, object], field: str) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.5.0.0/24"])
    with pytest.raises(SpecError) as info:
        ipam.allocate(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert not (tmp_path / "net.json").exists()


# -- release and prune ---------------------------------------------------------------------


def test_release_is_idempotent(tmp_path: Path) -> None:
    Ipam(tmp_path / "never" / "net.json", ["10.6.0.0/24"]).release("c")
    assert Ipam(tmp_path / "never" / "net.json", ["10.6.0.0/24"]).prune(lambda o: False) == []
    assert list(tmp_path.iterdir()) == []  # nothing leased, nothing made
    ipam = Ipam(tmp_path / "net.json", ["10.6.0.0/24"])
    ipam.release("never")  # nothing leased, no file: fine
    ipam.allocate("a")
    ipam.allocate("b")
    ipam.release("a")
    after = (tmp_path / "net.json").read_bytes()
    ipam.release("a")
    ipam.release("zzz")
    assert (tmp_path / "net.json").read_bytes() == after
    assert [lease.owner for lease in ipam.leases()] == ["b"]


def _allocate_and_crash(state: str) -> None:
    Ipam(state, ["10.7.0.0/24"]).allocate("crashed", name="ghost")
    os._exit(3)  # no release: as a process killed between allocate and its cleanup


def _die_holding_the_lock(state: str) -> None:
    def alive(owner: str) -> bool:
        os.kill(os.getpid(), signal.SIGKILL)
        return True

    Ipam(state, ["10.7.0.0/24"]).prune(alive)


def _allocate_one(state: str) -> None:
    Ipam(state, ["10.7.0.0/24"]).allocate("after-crash")


def test_prune_sweeps_up_after_a_crash(tmp_path: Path) -> None:
    state = str(tmp_path / "net.json")
    ipam = Ipam(state, ["10.7.0.0/24"])
    ipam.allocate("alive-1")
    child = FORK.Process(target=_allocate_and_crash, args=(state,))
    child.start()
    child.join()
    assert child.exitcode == 3
    ipam.allocate("alive-2")
    assert [lease.owner for lease in ipam.leases()] == ["alive-1", "crashed", "alive-2"]

    # A process killed while it holds the lock does not leave it held.
    killer = FORK.Process(target=_die_holding_the_lock, args=(state,))
    killer.start()
    killer.join()
    assert killer.exitcode == -signal.SIGKILL
    after = FORK.Process(target=_allocate_one, args=(state,))
    after.start()
    after.join(timeout=120)  # a guard against a hang, not a timing assertion
    if after.is_alive():
        after.kill()
        after.join()
        pytest.fail("the lock of a killed process was still held")
    assert after.exitcode == 0

    # A writer killed between writing its temporary file and renaming it leaves this:
    leftover = tmp_path / ".net.json.k1ll3d"
    leftover.write_text("{}")
    other = tmp_path / ".other.json.k1ll3d"
    other.write_text("{}")
    dropped = ipam.prune(lambda owner: owner != "crashed")
    assert not leftover.exists()
    assert other.exists()  # another network's file is not this one's business
    assert dropped == ["crashed"]
    assert [lease.owner for lease in ipam.leases()] == ["alive-1", "alive-2", "after-crash"]
    assert ipam.lookup("ghost") == []
    before = (tmp_path / "net.json").read_bytes()
    assert ipam.prune(lambda owner: True) == []
    assert (tmp_path / "net.json").read_bytes() == before


# -- the state file ------------------------------------------------------------------------


def test_missing_file_is_an_empty_pool_and_directories_are_private(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "net.json"
    ipam = Ipam(state, ["10.8.0.0/24"])
    assert ipam.leases() == []
    assert ipam.lookup("x") == []
    assert not (tmp_path / "a").exists()  # reading creates nothing
    old = os.umask(0o022)
    try:
        ipam.allocate("c")
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_corrupt_file_is_an_error_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "net.json"
    state.write_bytes(b'{"version": 1, "subnets": ["10.8.0.0/24"], "last": [nu')
    ipam = Ipam(state, ["10.8.0.0/24"])
    for call in (lambda: ipam.allocate("c"), ipam.leases, lambda: ipam.release("c")):
        with pytest.raises(ContainerSetupError) as info:
            call()
        assert str(state) in str(info.value)
        assert "not JSON" in str(info.value)
    assert state.read_bytes().endswith(b"[nu")  # left as it was


def test_state_path_that_is_not_a_file(tmp_path: Path) -> None:
    directory = tmp_path / "dir.json"
    directory.mkdir()
    with pytest.raises(ContainerSetupError, match="not a regular file"):
        Ipam(directory, ["10.8.0.0/24"]).leases()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ContainerSetupError, match="not a regular file"):  # and does not hang
        Ipam(fifo, ["10.8.0.0/24"]).allocate("c")
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ContainerSetupError) as info:
        Ipam(link, ["10.8.0.0/24"]).allocate("c")
    assert info.value.errno == errno.ELOOP
    assert str(link) in str(info.value)
    assert not (tmp_path / "elsewhere.json").exists()


def _doc(leases: object, **more: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "version": 1,
        "subnets": ["10.8.0.0/24"],
        "last": [None],
        "leases": leases,
    }
    doc.update(more)
    return doc


def _lease(owner: object = "c1", address: object = "10.8.0.2/24", **more: object) -> object:
    lease: dict[str, object] = {"owner": owner, "addresses": [address], "name": None}
    lease.update(more)
    return lease


HOSTILE = {
    "not an object": [],
    "no version": {"subnets": ["10.8.0.0/24"], "last": [None], "leases": []},
    "leases not a list": _doc({"c1": "10.8.0.2/24"}),
    "outside the subnet": _doc([_lease(address="10.9.0.2/24")]),
    "wrong prefix": _doc([_lease(address="10.8.0.2/16")]),
    "the gateway": _doc([_lease(address="10.8.0.1/24")]),
    "the broadcast": _doc([_lease(address="10.8.0.255/24")]),
    "not an address": _doc([_lease(address="10.8.0.x/24")]),
    "address a number": _doc([_lease(address=168296450)]),
    "owner a number": _doc([_lease(owner=7)]),
    "no owner": _doc([{"addresses": ["10.8.0.2/24"]}]),
    "name with a newline": _doc([_lease(name="a\n10.8.0.9 bank")]),
    "aliases a string": _doc([_lease(aliases="www")]),
    "an address twice": _doc([_lease("c1"), _lease("c2")]),
    "an owner twice": _doc([_lease("c1"), _lease("c1", "10.8.0.3/24")]),
    "a name twice": _doc([_lease("c1", name="x"), _lease("c2", "10.8.0.3/24", name="X")]),
    "last outside": _doc([], last=["10.9.9.9"]),
    "last wrong length": _doc([], last=[None, None]),
    "other subnets": _doc([_lease()], subnets=["10.8.0.0/16"]),
    "nested deeply": json.loads("[" * 50 + "]" * 50),
}


@pytest.mark.parametrize("content", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_file_is_rejected_not_trusted(tmp_path: Path, content: object) -> None:
    state = tmp_path / "net.json"
    state.write_text(json.dumps(content))
    before = state.read_bytes()
    ipam = Ipam(state, ["10.8.0.0/24"])
    with pytest.raises(ContainerSetupError) as info:
        ipam.allocate("new")
    assert info.value.errno == errno.EUCLEAN
    assert str(state) in str(info.value)
    with pytest.raises(ContainerSetupError):
        ipam.leases()
    assert state.read_bytes() == before


def test_very_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "net.json"
    state.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ContainerSetupError, match="not JSON"):
        Ipam(state, ["10.8.0.0/24"]).leases()


def test_a_file_for_other_subnets_without_leases_is_taken_over(tmp_path: Path) -> None:
    state = tmp_path / "net.json"
    state.write_text(json.dumps(_doc([], subnets=["10.8.0.0/16"], last=["10.8.7.7"])))
    ipam = Ipam(state, ["10.8.0.0/24"])
    assert addresses(ipam.allocate("c")) == ["10.8.0.2"]


def test_a_file_written_by_hand_is_read(tmp_path: Path) -> None:
    state = tmp_path / "net.json"
    state.write_text(json.dumps(_doc([_lease(name="db", aliases=["sql"])], last=["10.8.0.2"])))
    ipam = Ipam(state, ["10.8.0.0/24"])
    (lease,) = ipam.lookup("sql")
    assert (lease.owner, str(lease.address), lease.name) == ("c1", "10.8.0.2/24", "db")
    assert addresses(ipam.allocate("c2")) == ["10.8.0.3"]


# -- subnets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subnets", "field", "why"),
    [
        (["10.0.0.1/24"], "subnets[0]", "host bits set; did you mean 10.0.0.0/24"),
        (["10.0.0.0/32"], "subnets[0]", "single address"),
        (["10.0.0.0/31"], "subnets[0]", "too small"),
        (["10.0.0.0"], "subnets[0]", "no prefix length"),
        (["10.0.0.0/33"], "subnets[0]", "not a subnet"),
        (["banana/8"], "subnets[0]", "not a subnet"),
        (["10.0.0.0/24", "fd00::/121"], "subnets[1]", "too small"),
        (["10.0.0.0/24", "fd00::/128"], "subnets[1]", "single address"),
        (["127.0.0.0/8"], "subnets[0]", "loopback"),
        (["0.0.0.0/0"], "subnets[0]", "this network"),
        (["169.254.0.0/16"], "subnets[0]", "link-local"),
        (["224.0.0.0/24"], "subnets[0]", "multicast"),
        (["240.0.0.0/24"], "subnets[0]", "reserved"),
        (["10.0.0.0/24", "::ffff:10.0.0.0/120"], "subnets[1]", "IPv4-mapped"),
        (["10.0.0.0/24", "::/64"], "subnets[1]", "unspecified"),
        (["10.0.0.0/24", "fe80::/64"], "subnets[1]", "link-local"),
        (["10.0.0.0/24", "ff02::/64"], "subnets[1]", "multicast"),
        (["10.0.0.0/24", "10.1.0.0/24"], "subnets[1]", "second IPv4"),
        (["10.0.0.0/24", "fd00::/64", "fd01::/64"], "subnets[2]", "second IPv6"),
        (["fd00::/64"], "subnets", "needs an IPv4 subnet"),
        ([], "subnets", "needs an IPv4 subnet"),
        ("10.0.0.0/24", "subnets", "not the string"),
        ([24], "subnets[0]", "expected a subnet"),
    ],
)
def test_bad_subnets(tmp_path: Path, subnets: list[str], field: str, why: str) -> None:
    with pytest.raises(SpecError, match=why) as info:
        Ipam(tmp_path / "net.json", subnets)
    assert info.value.field == field
    assert list(tmp_path.iterdir()) == []


def test_smallest_subnets_are_accepted(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.0.0.0/30", "fd00::/120"])
    assert ipam.capacity == (1, 254)
    assert addresses(ipam.allocate("c")) == ["10.0.0.2", "fd00::2"]


def test_subnet_reserved_addresses() -> None:
    v4, v6 = parse_subnets(["10.1.2.0/24", "fd00:1::/120"])
    assert (str(v4.address(v4.gateway)), str(v4.address(v4.first)), str(v4.address(v4.last))) == (
        "10.1.2.1",
        "10.1.2.2",
        "10.1.2.254",
    )
    assert str(v6.address(v6.last)) == "fd00:1::ff"
    assert (v4.size, v6.size) == (253, 254)
    assert "broadcast" in v4.reserved()
    assert "broadcast" not in v6.reserved()


# -- removing a network's state -------------------------------------------------------------


def test_remove_leaves_nothing_once_no_lease_is_held(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path / "net.json", ["10.12.0.0/24"])
    ipam.allocate("a")
    ipam.allocate("b")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ContainerSetupError) as info:
        ipam.remove()
    assert info.value.errno == errno.EBUSY
    assert "held by a, b" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    ipam.release("a")
    ipam.release("b")
    ipam.remove()
    assert list(tmp_path.iterdir()) == []
    ipam.remove()  # again: nothing to do
    assert addresses(ipam.allocate("c")) == ["10.12.0.2"]  # afresh


def _churn(state: str, worker: int, rounds: int) -> list[str]:
    """Allocate, check the lease is on file, release, try to remove the state: the lock
    must hold across remove() unlinking the lock file under a waiter."""
    ipam = Ipam(state, ["10.13.0.0/24"])
    problems = []
    for r in range(rounds):
        owner = f"w{worker}-{r}"
        (lease,) = ipam.allocate(owner)
        mine = [x for x in ipam.leases() if x.address == lease.address]
        if [x.owner for x in mine] != [owner]:
            problems.append(f"{owner}: {lease.address} on file as {mine}")
        ipam.release(owner)
        try:
            ipam.remove()
        except ContainerSetupError as e:
            if e.errno != errno.EBUSY:
                raise
    return problems


def test_remove_while_others_allocate_loses_no_lease(tmp_path: Path) -> None:
    state = str(tmp_path / "net.json")
    with FORK.Pool(6) as pool:
        results = pool.starmap(_churn, [(state, w, 30) for w in range(6)])
        pool.close()
        pool.join()
    assert [p for chunk in results for p in chunk] == []
    assert Ipam(state, ["10.13.0.0/24"]).leases() == []
