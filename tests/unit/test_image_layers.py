"""Unpacking layers without privilege: streams, compression, limits and name rules.

Everything here runs as any user (owners are not kept); device nodes, whiteouts, owners
and the breakout cases are in ``tests/integration/test_layers_*.py``.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import importlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from containerlib.errors import LayerError, SpecError
from containerlib.image.layers import SupportsRead, UnpackLimits, unpack_layer
from containerlib.spec.image import (
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
)
from tests.image_builders import (
    directory,
    file,
    hardlink,
    make_layer,
    raw_entry,
    symlink,
    tar_bytes,
)


def _unpack(
    target: Path,
    data: bytes,
    media_type: str = MEDIA_TYPE_OCI_LAYER,
    *,
    blob: SupportsRead | None = None,
    **kw: Any,
) -> str:
    target.mkdir(exist_ok=True)
    source = io.BytesIO(data) if blob is None else blob
    return unpack_layer(source, target, media_type, keep_owners=False, **kw)


ENTRIES = [
    directory("etc"),
    file("etc/hostname", b"box\n"),
    file("./bin/tool", b"#!/bin/sh\n", mode=0o755),
    symlink("bin/link", "tool"),
]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_unpack_returns_the_diff_id(tmp_path: Path, compression: Any) -> None:
    layer = make_layer(ENTRIES, compression=compression)
    diff_id = _unpack(tmp_path / "t", layer.blob, layer.media_type)
    assert diff_id == layer.diff_id == "sha256:" + hashlib.sha256(tar_bytes(ENTRIES)).hexdigest()
    assert (tmp_path / "t/etc/hostname").read_bytes() == b"box\n"
    assert (tmp_path / "t/bin/tool").stat().st_mode & 0o777 == 0o755
    assert os.readlink(tmp_path / "t/bin/link") == "tool"


def test_unpack_from_a_path(tmp_path: Path) -> None:
    layer = make_layer(ENTRIES)
    (tmp_path / "blob").write_bytes(layer.blob)
    (tmp_path / "t").mkdir()
    diff_id = unpack_layer(tmp_path / "blob", tmp_path / "t", layer.media_type, keep_owners=False)
    assert diff_id == layer.diff_id


def test_compression_is_read_from_the_stream_not_the_label(tmp_path: Path) -> None:
    # `docker save` labels plain tar layers as tar.gzip.
    tar = tar_bytes(ENTRIES)
    assert _unpack(tmp_path / "a", tar, MEDIA_TYPE_DOCKER_LAYER_GZIP) == make_layer(ENTRIES).diff_id
    assert _unpack(tmp_path / "b", gzip.compress(tar), MEDIA_TYPE_OCI_LAYER).startswith("sha256:")


def test_diff_id_covers_padding_after_the_end_of_archive(tmp_path: Path) -> None:
    tar = tar_bytes(ENTRIES) + b"\0" * 10240
    assert _unpack(tmp_path / "t", tar) == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_unknown_media_type(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="unsupported layer media type 'text/plain'"):
        _unpack(tmp_path / "t", tar_bytes(ENTRIES), "text/plain")


def test_zstd_without_the_module_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def no_zstandard(name: str, package: str | None = None) -> Any:
        if name == "zstandard":
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_zstandard)
    frame = b"\x28\xb5\x2f\xfd" + b"\0" * 16
    with pytest.raises(LayerError, match=r"install containerlib\[zstd\]"):
        _unpack(tmp_path / "t", frame, MEDIA_TYPE_OCI_LAYER_ZSTD)


def test_zstd_layer(tmp_path: Path) -> None:
    pytest.importorskip("zstandard")
    layer = make_layer(ENTRIES, compression="zstd")
    assert _unpack(tmp_path / "t", layer.blob, layer.media_type) == layer.diff_id


# -- truncated and corrupt layers ---------------------------------------------------------


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_gzip(tmp_path: Path, keep: float) -> None:
    blob = make_layer([file("big", os.urandom(200_000))]).blob
    with pytest.raises(LayerError, match=r"truncated|corrupt"):
        _unpack(tmp_path / "t", blob[: int(len(blob) * keep)], MEDIA_TYPE_OCI_LAYER_GZIP)


def test_truncated_tar_inside_a_member(tmp_path: Path) -> None:
    tar = tar_bytes([file("big", b"x" * 100_000)])
    with pytest.raises(LayerError, match="truncated or corrupt"):
        _unpack(tmp_path / "t", tar[:50_000])


@pytest.mark.parametrize("data", [b"", b"not a tar at all" * 64, b"\x1f\x8bgarbage" * 10])
def test_garbage(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(LayerError):
        _unpack(tmp_path / "t", data)


def test_corrupt_gzip_crc(tmp_path: Path) -> None:
    blob = bytearray(make_layer(ENTRIES).blob)
    blob[-6] ^= 0xFF  # inside the CRC32 trailer
    with pytest.raises(LayerError, match="corrupt"):
        _unpack(tmp_path / "t", bytes(blob), MEDIA_TYPE_OCI_LAYER_GZIP)


def test_target_must_exist(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="unpack layer into"):
        unpack_layer(io.BytesIO(tar_bytes(ENTRIES)), tmp_path / "nope", MEDIA_TYPE_OCI_LAYER)


# -- limits -------------------------------------------------------------------------------


def test_limits_validate() -> None:
    limits = UnpackLimits()
    assert limits.max_bytes == 64 << 30
    assert limits.max_header_bytes == 1 << 20
    assert (limits.max_path_bytes, limits.max_path_depth) == (4095, 256)
    assert limits.max_xattr_bytes == 65536
    with pytest.raises(SpecError, match="max_files"):
        UnpackLimits(max_files=0)
    with pytest.raises(SpecError, match="max_bytes"):
        UnpackLimits(max_bytes=-1)
    for field in ("max_header_bytes", "max_path_bytes", "max_path_depth", "max_xattr_bytes"):
        with pytest.raises(SpecError, match=field):
            UnpackLimits(**{field: 0})


class _CountingReader:
    """A blob stream that records how many compressed bytes were read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.consumed = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._data.read(size)
        self.consumed += len(chunk)
        return chunk


