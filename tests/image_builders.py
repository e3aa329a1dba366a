"""Build tar layers and OCI image layouts for tests, with Python's tarfile.

A layer is described as a list of entries (:func:`file`, :func:`directory`,
:func:`symlink`, :func:`hardlink`, :func:`whiteout`, ...), packed by :func:`make_layer`;
:func:`build_oci_layout` writes a complete layout around some layers, and
:func:`busybox_layout` one whose single layer is a runnable root filesystem made from the
host's static busybox. Everything is deterministic: the same entries give the same digests.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     built = build_oci_layout(Path(tmp), [[file("hello", b"hi\\n")]], ref="latest")
    ...     (built.path / "index.json").exists()
    True
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from containerlib.image.layout import host_platform
from containerlib.spec.image import (
    ANNOTATION_REF_NAME,
    LAYER_MEDIA_TYPES,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
    MEDIA_TYPE_OCI_MANIFEST,
    ContainerConfig,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    RootFS,
)

__all__ = [
    "BUSYBOX",
    "DEFAULT_MTIME",
    "BuiltImage",
    "Compression",
    "Entry",
    "Layer",
    "add_to_index",
    "blockdev",
    "build_oci_layout",
    "busybox_entries",
    "busybox_layout",
    "chardev",
    "compress",
    "digest_of",
    "directory",
    "fifo",
    "file",
    "hardlink",
    "init_layout",
    "make_layer",
    "opaque",
    "raw_entry",
    "symlink",
    "tar_bytes",
    "whiteout",
    "write_blob",
    "write_image",
    "write_index_blob",
    "write_json_blob",
]

#: The mtime every entry gets unless told otherwise (2023-11-14T22:13:20Z).
DEFAULT_MTIME = 1_700_000_000
#: The host's static busybox, packed by :func:`busybox_layout`.
BUSYBOX = Path("/bin/busybox")

Compression = Literal["gzip", "none", "zstd"]
_MEDIA_TYPES: dict[str, str] = {
    "gzip": MEDIA_TYPE_OCI_LAYER_GZIP,
    "none": MEDIA_TYPE_OCI_LAYER,
    "zstd": MEDIA_TYPE_OCI_LAYER_ZSTD,
}


@attrs.frozen
class Entry:
    """One tar member: its header and, for a regular file, its data."""

    info: tarfile.TarInfo
    data: bytes = b""


def _info(
    name: str,
    kind: bytes,
    *,
    mode: int,
    uid: int = 0,
    gid: int = 0,
    mtime: float = DEFAULT_MTIME,
    xattrs: Mapping[str, bytes | str] | None = None,
    linkname: str = "",
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = mtime
    info.linkname = linkname
    if xattrs:
        info.pax_headers = {
            f"SCHILY.xattr.{key}": (
                value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
            )
            for key, value in xattrs.items()
        }
    return info


def file(
    name: str,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: float = DEFAULT_MTIME,
    xattrs: Mapping[str, bytes | str] | None = None,
) -> Entry:
    """A regular file holding ``data``."""
    info = _info(name, tarfile.REGTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs)
    info.size = len(data)
    return Entry(info, data)


def directory(
    name: str,
    *,
    mode: int = 0o755,
    uid: int = 0,
    gid: int = 0,
    mtime: float = DEFAULT_MTIME,
    xattrs: Mapping[str, bytes | str] | None = None,
) -> Entry:
    """A directory."""
    return Entry(
        _info(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs)
    )


def symlink(
    name: str, target: str, *, uid: int = 0, gid: int = 0, mtime: float = DEFAULT_MTIME
) -> Entry:
    """A symbolic link ``name -> target``, stored verbatim."""
    return Entry(
        _info(name, tarfile.SYMTYPE, mode=0o777, uid=uid, gid=gid, mtime=mtime, linkname=target)
    )


def hardlink(name: str, target: str) -> Entry:
    """A hard link ``name`` to the earlier member ``target`` (an archive path)."""
    return Entry(_info(name, tarfile.LNKTYPE, mode=0o644, linkname=target))


def fifo(name: str, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    """A named pipe."""
    return Entry(_info(name, tarfile.FIFOTYPE, mode=mode, uid=uid, gid=gid))


def _device(name: str, kind: bytes, major: int, minor: int, mode: int) -> Entry:
    info = _info(name, kind, mode=mode)
    info.devmajor, info.devminor = major, minor
    return Entry(info)


def chardev(name: str, major: int, minor: int, *, mode: int = 0o666) -> Entry:
    """A character device node."""
    return _device(name, tarfile.CHRTYPE, major, minor, mode)


def blockdev(name: str, major: int, minor: int, *, mode: int = 0o660) -> Entry:
    """A block device node."""
    return _device(name, tarfile.BLKTYPE, major, minor, mode)


def whiteout(path: str) -> Entry:
    """The whiteout that deletes ``path`` of a lower layer: ``dir/.wh.name``."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", mode=0o600)


