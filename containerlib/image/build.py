"""Building images: each step stores a new manifest, config and (maybe) layer as blobs.

An image being built is always a complete image of an OCI layout (the image store): a
manifest blob whose config and layers are blobs beside it. A step reads its base image's
manifest and config, appends a layer and a history entry, or edits the config, and writes
the new config and manifest; nothing is changed in place, so every intermediate image stays
valid and can be run, tagged, saved or pushed. ``index.json`` names an image only when it
is tagged; until then its blobs are kept by the store's grace period (see
:func:`containerlib.image.store.prune_store`).

The config is edited as JSON, not through :class:`~containerlib.spec.image.ImageConfig`,
so that fields containerlib does not model (``Healthcheck``, ``Shell``, ``os.version``)
survive a build step. New manifests are OCI manifests; Docker layers keep their bytes and
take the OCI media type of the same format.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs

from containerlib.errors import ImageError
from containerlib.image.layer_writer import WrittenLayer
from containerlib.image.layout import blob_path, host_platform, read_blob
from containerlib.spec.image import (
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Manifest,
)

__all__ = ["ImageSource", "commit", "read_config", "write_blob"]

# Docker layer media types and the OCI ones for the same bytes.
_TO_OCI_LAYER: Final = {MEDIA_TYPE_DOCKER_LAYER_GZIP: MEDIA_TYPE_OCI_LAYER_GZIP}


@attrs.frozen
class ImageSource:
    """Where an image's blobs are: an OCI layout and the image's manifest in it.

    Attributes:
        layout: the OCI layout directory.
        manifest: the descriptor of the image's (single-platform) manifest.
    """

    layout: Path
    manifest: Descriptor


def write_blob(layout: Path, data: bytes, media_type: str) -> Descriptor:
    """Store ``data`` as a blob of ``layout`` (written aside, then renamed), unless a blob
    of that digest is there already.

    Returns:
        The blob's descriptor.
    """
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    final = blob_path(layout, digest)
    if not final.is_file() or final.stat().st_size != len(data):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=".partial-blob-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(name, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
    else:
        os.utime(final)  # fresh again for the store's grace period
    return Descriptor(media_type=media_type, digest=digest, size=len(data))


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def read_config(source: ImageSource) -> tuple[Manifest, dict[str, Any]]:
    """The image's manifest, and its config as a JSON object.

    Raises:
        LayerError: a blob is missing or corrupt.
        ImageError: the config is not a JSON object.
    """
    manifest = Manifest.from_dict(json.loads(read_blob(source.layout, source.manifest)))
    config = json.loads(read_blob(source.layout, manifest.config))
    if not isinstance(config, dict):
        raise ImageError(f"image config {manifest.config.digest} is not a JSON object")
    return manifest, config


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _scratch_config() -> dict[str, Any]:
    platform = host_platform()
    config: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    if platform.variant:
        config["variant"] = platform.variant
    return config


def commit(
    layout: Path,
    base: ImageSource | None,
    *,
    created_by: str,
    layer: WrittenLayer | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> ImageSource:
    """Store the image ``base`` (or an empty one) plus ``layer`` and with its container
    config changed by ``edit``, with a history entry saying ``created_by``.

    Args:
        layout: the OCI layout to write the blobs to (where ``layer``'s blob is).
        base: the image to build on; None for an empty image (``FROM scratch``).
        created_by: what the step did, for the image's history.
        layer: a layer written by :class:`~containerlib.image.layer_writer.LayerWriter`.
        edit: changes the ``config`` object (``Env``, ``Cmd``, ...) in place.

    Returns:
        The new image.
    """
    if base is None:
        layers: list[Descriptor] = []
        config = _scratch_config()
        annotations: dict[str, str] = {}
    else:
        manifest, config = read_config(base)
        layers = [
            attrs.evolve(d, media_type=_TO_OCI_LAYER.get(d.media_type, d.media_type))
            for d in manifest.layers
        ]
        annotations = dict(manifest.annotations)
        if base.layout != layout:
            _copy_blobs(base.layout, layout, [*manifest.layers])
    created = _now()
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    history = config.setdefault("history", [])
    step: dict[str, Any] = {"created": created, "created_by": created_by}
    if layer is not None:
        layers.append(layer.descriptor)
        rootfs.setdefault("diff_ids", []).append(layer.diff_id)
    else:
        step["empty_layer"] = True
    history.append(step)
    if edit is not None:
        container = config.get("config")
        if not isinstance(container, dict):
            container = config["config"] = {}
        edit(container)
    config["created"] = created
    config_descriptor = write_blob(layout, _json_bytes(config), MEDIA_TYPE_OCI_CONFIG)
    new = Manifest(
        media_type=MEDIA_TYPE_OCI_MANIFEST,
        config=config_descriptor,
        layers=layers,
        annotations=annotations,
    )
    descriptor = write_blob(layout, _json_bytes(new.to_dict()), MEDIA_TYPE_OCI_MANIFEST)
    return ImageSource(layout=layout, manifest=descriptor)


def _copy_blobs(source: Path, dest: Path, descriptors: list[Descriptor]) -> None:
    """Hard-link (or copy) the blobs an image built into ``dest`` keeps from ``source``."""
    import shutil

    for d in descriptors:
        target = blob_path(dest, d.digest)
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".partial-blob-")
        os.close(fd)
        try:
            try:
                os.unlink(name)
                os.link(blob_path(source, d.digest), name)
            except OSError:
                shutil.copyfile(blob_path(source, d.digest), name)
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
