"""The image store: the images pulled by reference, in one OCI image layout.

``Image.from_registry`` keeps what it pulls in ``<data root>/images``, named in
``index.json`` by the full reference (``docker.io/library/busybox:latest``). This module
lists those images, removes them, and collects the garbage: blobs no image uses any more
and unpacked layers (``<data root>/layers``, see :mod:`containerlib.image.cache`) that no
image in the store lists and no container holds.

Everything here holds the layout's lock (``flock(2)`` on its directory), as a pull does.
A writer that does not take it, such as an image build, stores its blobs before it names
the image; :func:`prune_store` leaves blobs younger than a grace period alone for that
reason, as ``git gc`` does with loose objects. Containers run from the unpacked layer cache,
never from these blobs, so removing an image does not disturb a running container.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from containerlib.errors import ImageError, ImageNotFound, LayerError, SpecError
from containerlib.image.cache import LayerCache
from containerlib.image.layout import blob_path, read_blob
from containerlib.image.layout_write import locked_layout, read_index, write_index
from containerlib.spec.image import (
    CONFIG_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    split_digest,
)

__all__ = [
    "PruneReport",
    "StoredImage",
    "image_diff_ids",
    "list_images",
    "prune",
    "prune_store",
    "remove_image",
]

# The prefix of a file being written into a layout, before its rename (layout_write,
# build, layer_writer).
_PARTIAL = ".partial-"


@attrs.frozen
class StoredImage:
    """An image in the store.

    Attributes:
        name: the full reference it was pulled by.
        digest: its manifest's (or index's) digest.
        size: the bytes of the blobs it uses (manifest, config, layers), shared or not.
    """

    name: str
    digest: str
    size: int


@attrs.frozen(kw_only=True)
class PruneReport:
    """What :func:`prune` removed.

    Attributes:
        images: the digests of the unnamed ``index.json`` entries removed.
        blobs: the digests of the blobs removed from the image store.
        layers: the diff IDs of the unpacked layers removed from the layer cache.
        temporary: the leftovers of crashed writers removed, as paths relative to the
            data root.
        bytes_freed: the disk space all of that took (allocated blocks).
    """

    images: tuple[str, ...] = ()
    blobs: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    temporary: tuple[str, ...] = ()
    bytes_freed: int = 0


@attrs.define
class _Reached:
    """What an ``index.json`` entry leads to, as far as it was pulled."""

    blobs: dict[str, int] = attrs.Factory(dict)
    diff_ids: set[str] = attrs.Factory(set)


def _walk(store: Path, descriptor: Descriptor, *, strict: bool = True) -> _Reached:
    """Every blob ``descriptor`` leads to that is in the store, by digest, with its size:
    itself, and for an index the manifests it holds, for a manifest its config and layers;
    and the diff IDs the configs list. A platform that was not pulled is simply not there.

    Unless ``strict``, a blob that cannot be read is not followed instead of an error.
    """
    reached = _Reached()
    pending = [descriptor]
    while pending:
        d = pending.pop()
        if d.digest in reached.blobs or not blob_path(store, d.digest).is_file():
            continue
        reached.blobs[d.digest] = d.size
        try:
            if d.media_type in INDEX_MEDIA_TYPES:
                pending += Index.from_dict(json.loads(read_blob(store, d))).manifests
            elif d.media_type in MANIFEST_MEDIA_TYPES:
                manifest = Manifest.from_dict(json.loads(read_blob(store, d)))
                pending += [manifest.config, *manifest.layers]
            elif d.media_type in CONFIG_MEDIA_TYPES:
                config = ImageConfig.from_dict(json.loads(read_blob(store, d)))
                reached.diff_ids.update(config.rootfs.diff_ids)
            # else a layer: nothing further
        except (ValueError, SpecError, LayerError) as e:
            if strict:
                raise ImageError(f"image store {store}: blob {d.digest}: {e}") from None
    return reached


def image_diff_ids(layout: Path, manifest: Descriptor) -> frozenset[str]:
    """The diff IDs of the layers of the image ``manifest`` in the OCI layout ``layout``.

    ``manifest`` may also be an index: then the diff IDs of each platform's image that is
    in the layout.

    Raises:
        ImageError: a manifest or config of the image is missing, corrupt or not valid.
    """
    if not blob_path(layout, manifest.digest).is_file():
        raise ImageError(f"OCI layout {layout}: blob {manifest.digest} is missing")
    return frozenset(_walk(layout, manifest).diff_ids)


def list_images(store: str | os.PathLike[str]) -> list[StoredImage]:
    """The named images in the store, by name."""
    root = Path(store)
    out = []
    for d in read_index(root).manifests:
        if d.ref_name is not None:
            size = sum(_walk(root, d).blobs.values())
            out.append(StoredImage(name=d.ref_name, digest=d.digest, size=size))
    return sorted(out, key=lambda image: image.name)


def _unlink_counted(path: Path) -> int:
    """Unlink ``path`` and return the bytes it took on disk (0 if it was gone already)."""
    try:
        freed = os.lstat(path).st_blocks * 512
        path.unlink()
    except FileNotFoundError:
        return 0
    return freed


def remove_image(store: str | os.PathLike[str], name: str) -> list[str]:
    """Remove the image ``name`` from the store, and those of its blobs no other image uses.

    Only the blobs the removed image reaches are candidates: a blob that some writer
    stored but has not named yet is never touched here (see :func:`prune_store`). The
    blobs are removed however recent they are, as ``docker rmi`` frees them at once.

    Returns:
        The digests of the blobs removed.

    Raises:
        ImageNotFound: the store has no image of that name.
        ImageError: a manifest or config of another image cannot be read, so what it uses
            is unknown; nothing is removed.
    """
    root = Path(store)
    if not (root / "oci-layout").is_file():
        raise ImageNotFound(f"no image {name!r}: the image store {root} is empty")
    with locked_layout(root):
        index = read_index(root)
        kept = [d for d in index.manifests if d.ref_name != name]
        if len(kept) == len(index.manifests):
            names = sorted(d.ref_name for d in index.manifests if d.ref_name)
            raise ImageNotFound(f"no image {name!r} in the image store {root}; names: {names}")
        removed_entries = [d for d in index.manifests if d.ref_name == name]
        # The image going may be corrupt (a reason to remove it): follow what can be read.
        candidates: set[str] = set()
        for d in removed_entries:
            candidates |= _walk(root, d, strict=False).blobs.keys()
        used: set[str] = set()
        for d in kept:
            used |= _walk(root, d).blobs.keys()
        write_index(root, attrs.evolve(index, manifests=kept))
        removed = []
        for digest in sorted(candidates - used):
            try:
                blob_path(root, digest).unlink()
            except FileNotFoundError:
                continue
            removed.append(digest)
        return removed


def _stored_blobs(root: Path) -> Iterator[tuple[str, Path]]:
    """Every file in ``blobs/`` named like a digest, as ``(digest, path)``."""
    blobs = root / "blobs"
    for algorithm in sorted(blobs.iterdir()) if blobs.is_dir() else ():
        if not algorithm.is_dir():
            continue
        for path in sorted(algorithm.iterdir()):
            digest = f"{algorithm.name}:{path.name}"
            try:
                split_digest(digest)
            except SpecError:
                continue  # not a blob: a temporary file, or something of someone else's
            yield digest, path


def _is_fresh(path: Path, now: float, grace: float) -> bool:
    try:
        return now - path.lstat().st_mtime < grace
    except FileNotFoundError:
        return True  # gone already: nothing to do


def _prune_store(root: Path, grace: float) -> tuple[PruneReport, frozenset[str]]:
    """prune_store's work, under the layout's lock; also returns the diff IDs the
    remaining images use."""
    now = time.time()
    index = read_index(root)
    dropped = [d for d in index.manifests if d.ref_name is None]
    kept = [d for d in index.manifests if d.ref_name is not None]
    used: set[str] = set()
    diff_ids: set[str] = set()
    for d in kept:
        reached = _walk(root, d)
        used |= reached.blobs.keys()
        diff_ids |= reached.diff_ids
    if dropped:
        write_index(root, attrs.evolve(index, manifests=kept))
    blobs, freed = [], 0
    for digest, path in _stored_blobs(root):
        if digest in used or _is_fresh(path, now, grace):
            continue
        freed += _unlink_counted(path)
        blobs.append(digest)
    temporary = []
    for folder in (root, *(p for p in (root / "blobs").iterdir() if p.is_dir())):
        for path in sorted(folder.glob(f"{_PARTIAL}*")):
            if path.is_file() and not _is_fresh(path, now, grace):
                freed += _unlink_counted(path)
                temporary.append(str(path.relative_to(root)))
    report = PruneReport(
        images=tuple(d.digest for d in dropped),
        blobs=tuple(blobs),
        temporary=tuple(temporary),
        bytes_freed=freed,
    )
    return report, frozenset(diff_ids)


def prune_store(store: str | os.PathLike[str], *, grace: float = 3600.0) -> list[str]:
    """Remove the unnamed images of the store, then every blob no image uses.

    An ``index.json`` entry without an ``org.opencontainers.image.ref.name`` is a dangling
    image, as ``docker image prune`` sees it: the image store names everything it pulls
    (by tag or by digest, ``host/app@sha256:…``), so an unnamed entry was left by a tool or
    lost its name to a newer pull; it goes. Then every blob that no remaining entry leads
    to goes, unless it was modified less than ``grace`` seconds ago: a build or a pull
    without the lock writes its blobs before it names them. Leftovers of crashed writes
    (``.partial-*``) older than ``grace`` go too.

    Args:
        store: the image store's OCI layout.
        grace: the age in seconds below which an unused blob is kept.

    Returns:
        The digests of the blobs removed.

    Raises:
        ImageError: a manifest or config of a named image cannot be read, so what it uses
            is unknown; nothing is removed.
    """
    root = Path(store)
    if not (root / "oci-layout").is_file():
        return []
    with locked_layout(root):
        report, _ = _prune_store(root, grace)
    return list(report.blobs)


def prune(data_root: str | os.PathLike[str], *, grace: float = 3600.0) -> PruneReport:
    """Collect the garbage under ``data_root``: :func:`prune_store` on the image store
    (``<data root>/images``), then :meth:`LayerCache.prune` on the layer cache
    (``<data root>``), keeping the layers of every image left in the store and those
    a container holds.

    A layer unpacked from an image outside the store (``Image.from_oci_layout`` of some
    other directory) is removed too unless it is held: it is unpacked again when needed.
    The store stays locked throughout, so a pull waits rather than having its layers
    pruned from under it.

    Args:
        data_root: containerlib's data root, such as ``/var/lib/containerlib``.
        grace: the age in seconds below which an unused blob or an unknown temporary
            entry is kept.

    Returns:
        What was removed and the bytes freed.

    Raises:
        ImageError: a manifest or config of a named image cannot be read; nothing is
            removed.

    Example:
        >>> report = prune("/var/lib/containerlib")  # doctest: +SKIP
        >>> print(f"{report.bytes_freed / 1e6:.0f} MB freed")  # doctest: +SKIP
    """
    root = Path(data_root)
    store = root / "images"
    cache = LayerCache(root)
    if not (store / "oci-layout").is_file():
        layers = cache.prune_layers((), grace=grace)
        return _with_layers(PruneReport(), layers)
    with locked_layout(store):
        report, keep = _prune_store(store, grace)
        report = attrs.evolve(report, temporary=tuple(f"images/{p}" for p in report.temporary))
        return _with_layers(report, cache.prune_layers(keep, grace=grace))


def _with_layers(report: PruneReport, layers: list[tuple[str, int]]) -> PruneReport:
    return attrs.evolve(
        report,
        layers=tuple(name for name, _ in layers if not name.startswith("tmp/")),
        temporary=(*report.temporary, *(name for name, _ in layers if name.startswith("tmp/"))),
        bytes_freed=report.bytes_freed + sum(size for _, size in layers),
    )
