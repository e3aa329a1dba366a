"""The security options of Container: capabilities, privileged, seccomp, sysctl, rlimit,
checked from inside the container as a user would."""

from __future__ import annotations

import pytest

from containerlib import Container, Image, SpecError
from containerlib.linux.capabilities import CAPABILITIES
from containerlib.spec.defaults import DEFAULT_CAPABILITIES
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]


def status(box: Container) -> dict[str, str]:
    out = box.run(["cat", "/proc/self/status"], check=True).stdout.decode()
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def caps(*names: str) -> int:
    return sum(1 << CAPABILITIES[n.removeprefix("CAP_")] for n in names)


def test_default_capabilities_no_new_privs_and_seccomp(image: Image) -> None:
    fields = status(Container(image))
    expected = caps(*DEFAULT_CAPABILITIES)
    for key in ("CapPrm", "CapEff", "CapBnd"):
        assert int(fields[key], 16) == expected, key
    assert int(fields["CapInh"], 16) == 0
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # a filter


def test_cap_add_and_drop(image: Image) -> None:
    box = Container(image).cap_add("NET_ADMIN", "cap_sys_time").cap_drop("CAP_CHOWN", "KILL")
    expected = caps(*DEFAULT_CAPABILITIES, "NET_ADMIN", "SYS_TIME") & ~caps("CHOWN", "KILL")
    assert int(status(box)["CapEff"], 16) == expected
    # Without CAP_CHOWN, root cannot give a file away (rootless: to the one other id the
    # namespace maps, none; so only root's run shows it).
    if ROOT:
        result = box.run(["sh", "-c", "touch /f && chown 1:1 /f"])
        assert result.exit_code != 0
        assert b"Operation not permitted" in result.stderr
    only = Container(image).cap_drop("ALL").cap_add("NET_BIND_SERVICE")
    assert int(status(only)["CapEff"], 16) == caps("NET_BIND_SERVICE")


def test_seccomp_blocks_what_docker_blocks_and_unconfined_does_not(image: Image) -> None:
    # unshare(2) of a user namespace is an EPERM under Docker's profile, even for root.
    confined = Container(image).run(["unshare", "-U", "true"])
    assert confined.exit_code != 0
    assert b"Operation not permitted" in confined.stderr
    unconfined = Container(image).seccomp(None)
    assert status(unconfined)["Seccomp"].strip() == "0"
    assert unconfined.run(["unshare", "-U", "true"]).exit_code == 0


def test_a_custom_profile(image: Image) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }
    box = Container(image).seccomp(profile)
    result = box.run(["mkdir", "/made"])
    assert result.exit_code != 0
    assert b"Permission denied" in result.stderr
    assert box.run(["touch", "/file"]).exit_code == 0


def test_privileged(image: Image) -> None:
    box = Container(image).privileged()
    fields = status(box)
    assert int(fields["CapEff"], 16) & caps("SYS_ADMIN", "NET_ADMIN") == caps(
        "SYS_ADMIN", "NET_ADMIN"
    )
    assert fields["Seccomp"].strip() == "0"
    assert fields["NoNewPrivs"].strip() == "0"
    script = "mount -t tmpfs t /tmp && echo mounted; grep ' /sys ' /proc/mounts"
    out = box.run(["sh", "-c", script], check=True).stdout.decode()
    assert out.startswith("mounted\n")
    assert " rw," in out
    # Not privileged: mount is refused.
    assert Container(image).run(["mount", "-t", "tmpfs", "t", "/tmp"]).exit_code != 0


def test_sysctl_and_rlimit(image: Image) -> None:
    box = (
        Container(image)
        .sysctl(**{"kernel.shmmni": 1234, "net.ipv4.ip_unprivileged_port_start": "80"})
        .rlimit("nofile", 256, 512)
    )
    script = (
        "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_unprivileged_port_start;"
        " ulimit -n; ulimit -Hn"
    )
    assert box.run(["sh", "-c", script], check=True).stdout.split() == [
        b"1234",
        b"80",
        b"256",
        b"512",
    ]


def test_bad_options_name_what_is_wrong(image: Image) -> None:
    with pytest.raises(SpecError, match=r"cap_add.*CAP_NOPE"):
        Container(image).cap_add("CAP_NOPE")
    with pytest.raises(SpecError, match=r"sysctl\.kernel\.panic"):
        Container(image).sysctl(**{"kernel.panic": 1})
    with pytest.raises(SpecError, match=r"sysctl\.net\.ipv4\.ip_forward"):
        Container(image).network("host").sysctl(**{"net.ipv4.ip_forward": 1})
    with pytest.raises(SpecError, match=r"rlimit\.bogus"):
        Container(image).rlimit("bogus", 1)
    with pytest.raises(SpecError, match=r"rlimit\.nofile"):
        Container(image).rlimit("nofile", 10, 5)
    with pytest.raises(SpecError, match="defaultAction"):
        Container(image).seccomp({"syscalls": []})
