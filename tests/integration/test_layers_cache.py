"""The layer cache: one unpack per diff ID across threads and processes, nothing half-made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from containerlib.errors import LayerError
from containerlib.image import cache as cache_module
from containerlib.image.cache import LayerCache
from containerlib.image.layout import ResolvedImage, open_layout
from tests.image_builders import (
    BuiltImage,
    build_oci_layout,
    busybox_layout,
    directory,
    file,
    make_layer,
    symlink,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: keeps owners of image files"),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_layers(tmp_path: Path) -> BuiltImage:
    """busybox plus a layer that adds /etc/motd."""
    layout = tmp_path / "layout"
    base = busybox_layout(layout, ref="base")
    top = make_layer([directory("etc"), file("etc/motd", b"hello from the top\n")])
    return build_oci_layout(layout, [base.layers[0], top], ref="latest")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the diff ID of every real unpack; each is slowed so that callers overlap."""
    calls: list[str] = []
    real = cache_module.unpack_layer

    def slow_unpack(*args: Any, **kwargs: Any) -> str:
        time.sleep(0.2)
        diff_id = real(*args, **kwargs)
        calls.append(diff_id)
        return diff_id

    monkeypatch.setattr(cache_module, "unpack_layer", slow_unpack)
    return calls


def _left_in(root: Path) -> list[str]:
    found = [*root.glob("layers/*/*"), *root.glob("tmp/*")]
    return sorted(str(p.relative_to(root)) for p in found)


def test_ensure_unpacks_each_layer_once(
    tmp_path: Path, two_layers: BuiltImage, counted: list[str]
) -> None:
    image = open_layout(two_layers.path, "latest")
    cache = LayerCache(tmp_path / "c")
    paths = cache.ensure(image)
    assert [p.parent.name for p in paths] == [d.partition(":")[2] for d in image.diff_ids]
    assert all(
        p == cache.path(d) and cache.has(d) for p, d in zip(paths, image.diff_ids, strict=True)
    )
    assert (paths[0] / "bin/busybox").stat().st_mode & 0o111
    assert (paths[1] / "etc/motd").read_bytes() == b"hello from the top\n"
    metadata = json.loads((paths[1].parent / "layer.json").read_text())
    assert metadata["diff_id"] == image.diff_ids[1]
    assert metadata["digest"] == image.layers[1].digest
    assert counted == list(image.diff_ids)
    assert cache.ensure(image) == paths
    assert cache.ensure(open_layout(two_layers.path, "base")) == paths[:1]
    assert counted == list(image.diff_ids), "nothing unpacked twice"
    assert _left_in(tmp_path / "c") == sorted(
        f"layers/sha256/{d.partition(':')[2]}" for d in image.diff_ids
    )


def test_concurrent_threads_share_one_unpack(
    tmp_path: Path, two_layers: BuiltImage, counted: list[str]
) -> None:
    image = open_layout(two_layers.path, "latest")
    cache = LayerCache(tmp_path / "c")
    start = threading.Barrier(8)
    results: list[tuple[Path, ...]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(cache.ensure(image))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8
    assert len(set(results)) == 1
    assert sorted(counted) == sorted(image.diff_ids)
    assert (results[0][1] / "etc/motd").read_bytes() == b"hello from the top\n"
    assert not list((tmp_path / "c" / "tmp").iterdir())


_CHILD = """
import json, sys, time
from pathlib import Path
from containerlib.image import cache as cache_module
from containerlib.image.cache import LayerCache
from containerlib.image.layout import open_layout

layout, root, log, go = map(Path, sys.argv[1:5])
real = cache_module.unpack_layer

def logged(*args, **kwargs):
    diff_id = real(*args, **kwargs)
    time.sleep(0.2)
    with open(log, "a") as f:
        f.write(diff_id + "\\n")
    return diff_id

cache_module.unpack_layer = logged
image = open_layout(layout, "latest")
while not go.exists():
    time.sleep(0.005)
print(json.dumps([str(p) for p in LayerCache(root).ensure(image)]))
"""


def test_concurrent_processes_share_one_unpack(tmp_path: Path, two_layers: BuiltImage) -> None:
    root, log, go = tmp_path / "c", tmp_path / "unpacks.log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _CHILD, str(two_layers.path), str(root), str(log), str(go)]
    children = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    go.touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        outputs.append(json.loads(out))
    assert all(o == outputs[0] for o in outputs)
    assert sorted(log.read_text().split()) == sorted(two_layers.diff_ids)
    top = Path(outputs[0][1])
    assert (top / "etc/motd").read_bytes() == b"hello from the top\n"
    assert _left_in(root) == sorted(
        f"layers/sha256/{d.partition(':')[2]}" for d in two_layers.diff_ids
    )


def _image(layout: Path) -> ResolvedImage:
    return open_layout(layout, "latest")


def test_truncated_blob_leaves_nothing(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [[file("big", os.urandom(300_000))]])
    blob = tmp_path / "l/blobs/sha256" / built.layers[0].digest.partition(":")[2]
    blob.write_bytes(blob.read_bytes()[:150_000])
    cache = LayerCache(tmp_path / "c")
    with pytest.raises(LayerError, match="truncated"):
        cache.ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []
    assert not cache.has(built.diff_ids[0])


def test_blob_with_a_valid_tar_but_wrong_digest_leaves_nothing(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [make_layer([file("a", b"1")], compression="none")])
    forged = make_layer([file("a", b"2")], compression="none")
    assert len(forged.blob) == len(built.layers[0].blob)
    blob = tmp_path / "l/blobs/sha256" / built.layers[0].digest.partition(":")[2]
    blob.write_bytes(forged.blob)
    with pytest.raises(LayerError, match="does not match its digest"):
        LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []


def test_diff_id_mismatch_names_the_layer_and_leaves_nothing(tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    build_oci_layout(tmp_path / "l", [[file("a")]], diff_ids=[wrong])
    with pytest.raises(LayerError, match=f"layer 0 .* diff ID is sha256:.*says {wrong}"):
        LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []


def test_hostile_layer_leaves_nothing(tmp_path: Path) -> None:
    build_oci_layout(tmp_path / "l", [[symlink("evil", "/etc"), file("evil/x", b"pwned")]])
    with pytest.raises(LayerError, match="'evil' is a symlink"):
        LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []


def test_a_crashed_unpack_is_cleaned_up(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [[file("a", b"1")]])
    hex_part = built.diff_ids[0].partition(":")[2]
    stale = tmp_path / "c" / "tmp" / f"{hex_part}.crashed"
    (stale / "fs").mkdir(parents=True)
    (stale / "fs" / "half").write_bytes(b"x")
    (path,) = LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert (path / "a").read_bytes() == b"1"
    assert not stale.exists()


def test_bad_diff_ids_are_refused(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path)
    with pytest.raises(LayerError, match="malformed digest"):
        cache.path("sha256:../../x")
    with pytest.raises(LayerError, match="only sha256"):
        cache.path("sha512:" + "0" * 128)
