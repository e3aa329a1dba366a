"""The :class:`Image` users hand to :class:`~containerlib.Container`.

An image here is a stack of read-only directories (bottom layer first) plus the image's
configuration (default command, environment, working directory, user). A container mounts
the stack with overlayfs and writes only to its own upper directory, so starting one costs
nothing per image byte and never changes the image.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from containerlib.errors import ImageNotFound
from containerlib.runtime.specconv import Roots

if TYPE_CHECKING:
    from containerlib.image.store import StoredImage

__all__ = ["Image"]


def _strs(value: tuple[str, ...] | None) -> tuple[str, ...]:
    return tuple(value) if value else ()


@attrs.frozen(kw_only=True)
class Image:
    """A root file system to run containers from.

    Build one with :meth:`from_rootfs` or :meth:`from_oci_layout`; do not call the
    constructor directly.

    Attributes:
        layers: host directories, bottom layer first, stacked with overlayfs.
        name: where it came from, for messages.
        entrypoint, cmd, env, workdir, user: the image's configuration, as in an OCI
            image config; they give :meth:`Container.run` its defaults.
    """

    layers: tuple[str, ...]
    name: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None

    @classmethod
    def from_rootfs(cls, path: str | os.PathLike[str]) -> Image:
        """An image whose only layer is the directory ``path``, used read-only.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            NotADirectoryError: ``path`` is not a directory.

        Example:
            >>> Image.from_rootfs("/nonexistent")
            Traceback (most recent call last):
            ...
            FileNotFoundError: [Errno 2] rootfs '/nonexistent' does not exist
        """
        p = os.path.abspath(os.fspath(path))
        if not os.path.exists(p):
            raise FileNotFoundError(2, f"rootfs {os.fspath(path)!r} does not exist")
        if not os.path.isdir(p):
            raise NotADirectoryError(20, f"rootfs {os.fspath(path)!r} is not a directory")
        if "," in p or ":" in p:
            raise ImageNotFound(f"rootfs {p!r}: overlayfs cannot use a path with ',' or ':'")
        return cls(layers=(p,), name=p)

    @classmethod
    def from_oci_layout(
        cls,
        path: str | os.PathLike[str],
        ref: str | None = None,
        *,
        cache: str | os.PathLike[str] | None = None,
    ) -> Image:
        """An image from a local OCI image layout (a directory with ``oci-layout``,
        ``index.json`` and ``blobs/``), as skopeo, umoci or ``podman save --format
        oci-dir`` write it.

        Each layer is unpacked once, verified, into a cache (``<data root>/layers`` by
        default) and reused by every later image that shares it.

        Args:
            path: the layout's directory.
            ref: the ``org.opencontainers.image.ref.name`` to pick; may be omitted when
                the layout holds one image.
            cache: where unpacked layers go.

        Raises:
            ImageNotFound: no layout at ``path``, or no image called ``ref`` in it.
            LayerError: a blob is corrupt, truncated or would write outside its layer.
        """
        from containerlib.image.cache import LayerCache
        from containerlib.image.layout import open_layout

        p = Path(path)
        if not (p / "oci-layout").is_file():
            raise ImageNotFound(f"no OCI image layout at {os.fspath(path)!r} (no oci-layout file)")
        resolved = open_layout(p, ref)
        root = Path(cache) if cache is not None else Path(Roots.from_env().data)
        dirs = LayerCache(root).ensure(resolved)
        cfg = resolved.config.config
        return cls(
            layers=tuple(str(d) for d in dirs),
            name=f"{os.fspath(path)}:{ref}" if ref else os.fspath(path),
            entrypoint=_strs(cfg.entrypoint) if cfg else (),
            cmd=_strs(cfg.cmd) if cfg else (),
            env=_strs(cfg.env) if cfg else (),
            workdir=(cfg.working_dir or None) if cfg else None,
            user=(cfg.user or None) if cfg else None,
        )

    @classmethod
    def from_registry(
        cls,
        reference: str,
        *,
        pull: Literal["missing", "always", "never"] = "missing",
        insecure: Collection[str] = (),
    ) -> Image:
        """An image from a registry, such as ``"busybox"`` or ``"host:5000/team/app:1.2"``,
        kept in the image store (``<data root>/images``, an OCI image layout) under its
        full name (``docker.io/library/busybox:latest``).

        Args:
            reference: read as ``docker pull`` reads it.
            pull: ``"missing"`` fetches it only when the store does not have it (as
                ``docker run`` does); ``"always"`` fetches what the registry has now;
                ``"never"`` uses the store only.
            insecure: registries to speak plain http to, besides this machine's.

        Raises:
            SpecError: ``reference`` is not an image reference.
            ImageNotFound: no such image (in the store, with ``pull="never"``).
            ImageError: the registry could not be reached or sent something wrong.
        """
        from containerlib.image.reference import parse_reference
        from containerlib.image.registry import pull as pull_image

        ref = parse_reference(reference)
        full = str(ref)
        store = Path(Roots.from_env().data) / "images"
        if pull != "always" and (store / "oci-layout").is_file():
            try:
                return cls.from_oci_layout(store, full)
            except ImageNotFound:
                if pull == "never":
                    raise
        elif pull == "never":
            raise ImageNotFound(f"no image {full!r} in the image store {store}")
        pull_image(ref, store, insecure=insecure, name=full)
        return cls.from_oci_layout(store, full)

    @staticmethod
    def list() -> list[StoredImage]:
        """The images in the image store (see :meth:`from_registry`), by name, with their
        manifest digests and sizes."""
        from containerlib.image.store import list_images

        return list_images(Path(Roots.from_env().data) / "images")

    @staticmethod
    def remove(reference: str) -> None:
        """Remove an image from the image store, and the blobs no other image uses; a
        container running from it is not disturbed.

        Raises:
            SpecError: ``reference`` is not an image reference.
            ImageNotFound: the store has no such image.
        """
        from containerlib.image.reference import parse_reference
        from containerlib.image.store import remove_image

        remove_image(Path(Roots.from_env().data) / "images", str(parse_reference(reference)))

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Image:
        """:meth:`from_oci_layout` if ``path`` holds an OCI layout, :meth:`from_rootfs`
        if it is a directory, else :meth:`from_registry` when ``path`` reads as an image
        reference (``"busybox:1.36"``): an existing path always wins."""
        if (Path(path) / "oci-layout").is_file():
            return cls.from_oci_layout(path)
        if not os.path.exists(path) and isinstance(path, str) and not path.startswith("/"):
            from containerlib.errors import SpecError
            from containerlib.image.reference import parse_reference

            try:
                parse_reference(path)
            except SpecError:
                pass
            else:
                return cls.from_registry(path)
        return cls.from_rootfs(path)
