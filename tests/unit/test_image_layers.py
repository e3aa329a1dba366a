"""Unpacking layers without privilege: streams, compression, limits and name rules.

Everything here runs as any user (owners are not kept); device nodes, whiteouts, owners
and the breakout cases are in ``tests/integration/test_layers_*.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from containerlib.errors import LayerError, SpecError
from containerlib.image.layers import UnpackLimits, unpack_layer
from containerlib.spec.image import (
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
)
from tests.image_builders import directory, file, make_layer, raw_entry, symlink, tar_bytes


def _unpack(target: Path, data: bytes, media_type: str = MEDIA_TYPE_OCI_LAYER, **kw: Any) -> str:
    target.mkdir(exist_ok=True)
    return unpack_layer(io.BytesIO(data), target, media_type, keep_owners=False, **kw)


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
    assert UnpackLimits().max_bytes == 64 << 30
    with pytest.raises(SpecError, match="max_files"):
        UnpackLimits(max_files=0)
    with pytest.raises(SpecError, match="max_bytes"):
        UnpackLimits(max_bytes=-1)


def test_gzip_bomb_stops_at_max_bytes(tmp_path: Path) -> None:
    bomb = make_layer([file("zeros", b"\0" * (32 << 20))])
    assert len(bomb.blob) < 100_000
    with pytest.raises(LayerError, match="limit of 1048576 uncompressed bytes"):
        _unpack(tmp_path / "t", bomb.blob, bomb.media_type, limits=UnpackLimits(max_bytes=1 << 20))
    assert (tmp_path / "t" / "zeros").stat().st_size <= 1 << 20


def test_member_count_limit(tmp_path: Path) -> None:
    many = make_layer([file(f"f{i}") for i in range(50)])
    with pytest.raises(LayerError, match="more than the limit of 10 members"):
        _unpack(tmp_path / "t", many.blob, many.media_type, limits=UnpackLimits(max_files=10))
    assert len(os.listdir(tmp_path / "t")) == 10


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
