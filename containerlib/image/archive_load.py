"""Loading image archives into the image store: ``docker load`` and OCI archives.

An archive is read as a tar of named members, never extracted (see
:mod:`containerlib.image.archive_io`). First every document is read and checked (the
names, manifests, configs, and that each layer member exists), then, under the store's
lock, each blob is copied to a temporary name, verified and renamed, and finally
``index.json`` gains the images' names in one atomic write. If anything fails after the
first blob was written, the blobs this load created are removed again.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import importlib
import io
import lzma
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO, Final

import attrs

from containerlib.errors import ImageError, ImageNotFound, LayerError, SpecError
from containerlib.image.archive_io import (
    ANNOTATION_CONTAINERD_NAME,
    CHUNK,
    ArchiveReader,
    HashingReader,
    blob_member,
    check_image,
    dumps,
    json_of,
    parse_json,
)
from containerlib.image.layers import SupportsRead, decompressed
from containerlib.image.layout import MAX_JSON_BLOB_SIZE, blob_path, choose_platform, host_platform
from containerlib.image.layout_write import (
    locked_layout,
    read_index,
    temporary,
    write_all,
    write_file_atomically,
    write_index,
)
from containerlib.image.reference import parse_reference
from containerlib.spec.image import (
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)

__all__ = ["load_archive"]

_LAYOUT_VERSION: Final = "1.0.0"
_MAX_NESTING: Final = 4
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC: Final = b"BZh"
_XZ_MAGIC: Final = b"\xfd7zXZ\x00"


@attrs.frozen
class _OciImage:
    """An image of an OCI archive, checked and ready to be copied into the store."""

    names: tuple[str, ...]
    descriptor: Descriptor
    documents: tuple[tuple[Descriptor, bytes], ...]
    layers: tuple[Descriptor, ...]


@attrs.frozen
class _DockerImage:
    """An image of a ``docker save`` archive, checked and ready to be imported."""

    names: tuple[str, ...]
    config_bytes: bytes
    config: ImageConfig
    layer_paths: tuple[str, ...]


def _full_name(name: str, what: str) -> str:
    try:
        return str(parse_reference(name))
    except SpecError as e:
        raise LayerError(
            f"{what}: image name {name!r} is not an image reference: {e.message}"
        ) from None


def _read_archive_blob(archive: ArchiveReader, descriptor: Descriptor, what: str) -> bytes:
    data = archive.read(blob_member(descriptor.digest), what, MAX_JSON_BLOB_SIZE)
    actual = f"{descriptor.algorithm}:{hashlib.new(descriptor.algorithm, data).hexdigest()}"
    if len(data) != descriptor.size or actual != descriptor.digest:
        raise LayerError(
            f"{archive.what}: {what} blob {descriptor.digest} does not match its descriptor: "
            f"{len(data)} bytes with digest {actual}"
        )
    return data


def _resolve_manifest(
    archive: ArchiveReader, entry: Descriptor
) -> tuple[Descriptor, bytes, Manifest]:
    """Follow ``entry`` through indexes (this machine's platform) to a manifest."""
    descriptor = entry
    for _ in range(_MAX_NESTING):
        what = f"{archive.what}: index.json entry {entry.digest}"
        if descriptor.media_type in INDEX_MEDIA_TYPES:
            data = _read_archive_blob(archive, descriptor, "index")
            nested = parse_json(data, Index.from_dict, f"{what}: index {descriptor.digest}")
            descriptor = choose_platform(nested.manifests, host_platform(), what)
            continue
        if descriptor.media_type not in MANIFEST_MEDIA_TYPES:
            raise LayerError(
                f"{what}: unsupported media type {descriptor.media_type!r}, expected an "
                "image manifest or index"
            )
        data = _read_archive_blob(archive, descriptor, "manifest")
        manifest = parse_json(data, Manifest.from_dict, f"{what}: manifest {descriptor.digest}")
        if manifest.media_type not in (None, descriptor.media_type):
            raise LayerError(
                f"{what}: manifest {descriptor.digest} says media type "
                f"{manifest.media_type!r}, its descriptor {descriptor.media_type!r}"
            )
        return descriptor, data, manifest
    raise LayerError(f"{archive.what}: indexes nested deeper than {_MAX_NESTING}")


def _oci_names(entry: Descriptor, what: str) -> tuple[str, ...]:
    name = entry.annotations.get(ANNOTATION_CONTAINERD_NAME) or entry.ref_name
    # A bare "latest" names a tag of no repository (``skopeo copy … oci:dir:latest``).
    if not name or not any(c in name for c in "/:@"):
        return ()
    return (_full_name(name, what),)


def _plan_oci(archive: ArchiveReader) -> list[_OciImage]:
    marker = archive.read("oci-layout", "document", 65536)
    version = json_of(marker, dict, f"{archive.what}: oci-layout")
    if version.get("imageLayoutVersion") != _LAYOUT_VERSION:
        raise LayerError(
            f"{archive.what}: oci-layout: unsupported layout version, expected {_LAYOUT_VERSION!r}"
        )
    data = archive.read("index.json", "document", MAX_JSON_BLOB_SIZE)
    index = parse_json(data, Index.from_dict, f"{archive.what}: index.json")
    entries: dict[str, tuple[Descriptor, list[str]]] = {}
    for entry in index.manifests:
        found = _oci_names(entry, f"{archive.what}: index.json")
        entries.setdefault(entry.digest, (entry, []))[1].extend(found)
    images = []
    for entry, names in entries.values():
        descriptor, manifest_bytes, manifest = _resolve_manifest(archive, entry)
        what = f"{archive.what}: manifest {descriptor.digest}"
        config_bytes = _read_archive_blob(archive, manifest.config, "config")
        config = parse_json(config_bytes, ImageConfig.from_dict, f"{what}: config")
        check_image(manifest, config, what)
        for i, layer in enumerate(manifest.layers):
            member = archive.member(blob_member(layer.digest), f"layer {i} blob")
            if member.size != layer.size:
                raise LayerError(
                    f"{what}: layer blob {layer.digest} has {member.size} bytes, its "
                    f"descriptor says {layer.size}"
                )
        stored = Descriptor(
            media_type=descriptor.media_type,
            digest=descriptor.digest,
            size=descriptor.size,
            platform=descriptor.platform or entry.platform or config.platform,
        )
        documents = ((manifest.config, config_bytes), (stored, manifest_bytes))
        images.append(_OciImage(tuple(dict.fromkeys(names)), stored, documents, manifest.layers))
    if not images:
        raise ImageError(f"{archive.what}: index.json lists no images")
    return images


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise LayerError(f"{what}: expected a list of strings, got {value!r:.100}")
    return value


def _plan_docker(archive: ArchiveReader) -> list[_DockerImage]:
    data = archive.read("manifest.json", "document", MAX_JSON_BLOB_SIZE)
    document = json_of(data, list, f"{archive.what}: manifest.json")
    images = []
    for i, item in enumerate(document):
        where = f"manifest.json[{i}]"
        what = f"{archive.what}: {where}"
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise LayerError(f"{what}: expected an object with a Config path, got {item!r:.100}")
        layers = _strings(item.get("Layers"), f"{what}.Layers")
        tags = _strings(item.get("RepoTags") or [], f"{what}.RepoTags")
        config_bytes = archive.read(item["Config"], f"{where}.Config", MAX_JSON_BLOB_SIZE)
        config = parse_json(
            config_bytes, ImageConfig.from_dict, f"{what}: config {item['Config']!r}"
        )
        if len(layers) != len(config.rootfs.diff_ids):
            raise LayerError(
                f"{what} has {len(layers)} layers but its config lists "
                f"{len(config.rootfs.diff_ids)} diff IDs"
            )
        for j, path in enumerate(layers):
            archive.member(path, f"{where}.Layers[{j}]")
        names = tuple(dict.fromkeys(_full_name(tag, f"{what}.RepoTags") for tag in tags))
        images.append(_DockerImage(names, config_bytes, config, tuple(layers)))
    if not images:
        raise ImageError(f"{archive.what}: manifest.json lists no images")
    return images


class _Importer:
    """Copies blobs from an archive into the store; :meth:`roll_back` removes those it
    created, if the import fails."""

    def __init__(self, archive: ArchiveReader, store: Path) -> None:
        self.archive = archive
        self.store = store
        # Each blob this import created, with the (device, inode) it was created as.
        self._created: list[tuple[Path, tuple[int, int]]] = []
        self._copied: set[str] = set()
        self._layers: dict[str, tuple[Descriptor, str]] = {}

    def _created_now(self, final: Path) -> None:
        st = os.stat(final)
        self._created.append((final, (st.st_dev, st.st_ino)))

    def _commit(self, fd: int, temp: Path, final: Path) -> None:
        os.fsync(fd)
        existed = final.exists()
        os.replace(temp, final)
        if not existed:
            self._created_now(final)

    def roll_back(self) -> None:
        """Remove the blobs this import created. Those whose inode changed were written
        again since by someone who does not take the lock (a build), and stay."""
        for path, identity in self._created:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == identity:
                    path.unlink()

    def store_bytes(self, descriptor: Descriptor, data: bytes) -> None:
        """Store a verified document (a manifest or config) under its digest."""
        final = blob_path(self.store, descriptor.digest)
        if not final.exists():
            final.parent.mkdir(exist_ok=True)
            write_file_atomically(final, data)
            self._created_now(final)

    def copy_blob(self, descriptor: Descriptor) -> None:
        """Copy the blob ``descriptor`` names from the archive, checking its digest."""
        if descriptor.digest in self._copied:
            return
        self._copied.add(descriptor.digest)
        final = blob_path(self.store, descriptor.digest)
        final.parent.mkdir(exist_ok=True)
        name = blob_member(descriptor.digest)
        what = f"{self.archive.what}: blob {descriptor.digest}"
        with self.archive.open(name, "blob") as stream, temporary(final) as (fd, temp):
            copy = HashingReader(stream, descriptor.algorithm, what, lambda b: write_all(fd, b))
            copy.drain()
            if copy.count != descriptor.size or copy.digest != descriptor.digest:
                raise LayerError(f"{what} does not match its digest: got {copy.digest}")
            self._commit(fd, temp, final)

    def copy_layer(self, path: str, diff_id: str, what: str) -> Descriptor:
        """Copy a docker archive's layer as it is (plain tar, gzip or zstd), checking that
        its tar has the digest ``diff_id``; the blob's digest is known only at the end."""
        found = self._layers.get(path)
        if found is None:
            blobs = self.store / "blobs" / "sha256"
            with self.archive.open(path, what) as stream, temporary(blobs / "layer") as (fd, t):
                raw = HashingReader(stream, "sha256", what, lambda b: write_all(fd, b))
                tar = HashingReader(decompressed(raw, MEDIA_TYPE_OCI_LAYER), "sha256", what)
                tar.drain()
                raw.drain()  # anything after the end of a compressed stream
                if raw.head.startswith(_GZIP_MAGIC):
                    media_type = MEDIA_TYPE_OCI_LAYER_GZIP
                elif raw.head.startswith(_ZSTD_MAGIC):
                    media_type = MEDIA_TYPE_OCI_LAYER_ZSTD
                else:
                    media_type = MEDIA_TYPE_OCI_LAYER
                if tar.digest == diff_id:
                    self._commit(fd, t, blob_path(self.store, raw.digest))
            found = Descriptor(media_type=media_type, digest=raw.digest, size=raw.count), tar.digest
            self._layers[path] = found
        descriptor, actual = found
        if actual != diff_id:
            raise LayerError(
                f"{self.archive.what}: {what} {path!r}: its tar's digest is {actual}, but the "
                f"config's diff ID is {diff_id}"
            )
        return descriptor

    def import_oci(self, image: _OciImage) -> Descriptor:
        for layer in image.layers:
            self.copy_blob(layer)
        for descriptor, data in image.documents:
            self.store_bytes(descriptor, data)
        return image.descriptor

    def import_docker(self, image: _DockerImage, index: int) -> Descriptor:
        layers = [
            self.copy_layer(path, diff_id, f"manifest.json[{index}].Layers[{i}]")
            for i, (path, diff_id) in enumerate(
                zip(image.layer_paths, image.config.rootfs.diff_ids, strict=True)
            )
        ]
        config = Descriptor(
            media_type=MEDIA_TYPE_OCI_CONFIG,
            digest="sha256:" + hashlib.sha256(image.config_bytes).hexdigest(),
            size=len(image.config_bytes),
        )
        self.store_bytes(config, image.config_bytes)
        manifest_bytes = dumps(Manifest(config=config, layers=layers).to_dict())
        descriptor = Descriptor(
            media_type=MEDIA_TYPE_OCI_MANIFEST,
            digest="sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
            size=len(manifest_bytes),
            platform=image.config.platform,
        )
        self.store_bytes(descriptor, manifest_bytes)
        return descriptor


def _name_images(
    store: Path, loaded: Iterable[tuple[Descriptor, tuple[str, ...]]]
) -> list[Descriptor]:
    """Add the loaded images to the store's ``index.json`` in one write."""
    manifests = list(read_index(store).manifests)
    added = []
    for descriptor, names in loaded:
        if not names:
            if not any(d.digest == descriptor.digest for d in manifests):
                manifests.append(descriptor)
            added.append(descriptor)
        for name in names:
            named = attrs.evolve(descriptor, annotations={ANNOTATION_REF_NAME: name})
            manifests = [d for d in manifests if d.ref_name != name]
            manifests.append(named)
            added.append(named)
    write_index(store, Index(manifests=manifests))
    return added


#: Disk space a decompressed archive leaves free in the store's file system.
SPOOL_RESERVE: Final = 1 << 30


def _decompressor(head: bytes) -> Callable[[BinaryIO], SupportsRead] | None:
    if head.startswith(_GZIP_MAGIC):
        return lambda f: gzip.GzipFile(fileobj=f, mode="rb")
    if head.startswith(_BZIP2_MAGIC):
        return bz2.BZ2File
    if head.startswith(_XZ_MAGIC):
        return lzma.LZMAFile
    if head.startswith(_ZSTD_MAGIC):
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError:
            raise ImageError(
                "the archive is zstd-compressed but the zstandard module is missing: "
                "install containerlib[zstd]"
            ) from None
        return lambda f: zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    return None


def _plain_tar(file: io.BufferedReader, store: Path, what: str, stack: ExitStack) -> BinaryIO:
    """The archive as an uncompressed, seekable tar file.

    A compressed archive (or one read from a pipe) is decompressed once into an unnamed
    temporary file in the store's directory: a tar can be read by member name only with
    random access, and ``manifest.json`` usually comes after the layers it describes. The
    file takes disk space for the uncompressed archive while the load runs, and none after.
    """
    head = file.peek(6)[:6]
    opener = _decompressor(head)
    if opener is None and stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        return file
    store.mkdir(parents=True, exist_ok=True)
    spool = stack.enter_context(tempfile.TemporaryFile(dir=store))  # noqa: SIM115 - the stack closes it
    source = HashingReader(opener(file) if opener else file, None, what)
    # A decompression bomb stops before it fills the disk: at most what is free, less a
    # reserve for everything else that writes there.
    free = os.statvfs(store)
    limit = free.f_bavail * free.f_frsize - SPOOL_RESERVE
    written = 0
    while data := source.read(CHUNK):
        written += len(data)
        if written > limit:
            raise ImageError(
                f"{what}: decompressed, the archive would take more than the {max(limit, 0)} "
                f"bytes free in {store} (less a reserve of {SPOOL_RESERVE})"
            )
        spool.write(data)
    spool.seek(0)
    return spool


def load_archive(path: str | os.PathLike[str], store: Path) -> list[Descriptor]:
    """Import the images of an archive into the image store ``store`` (an OCI layout).

    Read are ``docker save`` archives, classic (``manifest.json``, ``<id>/layer.tar``,
    ``<hex>.json``) or Docker 25+ (an OCI layout with ``manifest.json`` added), and OCI
    archives (``oci-layout``, ``index.json``, ``blobs/``), each plain or compressed with
    gzip, bzip2, xz or zstd (told by their magic numbers, not the file name).

    * An OCI archive (including Docker 25+'s) is imported as it is: each ``index.json``
      entry's manifest, config and layers are copied byte for byte, an index being
      resolved to the manifest for this machine's platform. The image's name is its
      ``io.containerd.image.name`` annotation, or else its
      ``org.opencontainers.image.ref.name``, normalized (``busybox:1`` becomes
      ``docker.io/library/busybox:1``). A ref name without ``/``, ``:`` or ``@``, such
      as ``latest``, is a tag of no repository (what ``skopeo copy … oci:dir:latest``
      writes): that image is imported unnamed.
    * A classic ``docker save`` archive's layers are stored as they are in the tar:
      uncompressed (``application/vnd.oci.image.layer.v1.tar``) or, if already gzip or
      zstd, compressed (``…tar+gzip``, ``…tar+zstd``); each layer's tar must have the
      digest of the config's ``rootfs.diff_ids`` entry. The config is kept byte for byte
      (as ``application/vnd.oci.image.config.v1+json``) and a new OCI manifest is
      written. The names are the ``RepoTags``, normalized.

    A name already in the store moves to the loaded image, as ``docker load`` does. An
    unnamed image (``docker save`` of an image ID, no ``RepoTags``) is listed by digest
    only, like Docker's ``<none>`` images; :func:`~containerlib.image.store.prune_store`
    removes such images.

    Nothing in the archive is trusted. It is never extracted: its members are read by
    name, and one whose name is absolute or has ``..``, a device node, a link leading out
    of the archive, two members of one name, a document larger than 16 MiB or a truncated
    archive are refused before anything is written. Blobs are written to temporary names
    and renamed only once their digests are verified; if any check fails, the blobs this
    load created are removed again and ``index.json`` is not changed, all under the
    store's lock.

    Args:
        path: the archive file.
        store: the image store, an OCI layout; made if it does not exist.

    Returns:
        The ``index.json`` descriptors of the loaded images, one per name (with the
        ``org.opencontainers.image.ref.name`` annotation) and one per unnamed image.

    Raises:
        ImageNotFound: there is no file at ``path``.
        LayerError: the archive is corrupt, truncated or hostile, a blob fails its digest,
            or a layer's tar does not match its diff ID; the message names the member.
        ImageError: the file is not an image archive, or the store cannot be written.

    Example:
        >>> [d.ref_name for d in load_archive("busybox.tar", store)]  # doctest: +SKIP
        ['docker.io/library/busybox:latest']
    """
    source = Path(path)
    root = Path(store)
    what = str(source)
    try:
        file = open(source, "rb")  # noqa: SIM115 - closed by the ExitStack
    except FileNotFoundError:
        raise ImageNotFound(f"load image archive {source}: no such file") from None
    except OSError as e:
        raise ImageError(f"load image archive {source}: {e.strerror}") from e
    with ExitStack() as stack:
        stack.enter_context(file)
        try:
            archive = stack.enter_context(ArchiveReader(_plain_tar(file, root, what, stack), what))
            if archive.has("oci-layout") and archive.has("index.json"):
                images: Sequence[_OciImage | _DockerImage] = _plan_oci(archive)
            elif archive.has("manifest.json"):
                images = _plan_docker(archive)
            else:
                raise ImageError(
                    f"{what} is not an image archive: it has neither manifest.json "
                    "(docker save) nor oci-layout and index.json (OCI)"
                )
            with locked_layout(root):
                importer = _Importer(archive, root)
                try:
                    loaded = [
                        (
                            importer.import_oci(image)
                            if isinstance(image, _OciImage)
                            else importer.import_docker(image, i),
                            image.names,
                        )
                        for i, image in enumerate(images)
                    ]
                    return _name_images(root, loaded)
                except BaseException:
                    importer.roll_back()
                    raise
        except OSError as e:
            raise ImageError(f"load image archive {source} into {root}: {e.strerror or e}") from e
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises
