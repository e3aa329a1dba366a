"""Unpacking layers: every member type with its owner, mode, times and xattrs.

As root, owners, device nodes and every xattr are kept. As any other user (rootless), the
unpacking user owns every file, ``trusted.*`` xattrs and file capabilities are left out,
opaque directories carry ``user.overlay.opaque`` and device nodes other than whiteouts are
refused: the tests check what each user gets.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from containerlib.errors import LayerError
from containerlib.image.cache import LayerCache
from containerlib.image.layers import UnpackLimits, unpack_layer
from containerlib.image.layout import open_layout
from containerlib.spec.image import MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_LAYER_GZIP
from tests.image_builders import (
    Entry,
    blockdev,
    build_oci_layout,
    chardev,
    directory,
    fifo,
    file,
    hardlink,
    make_layer,
    opaque,
    symlink,
    tar_bytes,
    whiteout,
)
from tests.integration.conftest import ROOT, needs_root

pytestmark = [pytest.mark.root]

MTIME = 1_600_000_000
# The marker of an opaque directory: for the overlays root mounts, or a user's with
# ``userxattr`` in a user namespace.
OPAQUE = "trusted.overlay.opaque" if ROOT else "user.overlay.opaque"
# A file capability (vfs_cap_data revision 2): cap_net_bind_service in the permitted set.
CAPABILITY = bytes.fromhex("0100000200040000000000000000000000000000")


def _owner(uid: int, gid: int) -> tuple[int, int]:
    """Who owns a file whose header says ``uid``:``gid``: that owner as root, the
    unpacking user otherwise."""
    return (uid, gid) if ROOT else (os.geteuid(), os.getegid())


def _unpack(target: Path, entries: list[Entry]) -> str:
    target.mkdir(exist_ok=True)
    data = tar_bytes(entries)
    return unpack_layer(io.BytesIO(data), target, MEDIA_TYPE_OCI_LAYER)


def test_every_member_type(tmp_path: Path) -> None:
    t = tmp_path / "t"
    layer = make_layer(
        [
            directory(".", mode=0o751, mtime=MTIME),
            directory("home", mode=0o755, mtime=MTIME),
            directory("home/user", mode=0o700, uid=1000, gid=1001, mtime=MTIME + 1),
            file("home/user/notes", b"hello\n", mode=0o640, uid=1000, gid=1001, mtime=MTIME),
            file("bin/su", b"\x7fELF", mode=0o4755, uid=0, gid=0, mtime=MTIME),
            directory("tmp", mode=0o1777, mtime=MTIME),
            symlink("home/user/abs", "/etc/passwd", uid=1000, gid=1001, mtime=MTIME + 2),
            symlink("home/user/rel", "notes", mtime=MTIME + 3),
            hardlink("home/user/again", "home/user/notes"),
            fifo("run/pipe", mode=0o620, uid=5, gid=6),
        ]
    )
    t.mkdir()
    with io.BytesIO(layer.blob) as blob:
        assert unpack_layer(blob, t, MEDIA_TYPE_OCI_LAYER_GZIP) == layer.diff_id

    root = t.stat()
    assert stat.S_IMODE(root.st_mode) == 0o751
    assert root.st_mtime == MTIME

    user = (t / "home/user").stat()
    assert (user.st_uid, user.st_gid) == _owner(1000, 1001)
    assert stat.S_IMODE(user.st_mode) == 0o700
    assert user.st_mtime == MTIME + 1, "a directory's mtime is set after its contents"

    notes = (t / "home/user/notes").stat()
    assert (t / "home/user/notes").read_bytes() == b"hello\n"
    assert (notes.st_uid, notes.st_gid) == _owner(1000, 1001)
    assert stat.S_IMODE(notes.st_mode) == 0o640
    assert notes.st_mtime == MTIME
    assert notes.st_nlink == 2
    assert (t / "home/user/again").stat().st_ino == notes.st_ino

    assert stat.S_IMODE((t / "bin/su").stat().st_mode) == 0o4755, "chown must not clear setuid"
    assert stat.S_IMODE((t / "tmp").stat().st_mode) == 0o1777

    abs_link = (t / "home/user/abs").lstat()
    assert os.readlink(t / "home/user/abs") == "/etc/passwd"
    assert (abs_link.st_uid, abs_link.st_gid) == _owner(1000, 1001)
    assert abs_link.st_mtime == MTIME + 2
    assert os.readlink(t / "home/user/rel") == "notes"

    pipe = (t / "run/pipe").lstat()
    assert stat.S_ISFIFO(pipe.st_mode)
    assert (pipe.st_uid, pipe.st_gid) == _owner(5, 6)
    assert stat.S_IMODE(pipe.st_mode) == 0o620


@needs_root("device nodes other than whiteouts need CAP_MKNOD in the host's user namespace")
def test_device_nodes(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _unpack(t, [chardev("dev/null", 1, 3, mode=0o666), blockdev("dev/loop9", 7, 9, mode=0o660)])
    null = (t / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (t / "dev/loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode)
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 9)


@pytest.mark.skipif(ROOT, reason="root makes device nodes")
@pytest.mark.parametrize("device", [chardev("dev/null", 1, 3), blockdev("dev/loop9", 7, 9)])
def test_device_nodes_are_refused_without_root(tmp_path: Path, device: Entry) -> None:
    name = device.info.name
    with pytest.raises(LayerError, match=f"layer member '{name}': .*device nodes needs root"):
        _unpack(tmp_path / "t", [directory("dev"), file("dev/before", b"b"), device])
    assert not os.path.lexists(tmp_path / "t" / name)


def test_xattrs_are_kept_except_overlay_and_security_ones(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _unpack(
        t,
        [
            file(
                "ping",
                b"\x7fELF",
                mode=0o755,
                uid=0,
                xattrs={
                    "user.origin": "layer",
                    "user.binary": b"\x00\xff\xfe",
                    "security.capability": CAPABILITY,
                    "security.selinux": "system_u:object_r:bin_t:s0",
                    "trusted.overlay.redirect": "/etc",
                },
            ),
            directory(
                "d",
                xattrs={
                    "user.kind": "dir",
                    "trusted.overlay.opaque": "y",
                    "user.overlay.opaque": "y",
                    "user.overlay.redirect": "/etc",
                    "trusted.note": "t",
                },
            ),
            symlink("link", "ping"),
            fifo("pipe"),
        ],
    )
    ping = t / "ping"
    assert os.getxattr(ping, "user.origin") == b"layer"
    assert os.getxattr(ping, "user.binary") == b"\x00\xff\xfe"
    selinux = os.listxattr(ping)
    assert "security.selinux" not in selinux or os.getxattr(ping, "security.selinux") != (
        b"system_u:object_r:bin_t:s0"
    )
    assert os.getxattr(t / "d", "user.kind") == b"dir"
    # The overlays of a user other than root read user.overlay.*: forged, they could
    # make a directory opaque or redirect it.
    forged = [k for k in os.listxattr(t / "d") if k.startswith("user.overlay.")]
    assert forged == [], "a layer cannot forge overlayfs metadata"


@needs_root("only root may set trusted.* xattrs and file capabilities (security.capability)")
def test_privileged_xattrs_are_kept_as_root(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _unpack(
        t,
        [
            file(
                "ping",
                b"\x7fELF",
                mode=0o755,
                uid=0,
                xattrs={"security.capability": CAPABILITY, "trusted.overlay.redirect": "/etc"},
            ),
            directory("d", xattrs={"trusted.overlay.opaque": "y", "trusted.note": "t"}),
        ],
    )
    assert os.getxattr(t / "ping", "security.capability") == CAPABILITY
    assert "trusted.overlay.redirect" not in os.listxattr(t / "ping")
    assert os.getxattr(t / "d", "trusted.note") == b"t"
    assert "trusted.overlay.opaque" not in os.listxattr(t / "d"), "a layer cannot forge opacity"


@pytest.mark.skipif(ROOT, reason="root keeps privileged xattrs")
def test_privileged_xattrs_are_left_out_without_root(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _unpack(
        t,
        [
            file(
                "ping",
                b"\x7fELF",
                mode=0o755,
                xattrs={"security.capability": CAPABILITY, "trusted.note": "t", "user.kept": "k"},
            ),
            directory("d", xattrs={"trusted.note": "t", "user.kept": "k"}),
        ],
    )
    # The layer unpacks; what only root may set is left out, the rest is kept.
    assert os.listxattr(t / "ping") == ["user.kept"]
    assert stat.S_IMODE((t / "ping").stat().st_mode) == 0o755
    assert os.listxattr(t / "d") == ["user.kept"]


@needs_root("only root may set an xattr on a symlink (user.* ones are refused to everyone)")
def test_xattr_on_a_symlink_is_set_on_the_link(tmp_path: Path) -> None:
    t = tmp_path / "t"
    link = symlink("link", "target")
    link.info.pax_headers = {"SCHILY.xattr.trusted.mark": "on-link"}
    _unpack(t, [file("target"), link])
    assert os.getxattr(t / "link", "trusted.mark", follow_symlinks=False) == b"on-link"
    assert "trusted.mark" not in os.listxattr(t / "target")


def test_user_xattrs_of_links_and_fifos_are_left_out(tmp_path: Path) -> None:
    """The kernel takes user.* xattrs on regular files and directories only (xattr(7)),
    from root too: on a symlink or FIFO they are left out, and never set on what a
    symlink points at."""
    t = tmp_path / "t"
    link = symlink("link", "target")
    link.info.pax_headers = {"SCHILY.xattr.user.mark": "on-link"}
    pipe = fifo("pipe")
    pipe.info.pax_headers = {"SCHILY.xattr.user.mark": "on-pipe"}
    _unpack(t, [file("target", b"t"), link, pipe])
    assert os.listxattr(t / "link", follow_symlinks=False) == []
    assert os.listxattr(t / "pipe") == []
    assert os.listxattr(t / "target") == []
    assert os.readlink(t / "link") == "target"


def test_directories_without_search_permission(tmp_path: Path) -> None:
    """A directory that not even its owner may enter (``0000``), with directories in it:
    a user other than root must still reach them to set their modes and times."""
    t = tmp_path / "t"
    _unpack(
        t,
        [
            directory("locked", mode=0o000, mtime=MTIME),
            directory("locked/inner", mode=0o750, mtime=MTIME + 1),
            directory("locked/inner/deeper", mode=0o500, mtime=MTIME + 2),
            file("locked/inner/f", b"reached\n", mode=0o600),
            directory("read-only", mode=0o555, mtime=MTIME),
            directory("read-only/sub", mode=0o111, mtime=MTIME + 3),
        ],
    )
    locked = (t / "locked").stat()
    assert (stat.S_IMODE(locked.st_mode), locked.st_mtime) == (0o000, MTIME)
    os.chmod(t / "locked", 0o700)  # to look inside, as a user other than root must
    inner = (t / "locked/inner").stat()
    assert (stat.S_IMODE(inner.st_mode), inner.st_mtime) == (0o750, MTIME + 1)
    deeper = (t / "locked/inner/deeper").stat()
    assert (stat.S_IMODE(deeper.st_mode), deeper.st_mtime) == (0o500, MTIME + 2)
    assert (t / "locked/inner/f").read_bytes() == b"reached\n"
    sub = (t / "read-only/sub").stat()
    assert (stat.S_IMODE(sub.st_mode), sub.st_mtime) == (0o111, MTIME + 3)
    assert stat.S_IMODE((t / "read-only").stat().st_mode) == 0o555


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _unpack(
        t,
        [
            directory("etc"),
            whiteout("etc/motd"),
            whiteout("gone-dir"),
            opaque("var/cache"),
            file("var/cache/new", b"n"),
            file(".wh..wh.plnk/123.456"),
            file("etc/.wh..wh.aufs"),
        ],
    )
    for name in ("etc/motd", "gone-dir"):
        st = (t / name).lstat()
        assert stat.S_ISCHR(st.st_mode)
        assert st.st_rdev == 0
    assert os.getxattr(t / "var/cache", OPAQUE) == b"y"
    assert (t / "var/cache/new").read_bytes() == b"n"
    assert not (t / "etc/.wh.motd").exists()
    assert not list(t.rglob(".wh.*")), "no whiteout file names are left"


def test_whiteout_replaces_an_earlier_member(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _unpack(
        t, [file("a/x", b"x"), directory("a/d"), file("a/d/y"), whiteout("a/x"), whiteout("a/d")]
    )
    assert stat.S_ISCHR((t / "a/x").lstat().st_mode)
    assert stat.S_ISCHR((t / "a/d").lstat().st_mode)


@pytest.mark.parametrize("name", [".wh..", ".wh..."])
def test_whiteout_of_dot_names_is_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(LayerError, match="whiteout of"):
        _unpack(tmp_path / "t", [file(f"d/{name}")])


def test_hard_link_to_a_missing_target(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="hard link target 'nope' is not in the layer"):
        _unpack(tmp_path / "t", [hardlink("h", "nope")])


def test_hard_link_to_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="layer member 'h'"):
        _unpack(tmp_path / "t", [directory("d"), hardlink("h", "d")])


def test_non_utf8_names(tmp_path: Path) -> None:
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    _unpack(tmp_path / "t", [file(name, b"latin-1")])
    assert b"caf\xe9" in os.listdir(os.fsencode(tmp_path / "t"))


def test_owners_can_be_left_alone(tmp_path: Path) -> None:
    t = tmp_path / "t"
    t.mkdir()
    data = tar_bytes([file("f", uid=1234, gid=1234)])
    unpack_layer(io.BytesIO(data), t, MEDIA_TYPE_OCI_LAYER, keep_owners=False)
    assert (t / "f").stat().st_uid == os.geteuid()


def test_whiteout_used_as_a_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match=r"whiteout '\.wh\.d' used as a directory"):
        _unpack(tmp_path / "t", [file("a/.wh.d/x")])


def test_hard_link_takes_no_owner_or_mode(tmp_path: Path) -> None:
    t = tmp_path / "t"
    link = hardlink("again", "notes")
    link.info.uid, link.info.gid, link.info.mode = 1337, 2020, 0o4777
    _unpack(t, [file("notes", b"x", mode=0o640, uid=10, gid=20), symlink("s", "notes"), link])
    notes = (t / "notes").stat()
    assert (notes.st_uid, notes.st_gid) == _owner(10, 20)
    assert stat.S_IMODE(notes.st_mode) == 0o640
    assert (t / "again").stat().st_ino == notes.st_ino


def test_whiteout_keeps_the_parent_metadata(tmp_path: Path) -> None:
    t = tmp_path / "t"
    _unpack(
        t,
        [
            directory("some/path", mode=0o750, mtime=MTIME),
            whiteout("some/path/file"),
            whiteout("some/path/.hiddendir"),
            opaque("some/path"),
        ],
    )
    parent = (t / "some/path").stat()
    assert (stat.S_IMODE(parent.st_mode), parent.st_mtime) == (0o750, MTIME)
    assert stat.S_ISCHR((t / "some/path/.hiddendir").lstat().st_mode)


def _cache_refuses(tmp_path: Path, entries: list[Entry], limits: UnpackLimits, match: str) -> None:
    """Unpack a one-layer image through a cache; it fails and leaves nothing behind."""
    layout = build_oci_layout(tmp_path / "layout", [make_layer(entries)])
    cache = LayerCache(tmp_path / "cache", limits=limits)
    image = open_layout(layout.path, "latest")
    with pytest.raises(LayerError, match=match):
        cache.unpack(image, 0)
    assert os.listdir(tmp_path / "cache" / "tmp") == [], "the half-unpacked layer is removed"
    assert os.listdir(tmp_path / "cache" / "layers" / "sha256") == []


def test_gzip_bomb_in_the_cache_leaves_nothing(tmp_path: Path) -> None:
    entries = [file("zeros", b"\0" * (64 << 20))]
    limits = UnpackLimits(max_bytes=1 << 20)
    _cache_refuses(tmp_path, entries, limits, "'zeros': its 67108864 bytes would make")


def test_deepest_tree_allowed_can_be_removed(tmp_path: Path) -> None:
    # A tree as deep as the limit allows, then a member over another limit: the cache
    # must still be able to remove the tree (shutil.rmtree recurses once per level).
    deep = "d/" * (UnpackLimits().max_path_depth - 1) + "f"
    entries = [file(deep, b"deep"), file("second")]
    limits = UnpackLimits(max_files=1)
    _cache_refuses(tmp_path, entries, limits, "more than the limit of 1 members")


def test_tree_deeper_than_the_limit_is_refused(tmp_path: Path) -> None:
    # 2000 levels would unpack, but shutil.rmtree could not remove them again.
    limits = UnpackLimits(max_path_bytes=1 << 20)
    message = "path has 2001 components, more than the limit of 256"
    _cache_refuses(tmp_path, [file("d/" * 2000 + "f")], limits, message)
