"""A cache of unpacked layers, one directory per diff ID, shared by threads and processes.

A layer is unpacked once, whatever image or container needs it, into
``<root>/layers/sha256/<hex>/fs``, where overlayfs can use it as a lower directory as it is.
The work happens in a temporary directory under ``<root>/tmp`` that is renamed into place
only after the blob's digest and the layer's diff ID were verified, so a directory under
``layers/`` is always complete (``rename(2)`` is atomic). An ``flock(2)`` per diff ID makes
concurrent unpacks of one layer, from threads or processes, wait for the first instead of
repeating it.

Example:
    >>> cache = LayerCache(Path("/var/lib/containerlib"))  # doctest: +SKIP
    >>> lowers = cache.ensure(open_layout(Path("busybox-oci"), "latest"))  # doctest: +SKIP
    >>> lowers[0].name  # doctest: +SKIP
    'fs'
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from containerlib.errors import LayerError, SpecError
from containerlib.image.layers import UnpackLimits, unpack_layer
from containerlib.image.layout import ResolvedImage, open_blob
from containerlib.spec.image import split_digest

__all__ = ["LayerCache"]

_CONTENT: Final = "fs"
_METADATA: Final = "layer.json"


class LayerCache:
    """Unpacked layers under ``root``, each unpacked once and never seen half-written.

    Args:
        root: the cache directory, created when first needed. Keep it short: the runtime
            passes every layer's path in one ``lowerdir=`` mount option.
        limits: the bounds each layer is unpacked with.
    """

    def __init__(self, root: Path | str, *, limits: UnpackLimits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or UnpackLimits()

    def __repr__(self) -> str:
        return f"LayerCache({str(self.root)!r})"

    def path(self, diff_id: str) -> Path:
        """Where the layer ``diff_id`` is (or would be) unpacked: ``.../<hex>/fs``.

        Raises:
            LayerError: ``diff_id`` is not a valid sha256 digest.
        """
        return self._layer_dir(diff_id) / _CONTENT

    def has(self, diff_id: str) -> bool:
        """Whether the layer ``diff_id`` is unpacked."""
        return self.path(diff_id).is_dir()

    def _layer_dir(self, diff_id: str) -> Path:
        try:
            algorithm, hex_part = split_digest(diff_id)
        except SpecError as e:
            raise LayerError(f"diff ID {diff_id!r}: {e}") from None
        if algorithm != "sha256":
            raise LayerError(f"diff ID {diff_id!r}: only sha256 diff IDs are supported")
        return self.root / "layers" / algorithm / hex_part

    def unpack(self, image: ResolvedImage, index: int) -> Path:
        """Unpack layer ``index`` of ``image`` unless it is cached; return its directory.

        Args:
            image: an image resolved by :func:`~containerlib.image.layout.open_layout`.
            index: which layer, 0 being the bottom one.

        Returns:
            The directory holding the layer's files in overlayfs format.

        Raises:
            LayerError: the blob is missing, corrupt or hostile, or its diff ID is not the
                one the image config lists; nothing is left in the cache.
        """
        diff_id = image.diff_ids[index]
        final = self._layer_dir(diff_id)
        if (final / _CONTENT).is_dir():
            return final / _CONTENT
        for sub in (final.parent, self.root / "tmp", self.root / "locks"):
            sub.mkdir(parents=True, exist_ok=True)
        lock = os.open(
            self.root / "locks" / f"{final.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            # flock, not lockf: flock locks belong to the open file, so they also keep
            # apart two threads of one process that opened the lock file separately.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / _CONTENT).is_dir():
                self._unpack_locked(image, index, final)
        finally:
            os.close(lock)
        return final / _CONTENT

    def ensure(self, image: ResolvedImage) -> tuple[Path, ...]:
        """Unpack every layer of ``image`` that is not cached yet.

        Returns:
            One directory per layer, bottom layer first.

        Raises:
            LayerError: as :meth:`unpack`.
        """
        return tuple(self.unpack(image, i) for i in range(len(image.layers)))

    def _unpack_locked(self, image: ResolvedImage, index: int, final: Path) -> None:
        tmp_root = self.root / "tmp"
        # Holding the lock, any temporary directory for this layer is a crashed unpacker's.
        for stale in tmp_root.glob(f"{final.name}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=tmp_root))
        try:
            os.chmod(tmp, 0o755)
            content = tmp / _CONTENT
            content.mkdir(mode=0o755)
            descriptor = image.layers[index]
            expected = image.diff_ids[index]
            with open_blob(image.layout, descriptor) as blob:
                actual = unpack_layer(blob, content, descriptor.media_type, limits=self.limits)
                blob.verify()
            if actual != expected:
                raise LayerError(
                    f"layer {index} ({descriptor.digest}) of image {image.manifest_digest}: "
                    f"diff ID is {actual}, the image config says {expected}"
                )
            metadata = {
                "diff_id": expected,
                "digest": descriptor.digest,
                "media_type": descriptor.media_type,
                "size": descriptor.size,
            }
            (tmp / _METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
