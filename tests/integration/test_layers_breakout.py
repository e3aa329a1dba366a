"""Hostile layers: nothing a layer holds may write, delete or change anything outside its target.

Each case builds a layer that tries to escape (through ``..``, absolute names, symlinks
planted earlier in the same layer, hard links, whiteouts, a directory replaced by a link)
and checks two things: the right :class:`LayerError` (or, for links that are merely
stored, no error), and a byte-for-byte unchanged sentinel directory next to the target.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from containerlib.errors import LayerError
from containerlib.image.layers import unpack_layer
from containerlib.spec.image import MEDIA_TYPE_OCI_LAYER
from tests.image_builders import (
    Entry,
    directory,
    file,
    hardlink,
    opaque,
    raw_entry,
    symlink,
    tar_bytes,
    whiteout,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: whiteouts are device nodes"),
]

UNIQUE = f"containerlib-breakout-{os.getpid()}"


def _snapshot(top: Path, skip: Path) -> dict[str, tuple[object, ...]]:
    """Everything under ``top`` except ``skip``: type, mode, owner, contents, xattrs."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in [*dirnames, *filenames, "."]:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = path.read_bytes()
            else:
                content = None
            xattrs = sorted(os.listxattr(path, follow_symlinks=False))
            key = str(path.relative_to(top))
            found[key] = (st.st_mode, st.st_uid, st.st_nlink, st.st_mtime_ns, content, xattrs)
    return found


