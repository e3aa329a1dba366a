"""Pods on the real kernel: a container in another container's network namespace
(``network(container=...)``), and in a network namespace named by a path
(``network(netns=...)``).

Two containers of a pod talk over 127.0.0.1 and see the same interfaces, each with its
own processes. A namespace the test made (a process's, or one bind-mounted on a file,
as ``ip netns add`` does) is joined with the interfaces the test put in it, and
its sysfs shows that interface. Traffic stays on the loopback of the tests' own
namespaces.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute  # type: ignore[import-untyped]

from containerlib import Container, ContainerSetupError, Image, SpecError
from containerlib.errors import ContainerNotRunning
from containerlib.linux import syscalls as sc
from containerlib.linux.netlink import in_netns
from tests.integration.conftest import http_get, needs_root

pytestmark = [
    pytest.mark.usefixtures("state"),
    needs_root("joining another network namespace needs root"),
]

PAGE = "served in a pod\n"
HTTPD = f"mkdir -p /www && printf '{PAGE}' > /www/index.html && exec httpd -f -p 8080 -h /www"
# Fetch the page from the pod's loopback, once the server listens.
FETCH = (
    "for i in $(seq 300); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1"
)
ROOT = Path(__file__).resolve().parents[2]


def _netns(pid: int) -> str:
    """The network namespace of process ``pid``, as its /proc link names it."""
    return os.readlink(f"/proc/{pid}/ns/net")


def test_a_pod_member_reaches_the_other_on_localhost_and_has_its_interfaces(
    image: Image,
) -> None:
    with Container(image).start(["sh", "-c", HTTPD]) as server:
        member = Container(image).network(container=server)
        fetched = member.run(["sh", "-c", FETCH], timeout=60)
        assert (fetched.exit_code, fetched.stdout.decode()) == (0, PAGE), fetched.stderr
        seen = member.run(["sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net"])
        netns, *interfaces = seen.stdout.decode().split()
        assert netns == _netns(server.pid)
        assert interfaces == ["lo"]
    # Nothing of the namespace was the member's: the server's end took it away.


def test_a_pod_member_has_its_own_processes(image: Image) -> None:
    with Container(image).start(["sh", "-c", HTTPD]) as server:
        member = Container(image).network(container=server)
        ps = member.run(["sh", "-c", "cat /proc/1/cmdline; echo; ps -o pid,args"])
        assert ps.exit_code == 0, ps.stderr
        assert b"httpd" not in ps.stdout
        assert ps.stdout.startswith(b"sh\0-c\0")


def test_a_pod_member_publishes_a_port_and_its_exec_is_in_the_pod(image: Image) -> None:
    with Container(image).start(["sleep", "300"]) as first:
        member = Container(image).network(container=first).publish(8080)
        with member.start(["sh", "-c", HTTPD]) as web:
            (port,) = web.ports
            assert http_get(f"http://127.0.0.1:{port.host_port}/") == PAGE
            # An exec joins the member's namespaces: the pod's network, not a new one.
            inside = web.exec(["readlink", "/proc/self/ns/net"])
            assert inside.stdout.decode().strip() == _netns(first.pid)
            other = first.exec(["wget", "-qO-", "http://127.0.0.1:8080/"])
            assert other.stdout.decode() == PAGE, other.stderr
            assert web.ip is None


@pytest.mark.usefixtures("adopter")
def test_a_detached_container_can_be_the_other(image: Image) -> None:
    server = Container(image).start(["sh", "-c", HTTPD], detach=True)
    try:
        fetched = Container(image).network(container=server).run(["sh", "-c", FETCH], timeout=60)
        assert (fetched.exit_code, fetched.stdout.decode()) == (0, PAGE), fetched.stderr
    finally:
        server.kill()
        server.wait()
        server.remove()


@pytest.mark.usefixtures("adopter")
def test_a_detached_container_can_be_the_member(image: Image) -> None:
    with Container(image).start(["sleep", "300"]) as first:
        member = Container(image).network(container=first)
        web = member.start(["sh", "-c", HTTPD], detach=True)
        try:
            fetched = first.exec(["sh", "-c", FETCH], timeout=60)
            assert (fetched.exit_code, fetched.stdout.decode()) == (0, PAGE), fetched.stderr
            inside = web.exec(["readlink", "/proc/self/ns/net"])
            assert inside.stdout.decode().strip() == _netns(first.pid)
        finally:
            web.kill()
            web.wait()
            web.remove()


ETC = "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf"


def test_a_pod_member_shares_the_hostname_hosts_and_resolv_conf_of_the_other(
    image: Image,
) -> None:
    """As with docker's --network container:, the member's /etc files are the other's,
    the very files: what changes in one is seen in the other."""
    first = (
        Container(image)
        .hostname("pod-first")
        .add_host("db.internal", "192.0.2.10")
        .dns(["192.0.2.53"], search=["pod.example"])
    )
    with first.start(["sleep", "300"]) as other:
        member = Container(image).network(container=other)
        seen = member.run(["sh", "-c", ETC])
        assert seen.exit_code == 0, seen.stderr
        assert seen.stdout == other.exec(["sh", "-c", ETC]).stdout
        hostname, hosts, resolv = seen.stdout.decode().split("--\n")
        assert hostname == "pod-first\n"
        assert "192.0.2.10\tdb.internal\n" in hosts
        assert resolv == "nameserver 192.0.2.53\nsearch pod.example\n"
        assert member.run(["sh", "-c", "hostname; echo $HOSTNAME"]).stdout == b"pod-first\n" * 2
        # The same file: the member's addition is the other's.
        added = member.run(["sh", "-c", "echo 192.0.2.11 cache.internal >> /etc/hosts"])
        assert added.exit_code == 0, added.stderr
        assert b"cache.internal" in other.exec(["cat", "/etc/hosts"]).stdout
        other.kill()


def test_a_pod_member_of_a_detached_container_shares_its_files(image: Image) -> None:
    other = Container(image).hostname("pod-detached").start(["sleep", "300"], detach=True)
    try:
        seen = Container(image).network(container=other).run(["sh", "-c", ETC])
        assert seen.stdout.decode().startswith("pod-detached\n--\n"), seen.stderr
    finally:
        other.kill()
        other.wait()
        other.remove()


def test_a_pod_member_given_its_own_files_is_refused(image: Image) -> None:
    with Container(image).start(["sleep", "300"]) as other:
        for member, given in (
            (Container(image).hostname("mine"), "hostname()"),
            (Container(image).dns(["192.0.2.1"]), "dns()"),
            (
                Container(image).add_host("a", "192.0.2.1").hostname("b"),
                "hostname() and add_host()",
            ),
        ):
            with pytest.raises(SpecError, match=rf"give {re.escape(given)} to {other.id[:12]}"):
                member.network(container=other).run(["true"])
        other.kill()


def test_an_ended_container_is_no_pod_to_join(image: Image) -> None:
    with Container(image).start(["true"]) as gone:
        gone.wait()
    with pytest.raises(ContainerNotRunning, match="share the network namespace of"):
        Container(image).network(container=gone).run(["true"])


def _add_interfaces(netns_fd: int) -> None:
    """A veth pair ``clibtest0`` and ``clibtest1`` in the namespace of ``netns_fd`` (this
    kernel has no dummy interfaces)."""

    def add() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname="clibtest0", kind="veth", peer="clibtest1")

    in_netns(netns_fd, add)


@pytest.fixture
def held_netns() -> Iterator[str]:
    """A new network namespace, the path of its holder's (``unshare -n sleep``)."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while _netns(holder.pid) == _netns(os.getpid()):
            assert time.monotonic() < deadline, "unshare did not make a network namespace"
            time.sleep(0.01)
        yield f"/proc/{holder.pid}/ns/net"
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def bound_netns(tmp_path: Path) -> Iterator[str]:
    """A new network namespace bind-mounted on a file, as ``ip netns add`` makes them
    (made after the spawner's warm processes: they do not see the mount)."""
    path = tmp_path / "netns"
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    try:
        yield str(path)
    finally:
        sc.umount2(os.fsencode(path), sc.MNT_DETACH)


