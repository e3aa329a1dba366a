"""The layer writer: what it stores unpacks to the same tree, under the digests it says."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from containerlib.errors import ImageError
from containerlib.image.layer_writer import LayerWriter
from containerlib.image.layers import unpack_layer


def listing(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            body: object = None
            if stat.S_ISREG(st.st_mode):
                body = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, body)
    return out


def sample_tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_bytes(b"data" * 1000)
    (root / "a" / "b" / "file").chmod(0o640)
    os.link(root / "a" / "b" / "file", root / "a" / "twin")
    (root / "a" / "link").symlink_to("b/file")
    (root / "a" / "abs").symlink_to("/etc/passwd")
    os.mkfifo(root / "a" / "pipe", 0o600)
    (root / "empty").mkdir(mode=0o700)
    return root


def write(layout: Path, fill: object) -> tuple[str, str, int]:
    with LayerWriter(layout) as w:
        assert callable(fill)
        fill(w)
        layer = w.finish()
    return layer.descriptor.digest, layer.diff_id, layer.descriptor.size


def test_a_written_tree_unpacks_to_the_same_tree(tmp_path: Path) -> None:
    src = sample_tree(tmp_path / "src")
    layout = tmp_path / "layout"
    digest, diff_id, size = write(layout, lambda w: w.add_path(src, "/srv"))
    blob = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    assert blob.stat().st_size == size
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    assert "sha256:" + hashlib.sha256(gzip.decompress(blob.read_bytes())).hexdigest() == diff_id
    out = tmp_path / "out"
    out.mkdir()
    assert unpack_layer(blob, out, "application/vnd.oci.image.layer.v1.tar+gzip") == diff_id
    assert listing(out / "srv") == listing(src)
    # The hard link stays one file.
    assert (out / "srv" / "a" / "twin").stat().st_ino == (
        out / "srv" / "a" / "b" / "file"
    ).stat().st_ino
    # Parents of the destination are directory entries of their own.
    with tarfile.open(blob) as t:
        names = t.getnames()
        assert names[:2] == ["srv", "srv/a"]
        assert t.getmember("srv/a/b/file").uid == 0


def test_the_same_files_give_the_same_layer(tmp_path: Path) -> None:
    src = sample_tree(tmp_path / "src")
    first = write(tmp_path / "l1", lambda w: w.add_path(src, "/srv"))
    second = write(tmp_path / "l2", lambda w: w.add_path(src, "/srv"))
    assert first == second


def test_owner_none_keeps_the_hosts_owners_and_mode_sets_the_top(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    digest, _, _ = write(
        tmp_path / "l", lambda w: w.add_path(src, "/bin/tool", owner=None, mode=0o755)
    )
    with tarfile.open(tmp_path / "l" / "blobs" / "sha256" / digest[7:]) as t:
        member = t.getmember("bin/tool")
    assert (member.uid, member.mode) == (os.getuid(), 0o755)


def test_bytes_and_bad_names(tmp_path: Path) -> None:
    digest, _, _ = write(tmp_path / "l", lambda w: w.add_bytes("/etc/motd", b"hi\n", mode=0o600))
    with tarfile.open(tmp_path / "l" / "blobs" / "sha256" / digest[7:]) as t:
        member = t.getmember("etc/motd")
        assert (member.size, member.mode) == (3, 0o600)
    with LayerWriter(tmp_path / "l2") as w, pytest.raises(ImageError, match="not a plain path"):
        w.add_bytes("/etc/../../x", b"")
    with LayerWriter(tmp_path / "l3") as w, pytest.raises(ImageError, match="root directory"):
        w.add_bytes("/", b"")


def test_an_error_leaves_no_partial_blob(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "sock"))
        with pytest.raises(ImageError, match="socket"), LayerWriter(tmp_path / "l") as w:
            w.add_path(src, "/x")
    assert list((tmp_path / "l" / "blobs" / "sha256").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a whiteout is a 0:0 device: mknod needs root")
def test_an_overlay_upper_becomes_whiteouts_and_opaque_markers(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "var").mkdir()
    os.setxattr(upper / "var", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "etc", "trusted.overlay.impure", b"y")
    (upper / "var" / "new").write_bytes(b"n")
    digest, _, _ = write(tmp_path / "l", lambda w: w.add_upper(upper))
    with tarfile.open(tmp_path / "l" / "blobs" / "sha256" / digest[7:]) as t:
        members = {m.name: m for m in t.getmembers()}
    assert sorted(members) == ["etc", "etc/.wh.gone", "var", "var/.wh..wh..opq", "var/new"]
    assert members["etc/.wh.gone"].isfile()
    assert not any("overlay" in k for m in members.values() for k in m.pax_headers)

    os.setxattr(upper / "var", "trusted.overlay.redirect", b"/elsewhere")
    with pytest.raises(ImageError, match="redirect"), LayerWriter(tmp_path / "l2") as w:
        w.add_upper(upper)
