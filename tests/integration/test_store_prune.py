"""Garbage collection of the image store and the layer cache: what goes, what stays, and
what a concurrent writer or a running container keeps."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib.errors import ImageError, ImageNotFound
from containerlib.image.cache import LayerCache
from containerlib.image.layout import open_layout
from containerlib.image.layout_write import read_index
from containerlib.image.registry import pull
from containerlib.image.store import (
    image_diff_ids,
    list_images,
    prune,
    prune_store,
    remove_image,
)
from containerlib.spec.image import MEDIA_TYPE_OCI_LAYER_GZIP, Descriptor
from tests.image_builders import (
    BuiltImage,
    build_oci_layout,
    busybox_layout,
    digest_of,
    file,
    make_layer,
    write_blob,
)
from tests.layer_holders import hold_elsewhere, release
from tests.registry_server import DOCKER_REGISTRY, docker_registry, skopeo_copy

pytestmark = [pytest.mark.root]

BUSYBOX = "docker.io/library/busybox:latest"
APP = "127.0.0.1:5000/team/app:1"
HOUR = 3600.0


def _age(path: Path, seconds: float = 2 * HOUR) -> None:
    """Make ``path`` (and, for a directory, what it holds) look ``seconds`` old."""
    when = time.time() - seconds
    for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
        os.utime(p, (when, when), follow_symlinks=False)


def _blobs(store: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (store / "blobs/sha256").iterdir()}


def _du(path: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[0])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data root whose store holds busybox and an app on top of it (both named, blobs
    made long ago), and an unnamed image, as a pull by digest by some other tool leaves."""
    root = tmp_path / "data"
    store = root / "images"
    base = busybox_layout(store, ref=BUSYBOX)
    top = make_layer([file("app", b"the app\n", mode=0o755)])
    build_oci_layout(store, [base.layers[0], top], ref=APP)
    build_oci_layout(store, [[file("dangling", b"no name\n")]], ref=None)
    _age(store / "blobs")
    return root


def _named(data: Path, name: str) -> BuiltImage:
    store = data / "images"
    image = open_layout(store, name)
    manifest = next(d for d in _index(store) if d.digest == image.manifest_digest)
    return BuiltImage(store, manifest, ())


def _index(store: Path) -> list[Descriptor]:
    return list(read_index(store).manifests)


def test_remove_image_removes_only_its_own_blobs(data: Path) -> None:
    store = data / "images"
    app = open_layout(store, APP)
    busybox = open_layout(store, BUSYBOX)
    # A build in progress: a fresh blob, not named by anything yet.
    fresh = write_blob(store, b"a layer being built", MEDIA_TYPE_OCI_LAYER_GZIP)
    before = _blobs(store)

    removed = remove_image(store, APP)

    assert set(removed) == {app.manifest_digest, app.manifest.config.digest, app.layers[1].digest}
    assert _blobs(store) == before - set(removed)
    assert fresh.digest in _blobs(store), "a blob no image names yet is not remove_image's"
    assert busybox.layers[0].digest in _blobs(store), "busybox still uses its layer"
    assert [image.name for image in list_images(store)] == [BUSYBOX]
    open_layout(store, BUSYBOX)  # still whole
    with pytest.raises(ImageNotFound, match="team/app:1"):
        remove_image(store, APP)


def test_prune_store_drops_unnamed_entries_and_old_unused_blobs(data: Path) -> None:
    store = data / "images"
    dangling = next(d for d in _index(store) if d.ref_name is None)
    dangling_blobs = _blobs(store) - {
        b
        for name in (BUSYBOX, APP)
        for b in (
            open_layout(store, name).manifest_digest,
            open_layout(store, name).manifest.config.digest,
            *(layer.digest for layer in open_layout(store, name).layers),
        )
    }
    assert dangling.digest in dangling_blobs
    assert len(dangling_blobs) == 3
    fresh = write_blob(store, b"a layer being built", MEDIA_TYPE_OCI_LAYER_GZIP)
    old_partial = store / "blobs/sha256/.partial-0123456789abcdef-crashed"
    old_partial.write_bytes(b"half a download")
    _age(old_partial)
    new_partial = store / "blobs/sha256/.partial-fedcba9876543210-writing"
    new_partial.write_bytes(b"a download in progress")

    removed = prune_store(store)

    assert sorted(removed) == sorted(dangling_blobs)
    assert [d.ref_name for d in _index(store)] == [BUSYBOX, APP]
    assert fresh.digest in _blobs(store), "younger than the grace period"
    assert not old_partial.exists()
    assert new_partial.exists()
    # What is left is a layout other tools read: skopeo copies the app out of it whole.
    skopeo_copy(f"oci:{store}:{APP}", f"dir:{data / 'copy'}")
    assert (data / "copy" / open_layout(store, APP).layers[1].digest.partition(":")[2]).is_file()
    assert prune_store(store) == [], "nothing more to do"
    assert prune_store(store, grace=0) == [fresh.digest]


def test_prune_store_refuses_to_guess_when_an_image_is_unreadable(data: Path) -> None:
    store = data / "images"
    config = open_layout(store, APP).manifest.config.digest
    (store / "blobs/sha256" / config.partition(":")[2]).write_bytes(b"{not json")
    before = _blobs(store)
    with pytest.raises(ImageError, match=f"blob {config}"):
        prune_store(store)
    assert _blobs(store) == before
    assert len(_index(store)) == 3


