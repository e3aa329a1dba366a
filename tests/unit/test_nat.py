"""NAT rules for bridge networks (containerlib.network.nat) without the kernel: the nft
script a bridge gets, how the table is read back, input checks, errors. The rules on the
real kernel are tested in tests/integration/test_nat.py."""

from __future__ import annotations

import errno
import ipaddress
import json
from collections.abc import Iterator

import pytest

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.network import nat


def nets(*subnets: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(s) for s in subnets]


# What `nft -j list table inet containerlib` printed (nft 1.0.6) for clib0 with IPv4 and
# IPv6 subnets, with both forwarding settings turned on by containerlib.
LISTING = {
    "nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "containerlib", "handle": 1}},
        {
            "set": {
                "family": "inet",
                "name": "forwarding",
                "table": "containerlib",
                "type": "nf_proto",
                "elem": ["ipv4", "ipv6"],
            }
        },
        {
            "set": {
                "family": "inet",
                "name": "bridges",
                "table": "containerlib",
                "type": "ifname",
                "elem": [
                    {"elem": {"val": "clib0", "comment": "10.217.0.0/16 fd17::/64; rules v1"}},
                    "clibold",
                ],
            }
        },
        {"chain": {"family": "inet", "table": "containerlib", "name": "post-clib0"}},
        {"chain": {"family": "inet", "table": "containerlib", "name": "fwd-clib0"}},
        {"chain": {"family": "inet", "table": "containerlib", "name": "post-clibgone"}},
        {"chain": {"family": "inet", "table": "containerlib", "name": "someone-elses"}},
        {"rule": {"family": "inet", "table": "containerlib", "chain": "post-clib0"}},
    ]
}


def test_a_bridge_gets_masquerading_and_forwarding_chains_in_one_script() -> None:
    script = nat._add_script("clib0", nets("10.217.0.0/16"))
    assert script.splitlines() == [
        'add table inet containerlib { comment "containerlib: NAT for its bridge networks"; }',
        "add set inet containerlib forwarding { type nf_proto; "
        'comment "IP forwarding containerlib turned on, to turn off with this table"; }',
        "add set inet containerlib bridges { type ifname; "
        'comment "bridges with chains here, and what their rules were made for"; }',
        'add element inet containerlib bridges { "clib0" comment "10.217.0.0/16; rules v1" }',
        "add chain inet containerlib post-clib0 { type nat hook postrouting priority srcnat; "
        "policy accept; "
        'comment "masquerade what leaves clib0\'s subnets through another interface"; }',
        "flush chain inet containerlib post-clib0",
        'add rule inet containerlib post-clib0 ip saddr { 10.217.0.0/16 } oifname != "clib0" '
        "masquerade",
        "add chain inet containerlib fwd-clib0 { type filter hook forward priority filter; "
        'policy accept; comment "forward from clib0, and to it for connections made from it"; }',
        "flush chain inet containerlib fwd-clib0",
        'add rule inet containerlib fwd-clib0 iifname "clib0" oifname != "clib0" '
        'oifname "clib*" drop comment "networks are isolated from each other"',
        'add rule inet containerlib fwd-clib0 iifname "clib0" accept',
        'add rule inet containerlib fwd-clib0 oifname "clib0" ct state established,related accept',
        'add rule inet containerlib fwd-clib0 oifname "clib0" drop',
    ]


def test_ipv6_subnets_get_their_own_masquerade_rule() -> None:
    script = nat._add_script("clibn1", nets("10.1.0.0/24", "fd17::/64", "10.2.0.0/24"))
    masquerade = [line for line in script.splitlines() if line.endswith("masquerade")]
    assert masquerade == [
        "add rule inet containerlib post-clibn1 ip saddr { 10.1.0.0/24, 10.2.0.0/24 } "
        'oifname != "clibn1" masquerade',
        'add rule inet containerlib post-clibn1 ip6 saddr { fd17::/64 } oifname != "clibn1" '
        "masquerade",
    ]


def test_forwarding_turned_on_is_noted_and_a_noted_bridge_is_replaced() -> None:
    script = nat._add_script("clib0", nets("fd17::/64"), turned_on=[6, 4], noted=True)
    lines = script.splitlines()
    assert "add element inet containerlib forwarding { ipv4, ipv6 }" in lines
    delete = 'delete element inet containerlib bridges { "clib0" }'
    add = 'add element inet containerlib bridges { "clib0" comment "fd17::/64; rules v1" }'
    assert lines.index(delete) < lines.index(add)
    first = nat._add_script("clib0", nets("fd17::/64"))
    assert "forwarding {" not in first.replace("add set inet containerlib forwarding {", "")
    assert delete not in first.splitlines()


def test_many_subnets_are_noted_by_their_digest() -> None:
    many = nets(*(f"10.{i}.0.0/16" for i in range(40)))
    note = nat._fingerprint(many)
    assert note.startswith("sha256:")
    assert note.endswith("; rules v1")
    assert len(note) < 64
    assert note != nat._fingerprint(many[:-1])
    assert nat._fingerprint(nets("10.0.0.0/16")) == "10.0.0.0/16; rules v1"


