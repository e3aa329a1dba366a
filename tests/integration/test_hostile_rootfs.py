"""Root file systems built to make the runtime write, mount or execute outside them.

Each test copies the busybox root file system into ``tmp_path``, plants a trap (``/proc``,
``/dev``, ``/sys``, ``/tmp`` or a mount target as a symlink out to a sentinel directory on
the host, a mount target of the wrong kind, ``/bin/sh`` as a link to the runtime's own
binary, an image layer that makes ``/proc`` a file) and starts a container. The container
may refuse to start, with a :class:`ContainerSetupError` that names the step and the path,
or run with every mount landing inside its own root. Either way the sentinel (its listing,
contents and times), the root file system itself, and the host's mount table stay as they
were.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image, Result
from containerlib.image.builtin import busybox_rootfs
from containerlib.runtime import nativeinit
from tests.image_builders import build_oci_layout, busybox_layout, file

from .conftest import mounts_under

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]

Snapshot = dict[str, tuple[int, int, bytes | None]]


def snapshot(top: Path) -> Snapshot:
    """Every path under ``top`` (``top`` included): mode, mtime in ns and file contents
    (or a symlink's target)."""
    found: Snapshot = {}
    for path in [top, *sorted(top.rglob("*"))]:
        st = path.lstat()
        if path.is_symlink():
            data: bytes | None = os.readlink(path).encode()
        elif path.is_file():
            data = path.read_bytes()
        else:
            data = None
        found[str(path.relative_to(top))] = (st.st_mode, st.st_mtime_ns, data)
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A host directory the traps point at; asserted untouched at the end of the test."""
    sentinel = tmp_path / "outside"
    (sentinel / "sub").mkdir(parents=True)
    (sentinel / "keep").write_text("host data\n")
    (sentinel / "sub" / "deep").write_text("more host data\n")
    before = snapshot(sentinel)
    yield sentinel
    assert snapshot(sentinel) == before, "the host directory outside the rootfs changed"
    assert not mounts_under(str(tmp_path)), mounts_under(str(tmp_path))


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return busybox_rootfs(tmp_path / "rootfs")


def escape(outside: Path) -> str:
    """A relative link that climbs far above any root, then down to ``outside``."""
    return "../" * 16 + str(outside).lstrip("/")


LINKS: dict[str, Callable[[Path], str]] = {"absolute": str, "relative": escape}


def replace_with_link(path: Path, target: str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def attempt(container: Container, script: str) -> Result | ContainerSetupError:
    """Run ``script``; the setup error instead when the runtime refuses the container."""
    try:
        return container.run(["/bin/busybox", "sh", "-c", script])
    except ContainerSetupError as e:
        return e


def run_untouched(
    image_root: Path, container: Container, script: str
) -> Result | ContainerSetupError:
    """:func:`attempt`, asserting that the root file system on the host did not change."""
    before = snapshot(image_root)
    outcome = attempt(container, script)
    assert snapshot(image_root) == before, "the image's root file system changed"
    return outcome


def assert_refused_naming(outcome: Result | ContainerSetupError, path: str) -> None:
    assert isinstance(outcome, ContainerSetupError)
    assert path in str(outcome), str(outcome)
    assert outcome.step, outcome


# -- the kernel file systems' mount points as symlinks out ---------------------------------


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("point", ["proc", "dev", "sys"])
def test_kernel_fs_mount_point_as_a_symlink_out(
    rootfs: Path, outside: Path, point: str, link: str
) -> None:
    replace_with_link(rootfs / point, LINKS[link](outside))
    probe = {
        "proc": "grep -c NoNewPrivs /proc/self/status",
        "dev": "echo x > /dev/null && head -c 3 /dev/zero | wc -c",
        "sys": "ls /sys/class/net",
    }[point]
    outcome = run_untouched(rootfs, Container(Image.from_rootfs(rootfs)), probe)
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, f"/{point}")
    else:
        # It ran: the file system was mounted where the link leads inside the root.
        assert outcome.exit_code == 0, outcome.stderr
        assert outcome.stdout.split()[-1] in (b"1", b"3", b"lo"), outcome.stdout


@pytest.mark.parametrize("link", LINKS)
def test_tmp_as_a_symlink_out(rootfs: Path, outside: Path, link: str) -> None:
    replace_with_link(rootfs / "tmp", LINKS[link](outside))
    image = Image.from_rootfs(rootfs)
    # Written by the command: the link resolves in the container's own root.
    outcome = run_untouched(rootfs, Container(image), "echo planted > /tmp/keep; ls /tmp/")
    assert isinstance(outcome, Result)
    # And a tmpfs asked for on /tmp.
    outcome = run_untouched(
        rootfs, Container(image).tmpfs("/tmp"), "echo planted > /tmp/keep && cat /tmp/keep"
    )
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, "/tmp")
    else:
        assert (outcome.exit_code, outcome.stdout) == (0, b"planted\n"), outcome.stderr


# -- the caller's mounts, on targets that lead out -----------------------------------------


@pytest.mark.parametrize("link", LINKS)
def test_bind_mount_target_as_a_symlink_out(
    rootfs: Path, outside: Path, tmp_path: Path, link: str
) -> None:
    source = tmp_path / "volume"
    source.mkdir()
    replace_with_link(rootfs / "data", LINKS[link](outside))
    container = Container(Image.from_rootfs(rootfs)).mount(source, "/data", read_only=False)
    outcome = run_untouched(rootfs, container, "echo written > /data/new && cat /data/new")
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, "/data")
        assert list(source.iterdir()) == []
    else:
        # The volume is mounted at the link's target inside the root: the write reached it.
        assert outcome.exit_code == 0, outcome.stderr
        assert (source / "new").read_text() == "written\n"


@pytest.mark.parametrize("target", ["/srv/volume", "../../../../../srv/volume"])
def test_bind_mount_target_as_a_symlink_that_stays_inside(
    rootfs: Path, outside: Path, tmp_path: Path, target: str
) -> None:
    # A link whose target is in the root (after climbing above it, for the relative one):
    # the mount must land on that target, in the container's root.
    (rootfs / "srv" / "volume").mkdir(parents=True)
    (rootfs / "data").symlink_to(target)
    source = tmp_path / "volume"
    source.mkdir()
    container = Container(Image.from_rootfs(rootfs)).mount(source, "/data", read_only=False)
    outcome = run_untouched(rootfs, container, "echo written > /data/new && ls /srv/volume")
    assert isinstance(outcome, Result), outcome
    assert (outcome.exit_code, outcome.stdout) == (0, b"new\n"), outcome.stderr
    assert (source / "new").read_text() == "written\n"
    assert list((rootfs / "srv" / "volume").iterdir()) == []


@pytest.mark.parametrize("link", LINKS)
def test_tmpfs_target_as_a_symlink_out(rootfs: Path, outside: Path, link: str) -> None:
    replace_with_link(rootfs / "scratch", LINKS[link](outside))
    container = Container(Image.from_rootfs(rootfs)).tmpfs("/scratch", size="1M")
    outcome = run_untouched(
        rootfs, container, "echo x > /scratch/keep && grep -c tmpfs /proc/self/mountinfo"
    )
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, "/scratch")
    else:
        assert outcome.exit_code == 0, outcome.stderr


def test_nested_mount_target_through_a_symlinked_parent(
    rootfs: Path, outside: Path, tmp_path: Path
) -> None:
    # /etc leads out; the mount target is below it and its parent does not exist there.
    source = tmp_path / "conf"
    source.mkdir()
    replace_with_link(rootfs / "etc", escape(outside))
    container = Container(Image.from_rootfs(rootfs)).mount(source, "/etc/app/conf")
    outcome = run_untouched(rootfs, container, "ls -d /etc/app/conf")
    if isinstance(outcome, ContainerSetupError):
        # containerlib's own /etc/hosts is mounted first, and refused first.
        assert "/etc/hosts" in str(outcome) or "/etc/app/conf" in str(outcome), str(outcome)
        assert outcome.step, outcome
    else:
        assert outcome.exit_code == 0, outcome.stderr


@pytest.mark.parametrize("link", LINKS)
def test_file_bind_mount_on_etc_hosts_linked_out(
    rootfs: Path, outside: Path, tmp_path: Path, link: str
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 box\n")
    replace_with_link(rootfs / "etc" / "hosts", LINKS[link](outside / "keep"))
    container = Container(Image.from_rootfs(rootfs)).mount(hosts, "/etc/hosts")
    outcome = run_untouched(rootfs, container, "cat /etc/hosts")
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, "/etc/hosts")
    else:
        # The link resolved inside the root, where the caller's file is now mounted.
        assert (outcome.exit_code, outcome.stdout) == (0, b"127.0.0.1 box\n"), outcome.stderr


# -- mount targets of the wrong kind --------------------------------------------------------


def test_directory_bind_mounted_on_a_file(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "dir"
    source.mkdir()
    container = Container(Image.from_rootfs(rootfs)).mount(source, "/etc/passwd")
    outcome = run_untouched(rootfs, container, "ls -ld /etc/passwd")
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, "/etc/passwd")
    else:
        assert outcome.exit_code == 0, outcome.stderr
        assert outcome.stdout.startswith(b"d"), outcome.stdout
    assert not mounts_under(str(tmp_path))


def test_file_bind_mounted_on_a_directory(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_text("a file\n")
    container = Container(Image.from_rootfs(rootfs)).mount(source, "/tmp")
    outcome = run_untouched(rootfs, container, "cat /tmp")
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, "/tmp")
    else:
        assert (outcome.exit_code, outcome.stdout) == (0, b"a file\n"), outcome.stderr
    assert not mounts_under(str(tmp_path))


def test_file_bind_mounted_on_a_missing_target_makes_a_file(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_text("a file\n")
    container = Container(Image.from_rootfs(rootfs)).mount(source, "/new/dir/file")
    outcome = run_untouched(rootfs, container, "cat /new/dir/file")
    assert isinstance(outcome, Result)
    assert (outcome.exit_code, outcome.stdout) == (0, b"a file\n"), outcome.stderr


def test_mount_target_below_a_file(rootfs: Path, tmp_path: Path) -> None:
    source = tmp_path / "dir"
    source.mkdir()
    container = Container(Image.from_rootfs(rootfs)).mount(source, "/etc/passwd/sub")
    outcome = run_untouched(rootfs, container, "true")
    assert_refused_naming(outcome, "/etc/passwd/sub")


# -- executing the runtime's own binary ----------------------------------------------------


def _fingerprint(path: str) -> tuple[bytes, int, int]:
    st = os.stat(path)
    return hashlib.sha256(Path(path).read_bytes()).digest(), st.st_mtime_ns, st.st_size


def _host_programs() -> list[str]:
    return [p for p in (os.path.realpath(sys.executable), nativeinit.helper_path()) if p]


@pytest.mark.parametrize(
    "target", ["/proc/self/exe", "/proc/1/exe", "/proc/self/fd/3", "/proc/self/fd/4"]
)
def test_sh_linked_to_the_runtimes_own_binary(rootfs: Path, outside: Path, target: str) -> None:
    """As CVE-2019-5736: the command the runtime execs is the runtime itself, which the
    container could then reach and overwrite through /proc."""
    before = {p: _fingerprint(p) for p in _host_programs()}
    replace_with_link(rootfs / "bin" / "sh", target)
    image = Image.from_rootfs(rootfs)
    try:
        outcome: Result | ContainerSetupError = Container(image).run(
            ["/bin/sh", "-c", "echo pwned > /proc/self/exe"]
        )
    except ContainerSetupError as e:
        outcome = e
    if isinstance(outcome, Result):
        # Not run: the runtime's binary must not be what the container executes.
        assert outcome.exit_code in (126, 127), (outcome.exit_code, outcome.stdout)
    assert {p: _fingerprint(p) for p in _host_programs()} == before


@pytest.mark.parametrize("fd", range(3, 12))
def test_workdir_through_a_descriptor_of_the_runtime(rootfs: Path, fd: int) -> None:
    """As CVE-2024-21626: a working directory that names a descriptor the runtime still
    holds while it changes directory would leave the container in the host's tree."""
    container = Container(Image.from_rootfs(rootfs)).workdir(f"/proc/self/fd/{fd}")
    outcome = run_untouched(rootfs, container, "pwd -P; ls -a ..")
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, f"/proc/self/fd/{fd}")
    else:
        # Only a directory inside the container will do.
        assert outcome.exit_code == 0
        assert not outcome.stdout.startswith(b"(unreachable)"), outcome.stdout


# -- an image whose top layer makes /proc a file -------------------------------------------


def test_image_layer_replacing_proc_with_a_file(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    base = busybox_layout(layout, ref=None)
    build_oci_layout(layout, [*base.layers, [file("proc", b"not a directory\n")]], ref="hostile")
    image = Image.from_oci_layout(layout, "hostile")
    outcome = attempt(Container(image), "grep -c NoNewPrivs /proc/self/status")
    if isinstance(outcome, ContainerSetupError):
        assert_refused_naming(outcome, "/proc")
    else:
        # /proc was made a directory again in the container's own layer and mounted.
        assert (outcome.exit_code, outcome.stdout) == (0, b"1\n"), outcome.stderr
    assert not mounts_under(str(tmp_path))