@pytest.mark.parametrize("made_by", ["held_netns", "bound_netns"])
def test_a_container_joins_a_network_namespace_by_path(
    image: Image, made_by: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(made_by)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _add_interfaces(fd)
    finally:
        os.close(fd)
    done = (
        Container(image)
        .network(netns=path)
        .run(["sh", "-c", "ls /sys/class/net; cat /proc/net/dev"])
    )
    assert done.exit_code == 0, done.stderr
    sysfs, _, dev = done.stdout.decode().partition("Inter-|")
    # sysfs was mounted in the joined namespace: it shows the same interfaces.
    assert sysfs.split() == ["clibtest0", "clibtest1", "lo"]
    assert "clibtest0:" in dev


def test_a_missing_namespace_path_is_a_clear_error_and_leaves_nothing(
    image: Image, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-netns"
    with pytest.raises(ContainerSetupError) as info:
        Container(image).network(netns=missing).run(["true"])
    assert f"open the network namespace '{missing}'" in str(info.value)
    assert "No such file or directory" in str(info.value)


def test_a_file_that_is_no_namespace_is_refused(image: Image, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(ContainerSetupError, match="it is not a namespace file"):
        Container(image).network(netns=plain).run(["true"])
    with pytest.raises(ContainerSetupError, match="it is a uts namespace"):
        Container(image).network(netns="/proc/self/ns/uts").run(["true"])


def test_a_user_namespace_cannot_join_and_says_why(image: Image, held_netns: str) -> None:
    with pytest.raises(SpecError, match=r"needs root and no userns\(\)"):
        Container(image).userns().network(netns=held_netns).run(["true"])


def test_bad_arguments_are_spec_errors(image: Image, held_netns: str) -> None:
    with pytest.raises(SpecError, match="give no mode"):
        Container(image).network("host", netns=held_netns)
    with pytest.raises(SpecError, match="not both"):
        Container(image).network(netns=held_netns, container=object())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="absolute path"):
        Container(image).network(netns="netns")
    with pytest.raises(SpecError, match="a running container"):
        Container(image).network(container="web")  # type: ignore[arg-type]
    # A later mode replaces the joined namespace.
    spec = Container(image).network(netns=held_netns).network("none").spec(["true"])
    assert spec.linux is not None
    assert [ns.path for ns in spec.linux.namespaces if ns.type == "network"] == [None]


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "containerlib.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_the_command_line_joins_a_pod_and_a_namespace_by_path(busybox: Path) -> None:
    rootfs = str(busybox)
    other = Container(Image.from_rootfs(busybox)).hostname("pod-cli")
    box = other.start(["sleep", "300"], detach=True, name="clibtest-pod-cli")
    try:
        show = ["sh", "-c", "hostname; readlink /proc/self/ns/net"]
        seen = _cli("run", "--network", "container:clibtest-pod-cli", rootfs, *show)
        assert seen.stdout.decode() == f"pod-cli\n{_netns(box.pid)}\n", seen.stderr
        seen = _cli("run", "--network", f"ns:/proc/{box.pid}/ns/net", rootfs, *show)
        assert seen.stdout.decode().split("\n")[1] == _netns(box.pid), seen.stderr
        missing = _cli("run", "--network", "container:clibtest-no-such", rootfs, "true")
        assert missing.returncode == 125
        assert "clibtest-no-such" in missing.stderr.decode()
    finally:
        box.kill()
        box.wait()
        box.remove()
