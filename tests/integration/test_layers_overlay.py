"""Unpacked layers stacked with overlayfs: whiteouts hide, opaque directories hide all below."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from containerlib.image.layers import unpack_layer
from tests.image_builders import Entry, directory, file, make_layer, opaque, whiteout

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts overlayfs"),
]


def _layer(path: Path, entries: list[Entry]) -> Path:
    path.mkdir()
    layer = make_layer(entries)
    assert unpack_layer(io.BytesIO(layer.blob), path, layer.media_type) == layer.diff_id
    return path


def test_whiteout_and_opaque_directory_in_a_real_overlay(tmp_path: Path) -> None:
    lower = _layer(
        tmp_path / "lower",
        [
            directory("etc"),
            file("etc/motd", b"welcome"),
            file("etc/hostname", b"box"),
            directory("var/cache"),
            file("var/cache/old-1"),
            file("var/cache/old-2"),
            directory("opt/tool"),
            file("opt/tool/bin"),
        ],
    )
    upper = _layer(
        tmp_path / "upper",
        [
            directory("etc"),
            whiteout("etc/motd"),
            opaque("var/cache"),
            file("var/cache/new", b"fresh"),
            whiteout("opt/tool"),
        ],
    )
    merged = tmp_path / "merged"
    merged.mkdir()
    # Two lower directories and no upper: a read-only overlay, as a container's image.
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", str(merged)],
        check=True,
    )
    try:
        assert not (merged / "etc/motd").exists()
        assert (merged / "etc/hostname").read_bytes() == b"box"
        assert sorted(os.listdir(merged / "etc")) == ["hostname"]
        assert sorted(os.listdir(merged / "var/cache")) == ["new"]
        assert (merged / "var/cache/new").read_bytes() == b"fresh"
        assert os.listdir(merged / "opt") == []
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert (lower / "etc/motd").read_bytes() == b"welcome"
