"""Reading images out of a local OCI image layout.

An OCI image layout is a directory holding ``oci-layout`` (the layout version),
``index.json`` (an index whose entries name the images with the
``org.opencontainers.image.ref.name`` annotation) and ``blobs/<alg>/<hex>``: every index,
manifest, config and layer, stored under its own digest. Nothing in a layout is trusted:
every blob is streamed through a hash and checked against the size and digest that
referenced it, and a digest is validated before it becomes a file name. See the image-spec's
``image-layout.md`` and ``image-index.md``.

Example:
    >>> image = open_layout(Path("/var/lib/images/busybox"), "latest")  # doctest: +SKIP
    >>> image.diff_ids[0]  # doctest: +SKIP
    'sha256:...'
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform as _platform_module
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from containerlib.errors import ImageNotFound, LayerError, SpecError
from containerlib.spec.image import (
    CONFIG_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    LAYER_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    split_digest,
)

__all__ = [
    "MAX_JSON_BLOB_SIZE",
    "BlobReader",
    "ResolvedImage",
    "blob_path",
    "choose_platform",
    "host_platform",
    "open_blob",
    "open_layout",
    "open_manifest",
    "read_blob",
]

#: The largest index, manifest or config containerlib reads into memory.
MAX_JSON_BLOB_SIZE: Final = 16 * 1024 * 1024
_MAX_NESTING: Final = 4
_LAYOUT_VERSION: Final = "1.0.0"

# uname -m to GOARCH (and the variant that goes with it), as registries name platforms.
_GOARCH: Final = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}
# The variant an image means when it names none.
_DEFAULT_VARIANT: Final = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


def host_platform() -> Platform:
    """The platform of this machine in GOOS/GOARCH terms.

    Example:
        >>> host_platform().os
        'linux'
    """
    machine = _platform_module.machine()
    architecture, variant = _GOARCH.get(machine, (machine, None))
    return Platform(architecture=architecture, os="linux", variant=variant)


@attrs.frozen(kw_only=True)
class ResolvedImage:
    """One image of a layout, resolved to a single platform and verified.

    Attributes:
        layout: the layout directory.
        descriptor: the chosen manifest's descriptor.
        manifest_digest: the digest of the chosen manifest.
        manifest: the manifest.
        config: the image config the manifest points at.
        layers: the layer descriptors, bottom layer first.
        diff_ids: the uncompressed digest of each layer, from ``config.rootfs``.
    """

    layout: Path
    descriptor: Descriptor
    manifest_digest: str
    manifest: Manifest
    config: ImageConfig
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]


def blob_path(layout: Path, digest: str) -> Path:
    """The path of the blob ``digest`` inside ``layout``.

    The digest is validated first, so the result is always ``blobs/<alg>/<hex>`` with
    ``<hex>`` made of hex digits only.

    Raises:
        LayerError: the digest is malformed (``sha256:../../etc/passwd``).

    Example:
        >>> blob_path(Path("/l"), "sha256:" + "0" * 64).parent
        PosixPath('/l/blobs/sha256')
    """
    try:
        algorithm, hex_part = split_digest(digest)
    except SpecError as e:
        raise LayerError(f"blob {digest!r} in OCI layout {layout}: {e}") from None
    return layout / "blobs" / algorithm / hex_part


class BlobReader(io.RawIOBase):
    """A blob opened for streaming, hashed as it is read.

    Reading past the descriptor's size fails at once; :meth:`verify` reads what is left
    and checks the size and digest. A reader that was not verified proves nothing.
    """

    def __init__(self, layout: Path, descriptor: Descriptor) -> None:
        super().__init__()
        self.descriptor = descriptor
        self.path = blob_path(layout, descriptor.digest)
        self._hash = hashlib.new(descriptor.algorithm)
        self._count = 0
        try:
            # O_NOFOLLOW: a blob is a plain file, never a link to one; O_NONBLOCK so that
            # a FIFO planted under a blob's name cannot hang the open.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LayerError(f"blob {descriptor.digest} is missing from {layout}") from None
        except OSError as e:
            raise LayerError(f"open blob {descriptor.digest} in {layout}: {e.strerror}") from e
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LayerError(f"blob {descriptor.digest} in {layout} is not a regular file")
        self._file = io.FileIO(fd, "rb", closefd=True)

    def readable(self) -> bool:
        """Blobs are readable."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``, hashing what was read."""
        n = self._file.readinto(buffer)
        if n:
            self._hash.update(memoryview(buffer)[:n])
            self._count += n
            if self._count > self.descriptor.size:
                raise LayerError(
                    f"blob {self.descriptor.digest} is larger than its descriptor's "
                    f"{self.descriptor.size} bytes"
                )
        return n

    def verify(self) -> None:
        """Read the rest of the blob and check its size and digest.

        Raises:
            LayerError: the blob is shorter or longer than described, or its digest differs.
        """
        while self.read(1 << 20):
            pass
        if self._count != self.descriptor.size:
            raise LayerError(
                f"blob {self.descriptor.digest} has {self._count} bytes, its descriptor "
                f"says {self.descriptor.size} (truncated or corrupt)"
            )
        actual = f"{self.descriptor.algorithm}:{self._hash.hexdigest()}"
        if actual != self.descriptor.digest:
            raise LayerError(f"blob {self.descriptor.digest} does not match its digest: {actual}")

    def close(self) -> None:
        """Close the file."""
        if hasattr(self, "_file"):
            self._file.close()
        super().close()