def test_gzip_bomb_member_is_refused_before_writing(tmp_path: Path) -> None:
    bomb = make_layer([file("zeros", b"\0" * (64 << 20))])
    assert len(bomb.blob) * 1000 < 64 << 20 + 1024
    source = _CountingReader(bomb.blob)
    with pytest.raises(LayerError, match="'zeros': its 67108864 bytes would make the layer"):
        _unpack(tmp_path / "t", b"", limits=UnpackLimits(max_bytes=1 << 20), blob=source)
    assert os.listdir(tmp_path / "t") == []
    assert source.consumed < len(bomb.blob) // 4, "stopped long before the end of the blob"


def test_gzip_bomb_of_zeros_after_the_archive(tmp_path: Path) -> None:
    # Zeros after the end-of-archive blocks are read too (they are in the diff ID).
    bomb = gzip.compress(tar_bytes([file("small", b"x")]) + b"\0" * (64 << 20))
    source = _CountingReader(bomb)
    with pytest.raises(LayerError, match="limit of 1048576 uncompressed bytes"):
        _unpack(tmp_path / "t", b"", limits=UnpackLimits(max_bytes=1 << 20), blob=source)
    assert source.consumed < len(bomb) // 4
    assert (tmp_path / "t" / "small").read_bytes() == b"x"


def test_gzip_bomb_of_file_data(tmp_path: Path) -> None:
    big = gzip.compress(tar_bytes([file("a", b"\0" * (3 << 20))]))
    with pytest.raises(LayerError, match="'a': its 3145728 bytes would make the layer write"):
        _unpack(tmp_path / "t", big, limits=UnpackLimits(max_bytes=2 << 20))
    assert os.listdir(tmp_path / "t") == []