def test_remove_image_of_a_corrupt_image_works(data: Path) -> None:
    store = data / "images"
    app = open_layout(store, APP)
    manifest = store / "blobs/sha256" / app.manifest_digest.partition(":")[2]
    manifest.write_bytes(b"{not json")
    assert remove_image(store, APP) == [app.manifest_digest]
    assert [image.name for image in list_images(store)] == [BUSYBOX]
    # What only the unreadable manifest led to is not known to be the app's: prune gets it
    # (with the dangling image's blobs).
    removed = prune_store(store)
    assert app.manifest.config.digest in removed
    assert app.layers[1].digest in removed
    open_layout(store, BUSYBOX)


@pytest.fixture
def holder() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes holding layers; each is ended at the end of the test."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        release(child)


def test_prune_keeps_the_layers_of_named_images_and_held_ones(
    data: Path, tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    store = data / "images"
    cache = LayerCache(data)
    app = open_layout(store, APP)
    dangling_digest = next(d.digest for d in _index(store) if d.ref_name is None)
    dangling = open_layout(store, dangling_digest)
    elsewhere = build_oci_layout(tmp_path / "other", [[file("other", b"elsewhere\n")]])
    held = open_layout(elsewhere.path, "latest")
    loose = build_oci_layout(tmp_path / "loose", [[file("loose", b"unused\n")]])
    for image in (app, dangling, held, open_layout(loose.path, "latest")):
        cache.ensure(image)
    hold_elsewhere(holder, data, held.diff_ids[0])
    before = _du(data)

    report = prune(data)

    assert report.images == (dangling_digest,)
    assert sorted(report.layers) == sorted([dangling.diff_ids[0], loose.diff_ids[0]])
    assert len(report.blobs) == 3
    assert cache.layers() == sorted([*app.diff_ids, held.diff_ids[0]])
    assert (cache.path(app.diff_ids[1]) / "app").read_bytes() == b"the app\n"
    assert (cache.path(held.diff_ids[0]) / "other").read_bytes() == b"elsewhere\n"
    # The bytes reported are the bytes gone (give or take a directory's blocks).
    assert report.bytes_freed > 0
    assert abs((before - _du(data)) - report.bytes_freed) <= 16 * 4096
    # Released, the layer from elsewhere goes too; the store's images stay.
    release(holder.pop())
    assert prune(data).layers == (held.diff_ids[0],)
    assert cache.layers() == sorted(app.diff_ids)
    assert image_diff_ids(store, _named(data, APP).manifest) == frozenset(app.diff_ids)


def test_prune_without_a_store_keeps_only_held_layers(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    a = build_oci_layout(tmp_path / "a", [[file("a", b"a")]])
    b = build_oci_layout(tmp_path / "b", [[file("b", b"b")]])
    cache = LayerCache(tmp_path / "data")
    for built in (a, b):
        cache.ensure(open_layout(built.path, "latest"))
    hold_elsewhere(holder, tmp_path / "data", str(cache.path(a.diff_ids[0])))
    report = prune(tmp_path / "data")
    assert report.layers == b.diff_ids
    assert report.images == report.blobs == ()
    assert cache.layers() == list(a.diff_ids)
    assert not (tmp_path / "data" / "images").exists(), "prune makes no store"


def test_image_diff_ids_of_a_missing_manifest(data: Path) -> None:
    manifest = _named(data, APP).manifest
    (data / "images/blobs/sha256" / manifest.digest.partition(":")[2]).unlink()
    with pytest.raises(ImageError, match=f"blob {manifest.digest} is missing"):
        image_diff_ids(data / "images", manifest)


@pytest.mark.skipif(
    DOCKER_REGISTRY is None or not os.access("/usr/bin/skopeo", os.X_OK),
    reason="needs docker-registry and skopeo (apt-get install docker-registry skopeo)",
)
def test_pulled_images_survive_prune_until_removed(tmp_path: Path) -> None:
    source = tmp_path / "source"
    busybox_layout(source, ref="1")
    with docker_registry(tmp_path / "registry") as registry:
        skopeo_copy(f"oci:{source}:1", f"docker://{registry}/test/busybox:1")
        data = tmp_path / "data"
        store = data / "images"
        name = f"{registry}/test/busybox:1"
        manifest = pull(name, store, name=name)
        by_digest = f"{registry}/test/busybox@{manifest.digest}"
        pull(by_digest, store, name=by_digest)
    diff_ids = image_diff_ids(store, manifest)
    LayerCache(data).ensure(open_layout(store, name))
    blobs = _blobs(store)

    assert prune(data, grace=0) == type(prune(data))()
    assert _blobs(store) == blobs
    assert LayerCache(data).layers() == sorted(diff_ids)

    remove_image(store, name)
    assert _blobs(store) == blobs, "the image pulled by digest uses the same blobs"
    assert prune(data, grace=0).layers == ()
    remove_image(store, by_digest)
    assert _blobs(store) == set()
    report = prune(data, grace=0)
    assert report.layers == tuple(sorted(diff_ids))
    assert LayerCache(data).layers() == []
    assert digest_of(b"") not in report.blobs