def open_blob(layout: Path, descriptor: Descriptor) -> BlobReader:
    """Open the blob ``descriptor`` names for streaming; call ``verify()`` after reading.

    Raises:
        LayerError: the digest is malformed or the blob is missing or not a file.
    """
    return BlobReader(layout, descriptor)


def read_blob(layout: Path, descriptor: Descriptor, max_size: int = MAX_JSON_BLOB_SIZE) -> bytes:
    """Read a whole blob into memory, verified.

    Raises:
        LayerError: the blob is missing, bigger than ``max_size``, or fails verification.
    """
    if descriptor.size > max_size:
        raise LayerError(
            f"blob {descriptor.digest} is {descriptor.size} bytes, more than the "
            f"{max_size} allowed for a {descriptor.media_type} document"
        )
    with open_blob(layout, descriptor) as reader:
        data = reader.read()
        reader.verify()
    return data


def _load_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise LayerError(f"{what}: invalid JSON: {e}") from None


def _read_json_blob(layout: Path, descriptor: Descriptor, what: str) -> Any:
    return _load_json(read_blob(layout, descriptor), f"{what} blob {descriptor.digest}")


def _read_small_file(path: Path, limit: int) -> bytes:
    """Read a layout's own file: a regular file (a FIFO would hang) of at most ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with io.FileIO(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LayerError(f"{path} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise LayerError(f"{path} is larger than {limit} bytes")
    return data


def _read_index_json(layout: Path) -> Index:
    if not layout.is_dir():
        raise ImageNotFound(f"OCI layout {layout}: no such directory")
    marker = layout / "oci-layout"
    try:
        version = _load_json(_read_small_file(marker, 65536), f"{marker}")
    except FileNotFoundError:
        raise ImageNotFound(
            f"{layout} is not an OCI image layout: it has no oci-layout file"
        ) from None
    if not isinstance(version, dict) or version.get("imageLayoutVersion") != _LAYOUT_VERSION:
        raise LayerError(f"{marker}: unsupported layout version, expected {_LAYOUT_VERSION!r}")
    index_path = layout / "index.json"
    try:
        data = _read_small_file(index_path, MAX_JSON_BLOB_SIZE)
    except FileNotFoundError:
        raise LayerError(f"OCI layout {layout} has no index.json") from None
    try:
        return Index.from_dict(_load_json(data, str(index_path)))
    except SpecError as e:
        raise LayerError(f"{index_path}: {e}") from None


def _tag_of(ref: str) -> str | None:
    name, sep, tag = ref.rpartition(":")
    return tag if sep and "/" not in tag and name else None


def _ref_matches(descriptor: Descriptor, ref: str) -> bool:
    # A digest, bare or after '@', names a manifest by content.
    digest = ref.rpartition("@")[2]
    if digest.startswith(("sha256:", "sha512:")):
        return descriptor.digest == digest
    name = descriptor.ref_name
    return name is not None and (name == ref or name == _tag_of(ref))


def _variant(p: Platform) -> str | None:
    return p.variant or _DEFAULT_VARIANT.get(p.architecture)


def choose_platform(candidates: Sequence[Descriptor], wanted: Platform, where: str) -> Descriptor:
    matching = [
        d
        for d in candidates
        if d.platform is not None
        and d.platform.os == wanted.os
        and d.platform.architecture == wanted.architecture
    ]
    if wanted.variant is not None:
        matching = [d for d in matching if d.platform and _variant(d.platform) == _variant(wanted)]
    if matching:
        # Prefer the entry that names the variant exactly, then the index's order.
        exact = [d for d in matching if d.platform and d.platform.variant == wanted.variant]
        return (exact or matching)[0]
    if len(candidates) == 1 and candidates[0].platform is None:
        return candidates[0]
    present = sorted(
        "/".join(x for x in (d.platform.os, d.platform.architecture, d.platform.variant) if x)
        for d in candidates
        if d.platform is not None
    )
    want = "/".join(x for x in (wanted.os, wanted.architecture, wanted.variant) if x)
    raise ImageNotFound(f"{where} has no manifest for platform {want}; platforms: {present}")


def _select(layout: Path, index: Index, ref: str | None, wanted: Platform) -> Descriptor:
    entries = index.manifests
    names = sorted({d.ref_name for d in entries if d.ref_name is not None})
    if ref is not None:
        entries = tuple(d for d in entries if _ref_matches(d, ref))
        if not entries:
            raise ImageNotFound(f"no image {ref!r} in OCI layout {layout}; names: {names}")
    elif not entries:
        raise ImageNotFound(f"OCI layout {layout} holds no images")
    elif len(names) > 1:
        raise ImageNotFound(f"OCI layout {layout} holds {len(entries)} images, name one of {names}")
    if len({d.digest for d in entries}) == 1:  # one image, maybe under several names
        return entries[0]
    return choose_platform(entries, wanted, f"OCI layout {layout}")


def _resolve_manifest(
    layout: Path, descriptor: Descriptor, wanted: Platform
) -> tuple[Descriptor, Manifest]:
    for _ in range(_MAX_NESTING):
        if descriptor.media_type in INDEX_MEDIA_TYPES:
            data = _read_json_blob(layout, descriptor, "index")
            try:
                nested = Index.from_dict(data)
            except SpecError as e:
                raise LayerError(f"index blob {descriptor.digest}: {e}") from None
            descriptor = choose_platform(nested.manifests, wanted, f"index {descriptor.digest}")
            continue
        if descriptor.media_type not in MANIFEST_MEDIA_TYPES:
            raise LayerError(
                f"blob {descriptor.digest}: unsupported media type {descriptor.media_type!r}, "
                "expected an image manifest or index"
            )
        data = _read_json_blob(layout, descriptor, "manifest")
        try:
            manifest = Manifest.from_dict(data)
        except SpecError as e:
            raise LayerError(f"manifest blob {descriptor.digest}: {e}") from None
        if manifest.media_type not in (None, descriptor.media_type):
            raise LayerError(
                f"manifest blob {descriptor.digest} says media type {manifest.media_type!r}, "
                f"its descriptor {descriptor.media_type!r}"
            )
        return descriptor, manifest
    raise LayerError(f"OCI layout {layout}: indexes nested deeper than {_MAX_NESTING}")


def open_layout(
    path: Path | str, ref: str | None = None, platform: Platform | None = None
) -> ResolvedImage:
    """Find an image in an OCI layout and read its manifest and config.

    The image is the ``index.json`` entry whose ``org.opencontainers.image.ref.name`` is
    ``ref`` or the tag of ``ref`` (``busybox:latest`` matches ``latest``); a digest
    (``sha256:…`` or ``name@sha256:…``) matches the manifest's digest. Without ``ref`` the
    layout must hold a single image. Indexes and Docker manifest lists are followed down
    to the manifest for ``platform``, this machine's by default.

    Args:
        path: the layout directory.
        ref: the image's name or tag in the layout.
        platform: the platform to choose from a multi-platform image.

    Returns:
        The resolved image; its layers are not read yet (see :func:`open_blob`).

    Raises:
        ImageNotFound: no layout at ``path``, no image called ``ref``, several images and
            no ``ref``, or no manifest for the platform.
        LayerError: a blob is missing, corrupt, fails its digest, or is not of the
            media type the image needs.
    """
    layout = Path(path)
    wanted = platform or host_platform()
    index = _read_index_json(layout)
    return open_manifest(layout, _select(layout, index, ref, wanted), wanted)


def open_manifest(
    layout: Path | str, descriptor: Descriptor, platform: Platform | None = None
) -> ResolvedImage:
    """Read the image that ``descriptor`` (a manifest, or an index resolved for
    ``platform``) names in ``layout``, whether ``index.json`` lists it or not.

    Raises:
        ImageNotFound: an index has no manifest for the platform.
        LayerError: as :func:`open_layout`.
    """
    layout = Path(layout)
    wanted = platform or host_platform()
    descriptor, manifest = _resolve_manifest(layout, descriptor, wanted)
    if manifest.config.media_type not in CONFIG_MEDIA_TYPES:
        raise LayerError(
            f"manifest {descriptor.digest}: config media type "
            f"{manifest.config.media_type!r} is not an image config"
        )
    try:
        config = ImageConfig.from_dict(_read_json_blob(layout, manifest.config, "config"))
    except SpecError as e:
        raise LayerError(f"config blob {manifest.config.digest}: {e}") from None
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in LAYER_MEDIA_TYPES:
            raise LayerError(
                f"manifest {descriptor.digest}: layer {i} ({layer.digest}) has unsupported "
                f"media type {layer.media_type!r}"
            )
    diff_ids = config.rootfs.diff_ids
    if len(diff_ids) != len(manifest.layers):
        raise LayerError(
            f"manifest {descriptor.digest} has {len(manifest.layers)} layers but its config "
            f"{manifest.config.digest} lists {len(diff_ids)} diff IDs"
        )
    return ResolvedImage(
        layout=layout,
        descriptor=descriptor,
        manifest_digest=descriptor.digest,
        manifest=manifest,
        config=config,
        layers=manifest.layers,
        diff_ids=diff_ids,
    )
