"""The image store: the images pulled by reference, in one OCI image layout.

``Image.from_registry`` keeps what it pulls in ``<data root>/images``, named in
``index.json`` by the full reference (``docker.io/library/busybox:latest``). This module
lists those images and removes them: removing a name drops its ``index.json`` entry, then
every blob that no remaining image uses. Containers run from the unpacked layer cache,
never from these blobs, so removing an image does not disturb a running container.
Both hold the layout's lock, as a pull does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs

from containerlib.errors import ImageError, ImageNotFound, LayerError, SpecError
from containerlib.image.layout import blob_path, read_blob
from containerlib.image.registry import locked_layout, read_index, write_index
from containerlib.spec.image import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    Index,
    Manifest,
)

__all__ = ["StoredImage", "list_images", "remove_image"]


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


def _blobs_of(store: Path, descriptor: Descriptor) -> dict[str, int]:
    """Every blob ``descriptor`` leads to that is in the store, by digest, with its size:
    itself, and for an index the manifests it holds, for a manifest its config and layers.
    A platform that was not pulled is simply not there."""
    found: dict[str, int] = {}
    pending = [descriptor]
    while pending:
        d = pending.pop()
        if d.digest in found or not blob_path(store, d.digest).is_file():
            continue
        found[d.digest] = d.size
        try:
            if d.media_type in INDEX_MEDIA_TYPES:
                pending += Index.from_dict(json.loads(read_blob(store, d))).manifests
            elif d.media_type in MANIFEST_MEDIA_TYPES:
                manifest = Manifest.from_dict(json.loads(read_blob(store, d)))
                pending += [manifest.config, *manifest.layers]
            # else a config or a layer: nothing further
        except (ValueError, SpecError, LayerError) as e:
            raise ImageError(f"image store {store}: blob {d.digest}: {e}") from None
    return found


def list_images(store: str | os.PathLike[str]) -> list[StoredImage]:
    """The named images in the store, by name."""
    root = Path(store)
    out = []
    for d in read_index(root).manifests:
        if d.ref_name is not None:
            size = sum(_blobs_of(root, d).values())
            out.append(StoredImage(name=d.ref_name, digest=d.digest, size=size))
    return sorted(out, key=lambda image: image.name)


def remove_image(store: str | os.PathLike[str], name: str) -> list[str]:
    """Remove the image ``name`` from the store, and the blobs no other image uses.

    Returns:
        The digests of the blobs removed.

    Raises:
        ImageNotFound: the store has no image of that name.
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
        used: set[str] = set()
        for d in kept:
            used |= _blobs_of(root, d).keys()
        write_index(root, attrs.evolve(index, manifests=kept))
        removed = []
        for path in sorted((root / "blobs" / "sha256").iterdir()):
            digest = f"sha256:{path.name}"
            if path.name.startswith(".") or digest in used:
                continue
            path.unlink()
            removed.append(digest)
        return removed