def test_member_count_limit(tmp_path: Path) -> None:
    many = make_layer([file(f"f{i}") for i in range(50)])
    with pytest.raises(LayerError, match="more than the limit of 10 members"):
        _unpack(tmp_path / "t", many.blob, many.media_type, limits=UnpackLimits(max_files=10))
    assert len(os.listdir(tmp_path / "t")) == 10


class _TarInfoCensus:
    """A layer stream that counts the live ``TarInfo`` objects each time it is read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.most = 0

    def read(self, size: int = -1, /) -> bytes:
        alive = sum(isinstance(o, tarfile.TarInfo) for o in gc.get_objects())
        self.most = max(self.most, alive)
        return self._data.read(size)


def test_members_are_not_kept_in_memory(tmp_path: Path) -> None:
    # tarfile's stream mode keeps every TarInfo; 5 million members would take gigabytes.
    census = _TarInfoCensus(tar_bytes([symlink(f"l{i}", "x") for i in range(5000)]))
    _unpack(tmp_path / "t", b"", blob=census)
    assert len(os.listdir(tmp_path / "t")) == 5000
    assert census.most < 100


# -- headers, names and xattrs ------------------------------------------------------------


def _with_pax(name: str, **records: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.pax_headers = records
    return tar_bytes([raw_entry(info)])


def test_pax_header_over_the_limit(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match=r"tar headers .* larger than the limit of 1048576"):
        _unpack(tmp_path / "t", _with_pax("f", comment="a" * (1 << 20)))
    small = UnpackLimits(max_header_bytes=4096)
    with pytest.raises(LayerError, match="member at byte 0: its tar headers"):
        _unpack(tmp_path / "u", _with_pax("f", comment="a" * 5000), limits=small)
    _unpack(tmp_path / "v", _with_pax("f", comment="a" * 3000), limits=small)
    assert os.listdir(tmp_path / "v") == ["f"]


def test_huge_pax_header_is_not_read_whole(tmp_path: Path) -> None:
    data = _with_pax("f", comment="a" * (64 << 20))
    source = _CountingReader(gzip.compress(data))
    with pytest.raises(LayerError, match="larger than the limit"):
        _unpack(tmp_path / "t", b"", blob=source)
    assert source.consumed < len(gzip.compress(data)) // 4


def test_gnu_long_name_over_the_header_limit(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.addfile(tarfile.TarInfo("d/" * 3000 + "f"), io.BytesIO())
    with pytest.raises(LayerError, match="larger than the limit of 4096"):
        _unpack(tmp_path / "t", out.getvalue(), limits=UnpackLimits(max_header_bytes=4096))


def test_chained_headers(tmp_path: Path) -> None:
    record = b"20 comment=aaaaaaaa\n"
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(record)
    one = header.tobuf(format=tarfile.USTAR_FORMAT) + record.ljust(512, b"\0")
    member = tar_bytes([file("f", b"data")])
    with pytest.raises(LayerError, match="more than 8 tar headers in a row"):
        _unpack(tmp_path / "t", one * 600 + member)
    # A PAX header before a member is normal.
    _unpack(tmp_path / "u", one * 2 + member)
    assert (tmp_path / "u/f").read_bytes() == b"data"


def test_long_and_deep_names(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="path is 4096 bytes long, more than the limit of 4095"):
        _unpack(tmp_path / "t", tar_bytes([file("a" * 200 + "/" + "b" * 3895)]))
    with pytest.raises(LayerError, match="path has 257 components, more than the limit of 256"):
        _unpack(tmp_path / "u", tar_bytes([file("d/" * 256 + "f")]))
    deep = "d/" * 255 + "f"
    _unpack(tmp_path / "v", tar_bytes([file(deep, b"deep")]))
    assert (tmp_path / "v" / deep).read_bytes() == b"deep"
    with pytest.raises(LayerError, match="symlink target is 5000 bytes long"):
        _unpack(tmp_path / "w", tar_bytes([symlink("s", "x" * 5000)]))
    limits = UnpackLimits(max_path_depth=3)
    with pytest.raises(LayerError, match=r"hard link target\): path has 4 components"):
        _unpack(tmp_path / "x", tar_bytes([file("a/b/c"), hardlink("h", "a/b/c/d")]), limits=limits)


def test_xattr_over_the_limit(tmp_path: Path) -> None:
    entry = file("f", b"x", xattrs={"user.big": b"v" * 65537})
    with pytest.raises(LayerError, match=r"'f': xattr 'user\.big' is 65537 bytes"):
        _unpack(tmp_path / "t", tar_bytes([entry]))


# -- malformed headers --------------------------------------------------------------------


def test_corrupt_header_after_the_first_is_an_error(tmp_path: Path) -> None:
    # tarfile alone would stop there and silently drop the rest of the layer.
    first = tar_bytes([file("a", b"one")])[:1024]
    second = bytearray(tar_bytes([file("b", b"two")])[:1024])
    second[148:156] = b"0000000\0"  # the header checksum
    rest = tar_bytes([file("c", b"three")])
    with pytest.raises(LayerError, match="corrupt tar header at byte 1024: bad checksum"):
        _unpack(tmp_path / "t", first + bytes(second) + rest)


def test_truncated_header_after_the_first_is_an_error(tmp_path: Path) -> None:
    first = tar_bytes([file("a", b"one")])[:1024]
    with pytest.raises(LayerError, match="corrupt tar header at byte 1024: truncated"):
        _unpack(tmp_path / "t", first + tar_bytes([file("b")])[:300])


def test_empty_archive_is_the_well_known_empty_layer(tmp_path: Path) -> None:
    # Two zero blocks: the layer Docker writes for a step that changes no file.
    diff_id = _unpack(tmp_path / "t", gzip.compress(b"\0" * 1024), MEDIA_TYPE_OCI_LAYER_GZIP)
    assert diff_id == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    assert os.listdir(tmp_path / "t") == []


def test_archive_without_end_blocks_is_fine(tmp_path: Path) -> None:
    _unpack(tmp_path / "t", tar_bytes([file("a", b"one")])[:1024])
    assert (tmp_path / "t/a").read_bytes() == b"one"


@pytest.mark.parametrize("sparse_map", [b"5", b"2\n0\n", b"1\nzero\n1\n"], ids=repr)
def test_malformed_sparse_map(tmp_path: Path, sparse_map: bytes) -> None:
    info = tarfile.TarInfo("s")
    info.size = 512
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "s",
        "GNU.sparse.realsize": "100",
    }
    data = tar_bytes([raw_entry(info, sparse_map.ljust(512, b"\0"))])
    with pytest.raises(LayerError):
        _unpack(tmp_path / "t", data)


GNU_TAR = shutil.which("tar")


def _gnu_tar_sparse(tmp_path: Path, size: int, fmt: str) -> bytes:
    """A real GNU tar archive of a file of ``size`` bytes holding one ``x`` at 1 MiB."""
    if GNU_TAR is None:
        pytest.skip("needs GNU tar")
    src = tmp_path / f"src-{fmt}"
    src.mkdir()
    with (src / "sparse").open("wb") as f:
        f.truncate(size)
        f.seek(1 << 20)
        f.write(b"x")
    return subprocess.run(
        [GNU_TAR, "--sparse", f"--format={fmt}", "-C", str(src), "-cf", "-", "sparse"],
        check=True,
        capture_output=True,
    ).stdout


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_sparse_member_claiming_a_terabyte(tmp_path: Path, fmt: str) -> None:
    data = _gnu_tar_sparse(tmp_path, 1 << 40, fmt)
    assert len(data) < 100_000
    # A small limit, so that were the member not refused up front, the test would write
    # 8 MiB of zeros and fail, not fill the disk with 64 GiB.
    limits = UnpackLimits(max_bytes=8 << 20)
    with pytest.raises(LayerError, match="'sparse': its 1099511627776 bytes would make"):
        _unpack(tmp_path / "t", gzip.compress(data), MEDIA_TYPE_OCI_LAYER_GZIP, limits=limits)
    assert os.listdir(tmp_path / "t") == [], "refused before anything was written"


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_sparse_member_is_unpacked_and_counted_at_full_size(tmp_path: Path, fmt: str) -> None:
    data = _gnu_tar_sparse(tmp_path, 3 << 20, fmt)
    _unpack(tmp_path / "t", data)
    unpacked = (tmp_path / "t/sparse").read_bytes()
    assert len(unpacked) == 3 << 20
    assert unpacked[1 << 20] == ord("x")
    assert unpacked.count(0) == (3 << 20) - 1
    with pytest.raises(LayerError, match="'sparse': its 3145728 bytes would make"):
        _unpack(tmp_path / "u", data, limits=UnpackLimits(max_bytes=2 << 20))


def test_truncated_gnu_sparse_extension_headers(tmp_path: Path) -> None:
    if GNU_TAR is None:
        pytest.skip("needs GNU tar")
    src = tmp_path / "src"
    src.mkdir()
    with (src / "holes").open("wb") as f:
        f.truncate(64 << 20)
        for i in range(10):  # more than the 4 map entries the main header holds
            f.seek(i << 22)
            f.write(b"x")
    data = subprocess.run(
        [GNU_TAR, "--sparse", "--format=gnu", "-C", str(src), "-cf", "-", "holes"],
        check=True,
        capture_output=True,
    ).stdout
    assert data[156:157] == tarfile.GNUTYPE_SPARSE
    assert data[482] == 1, "the map goes on in extension headers"
    with pytest.raises(LayerError, match="corrupt tar header"):
        _unpack(tmp_path / "t", data[:600])


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "'..' component"),
        ("/etc/x", "absolute path"),
        ("a/../../x", "'..' component"),
        ("./../x", "'..' component"),
    ],
)
def test_escaping_names_are_rejected(tmp_path: Path, name: str, message: str) -> None:
    info = tarfile.TarInfo(name)
    with pytest.raises(LayerError, match=f"layer member {name!r}: .*{message}"):
        _unpack(tmp_path / "t", tar_bytes([file("ok"), raw_entry(info)]))
    assert os.listdir(tmp_path) == ["t"]


def test_later_member_replaces_earlier(tmp_path: Path) -> None:
    entries = [
        file("a", b"one"),
        file("a", b"two"),
        directory("d"),
        file("d/keep"),
        directory("d", mode=0o700),
        symlink("s", "a"),
        file("s", b"file now"),
        directory("x"),
        file("x/inner"),
        file("x", b"x is a file"),
    ]
    _unpack(tmp_path / "t", tar_bytes(entries))
    t = tmp_path / "t"
    assert (t / "a").read_bytes() == b"two"
    assert (t / "d/keep").exists()
    assert (t / "d").stat().st_mode & 0o777 == 0o700
    assert not (t / "s").is_symlink()
    assert (t / "s").read_bytes() == b"file now"
    assert (t / "x").read_bytes() == b"x is a file"


def test_missing_parents_are_made(tmp_path: Path) -> None:
    _unpack(tmp_path / "t", tar_bytes([file("deep/er/file", b"x")]))
    assert (tmp_path / "t/deep/er/file").read_bytes() == b"x"
    assert (tmp_path / "t/deep").stat().st_mode & 0o777 == 0o755


def test_read_only_directory_is_filled_before_its_mode_is_set(tmp_path: Path) -> None:
    entries = [directory("ro", mode=0o555), file("ro/file", b"x"), directory("ro/sub", mode=0)]
    _unpack(tmp_path / "t", tar_bytes(entries))
    assert (tmp_path / "t/ro/file").read_bytes() == b"x"
    assert (tmp_path / "t/ro").stat().st_mode & 0o777 == 0o555
    assert (tmp_path / "t/ro/sub").stat().st_mode & 0o777 == 0


class _Trickle:
    """A stream that returns at most 7 bytes a read, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(7 if size < 0 else min(size, 7))


def test_short_reads(tmp_path: Path) -> None:
    layer = make_layer(ENTRIES)
    (tmp_path / "t").mkdir()
    source = _Trickle(layer.blob)
    assert (
        unpack_layer(source, tmp_path / "t", layer.media_type, keep_owners=False) == layer.diff_id
    )