def opaque(path: str) -> Entry:
    """The marker that hides everything lower layers have in directory ``path``."""
    return file(f"{path.rstrip('/')}/.wh..wh..opq", mode=0o600)


def raw_entry(info: tarfile.TarInfo, data: bytes = b"") -> Entry:
    """A member with a hand-made header, for names no helper would write."""
    return Entry(info, data)


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    """Pack ``entries`` into an uncompressed PAX tar archive."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            archive.addfile(entry.info, io.BytesIO(entry.data) if entry.info.isreg() else None)
    return out.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    """Compress a tar stream; ``zstd`` needs the zstandard module."""
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        import zstandard  # type: ignore[import-not-found]

        return bytes(zstandard.ZstdCompressor().compress(data))
    return data


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@attrs.frozen
class Layer:
    """A packed layer: the blob as stored and the digest of its uncompressed tar."""

    blob: bytes
    media_type: str
    diff_id: str

    @property
    def digest(self) -> str:
        """The blob's digest."""
        return digest_of(self.blob)

    def descriptor(self) -> Descriptor:
        """The layer's descriptor for a manifest."""
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.blob))


def make_layer(
    entries: Iterable[Entry] | bytes,
    *,
    compression: Compression = "gzip",
    media_type: str | None = None,
) -> Layer:
    """Pack entries (or an uncompressed tar already made) into a layer."""
    tar = entries if isinstance(entries, bytes) else tar_bytes(entries)
    media_type = media_type or _MEDIA_TYPES[compression]
    assert media_type in LAYER_MEDIA_TYPES
    return Layer(compress(tar, compression), media_type, digest_of(tar))


def init_layout(path: Path) -> Path:
    """Make ``path`` an empty OCI layout, unless it already is one."""
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    if not (path / "oci-layout").exists():
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    if not (path / "index.json").exists():
        _write_json(path / "index.json", Index().to_dict())
    return path


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _write_json(path: Path, document: Any) -> None:
    path.write_bytes(_dumps(document))


def write_blob(
    layout: Path, data: bytes, media_type: str, *, platform: Platform | None = None
) -> Descriptor:
    """Store ``data`` under its digest and return its descriptor."""
    digest = digest_of(data)
    path = layout / "blobs" / "sha256" / digest.partition(":")[2]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Descriptor(media_type=media_type, digest=digest, size=len(data), platform=platform)


def write_json_blob(
    layout: Path, document: Any, media_type: str, *, platform: Platform | None = None
) -> Descriptor:
    """Store a JSON document (a dict, or a model's ``to_dict()``) as a blob."""
    return write_blob(layout, _dumps(document), media_type, platform=platform)


def write_image(
    layout: Path,
    layers: Sequence[Layer],
    *,
    config: ContainerConfig | None = None,
    platform: Platform | None = None,
    diff_ids: Sequence[str] | None = None,
) -> Descriptor:
    """Store the layers, a config and a manifest; return the manifest's descriptor.

    The descriptor carries ``platform`` (the host's by default), ready for an index.
    ``diff_ids`` overrides the config's list, to make a lying image.
    """
    platform = platform or host_platform()
    for layer in layers:
        write_blob(layout, layer.blob, layer.media_type)
    image_config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        config=config,
        rootfs=RootFS(diff_ids=diff_ids if diff_ids is not None else [x.diff_id for x in layers]),
    )
    config_descriptor = write_json_blob(layout, image_config.to_dict(), MEDIA_TYPE_OCI_CONFIG)
    manifest = Manifest(config=config_descriptor, layers=[x.descriptor() for x in layers])
    return write_json_blob(layout, manifest.to_dict(), MEDIA_TYPE_OCI_MANIFEST, platform=platform)


