"""Hostile layers: nothing a layer holds may write, delete or change anything outside its target.

Each case builds a layer that tries to escape (through ``..``, absolute names, symlinks
planted earlier in the same layer, hard links, whiteouts, a directory replaced by a link)
and checks two things: the right :class:`LayerError` (or, for links that are merely
stored, no error), and a byte-for-byte unchanged ``outside/`` directory next to the target
(a sentinel file and directory: type, mode, owner, content, mtime, xattrs, and that
nothing was added). Every escaping link points into ``outside/``, never at the host's
``/etc`` or ``/``, so that a regression fails a test without touching the host.

Upstream cases
--------------

The cases of containerd's ``pkg/archive/tar_test.go`` (``TestBreakouts`` and its
neighbours) and of umoci's ``oci/layer/tar_extract_test.go``, rewritten as our own.
Lower-case names with dashes are ``CASES`` keys of ``test_breakout_is_refused``;
``unit:`` is ``tests/unit/test_image_layers.py``, ``unpack:``
``tests/integration/test_layers_unpack.py``, ``layout:`` ``tests/unit/test_image_layout.py``.

Upstream resolves absolute and ``..`` names *inside* the root (``/etc/passwd`` in a layer
means ``<root>/etc/passwd``) and follows symlinks as long as they stay inside it.
containerlib rejects such names outright and never walks through a symlink, so most
upstream "must stay inside" cases are "must be refused" here.

Upstream cases that start from an existing tree (``apply:`` in containerd) plant a link
with an *earlier layer* and write through it with a later one. That cannot arise in
containerlib: every layer is unpacked into its own empty directory
(:class:`~containerlib.image.cache.LayerCache`) and overlayfs stacks them, so a later
layer never sees an earlier layer's links. The same sequence is still tested inside one
layer (an earlier member plants the link), and ``test_links_across_layers_stay_links``
unpacks two real layers through the cache and mounts them.

==================================== ==============================================================
containerd                           ours
==================================== ==============================================================
SymlinkAbsolute                      symlink-then-write-through, absolute
SymlinkUpAndOut                      symlink-up-and-out
SymlinkMultipleAbsolute              symlink-multiple-absolute, symlink-chain
SymlinkMultipleRelative              symlink-multiple-relative
SymlinkEmptyFile                     symlink-then-truncate-through
HardlinkRelative                     hardlink-through-relative-symlink
HardlinkDownAndOut                   hardlink-through-down-and-out-symlink
HardlinkAbsolute                     hardlink-through-planted-symlink,
                                     hardlink-absolute-through-symlink
HardlinkRelativeLong                 hardlink-through-long-relative-symlink
HardlinkRelativeUpAndOut             hardlink-through-up-and-out-symlink
HardlinkDirectRelative               hardlink-dotdot, hardlink-long-dotdot
HardlinkDirectAbsolute               hardlink-absolute
SymlinkParentDirectory               symlink-named-dotdot
SymlinkEmptyFilename                 symlink-with-empty-name, symlink-as-root
SymlinkParentRelative                symlink-name-ending-in-dotdot
SymlinkSlashEnded                    test_slash_ended_directory_and_inner_hardlink
SymlinkOverrideDirectory             directory-replaced-by-symlink,
                                     test_links_across_layers_stay_links
SymlinkOverrideDirectoryRelative     directory-replaced-by-relative-symlink
DirectoryOverrideSymlink             test_directory_over_a_symlink_and_hardlink,
                                     test_member_over_a_symlink_replaces_the_link
DirectoryOverrideSymlinkAndHardlink  test_directory_over_a_symlink_and_hardlink,
                                     test_file_over_a_hardlink_gets_a_new_inode
WhiteoutRootParent                   whiteout-of-dotdot-at-root
WhiteoutParent                       whiteout-of-dotdot
WhiteoutRoot                         whiteout-of-dot-at-root
WhiteoutCurrentDirectory             whiteout-of-dot
WhiteoutSymlink                      test_member_over_a_symlink_replaces_the_link,
                                     test_links_across_layers_stay_links
WhiteoutSymlinkPath                  whiteout-through-symlink
WhiteoutDirectoryName                unpack: test_whiteout_used_as_a_directory_is_rejected
                                     (upstream writes ``.wh.etc/x`` as a plain path)
WhiteoutDeadSymlinkParent            whiteout-through-dangling-symlink
WhiteoutRelativePath                 whiteout-dotdot-deep, whiteout-dotdot
SymlinkOverridePath                  directory-replaced-by-symlink-then-rebuilt
HardlinkSymlinkBeforeCreateTarget    test_links_out_are_stored_never_followed
HardlinkSymlinkRelative              test_links_out_are_stored_never_followed
HardlinkSymlinkAbsolute              test_links_out_are_stored_never_followed
HardlinkSymlinkChmod                 test_hardlink_to_a_symlink_changes_no_mode,
                                     symlink-with-absolute-name
TestRelativeSymlinks, TestSymlinks   test_links_out_are_stored_never_followed
tar_toctou_test.go (lchmod and       test_replaced_directory_gets_no_metadata_through_a_link;
fchmodDir must not follow a link)    files and directories get their mode through O_NOFOLLOW fds
==================================== ==============================================================

==================================== ==============================================================
umoci                                ours
==================================== ==============================================================
TestUnpackEntrySanitiseScoping       dotdot, absolute-dotdot
TestUnpackEntrySymlinkScoping        test_write_through_a_scoping_symlink_is_refused (one
                                     parameter per upstream prefix)
TestUnpackEntryNonDirParent          file-then-write-below (umoci replaces the file with a
                                     directory; we refuse, as containerd and GNU tar do)
TestUnpackEntryParentDir             unit: test_missing_parents_are_made
TestUnpackEntryWhiteout              whiteout-without-a-name, whiteout-without-a-name-in-subdir;
                                     unpack: test_whiteout_replaces_an_earlier_member,
                                     unpack: test_whiteout_keeps_the_parent_metadata
TestUnpackOpaqueWhiteout             test_opaque_and_whiteout_of_a_directory_of_escaping_links
TestUnpackHardlink                   test_links_out_are_stored_never_followed,
                                     unpack: test_hard_link_takes_no_owner_or_mode,
                                     hardlink-absolute (umoci reads ``/regular`` as
                                     root-relative; we refuse)
TestUnpackEntry_OverlayfsRootfs_*    unpack: test_whiteouts_become_overlay_whiteouts,
                                     test_layers_overlay.py
test/hardening.bats (blob digest,    not the extractor: layout.open_blob verifies; layout:
descriptor size)                     test_digest_mismatch_names_the_blob,
                                     test_size_mismatch_names_the_blob
==================================== ==============================================================

Every case runs as root and as any other user (rootless): a hostile layer must not escape
for either. A non-root user's unpack differs only where privilege is needed (owners are
the caller's, opaque directories carry ``user.overlay.opaque``), and its layers are stacked
in a user namespace with ``userxattr``, as its containers stack them.

Our own cases beyond upstream's: dotdot-new-file, dotdot-in-the-middle, dot-then-dotdot,
absolute-into-outside, relative-symlink-up, symlink-to-dotdot, symlink-then-new-file-through,
symlink-then-directory-through, hardlink-to-root, hardlink-named-through-symlink,
opaque-through-symlink, test_replacing_a_directory_does_not_follow_links_inside_it,
test_xattrs_of_a_link_out_are_never_set_outside.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from containerlib.errors import LayerError
from containerlib.image.cache import LayerCache
from containerlib.image.layers import unpack_layer
from containerlib.image.layout import open_layout
from containerlib.spec.image import MEDIA_TYPE_OCI_LAYER
from tests.image_builders import (
    Entry,
    build_oci_layout,
    directory,
    file,
    hardlink,
    make_layer,
    opaque,
    raw_entry,
    symlink,
    tar_bytes,
    whiteout,
)
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.root]

UNIQUE = f"containerlib-breakout-{os.getpid()}"
# Enough ".." to climb from anywhere under the arena to "/"; followed by the outside
# directory's absolute path without its leading "/", it reaches outside/.
CLIMB = "../" * 40
# The marker of an opaque directory: for the overlays root mounts, or a user's with
# ``userxattr`` in a user namespace.
OPAQUE = "trusted.overlay.opaque" if ROOT else "user.overlay.opaque"


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
    os.utime(outside / "sentinel", ns=(1_000_000_000, 1_000_000_000))
    (tmp_path / "target").mkdir()
    return tmp_path


def _raw(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return raw_entry(info)


def _up(o: Path) -> str:
    """A relative link target that climbs out of any directory in the arena to ``o``."""
    return CLIMB + str(o).lstrip("/")


# Each case: the layer (given the outside directory's path) and the error it must raise.
Case = tuple[Callable[[Path], list[Entry]], str]

CASES: dict[str, Case] = {
    # -- names that leave the root by themselves --------------------------------------
    "dotdot": (lambda o: [file("../outside/sentinel", b"pwned")], r"'\.\.' component"),
    "dotdot-new-file": (lambda o: [file("../x", b"pwned")], r"'\.\.' component"),
    "absolute": (lambda o: [file(f"/etc/{UNIQUE}", b"pwned")], "absolute path"),
    "absolute-dotdot": (lambda o: [file("/../sentinel", b"pwned")], "absolute path"),
    "absolute-into-outside": (lambda o: [file(f"{o}/sentinel", b"pwned")], "absolute path"),
    "dotdot-in-the-middle": (lambda o: [file("a/../../outside/x", b"pwned")], r"'\.\.'"),
    "dot-then-dotdot": (lambda o: [_raw("./../outside/x")], r"'\.\.' component"),
    "symlink-named-dotdot": (lambda o: [_raw("..", tarfile.SYMTYPE, str(o))], r"'\.\.'"),
    "symlink-name-ending-in-dotdot": (
        lambda o: [_raw("localetc/sub/..", tarfile.SYMTYPE, str(o))],
        r"'\.\.' component",
    ),
    "symlink-with-empty-name": (lambda o: [_raw("", tarfile.SYMTYPE, str(o))], "layer root"),
    "symlink-as-root": (lambda o: [_raw(".", tarfile.SYMTYPE, str(o))], "layer root"),
    "symlink-with-absolute-name": (
        lambda o: [_raw(f"{o}/sentinel", tarfile.SYMTYPE, "/")],
        "absolute path",
    ),
    # -- writes through a symlink planted earlier in the layer ------------------------
    "symlink-then-write-through": (
        lambda o: [symlink("evil", str(o)), file("evil/sentinel", b"pwned")],
        "'evil' is a symlink or not a directory",
    ),
    "symlink-then-new-file-through": (
        lambda o: [symlink("evil", str(o)), file("evil/new", b"pwned")],
        "'evil' is a symlink or not a directory",
    ),
    "symlink-then-truncate-through": (
        lambda o: [directory("etc"), symlink("localetc", str(o)), file("localetc/sentinel")],
        "'localetc' is a symlink",
    ),
    "relative-symlink-up": (
        lambda o: [symlink("up", "../outside"), file("up/sentinel", b"pwned")],
        "'up' is a symlink",
    ),
    "symlink-up-and-out": (
        lambda o: [
            directory("dummy"),
            symlink("localetc", "dummy/../../outside"),
            file("localetc/sentinel", b"pwned"),
        ],
        "'localetc' is a symlink",
    ),
    "symlink-multiple-absolute": (
        lambda o: [
            directory("dummy"),
            symlink("dummy/etc", str(o)),
            symlink("localetc", "/dummy/etc"),
            file("dummy/etc/sentinel", b"pwned"),
        ],
        "'dummy/etc' is a symlink",
    ),
    "symlink-multiple-relative": (
        lambda o: [
            directory("dummy"),
            symlink("dummy/etc", str(o)),
            symlink("localetc", "./dummy/etc"),
            file("localetc/sentinel", b"pwned"),
        ],
        "'localetc' is a symlink",
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
    "directory-replaced-by-symlink": (
        lambda o: [directory("d"), file("d/a"), symlink("d", str(o)), file("d/sentinel", b"pwned")],
        "'d' is a symlink",
    ),
    "directory-replaced-by-relative-symlink": (
        lambda o: [
            directory("localetc"),
            file("etc/passwd"),
            symlink("localetc", "../outside"),
            hardlink("localetc/localpasswd", "etc/passwd"),
        ],
        "'localetc' is a symlink",
    ),
    # The extractor keeps the last parent directory open: replacing that directory by a
    # link must not leave a stale fd that still writes into the old place, nor follow it.
    "directory-replaced-by-symlink-then-rebuilt": (
        lambda o: [
            directory("foo"),
            directory("foo/dir"),
            file("foo/dir/inner", b"one"),
            symlink("foo", str(o)),
            file("foo/dir/inner", b"pwned"),
        ],
        "'foo' is a symlink",
    ),
    "file-then-write-below": (
        lambda o: [file("f"), file("f/sentinel", b"pwned")],
        "'f' is a symlink or not a directory",
    ),
    # -- hard links -------------------------------------------------------------------
    "hardlink-absolute": (lambda o: [hardlink("passwd", "/etc/passwd")], "absolute path"),
    "hardlink-dotdot": (lambda o: [hardlink("h", "../outside/sentinel")], r"'\.\.' component"),
    "hardlink-long-dotdot": (lambda o: [hardlink("h", _up(o) + "/sentinel")], r"'\.\.'"),
    "hardlink-through-planted-symlink": (
        lambda o: [symlink("link", str(o)), hardlink("h", "link/sentinel")],
        "'link' is a symlink",
    ),
    "hardlink-absolute-through-symlink": (
        lambda o: [symlink("localetc", str(o)), hardlink("h", "/localetc/sentinel")],
        "absolute path",
    ),
    "hardlink-through-relative-symlink": (
        lambda o: [
            directory("breakouts"),
            symlink("breakouts/d1", "../../outside"),
            hardlink("breakouts/mypasswd", "breakouts/d1/sentinel"),
        ],
        "'breakouts/d1' is a symlink",
    ),
    "hardlink-through-down-and-out-symlink": (
        lambda o: [
            directory("breakouts"),
            directory("downandout"),
            symlink("breakouts/d1", "../downandout/../../outside"),
            hardlink("breakouts/mypasswd", "breakouts/d1/sentinel"),
        ],
        "'breakouts/d1' is a symlink",
    ),
    "hardlink-through-long-relative-symlink": (
        lambda o: [symlink("localetc", _up(o)), hardlink("localpasswd", "localetc/sentinel")],
        "'localetc' is a symlink",
    ),
    "hardlink-through-up-and-out-symlink": (
        lambda o: [
            symlink("localetc", "upandout/../../outside"),
            hardlink("localpasswd", "localetc/sentinel"),
        ],
        "'localetc' is a symlink",
    ),
    "hardlink-to-root": (lambda o: [hardlink("h", ".")], "hard link to the layer root"),
    "hardlink-named-through-symlink": (
        lambda o: [file("f"), symlink("evil", str(o)), hardlink("evil/h", "f")],
        "'evil' is a symlink",
    ),
    # -- whiteouts and opaque markers -------------------------------------------------
    "whiteout-dotdot": (lambda o: [_raw("../.wh.sentinel")], r"'\.\.' component"),
    "whiteout-dotdot-deep": (lambda o: [_raw("a/../../outside/.wh.sentinel")], r"'\.\.'"),
    "whiteout-through-symlink": (
        lambda o: [symlink("evil", str(o)), whiteout("evil/sentinel")],
        "'evil' is a symlink",
    ),
    "whiteout-through-dangling-symlink": (
        lambda o: [symlink("localetc", "/dne"), whiteout("localetc/etc")],
        "'localetc' is a symlink",
    ),
    "whiteout-of-dotdot": (lambda o: [_raw("d/.wh..."), _raw("d/.wh..")], "whiteout of"),
    "whiteout-of-dot": (lambda o: [directory("etc"), _raw("etc/.wh..")], "whiteout of '.'"),
    "whiteout-of-dotdot-at-root": (lambda o: [_raw(".wh...")], r"whiteout of '\.\.'"),
    "whiteout-of-dot-at-root": (lambda o: [_raw(".wh..")], r"whiteout of '\.'"),
    "whiteout-without-a-name": (lambda o: [_raw(".wh.")], "whiteout without a name"),
    "whiteout-without-a-name-in-subdir": (
        lambda o: [_raw("some/path/.wh.")],
        "whiteout without a name",
    ),
    "opaque-through-symlink": (
        lambda o: [symlink("evil", str(o)), opaque("evil")],
        "'evil' is a symlink",
    ),
}


def _check_nothing_escaped(arena: Path, before: dict[str, tuple[object, ...]]) -> None:
    assert _snapshot(arena, arena / "target") == before
    assert not Path("/etc", UNIQUE).exists()
    assert sorted(os.listdir(arena)) == ["outside", "target"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_breakout_is_refused(arena: Path, case: str) -> None:
    build, message = CASES[case]
    outside, target = arena / "outside", arena / "target"
    before = _snapshot(arena, target)
    data = tar_bytes(build(outside))
    with pytest.raises(LayerError, match=message):
        unpack_layer(io.BytesIO(data), target, MEDIA_TYPE_OCI_LAYER)
    _check_nothing_escaped(arena, before)


@pytest.mark.parametrize(
    ("prefix", "through"),
    [
        ("/", "{abs}"),
        ("/../", "{abs}"),
        ("/../../../../../../../../../../../../../../../", "{abs}"),
        ("/./.././.././.././.././.././.././.././.././../", "{abs}"),
        ("..", "outside"),
        ("../outside", "."),
    ],
)
def test_write_through_a_scoping_symlink_is_refused(arena: Path, prefix: str, through: str) -> None:
    # The path written through the link leads to outside/sentinel if the link were
    # followed, so that a regression shows here and never touches the host.
    outside, target = arena / "outside", arena / "target"
    before = _snapshot(arena, target)
    name = f"link/{through.format(abs=str(outside).lstrip('/'))}/sentinel"
    data = tar_bytes([symlink("link", prefix), file(name, b"pwned")])
    with pytest.raises(LayerError, match="'link' is a symlink"):
        unpack_layer(io.BytesIO(data), target, MEDIA_TYPE_OCI_LAYER)
    _check_nothing_escaped(arena, before)
    assert os.readlink(target / "link") == prefix


def _unpack_ok(arena: Path, entries: list[Entry]) -> Path:
    target = arena / "target"
    before = _snapshot(arena, target)
    unpack_layer(io.BytesIO(tar_bytes(entries)), target, MEDIA_TYPE_OCI_LAYER)
    _check_nothing_escaped(arena, before)
    return target


def test_links_out_are_stored_never_followed(arena: Path) -> None:
    outside = arena / "outside"
    target = _unpack_ok(
        arena,
        [
            symlink("abs", str(outside / "sentinel")),
            symlink("rel", "../outside/sentinel"),
            symlink("dir", str(outside)),
            symlink("long", _up(outside) + "/sentinel"),
            # A hard link to a symlink links the symlink, not what it points at.
            hardlink("hard-to-abs", "abs"),
            hardlink("hard-to-long", "long"),
            # Upstream's HardlinkSymlinkBeforeCreateTarget: the name the link points at
            # appears only later, inside the layer; the hard link stays the symlink's.
            symlink("localpasswd", "/etc/passwd"),
            hardlink("localpasswd-dup", "localpasswd"),
            directory("etc"),
            file("etc/passwd", b"after"),
        ],
    )
    assert os.readlink(target / "abs") == str(outside / "sentinel")
    assert os.readlink(target / "rel") == "../outside/sentinel"
    assert os.readlink(target / "hard-to-abs") == str(outside / "sentinel")
    assert os.readlink(target / "hard-to-long") == _up(outside) + "/sentinel"
    assert (target / "abs").lstat().st_ino == (target / "hard-to-abs").lstat().st_ino
    assert (target / "long").lstat().st_ino == (target / "hard-to-long").lstat().st_ino
    dup = (target / "localpasswd-dup").lstat()
    assert stat.S_ISLNK(dup.st_mode)
    assert dup.st_ino == (target / "localpasswd").lstat().st_ino
    assert dup.st_ino != (target / "etc/passwd").lstat().st_ino


def test_hardlink_to_a_symlink_changes_no_mode(arena: Path) -> None:
    outside = arena / "outside"
    os.chmod(outside / "sentinel", 0o400)
    link = hardlink("sketchylink", "s")
    link.info.mode = 0o777
    link.info.uid = link.info.gid = 4321
    _unpack_ok(arena, [symlink("s", str(outside / "sentinel")), link])
    assert stat.S_IMODE((outside / "sentinel").stat().st_mode) == 0o400


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
            symlink("localetc", str(outside)),
            opaque("x"),
            whiteout("localetc"),
        ],
    )
    assert (target / "s").read_bytes() == b"mine"
    assert (target / "d").is_dir()
    assert not (target / "d").is_symlink()
    assert stat.S_ISCHR((target / "w").lstat().st_mode)
    assert stat.S_ISCHR((target / "localetc").lstat().st_mode)


def test_directory_over_a_symlink_and_hardlink(arena: Path) -> None:
    outside = arena / "outside"
    target = _unpack_ok(
        arena,
        [
            directory("etc"),
            file("etc/passwd", b"inside"),
            symlink("localetc", str(outside)),
            directory("localetc"),
            hardlink("localetc/localpasswd", "etc/passwd"),
            file("localetc/other", b"different"),
        ],
    )
    assert not (target / "localetc").is_symlink()
    assert (target / "localetc/localpasswd").stat().st_ino == (target / "etc/passwd").stat().st_ino
    assert (target / "localetc/other").read_bytes() == b"different"


def test_file_over_a_hardlink_gets_a_new_inode(arena: Path) -> None:
    target = _unpack_ok(
        arena,
        [
            directory("etc"),
            file("etc/passwd", b"inside"),
            hardlink("localpasswd", "etc/passwd"),
            file("localpasswd", b"different"),
        ],
    )
    assert (target / "etc/passwd").read_bytes() == b"inside"
    assert (target / "localpasswd").read_bytes() == b"different"
    assert (target / "etc/passwd").stat().st_nlink == 1


def test_slash_ended_directory_and_inner_hardlink(arena: Path) -> None:
    target = _unpack_ok(
        arena,
        [
            directory("etc"),
            file("etc/passwd", b"inside"),
            directory("localetc/"),
            hardlink("localetc/localpasswd", "etc/passwd"),
        ],
    )
    assert (target / "localetc/localpasswd").stat().st_ino == (target / "etc/passwd").stat().st_ino


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


def test_opaque_and_whiteout_of_a_directory_of_escaping_links(arena: Path) -> None:
    outside = arena / "outside"
    escaping = [
        symlink("link", ".."),
        symlink("badlink", "./nothing"),
        directory("dir"),
        symlink("dir/link", "../badlink"),
        symlink("dir/verybadlink", _up(outside) + "/sentinel"),
        symlink("dir/verybadlink2", "/" + _up(outside) + "/dir"),
        symlink("dir/up", "../../outside"),
    ]
    target = _unpack_ok(arena, [*escaping, opaque("dir"), file("dir/new", b"n")])
    assert os.getxattr(target / "dir", OPAQUE) == b"y"
    assert os.readlink(target / "dir/verybadlink") == _up(outside) + "/sentinel"
    assert (target / "dir/new").read_bytes() == b"n"
    (arena / "target2").mkdir()
    layer = tar_bytes([*escaping, whiteout("dir"), whiteout("link")])
    before = _snapshot(arena, arena / "target2")
    unpack_layer(io.BytesIO(layer), arena / "target2", MEDIA_TYPE_OCI_LAYER)
    assert _snapshot(arena, arena / "target2") == before
    assert stat.S_ISCHR((arena / "target2/dir").lstat().st_mode)
    assert stat.S_ISCHR((arena / "target2/link").lstat().st_mode)


def test_replaced_directory_gets_no_metadata_through_a_link(arena: Path) -> None:
    outside = arena / "outside"
    os.chmod(outside / "dir", 0o755)
    _unpack_ok(arena, [directory("d", mode=0o777), file("d"), symlink("d", str(outside / "dir"))])
    assert stat.S_IMODE((outside / "dir").stat().st_mode) == 0o755


def test_xattrs_of_a_link_out_are_never_set_outside(arena: Path) -> None:
    """A symlink's xattrs go on the link or nowhere: never on what it points at. (The
    kernel refuses user.* on symlinks, trusted.* to anyone but root: both are left out
    or set on the link itself, and the snapshot shows the xattrs of everything outside.)"""
    outside = arena / "outside"
    marks = {"SCHILY.xattr.user.mark": "pwned", "SCHILY.xattr.trusted.mark": "pwned"}
    to_file = symlink("file-out", str(outside / "sentinel"))
    to_dir = symlink("dir-out", "../outside/dir")
    to_file.info.pax_headers = to_dir.info.pax_headers = marks
    target = _unpack_ok(arena, [to_file, to_dir])
    assert os.readlink(target / "file-out") == str(outside / "sentinel")
    assert os.readlink(target / "dir-out") == "../outside/dir"


# Run in a mount namespace of its own, so that the overlay goes with the process: mounts
# an overlay (argv: its options and mountpoint) and prints, as JSON, what each name
# given after them is in it.
_LOOK_IN_OVERLAY = """
import json, os, subprocess, sys
options, mountpoint, *names = sys.argv[1:]
subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, mountpoint], check=True)
seen = {}
for name in names:
    path = os.path.join(mountpoint, name)
    if os.path.islink(path):
        seen[name] = ["link", os.readlink(path)]
    elif os.path.isdir(path):
        seen[name] = ["dir"]
    elif os.path.isfile(path):
        with open(path, "rb") as f:
            seen[name] = ["file", f.read().decode()]
    else:
        seen[name] = ["other"] if os.path.lexists(path) else None
