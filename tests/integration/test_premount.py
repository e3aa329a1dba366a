"""Warm processes mount the likely next container's rootfs ahead of time (a premount).

The guess is the last container's plan; whatever the next container is, it must see its
own image, mounts and files, never the guess's. These tests change what the guess was
made from between starts, in the ways a user does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from containerlib import Container, Image
from containerlib.image.builtin import busybox_rootfs
from containerlib.runtime.client import spawner
from tests.integration.conftest import needs_root

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]


def settle() -> None:
    """Wait until the janitor has delivered the warm processes and writable layers it
    was asked for, and so the warm processes were asked to premount."""
    spawner.ready_ids()


def test_alternating_images_each_see_their_own(image: Image, tmp_path: Path) -> None:
    other = busybox_rootfs(tmp_path / "other")
    (other / "etc" / "which").write_text("other\n")
    second = Image.from_rootfs(other)
    for _ in range(3):
        for img, expected in ((image, b""), (second, b"other\n")):
            settle()
            result = Container(img).run(["sh", "-c", "cat /etc/which 2>/dev/null; true"])
            assert result.stdout == expected


def test_a_rootfs_replaced_at_the_same_path_is_seen(tmp_path: Path) -> None:
    root = busybox_rootfs(tmp_path / "root")
    (root / "version").write_text("1\n")
    box = Container(Image.from_rootfs(root))
    assert box.run(["cat", "/version"]).stdout == b"1\n"
    for version in range(2, 5):
        settle()
        shutil.rmtree(root)
        busybox_rootfs(root)
        (root / "version").write_text(f"{version}\n")
        assert box.run(["cat", "/version"]).stdout == f"{version}\n".encode()


def test_a_bind_source_replaced_at_the_same_path_is_seen(image: Image, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "v").write_text("old\n")
    box = Container(image).mount(data, "/data")
    assert box.run(["cat", "/data/v"]).stdout == b"old\n"
    for version in range(3):
        settle()
        shutil.rmtree(data)
        data.mkdir()
        (data / "v").write_text(f"new {version}\n")
        assert box.run(["cat", "/data/v"]).stdout == f"new {version}\n".encode()


def test_writes_never_reach_the_next_container(image: Image) -> None:
    box = Container(image)
    for i in range(5):
        settle()
        result = box.run(["sh", "-c", f"ls /tmp; echo {i} > /tmp/mark"])
        assert result.stdout == b""


def test_options_that_change_the_mounts(image: Image) -> None:
    settle()
    assert Container(image).run(["sh", "-c", "echo x > /x"]).exit_code == 0
    settle()
    assert Container(image).read_only().run(["sh", "-c", "echo x > /x"]).exit_code != 0
    settle()
    sized = Container(image).tmpfs("/scratch", size="1M")
    assert b"/scratch" in sized.run(["cat", "/proc/mounts"]).stdout
    settle()
    assert b"/scratch" not in Container(image).run(["cat", "/proc/mounts"]).stdout


def filters(box: Container) -> tuple[str, str]:
    out = box.run(["grep", "Seccomp", "/proc/self/status"], check=True).stdout.decode().split()
    return out[1], out[3]


@needs_root("no premount in a user namespace: the process gets its maps with its plan")
def test_the_early_filter_goes_only_to_a_container_with_the_same_profile(image: Image) -> None:
    """A warm process installs the early part of the last container's seccomp filter; a
    container with another profile, or none, must not inherit it."""
    default = Container(image)
    settle()
    filters(default)
    settle()
    assert filters(default) == ("2", "2")  # the early part ahead of time, the rest now
    assert default.run(["unshare", "-U", "true"]).exit_code != 0
    settle()
    unconfined = Container(image).seccomp(None)
    assert filters(unconfined) == ("0", "0")
    assert unconfined.run(["unshare", "-U", "true"]).exit_code == 0
    settle()
    admin = Container(image).cap_add("SYS_ADMIN")
    assert admin.run(["mount", "-t", "tmpfs", "t", "/tmp"]).exit_code == 0
    settle()
    assert default.run(["mount", "-t", "tmpfs", "t", "/tmp"]).exit_code != 0
    assert default.run(["unshare", "-U", "true"]).exit_code != 0
