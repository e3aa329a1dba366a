"""Image archives: the tar files ``docker save`` writes and ``docker load`` reads, and OCI ones.

Two formats carry images between machines as one file. An OCI archive is an OCI image
layout packed into a tar: ``oci-layout``, ``index.json`` naming the images, and every
manifest, config and layer under ``blobs/sha256/``. A ``docker save`` archive lists its
images in ``manifest.json`` (``Config``, ``RepoTags`` and ``Layers``, the last two
naming members of the tar), keeps each config as it was and each layer as an uncompressed
tar whose sha256 is the layer's diff ID; Docker 25 and later write an OCI layout with that
``manifest.json`` added. Nothing in an archive is trusted: members are read by name, never
extracted, and every blob is checked against its digest before it gets its name in the
store. See the image-spec's ``image-layout.md`` and Docker's ``image/spec/v1.2.md``.

Saving is here; loading, which has more to distrust, is in
:mod:`containerlib.image.archive_load` and exported here too.

Example:
    >>> save_archive(layout, manifest, "busybox.tar", names=["busybox"])  # doctest: +SKIP
    >>> load_archive("busybox.tar", Path("/var/lib/containerlib/images"))  # doctest: +SKIP
    [Descriptor(media_type='application/vnd.oci.image.manifest.v1+json', ...)]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import attrs

from containerlib.errors import ImageError, LayerError, SpecError
from containerlib.image.archive_io import (
    ANNOTATION_CONTAINERD_NAME,
    HashingReader,
    TarWriter,
    blob_member,
    check_image,
    dumps,
    parse_json,
)
from containerlib.image.archive_load import load_archive
from containerlib.image.layers import decompressed
from containerlib.image.layout import open_blob, read_blob
from containerlib.image.layout_write import temporary
from containerlib.image.reference import Reference, parse_reference
from containerlib.spec.image import (
    ANNOTATION_REF_NAME,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)

__all__ = ["ANNOTATION_CONTAINERD_NAME", "ArchiveFormat", "load_archive", "save_archive"]

#: The archive formats :func:`save_archive` writes.
ArchiveFormat = Literal["docker", "oci"]

_OCI_LAYOUT: Final = b'{"imageLayoutVersion":"1.0.0"}'


@attrs.frozen
class _Source:
    """A verified image of a layout, ready to be written into an archive."""

    descriptor: Descriptor
    manifest_bytes: bytes
    manifest: Manifest
    config_bytes: bytes
    config: ImageConfig


def _read_source(layout: Path, descriptor: Descriptor) -> _Source:
    what = f"manifest {descriptor.digest} in {layout}"
    if descriptor.media_type not in MANIFEST_MEDIA_TYPES:
        raise ImageError(
            f"{what}: media type {descriptor.media_type!r} is not an image manifest "
            "(resolve an index to one platform first)"
        )
    manifest_bytes = read_blob(layout, descriptor)
    manifest = parse_json(manifest_bytes, Manifest.from_dict, what)
    config_bytes = read_blob(layout, manifest.config)
    config = parse_json(config_bytes, ImageConfig.from_dict, f"config {manifest.config.digest}")
    check_image(manifest, config, what)
    return _Source(descriptor, manifest_bytes, manifest, config_bytes, config)


def _chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Each layer's chain ID: the digest of the layer stack up to it (image-spec
    ``config.md``), used as the layer's directory name in a docker archive."""
    chain: list[str] = []
    for diff_id in diff_ids:
        below = f"{chain[-1]} {diff_id}".encode() if chain else None
        chain.append(diff_id if below is None else f"sha256:{hashlib.sha256(below).hexdigest()}")
    return chain


def _write_layer_tar(
    writer: TarWriter, layout: Path, layer: Descriptor, diff_id: str, name: str
) -> None:
    """Write a layer uncompressed as member ``name``, checking it against ``diff_id``."""
    with open_blob(layout, layer) as reader:
        tar = HashingReader(
            decompressed(reader, layer.media_type),
            diff_id.partition(":")[0],
            f"layer {layer.digest} in {layout}",
        )
        writer.add_stream(name, tar)
        reader.verify()
    if tar.digest != diff_id:
        raise LayerError(
            f"layer {layer.digest} in {layout}: its uncompressed digest is {tar.digest}, "
            f"but the config's diff ID is {diff_id}"
        )


def _write_docker(writer: TarWriter, layout: Path, source: _Source, refs: list[Reference]) -> None:
    tags = list(dict.fromkeys(r.with_digest(None).familiar for r in refs if r.tag is not None))
    config_name = f"{source.manifest.config.hex}.json"
    writer.add_bytes(config_name, source.config_bytes)
    diff_ids = source.config.rootfs.diff_ids
    paths: list[str] = []
    parent: str | None = None
    for layer, diff_id, chain_id in zip(
        source.manifest.layers, diff_ids, _chain_ids(diff_ids), strict=True
    ):
        layer_id = chain_id.partition(":")[2]
        writer.add_directory(layer_id)
        writer.add_bytes(f"{layer_id}/VERSION", b"1.0")
        legacy = {"id": layer_id} if parent is None else {"id": layer_id, "parent": parent}
        writer.add_bytes(f"{layer_id}/json", dumps(legacy))
        paths.append(f"{layer_id}/layer.tar")
        _write_layer_tar(writer, layout, layer, diff_id, paths[-1])
        parent = layer_id
    entry = {"Config": config_name, "RepoTags": tags, "Layers": paths}
    writer.add_bytes("manifest.json", dumps([entry]))
    if tags and parent is not None:
        repositories: dict[str, dict[str, str]] = {}
        for ref in refs:
            if ref.tag is not None:
                repository = ref.with_tag(None).with_digest(None).familiar
                repositories.setdefault(repository, {})[ref.tag] = parent
        writer.add_bytes("repositories", dumps(repositories))


