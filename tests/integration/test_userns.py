"""User namespaces on the real kernel: root's containers with ``.userns()``, and a
non-root user's containers (rootless), seen from inside and from the host.

As root, the tests that need root run; the suite also runs as ``nobody`` (the nox session
``rootless``), where the rootless tests run and the others skip, saying why.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image, SpecError
from containerlib.linux.capabilities import CAPABILITIES
from containerlib.linux.userns import default_maps
from containerlib.spec.defaults import DEFAULT_CAPABILITIES

pytestmark = pytest.mark.usefixtures("state")

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: maps a range of host ids")
rootless = pytest.mark.skipif(ROOT, reason="rootless: runs in the nox session 'rootless'")

HOST_UID = 300000
HOST_GID = 400000


def _status(box: Container) -> dict[str, str]:
    out = box.run(["cat", "/proc/self/status"], check=True).stdout.decode()
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def _uid_map(box: Container) -> list[list[int]]:
    out = box.run(["cat", "/proc/self/uid_map"], check=True).stdout.decode()
    return [[int(n) for n in line.split()] for line in out.splitlines()]


def _caps(*names: str) -> int:
    return sum(1 << CAPABILITIES[n.removeprefix("CAP_")] for n in names)


@pytest.fixture
def remapped(image: Image) -> Container:
    return Container(image).userns(uid=HOST_UID, gid=HOST_GID)


# -- root: .userns() --------------------------------------------------------------------


@needs_root
def test_container_root_is_an_unprivileged_host_user(remapped: Container) -> None:
    assert remapped.run(["id", "-u"], check=True).stdout == b"0\n"
    assert _uid_map(remapped) == [[0, HOST_UID, 65536]]
    # Docker's capabilities, but over the container's own namespaces only.
    fields = _status(remapped)
    assert int(fields["CapEff"], 16) == _caps(*DEFAULT_CAPABILITIES)
    assert fields["NoNewPrivs"].strip() == "1"
    assert _uid_map(Container(remapped.image)) != _uid_map(remapped)


@needs_root
def test_image_files_are_the_containers_roots_and_writable(
    remapped: Container, busybox: Path
) -> None:
    # The image is root's on the host (uid 0); the container's root owns it through an
    # id-mapped mount, so it can change it (on its writable layer).
    assert busybox.stat().st_uid == 0
    script = "stat -c '%u %g' /etc/passwd / && echo x >> /etc/passwd && touch /new && echo ok"
    out = remapped.run(["sh", "-c", script], check=True).stdout.decode().split("\n")
    assert out[:3] == ["0 0", "0 0", "ok"]


@needs_root
def test_files_it_writes_belong_to_the_mapped_ids_on_the_host(
    remapped: Container, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, HOST_UID, HOST_GID)
    box = remapped.mount(shared, "/shared", read_only=False)
    box.run(["sh", "-c", "echo hi > /shared/f && chown 33:44 /shared/f"], check=True)
    st = (shared / "f").stat()
    assert (st.st_uid, st.st_gid) == (HOST_UID + 33, HOST_GID + 44)


@needs_root
def test_container_root_cannot_read_what_host_root_keeps_to_itself(
    remapped: Container, image: Image, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host root only\n")
    secret.chmod(0o600)
    inside = remapped.mount(secret, "/secret").run(["cat", "/secret"])
    assert inside.exit_code != 0
    assert b"Permission denied" in inside.stderr
    # The same without a user namespace: root in the container is root on the host.
    plain = Container(image).mount(secret, "/secret").run(["cat", "/secret"], check=True)
    assert plain.stdout == b"host root only\n"


@needs_root
def test_devices_are_the_hosts_bound_in(remapped: Container) -> None:
    script = (
        "head -c 4 /dev/zero | od -An -tx1; head -c 8 /dev/urandom | wc -c; "
        "echo gone > /dev/null && echo null-ok; stat -c '%t:%T' /dev/null"
    )
    out = remapped.run(["sh", "-c", script], check=True).stdout.decode().split()
    assert out == ["00", "00", "00", "00", "8", "null-ok", "1:3"]
    # No device node can be made: mknod is refused in a user namespace, even with the
    # capability.
    made = remapped.cap_add("MKNOD").run(["mknod", "/dev/sda9", "b", "8", "9"])
    assert made.exit_code != 0


@needs_root
def test_limits_still_apply(remapped: Container) -> None:
    bomb = remapped.limit(pids=8).run(["sh", "-c", "for i in $(seq 20); do sleep 1 & done"])
    assert bomb.exit_code != 0
    assert b"can't fork" in bomb.stderr
    fits = remapped.limit(pids=30).run(["sh", "-c", "for i in $(seq 20); do sleep 1 & done"])
    assert fits.exit_code == 0


@needs_root
def test_host_network_gets_the_hosts_sys_read_only(remapped: Container) -> None:
    box = remapped.network("host")
    result = box.run(["sh", "-c", "ls /sys/class/net | grep -qx lo && touch /sys/x"])
    assert result.exit_code != 0
    assert b"Read-only file system" in result.stderr


def test_a_range_past_the_last_id_is_refused_before_anything_is_made(image: Image) -> None:
    # 2**32 - 2 ids from 100 reach past the largest uid.
    box = Container(image).userns(uid=100, size=2**32 - 2)
    with pytest.raises(SpecError) as info:
        box.run(["true"])
    assert info.value.field == "linux.uidMappings"


@needs_root
def test_the_cli_flags(busybox: Path) -> None:
    def uid_map(*options: str) -> subprocess.CompletedProcess[bytes]:
        cli = [sys.executable, "-m", "containerlib.cli", "run", *options, str(busybox)]
        return subprocess.run(
            [*cli, "--", "cat", "/proc/self/uid_map", "/proc/self/gid_map"],
            capture_output=True,
            check=False,
        )

    r = uid_map("--uidmap", "0:300000:1000", "--gidmap", "0:400000:1000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"0", b"300000", b"1000", b"0", b"400000", b"1000"]
    r = uid_map("--userns", "auto")
    assert r.returncode == 0, r.stderr
    start = default_maps()[0][0][1]  # 524288 without a /etc/subuid range for root
    assert r.stdout.split()[:2] == [b"0", str(start).encode()]
    assert uid_map().stdout.split()[:2] == [b"0", b"0"]
    bad = uid_map("--uidmap", "1:300000:1000")
    assert bad.returncode == 125
    assert b"0:HOST_ID:SIZE" in bad.stderr


# -- rootless -----------------------------------------------------------------------------


@rootless
def test_a_users_container_is_root_inside_and_the_user_outside(image: Image) -> None:
    box = Container(image)
    assert box.run(["id"], check=True).stdout.startswith(b"uid=0(root) gid=0(root)")
    assert _uid_map(box) == [[0, os.geteuid(), 1]]
    out = box.run(["sh", "-c", "touch /x && stat -c %u /x && hostname"], check=True)
    assert out.stdout.split(b"\n")[0] == b"0"


@rootless
def test_a_users_container_reaches_only_what_the_user_may(image: Image, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    box = Container(image).mount(mine, "/mine", read_only=False)
    box.run(["sh", "-c", "echo hi > /mine/f"], check=True)
    assert (mine / "f").stat().st_uid == os.geteuid()
    # /etc/shadow is root's on the host; the container's root is this user there.
    shadow = Path("/etc/shadow")
    if shadow.exists() and not os.access(shadow, os.R_OK):
        denied = Container(image).mount(shadow, "/shadow").run(["cat", "/shadow"])
        assert denied.exit_code != 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@rootless
def test_limits_without_a_delegated_cgroup_say_what_to_do(image: Image) -> None:
    with pytest.raises(ContainerSetupError) as info:
        Container(image).limit(mem="64M").run(["true"])
    assert "CONTAINERLIB_CGROUP_PARENT" in str(info.value)


@rootless
def test_a_user_the_namespace_does_not_map_is_a_clear_error(image: Image) -> None:
    with pytest.raises(ContainerSetupError) as info:
        Container(image).user("1000:1000").run(["true"])
    assert "the user namespace does not map it" in str(info.value)


DELEGATED = os.environ.get("CONTAINERLIB_TEST_DELEGATED_CGROUP")


@rootless
@pytest.mark.skipif(
    not DELEGATED, reason="no cgroup2 subtree delegated to this user (nox -s rootless makes one)"
)
def test_a_delegated_cgroup2_subtree_places_freezes_and_cleans_up(
    image: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    from containerlib.runtime.client import spawner

    parent = f"{DELEGATED}/containerlib"
    monkeypatch.setenv("CONTAINERLIB_CGROUP_PARENT", parent)
    mount = next(
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[2] == "cgroup2"
    )
    with Container(image).start(["sleep", "30"]) as running:
        own = Path(f"/proc/{running.pid}/cgroup").read_text()
        assert f"0::/{parent}/{running.id}\n" in own
        running.pause()
        events = Path(mount, parent, running.id, "cgroup.events").read_text()
        assert "frozen 1" in events.split("\n")
        running.resume()
        assert running.stats().cpu_usage_usec >= 0
        running.kill()
        assert running.wait(timeout=10).exit_code == 128 + 9
    left = {p.name for p in Path(mount, parent).iterdir() if p.is_dir()}
    assert left <= set(spawner.ready_ids())
