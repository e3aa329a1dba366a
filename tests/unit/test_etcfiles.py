"""The text of a container's /etc/hosts and /etc/resolv.conf (containerlib.network.etcfiles)."""

from __future__ import annotations

import os
from pathlib import Path

from containerlib.network.etcfiles import (
    EtcFiles,
    hosts_file,
    member_lines,
    resolv_conf,
    rewrite,
    without_members,
)

HOST = "# made by the host\nnameserver 127.0.0.1\nnameserver 192.0.2.53\nsearch corp.example\n"


def test_hosts_lists_localhost_the_container_its_extra_hosts_and_the_members() -> None:
    etc = EtcFiles(names=("web", "www"), extra_hosts=(("db.internal", "192.0.2.10"),))
    members = member_lines("backend", [("10.218.0.3", ["db", "db-alias"]), ("10.218.0.4", [])])
    text = hosts_file(etc, "box1", ["10.218.0.2"], members)
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert "10.218.0.2\tbox1 web www" in lines
    assert "192.0.2.10\tdb.internal" in lines
    assert lines[-2:] == [
        "# containerlib: the other members of network backend",
        "10.218.0.3\tdb db-alias",
    ]
    # A member without names is not listed; a network without members has no part at all.
    assert member_lines("backend", [("10.218.0.4", [])]) == ""


def test_the_hostname_is_not_repeated_when_it_is_also_a_name() -> None:
    text = hosts_file(EtcFiles(names=("box1", "web")), "box1", ["10.0.0.2"])
    assert "10.0.0.2\tbox1 web\n" in text


def test_a_container_on_the_host_network_gets_the_host_hosts_file() -> None:
    with open("/etc/hosts") as f:
        host = f.read()
    text = hosts_file(EtcFiles(host_network=True, extra_hosts=(("x", "192.0.2.1"),)), "h")
    assert text.startswith(host)
    assert text.endswith("192.0.2.1\tx\n")


def test_resolv_conf_drops_the_host_loopback_servers_and_keeps_search() -> None:
    text = resolv_conf(EtcFiles(), HOST)
    assert text == "nameserver 192.0.2.53\nsearch corp.example\n"


def test_resolv_conf_falls_back_to_public_servers_as_docker_does() -> None:
    text = resolv_conf(EtcFiles(), "nameserver 127.0.0.1\nnameserver ::1\n")
    assert text == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_resolv_conf_follows_systemd_resolved_to_its_upstream_servers() -> None:
    text = resolv_conf(
        EtcFiles(), "nameserver 127.0.0.53\noptions edns0\n", "nameserver 192.0.2.9\n"
    )
    assert text == "nameserver 192.0.2.9\noptions edns0\n"


def test_dns_settings_replace_the_host_ones() -> None:
    etc = EtcFiles(
        dns=("192.0.2.1", "2001:db8::1"), dns_search=("a.example",), dns_options=("ndots:2",)
    )
    assert resolv_conf(etc, HOST) == (
        "nameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch a.example\noptions ndots:2\n"
    )
    # Only the search domains: the host's servers stay (its loopback ones still dropped).
    assert resolv_conf(EtcFiles(dns_search=()), HOST) == "nameserver 192.0.2.53\n"


def test_the_host_network_keeps_the_host_file_as_it_is() -> None:
    assert resolv_conf(EtcFiles(host_network=True), HOST) == HOST


def test_rewrite_keeps_the_inode_and_the_head(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    rewrite(str(path), "head\n" + member_lines("n", [("10.0.0.3", ["a"])]))
    inode = os.stat(path).st_ino
    assert without_members(str(path)) == "head\n"
    rewrite(str(path), without_members(str(path)) + member_lines("n", [("10.0.0.4", ["b"])]))
    assert os.stat(path).st_ino == inode
    assert path.read_text() == "head\n# containerlib: the other members of network n\n10.0.0.4\tb\n"
