"""User-mode networking without running it: the command lines for pasta and slirp4netns,
which program is picked from PATH (real files in a temporary directory), the errors when
none is there, and ``Container.network``'s checks. The programs themselves run in
tests/integration/test_usernet.py."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image, SpecError
from containerlib.network import usernet

IMAGE = Image(layers=("/layers/base",), name="test-image")


def _bin(tmp_path: Path, *names: str, executable: bool = True) -> str:
    """A directory holding files with these names, for PATH."""
    where = tmp_path / "bin"
    where.mkdir(exist_ok=True)
    for name in names:
        path = where / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755 if executable else 0o644)
    return str(where)


def _after(args: list[str], option: str) -> str:
    return args[args.index(option) + 1]


def test_pasta_joins_the_namespaces_by_descriptor_and_configures_them() -> None:
    args = usernet.command(
        "/usr/bin/pasta", netns_fd=7, userns_fd=8, host_loopback=False, ready="/run/x/pid"
    )
    assert args[0] == "/usr/bin/pasta"
    assert _after(args, "--netns") == "/proc/self/fd/7"
    assert _after(args, "--userns") == "/proc/self/fd/8"
    assert "--netns-only" not in args
    assert _after(args, "--pid") == "/run/x/pid"
    assert "--config-net" in args
    assert "--foreground" in args  # a child of its caller, that dies with it
    assert (_after(args, "--address"), _after(args, "--gateway")) == (
        usernet.ADDRESS,
        usernet.GATEWAY,
    )
    assert _after(args, "--netmask") == "24"
    assert _after(args, "--ns-ifname") == usernet.IFNAME
    assert _after(args, "--dns-forward") == usernet.DNS
    # No port forwarded either way: published ports are containerlib's own.
    for option in ("--tcp-ports", "--udp-ports", "--tcp-ns", "--udp-ns"):
        assert _after(args, option) == "none"
    assert "--runas" not in args


def test_pasta_maps_the_gateway_to_the_hosts_loopback_only_when_asked() -> None:
    def args(host_loopback: bool) -> list[str]:
        return usernet.command(
            "pasta", netns_fd=7, userns_fd=8, host_loopback=host_loopback, ready="/p"
        )

    assert "--no-map-gw" in args(False)
    assert "--no-map-gw" not in args(True)


def test_pasta_for_roots_container_without_a_user_namespace() -> None:
    args = usernet.command(
        "/usr/bin/pasta", netns_fd=7, userns_fd=None, host_loopback=False, ready="/p", as_root=True
    )
    assert "--netns-only" in args
    assert "--userns" not in args
    # Root's pasta would change to nobody, who may not open /dev/net/tun.
    assert _after(args, "--runas") == "0:0"


def test_slirp4netns_command_line() -> None:
    args = usernet.command(
        "/opt/bin/slirp4netns",
        netns_fd=7,
        userns_fd=8,
        host_loopback=False,
        ready=9,
        exit_fd=10,
    )
    assert args[0] == "/opt/bin/slirp4netns"
    assert args[-2:] == ["/proc/self/fd/7", usernet.IFNAME]
    for option in (
        "--configure",
        "--ready-fd=9",
        "--exit-fd=10",
        "--netns-type=path",
        "--userns-path=/proc/self/fd/8",
        "--disable-host-loopback",
        "--cidr=10.0.2.0/24",
    ):
        assert option in args
    allowed = usernet.command(
        "slirp4netns", netns_fd=7, userns_fd=None, host_loopback=True, ready=9
    )
    assert "--disable-host-loopback" not in allowed
    assert not any(a.startswith(("--userns-path", "--exit-fd")) for a in allowed)


def test_a_command_for_another_program_or_the_wrong_ready_signal_is_refused() -> None:
    with pytest.raises(ValueError, match="not a user-mode network program"):
        usernet.command(
            "/usr/bin/vde_plug", netns_fd=7, userns_fd=None, host_loopback=False, ready=3
        )
    with pytest.raises(ValueError, match="pid file"):
        usernet.command("pasta", netns_fd=7, userns_fd=None, host_loopback=False, ready=3)
    with pytest.raises(ValueError, match="descriptor"):
        usernet.command("slirp4netns", netns_fd=7, userns_fd=None, host_loopback=False, ready="/p")


def test_slirp4netns_is_preferred_then_pasta(tmp_path: Path) -> None:
    both = _bin(tmp_path, "pasta", "slirp4netns")
    assert usernet.available(both) == "slirp4netns"
    assert usernet.require(None, both) == os.path.join(both, "slirp4netns")
    assert usernet.require("pasta", both) == os.path.join(both, "pasta")
    (Path(both) / "slirp4netns").unlink()
    assert usernet.available(both) == "pasta"
    assert usernet.require(None, both) == os.path.join(both, "pasta")


def test_a_file_that_cannot_be_run_does_not_count(tmp_path: Path) -> None:
    assert usernet.available(_bin(tmp_path, "pasta", "slirp4netns", executable=False)) is None


def test_without_either_program_the_error_names_both_packages(tmp_path: Path) -> None:
    empty = _bin(tmp_path)
    assert usernet.available(empty) is None
    with pytest.raises(SpecError, match="apt-get install slirp4netns passt") as caught:
        usernet.require(None, empty)
    assert caught.value.field == "network"
    only_slirp = _bin(tmp_path, "slirp4netns")
    with pytest.raises(SpecError, match=r"needs pasta on PATH.*package passt\b") as one:
        usernet.require("pasta", only_slirp)
    assert "slirp4netns (apt-get" not in str(one.value)
    with pytest.raises(SpecError, match="must be one of slirp4netns, pasta, not 'vde'"):
        usernet.require("vde", only_slirp)


def test_network_takes_the_user_mode_programs_and_host_loopback() -> None:
    c = Container(IMAGE)
    assert c.network("pasta", host_loopback=True) != c.network("pasta")
    assert c.network("slirp4netns", host_loopback=True) != c.network("slirp4netns")
    assert c.network("bridge", host_loopback=True) != c.network("bridge")
    assert c.network("pasta") == Container(IMAGE).network("pasta")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.network("slirp"), "network"),
        (lambda c: c.network("none", host_loopback=True), "host_loopback"),
        (lambda c: c.network("host", host_loopback=True), "host_loopback"),
        (lambda c: c.network("pasta", host_loopback="yes"), "host_loopback"),
    ],
)
def test_network_refuses_bad_input(call: object, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        call(Container(IMAGE))  # type: ignore[operator]
    assert caught.value.field == field


def test_a_user_mode_network_in_the_plan_is_the_programs_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _bin(tmp_path, "pasta", "slirp4netns"))
    box = Container(IMAGE).network("slirp4netns", host_loopback=True)
    assert box._usernet() == (str(tmp_path / "bin" / "slirp4netns"), True)
    assert Container(IMAGE).network("none")._usernet() is None
    monkeypatch.setenv("PATH", _bin(tmp_path))
    for name in ("pasta", "slirp4netns"):
        (tmp_path / "bin" / name).unlink()
    with pytest.raises(SpecError, match="slirp4netns"):
        box._usernet()


def _fake(tmp_path: Path, name: str, body: str) -> str:
    """An executable ``name`` (pasta or slirp4netns) that runs the Python ``body`` with
    its arguments in ``args``."""
    path = tmp_path / "fake" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\nargs = sys.argv[1:]\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_start_waits_for_slirp4netns_to_say_it_is_ready_and_stop_ends_it(
    tmp_path: Path,
) -> None:
    exe = _fake(
        tmp_path,
        "slirp4netns",
        "fd = int(next(a for a in args if a.startswith('--ready-fd='))[11:])\n"
        "os.write(fd, b'1')\n"
        "time.sleep(60)",
    )
    net = usernet.start("slirp4netns", os.getpid(), host_loopback=False, executable=exe)
    try:
        assert (net.tool, net.address, net.gateway) == ("slirp4netns", "10.0.2.100", "10.0.2.2")
        assert Path(f"/proc/{net.pid}").exists()
    finally:
        net.stop()
    assert not Path(f"/proc/{net.pid}").exists()  # killed and reaped
    net.stop()  # again: nothing to do


def test_start_reads_the_pid_pasta_writes_once_ready(tmp_path: Path) -> None:
    exe = _fake(
        tmp_path,
        "pasta",
        "path = args[args.index('--pid') + 1]\n"
        "with open(path, 'w') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n"
        "time.sleep(60)",
    )
    net = usernet.start("pasta", os.getpid(), host_loopback=True, executable=exe)
    net.stop()
    assert not Path(f"/proc/{net.pid}").exists()


def test_a_program_that_fails_is_an_error_with_what_it_said(tmp_path: Path) -> None:
    exe = _fake(
        tmp_path,
        "pasta",
        "print('Failed to open tun socket in namespace', file=sys.stderr)\nsys.exit(1)",
    )
    with pytest.raises(ContainerSetupError, match="exited with status 1: Failed to open tun") as e:
        usernet.start("pasta", os.getpid(), host_loopback=False, container_id="c1", executable=exe)
    assert "start pasta for the container's network in container c1" in str(e.value)


def test_a_program_that_never_gets_ready_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usernet, "READY_TIMEOUT", 0.2)
    exe = _fake(tmp_path, "slirp4netns", "print(os.getpid(), flush=True)\ntime.sleep(60)")
    with pytest.raises(ContainerSetupError, match="did not configure the namespace") as e:
        usernet.start("slirp4netns", os.getpid(), host_loopback=False, executable=exe)
    assert e.value.errno == errno.ETIMEDOUT


def test_a_process_that_is_gone_is_an_error_naming_it() -> None:
    with pytest.raises(ContainerSetupError, match="open the namespaces of process 999999999"):
        usernet.start("pasta", 999999999, host_loopback=False, executable="/bin/false")