def _write_oci(writer: TarWriter, layout: Path, source: _Source, refs: list[Reference]) -> None:
    entry = Descriptor(
        media_type=source.descriptor.media_type,
        digest=source.descriptor.digest,
        size=source.descriptor.size,
        platform=source.descriptor.platform or source.config.platform,
    )
    names = list(dict.fromkeys(str(r) for r in refs))
    entries = [
        attrs.evolve(entry, annotations={ANNOTATION_REF_NAME: n, ANNOTATION_CONTAINERD_NAME: n})
        for n in names
    ]
    writer.add_bytes("oci-layout", _OCI_LAYOUT)
    writer.add_bytes("index.json", dumps(Index(manifests=entries or [entry]).to_dict()))
    writer.add_directory("blobs")
    written: set[str] = set()
    folders: set[str] = set()

    def start(digest: str) -> bool:
        """Whether the blob is still to be written; adds its folder the first time."""
        if digest in written:
            return False
        algorithm = digest.partition(":")[0]
        if algorithm not in folders:
            writer.add_directory(f"blobs/{algorithm}")
            folders.add(algorithm)
        written.add(digest)
        return True

    for descriptor, data in (
        (source.descriptor, source.manifest_bytes),
        (source.manifest.config, source.config_bytes),
    ):
        if start(descriptor.digest):
            writer.add_bytes(blob_member(descriptor.digest), data)
    for layer in source.manifest.layers:
        if start(layer.digest):
            with open_blob(layout, layer) as reader:
                writer.add_stream(blob_member(layer.digest), reader)
                reader.verify()


def save_archive(
    layout: Path,
    manifest: Descriptor,
    dest: str | os.PathLike[str],
    *,
    format: ArchiveFormat = "docker",
    names: Sequence[str] = (),
) -> None:
    """Write the image ``manifest`` of the OCI layout ``layout`` into an archive file.

    ``"docker"`` writes what ``docker save`` does and ``docker load`` and ``podman load``
    read: ``manifest.json``, the config as ``<hex>.json``, each layer uncompressed as
    ``<chain ID>/layer.tar`` (gzip and zstd blobs are decompressed, and the tar's digest
    checked against the config's diff ID as it is written), and ``repositories``. The
    names become ``RepoTags`` in Docker's short form (``busybox:latest``); names without a
    tag (by digest only) are left out, so an image saved without tagged names has no
    ``RepoTags`` and no ``repositories`` file, as ``docker save IMAGE-ID`` writes it.

    ``"oci"`` writes an OCI image layout as a tar, as ``skopeo copy … oci-archive:`` and
    ``docker save`` (25+) do: the manifest, config and layer blobs byte for byte, and an
    ``index.json`` entry per name, carrying the full name in both
    ``org.opencontainers.image.ref.name`` and ``io.containerd.image.name`` (one unnamed
    entry when there are no names). ``podman load`` (4.x) reads an OCI archive only if it
    has a single entry: give one name, or use the ``"docker"`` format for several.

    The archive is written to a temporary file next to ``dest`` (mode 0600, as
    ``docker save -o`` makes it) and renamed to ``dest`` only once complete, so a failure
    leaves no partial archive. Blobs are streamed, never held in memory, and each is
    verified against its digest as it is read.

    Args:
        layout: the OCI layout holding the image.
        manifest: the descriptor of the image's manifest (OCI or Docker media type), for
            one platform.
        dest: the archive file to write; an existing file is replaced.
        format: ``"docker"`` or ``"oci"``.
        names: image references (``"busybox:latest"``, ``"localhost:5000/app:1"``),
            normalized as ``docker`` does.

    Raises:
        SpecError: an unknown ``format``, or a name that is not an image reference.
        LayerError: a blob of the image is missing, corrupt or fails its digest, or a
            layer does not match its diff ID.
        ImageError: ``manifest`` is not an image manifest, or the archive cannot be
            written (the message says why).

    Example:
        >>> image = open_layout("busybox-oci", "latest")  # doctest: +SKIP
        >>> save_archive(image.layout, image.descriptor, "busybox.tar",
        ...              names=["busybox:latest"])  # doctest: +SKIP
    """
    if format not in ("docker", "oci"):
        raise SpecError("format", f"unknown archive format {format!r}, expected 'docker' or 'oci'")
    if isinstance(names, str):
        raise SpecError("names", f"expected a list of image references, not the string {names!r}")
    refs = [parse_reference(name, field="names") for name in names]
    target = Path(dest)
    root = Path(layout)
    if target.is_dir():
        raise ImageError(f"save image {manifest.digest} to {target}: it is a directory")
    source = _read_source(root, manifest)
    try:
        with temporary(target) as (fd, temp):
            with open(fd, "wb", closefd=False) as out:
                writer = TarWriter(out)
                if format == "oci":
                    _write_oci(writer, root, source, refs)
                else:
                    _write_docker(writer, root, source, refs)
                writer.close()
            os.fsync(fd)
            os.replace(temp, target)
    except OSError as e:
        raise ImageError(f"save image {manifest.digest} to {target}: {e.strerror or e}") from e