def write_index_blob(layout: Path, manifests: Sequence[Descriptor]) -> Descriptor:
    """Store a nested index (a multi-platform image) and return its descriptor."""
    return write_json_blob(layout, Index(manifests=manifests).to_dict(), MEDIA_TYPE_OCI_INDEX)


def add_to_index(layout: Path, descriptor: Descriptor, ref: str | None = None) -> None:
    """Add ``descriptor`` to the layout's ``index.json``, named ``ref``."""
    index_path = layout / "index.json"
    index = Index.from_dict(json.loads(index_path.read_bytes()))
    if ref is not None:
        descriptor = attrs.evolve(
            descriptor, annotations={**dict(descriptor.annotations), ANNOTATION_REF_NAME: ref}
        )
    _write_json(index_path, attrs.evolve(index, manifests=[*index.manifests, descriptor]).to_dict())


@attrs.frozen
class BuiltImage:
    """What :func:`build_oci_layout` wrote."""

    path: Path
    manifest: Descriptor
    layers: tuple[Layer, ...]

    @property
    def diff_ids(self) -> tuple[str, ...]:
        """The layers' diff IDs, bottom first."""
        return tuple(layer.diff_id for layer in self.layers)


def build_oci_layout(
    path: Path,
    layers: Sequence[Layer | Sequence[Entry]] = (),
    *,
    config: ContainerConfig | None = None,
    ref: str | None = "latest",
    platform: Platform | None = None,
    diff_ids: Sequence[str] | None = None,
) -> BuiltImage:
    """Write an image into the OCI layout at ``path`` (made if needed), named ``ref``.

    Args:
        path: the layout directory; an existing layout gains one more image.
        layers: :class:`Layer` objects, or lists of entries packed with gzip; bottom first.
        config: the run defaults; ``PATH`` and ``sh`` when omitted.
        ref: the ``org.opencontainers.image.ref.name``; None to leave the image unnamed.
        platform: the image's platform; the host's when omitted.
        diff_ids: a config ``rootfs.diff_ids`` other than the true one.
    """
    init_layout(path)
    packed = tuple(x if isinstance(x, Layer) else make_layer(x) for x in layers)
    if config is None:
        config = ContainerConfig(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("sh",))
    descriptor = write_image(path, packed, config=config, platform=platform, diff_ids=diff_ids)
    add_to_index(path, descriptor, ref)
    return BuiltImage(path, descriptor, packed)


def busybox_entries() -> list[Entry]:
    """A minimal root filesystem: static busybox, its applets as symlinks, /etc basics."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    entries = [
        directory("bin"),
        file("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
        *(symlink(f"bin/{name}", "busybox") for name in sorted(set(applets)) if name != "busybox"),
        directory("etc"),
        file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        file("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        directory("root", mode=0o700),
    ]
    entries += [directory(name, mode=0o555) for name in ("proc", "sys")]
    entries += [directory("dev"), directory("tmp", mode=0o1777)]
    return entries


@functools.lru_cache(maxsize=1)
def _busybox_layer() -> Layer:
    return make_layer(busybox_entries())


def busybox_layout(path: Path, ref: str | None = "latest") -> BuiltImage:
    """Write a single-layer (gzip) busybox image into the OCI layout at ``path``.

    Needs the host's static busybox at ``/bin/busybox`` (Debian's busybox-static).
    """
    if not os.access(BUSYBOX, os.X_OK):
        raise FileNotFoundError(f"{BUSYBOX} is missing: install busybox-static")
    return build_oci_layout(path, [_busybox_layer()], ref=ref)