def test_the_table_is_read_back_from_nfts_json() -> None:
    table = nat._parse_table(json.dumps(LISTING))
    assert table.chains == ("post-clib0", "fwd-clib0", "post-clibgone", "someone-elses")
    assert table.turned_on == {4, 6}
    assert table.noted == {"clib0": "10.217.0.0/16 fd17::/64; rules v1", "clibold": ""}
    # Bridges with chains or a note; another chain names no bridge.
    assert table.bridges == ["clib0", "clibgone", "clibold"]
    assert table.is_current("clib0", nets("10.217.0.0/16", "fd17::/64"))
    assert not table.is_current("clib0", nets("10.217.0.0/16"))  # other subnets
    assert not table.is_current("clibold", nets("10.217.0.0/16"))  # no chains
    assert nat._has_table(json.dumps(LISTING))
    assert not nat._has_table('{"nftables": [{"metainfo": {}}]}')


def test_removing_deletes_the_chains_and_the_note_of_those_bridges_only() -> None:
    table = nat._parse_table(json.dumps(LISTING))
    assert nat._remove_script(table, ["clib0", "clibold"]).splitlines() == [
        "delete chain inet containerlib post-clib0",
        "delete chain inet containerlib fwd-clib0",
        'delete element inet containerlib bridges { "clib0" }',
        'delete element inet containerlib bridges { "clibold" }',
    ]
    assert nat._remove_script(table, ["clib9"]) == ""


@pytest.mark.parametrize(
    ("bridge", "complaint"),
    [
        ("eth0", "must start with 'clib'"),
        ("clib0;flush", "must start with 'clib'"),
        ('clib"0', "must start with 'clib'"),
        ("clib*", "must start with 'clib'"),
        ("clib0 x", "may not contain"),
        ("clib0123456789ab", "has 16 bytes"),
        ("", "has 0 bytes"),
    ],
)
def test_a_bridge_that_is_not_containerlibs_is_refused(bridge: str, complaint: str) -> None:
    with pytest.raises(SpecError, match="bridge") as e:
        nat.add(bridge, ["10.217.0.0/16"])
    assert complaint in str(e.value)
    with pytest.raises(SpecError):
        nat.remove(bridge)


@pytest.mark.parametrize(
    ("subnets", "complaint"),
    [
        ("10.217.0.0/16", "expected a list of subnets"),
        ([], "at least one subnet"),
        (["10.217.0.1/16"], "has host bits set"),
        (["10.217.0.0/33"], "is not a subnet"),
        (["clib0"], "is not a subnet"),
        ([167837696], "not a string"),
    ],
)
def test_bad_subnets_are_refused(subnets: list[str], complaint: str) -> None:
    with pytest.raises(SpecError, match="subnets") as e:
        nat.add("clib0", subnets)
    assert complaint in str(e.value)


def test_nfts_error_is_quoted_with_the_step() -> None:
    text = (
        "Error: Could not process rule: Operation not permitted\n"
        "add table inet containerlib\n"
        "^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    )
    error = nat._nft_error("add NAT rules for bridge 'clib0'", text)
    assert error.errno == errno.EPERM
    assert str(error) == (
        "add NAT rules for bridge 'clib0': Operation not permitted (nft: Error: Could not "
        "process rule: Operation not permitted; add table inet containerlib; changing "
        "nftables needs CAP_NET_ADMIN over the network namespace: run as root)"
    )
    odd = nat._nft_error("list nftables tables", "Error: syntax error, unexpected junk\n")
    assert odd.errno == 0
    assert str(odd) == "list nftables tables: failed (nft: Error: syntax error, unexpected junk)"


@pytest.fixture
def no_libnftables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a host without Debian's libnftables1."""
    monkeypatch.setattr(nat, "_LIBRARY", "libnftables-not-installed.so.1")
    nat._libnftables.cache_clear()
    yield
    nat._libnftables.cache_clear()


@pytest.mark.usefixtures("no_libnftables")
def test_without_libnftables_add_says_what_to_install() -> None:
    with pytest.raises(ContainerSetupError) as e:
        nat.add("clib0", ["10.217.0.0/16"])
    assert e.value.errno == errno.ENOENT
    assert str(e.value).startswith("load libnftables-not-installed.so.1: No such file")
    assert "install Debian's nftables package (apt-get install nftables" in str(e.value)


@pytest.mark.usefixtures("no_libnftables")
def test_without_libnftables_there_is_nothing_to_remove() -> None:
    nat.remove("clib0")
    assert nat.prune(lambda bridge: False) == []
    assert not nat.table_exists()
    with pytest.raises(SpecError):  # input is still checked first
        nat.add("eth0", ["10.217.0.0/16"])