print(json.dumps(seen))
"""


def _look_in_overlay(
    lowers: tuple[Path, ...], mountpoint: Path, names: list[str]
) -> dict[str, list[str] | None]:
    """What each of ``names`` is in an overlay of ``lowers`` (the lowest first), mounted
    as this user's containers mount it: ``["link", target]``, ``["dir"]``,
    ``["file", text]``, or None where nothing is. Root mounts it in a mount namespace of
    its own; another user in a user namespace too, with ``userxattr``. Either way the
    mount ends with the process and is never seen on the host."""
    stack = ":".join(str(p) for p in reversed(lowers))
    if ROOT:
        unshare, options = ["unshare", "--mount"], f"lowerdir={stack}"
    else:
        unshare = ["unshare", "--user", "--map-root-user", "--mount"]
        options = f"userxattr,lowerdir={stack}"
    look = [*unshare, sys.executable, "-c", _LOOK_IN_OVERLAY, options, str(mountpoint), *names]
    result = subprocess.run(look, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    seen: dict[str, list[str] | None] = json.loads(result.stdout)
    return seen


def test_links_across_layers_stay_links(arena: Path) -> None:
    """An earlier layer's link is never under a later layer's files: each has its own tree."""
    outside = arena / "outside"
    before = _snapshot(arena, arena / "target")
    lower = make_layer(
        [
            directory("etc"),
            file("etc/passwd", b"inside"),
            symlink("localetc", str(outside)),
            symlink("up", "../../outside"),
            directory("override"),
            symlink("gone", str(outside)),
        ]
    )
    upper = make_layer(
        [
            file("localetc/sentinel", b"pwned"),
            file("up/sentinel", b"pwned"),
            symlink("override", str(outside)),
            whiteout("gone"),
        ]
    )
    layout = build_oci_layout(arena / "target" / "layout", [lower, upper])
    cache = LayerCache(arena / "target" / "cache")
    lowers = cache.ensure(open_layout(layout.path, "latest"))
    _check_nothing_escaped(arena, before)
    assert os.readlink(lowers[0] / "localetc") == str(outside)
    assert (lowers[1] / "localetc").is_dir()
    assert not (lowers[1] / "localetc").is_symlink()

    mountpoint = arena / "target" / "merged"
    mountpoint.mkdir()
    names = ["localetc", "localetc/sentinel", "up/sentinel", "override", "gone", "etc/passwd"]
    assert _look_in_overlay(lowers, mountpoint, names) == {
        # The upper layer's directory hides the lower layer's link to the same name.
        "localetc": ["dir"],
        "localetc/sentinel": ["file", "pwned"],
        "up/sentinel": ["file", "pwned"],
        "override": ["link", str(outside)],
        "gone": None,
        "etc/passwd": ["file", "inside"],
    }
    _check_nothing_escaped(arena, before)