@pytest.fixture
def arena(tmp_path: Path) -> Path:
    """``outside/`` with a sentinel file and directory, beside an empty ``target/``."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "sentinel").write_bytes(b"must not change\n")
    (outside / "dir" / "inner").write_bytes(b"nor this\n")
    (tmp_path / "target").mkdir()
    return tmp_path


def _raw(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return raw_entry(info)


# Each case: the layer (given the outside directory's path) and the error it must raise.
Case = tuple[Callable[[Path], list[Entry]], str]

CASES: dict[str, Case] = {
    "dotdot": (lambda o: [file("../outside/sentinel", b"pwned")], r"'\.\.' component"),
    "dotdot-new-file": (lambda o: [file("../x", b"pwned")], r"'\.\.' component"),
    "absolute": (lambda o: [file(f"/etc/{UNIQUE}", b"pwned")], "absolute path"),
    "absolute-into-outside": (lambda o: [file(f"{o}/sentinel", b"pwned")], "absolute path"),
    "dotdot-in-the-middle": (lambda o: [file("a/../../outside/x", b"pwned")], r"'\.\.'"),
    "dot-then-dotdot": (lambda o: [_raw("./../outside/x")], r"'\.\.' component"),
    "symlink-then-write-through": (
        lambda o: [symlink("evil", str(o)), file("evil/sentinel", b"pwned")],
        "'evil' is a symlink or not a directory",
    ),
    "symlink-then-new-file-through": (
        lambda o: [symlink("evil", str(o)), file("evil/new", b"pwned")],
        "'evil' is a symlink or not a directory",
    ),
    "relative-symlink-up": (
        lambda o: [symlink("up", "../outside"), file("up/sentinel", b"pwned")],
        "'up' is a symlink",
    ),
    "symlink-to-dotdot": (
        lambda o: [
            directory("d"),
            symlink("d/up", ".."),
            symlink("d/up2", "../.."),
            file("d/up2/outside/sentinel", b"pwned"),
        ],
        "'d/up2' is a symlink",
    ),
    "symlink-chain": (
        lambda o: [symlink("a", "b"), symlink("b", str(o)), file("a/sentinel", b"pwned")],
        "'a' is a symlink",
    ),
    "symlink-then-directory-through": (
        lambda o: [symlink("evil", str(o)), directory("evil/newdir")],
        "'evil' is a symlink",
    ),
    "hardlink-absolute": (lambda o: [hardlink("passwd", "/etc/passwd")], "absolute path"),
    "hardlink-dotdot": (lambda o: [hardlink("h", "../outside/sentinel")], r"'\.\.' component"),
    "hardlink-through-planted-symlink": (
        lambda o: [symlink("link", str(o)), hardlink("h", "link/sentinel")],
        "'link' is a symlink",
    ),
    "hardlink-to-root": (lambda o: [hardlink("h", ".")], "hard link to the layer root"),
    "hardlink-named-through-symlink": (
        lambda o: [file("f"), symlink("evil", str(o)), hardlink("evil/h", "f")],
        "'evil' is a symlink",
    ),
    "whiteout-dotdot": (lambda o: [_raw("../.wh.sentinel")], r"'\.\.' component"),
    "whiteout-dotdot-deep": (lambda o: [_raw("a/../../outside/.wh.sentinel")], r"'\.\.'"),
    "whiteout-through-symlink": (
        lambda o: [symlink("evil", str(o)), whiteout("evil/sentinel")],
        "'evil' is a symlink",
    ),
    "whiteout-of-dotdot": (lambda o: [_raw("d/.wh..."), _raw("d/.wh..")], "whiteout of"),
    "opaque-through-symlink": (
        lambda o: [symlink("evil", str(o)), opaque("evil")],
        "'evil' is a symlink",
    ),
    "directory-replaced-by-symlink": (
        lambda o: [directory("d"), file("d/a"), symlink("d", str(o)), file("d/sentinel", b"pwned")],
        "'d' is a symlink",
    ),
    "file-then-write-below": (
        lambda o: [file("f"), file("f/sentinel", b"pwned")],
        "'f' is a symlink or not a directory",
    ),
    "symlink-as-root": (lambda o: [_raw(".", tarfile.SYMTYPE, str(o))], "layer root"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_breakout_is_refused(arena: Path, case: str) -> None:
    build, message = CASES[case]
    outside, target = arena / "outside", arena / "target"
    before = _snapshot(arena, target)
    data = tar_bytes(build(outside))
    with pytest.raises(LayerError, match=message):
        unpack_layer(io.BytesIO(data), target, MEDIA_TYPE_OCI_LAYER)
    assert _snapshot(arena, target) == before
    assert not Path("/etc", UNIQUE).exists()
    assert not (arena / "x").exists()


def _unpack_ok(arena: Path, entries: list[Entry]) -> Path:
    target = arena / "target"
    before = _snapshot(arena, target)
    unpack_layer(io.BytesIO(tar_bytes(entries)), target, MEDIA_TYPE_OCI_LAYER)
    assert _snapshot(arena, target) == before
    return target


def test_links_out_are_stored_never_followed(arena: Path) -> None:
    outside = arena / "outside"
    target = _unpack_ok(
        arena,
        [
            symlink("abs", str(outside / "sentinel")),
            symlink("rel", "../outside/sentinel"),
            symlink("dir", str(outside)),
            # A hard link to a symlink links the symlink, not what it points at.
            hardlink("hard-to-abs", "abs"),
        ],
    )
    assert os.readlink(target / "abs") == str(outside / "sentinel")
    assert os.readlink(target / "rel") == "../outside/sentinel"
    assert os.readlink(target / "hard-to-abs") == str(outside / "sentinel")
    assert (target / "abs").lstat().st_ino == (target / "hard-to-abs").lstat().st_ino


def test_member_over_a_symlink_replaces_the_link(arena: Path) -> None:
    outside = arena / "outside"
    target = _unpack_ok(
        arena,
        [
            symlink("s", str(outside / "sentinel")),
            file("s", b"mine"),
            symlink("d", str(outside / "dir")),
            directory("d", mode=0o700),
            symlink("w", str(outside / "sentinel")),
            whiteout("w"),
        ],
    )
    assert (target / "s").read_bytes() == b"mine"
    assert (target / "d").is_dir()
    assert not (target / "d").is_symlink()
    assert stat.S_ISCHR((target / "w").lstat().st_mode)


def test_replacing_a_directory_does_not_follow_links_inside_it(arena: Path) -> None:
    outside = arena / "outside"
    target = _unpack_ok(
        arena,
        [
            directory("d"),
            symlink("d/out", str(outside)),
            symlink("d/sentinel", str(outside / "sentinel")),
            file("d", b"now a file"),
        ],
    )
    assert (target / "d").read_bytes() == b"now a file"
    assert (outside / "dir" / "inner").exists()


def test_metadata_of_a_replaced_directory_is_not_applied_through_a_link(arena: Path) -> None:
    outside = arena / "outside"
    os.chmod(outside / "dir", 0o755)
    _unpack_ok(arena, [directory("d", mode=0o777), file("d"), symlink("d", str(outside / "dir"))])
    assert stat.S_IMODE((outside / "dir").stat().st_mode) == 0o755
