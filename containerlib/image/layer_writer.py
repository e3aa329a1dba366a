"""Writing image layers: tar archives of files, compressed, stored as blobs of a layout.

A build step makes one layer. :class:`LayerWriter` streams a tar archive (PAX format, so
long names, large files, xattrs and nanosecond times fit) through gzip into a temporary
file in the layout's ``blobs/sha256``, hashing both streams as it goes: the compressed
bytes give the blob's digest, the tar's the layer's diff ID. Only when the archive is
complete is the file renamed to its digest, so a crash leaves no blob under a wrong name.

Two kinds of content go in:

* host files, copied as ``COPY`` does (:meth:`LayerWriter.add_path`, :meth:`add_bytes`):
  owned by root unless told otherwise, parent directories made as needed;
* the upper directory of a container's overlay (:meth:`LayerWriter.add_upper`), turned
  back into an image layer: a whiteout (a 0:0 character device) becomes an empty
  ``.wh.NAME``, an opaque directory (the ``trusted.overlay.opaque`` xattr) gets a
  ``.wh..wh..opq`` entry, and overlayfs's own ``trusted.overlay.*`` xattrs are left out.

Entries are written in sorted order, and hard links inside what is added become tar hard
links, so the same files give the same layer.

Example:
    >>> with LayerWriter(Path("/var/lib/containerlib/images")) as w:  # doctest: +SKIP
    ...     w.add_bytes("/etc/motd", b"hello\\n")
    ...     layer = w.finish()
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, BinaryIO, Final

import attrs

from containerlib.errors import ImageError
from containerlib.spec.image import MEDIA_TYPE_OCI_LAYER_GZIP, Descriptor

__all__ = ["LayerWriter", "WrittenLayer"]

_WHITEOUT: Final = ".wh."
_OPAQUE: Final = ".wh..wh..opq"
_OPAQUE_XATTRS: Final = ("trusted.overlay.opaque", "user.overlay.opaque")
# Marks of overlayfs features the layer format cannot say (a renamed directory, a file
# whose data stays in a lower layer); containerlib mounts without them, so seeing one
# means the upper directory came from elsewhere.
_UNSUPPORTED_XATTRS: Final = (
    "trusted.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.redirect",
    "user.overlay.metacopy",
)
_XATTR_PAX: Final = "SCHILY.xattr."


@attrs.frozen
class WrittenLayer:
    """A layer stored as a blob.

    Attributes:
        descriptor: the blob (gzip-compressed tar) as a manifest lists it.
        diff_id: the digest of the uncompressed tar, as the image config lists it.
    """

    descriptor: Descriptor
    diff_id: str


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: BinaryIO | None) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.hash.update(view)
        self.size += len(view)
        if self.target is not None:
            self.target.write(view)
        return len(view)


def _clean_name(name: str, what: str) -> str:
    """``name`` (absolute in the image, as ``/etc/motd``) as a tar member name
    (``etc/motd``), or an error if it is not a plain path."""
    path = PurePosixPath("/", name)
    parts = [p for p in path.parts[1:] if p not in ("", ".")]
    if ".." in parts or "\0" in name:
        raise ImageError(f"{what}: {name!r} is not a plain path inside the image")
    return "/".join(parts)


def _xattrs_of(path: str, *, upper: bool) -> tuple[dict[str, bytes], bool]:
    """The xattrs to keep of ``path`` (not followed if a symlink), and whether overlayfs
    marked it opaque."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}, False
        raise
    out = {}
    opaque = False
    for name in sorted(names):
        if upper and name in _OPAQUE_XATTRS:
            with contextlib.suppress(OSError):
                opaque = opaque or os.getxattr(path, name, follow_symlinks=False) == b"y"
            continue
        if upper and name in _UNSUPPORTED_XATTRS:
            raise ImageError(
                f"{path}: overlayfs marked it with {name}, which an image layer cannot "
                "express; mount without redirect_dir and metacopy"
            )
        if name.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        if name.startswith("security.") and name != "security.capability":
            continue  # SELinux labels and the like belong to the host
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out, opaque


class LayerWriter:
    """Write one layer into the OCI layout ``layout`` (its ``blobs/sha256`` is made).

    Use it as a context manager: leaving the block without :meth:`finish` (an error)
    removes the partial blob.

    Args:
        layout: the OCI layout directory to store the blob in.
        compresslevel: gzip's level, 1 (fast) to 9 (small).
    """

    def __init__(self, layout: Path, *, compresslevel: int = 6) -> None:
        self.layout = layout
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=blobs, prefix=".partial-layer-")
        self._temp = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._blob = _Hashing(self._file)
        self._gzip = gzip.GzipFile(
            fileobj=self._blob, mode="wb", compresslevel=compresslevel, mtime=0
        )
        self._tar_stream = _Hashing(self._gzip)  # type: ignore[arg-type]
        # Closed by finish() or abort(): the writer outlives this method.
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=self._tar_stream, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
        )
        self._written: set[str] = set()
        self._done = False

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort()

    def abort(self) -> None:
        """Drop the layer: the partial blob is removed."""
        self._done = True
        # Close the streams in order (their last bytes go to a file about to be removed),
        # so that none complains when collected.
        for stream in (self._tar, self._gzip, self._file):
            with contextlib.suppress(Exception):
                stream.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()

    # -- adding ------------------------------------------------------------------------

    def _parents(self, name: str) -> None:
        """Directory entries for the parents of ``name`` not written yet (0755, root)."""
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self._written:
                info = tarfile.TarInfo(parent)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                self._add(info)

    def _add(self, info: tarfile.TarInfo, data: BinaryIO | None = None) -> None:
        self._tar.addfile(info, data)
        self._written.add(info.name.rstrip("/"))

    def add_bytes(
        self, dest: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        """Add a regular file ``dest`` (absolute in the image) holding ``data``.

        Raises:
            ImageError: ``dest`` is not a plain path (``..``).
        """
        name = _clean_name(dest, "add")
        if not name:
            raise ImageError(f"add: {dest!r} names the root directory, not a file")
        self._parents(name)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.uid, info.gid = uid, gid
        self._add(info, io.BytesIO(data))

    def add_path(
        self,
        source: str | os.PathLike[str],
        dest: str,
        *,
        owner: tuple[int, int] | None = (0, 0),
        mode: int | None = None,
    ) -> None:
        """Add the host file or directory ``source`` as ``dest`` in the image.

        A directory's contents go under ``dest``, as ``COPY dir /dest`` does; symlinks
        are copied as links, not followed (but ``source`` itself is followed).

        Args:
            source: a host path.
            dest: an absolute path in the image.
            owner: ``(uid, gid)`` for everything added (root by default, as ``COPY``); None
                keeps the host's owners.
            mode: permission bits for ``source`` itself (a file, or the top directory).

        Raises:
            FileNotFoundError: ``source`` does not exist.
            ImageError: ``dest`` is not a plain path, or a file cannot be read.
        """
        src = os.fspath(source)
        name = _clean_name(dest, "add")
        st = os.stat(src)  # FileNotFoundError names the path
        if name:
            self._parents(name)
        links: dict[tuple[int, int], str] = {}
        self._add_tree(src, name, st, owner, mode, links, upper=False)

    def add_upper(self, upper: str | os.PathLike[str]) -> None:
        """Add the changes in an overlay's upper directory (see the module's docstring).

        Raises:
            ImageError: the directory uses an overlayfs feature layers cannot express.
        """
        top = os.fspath(upper)
        links: dict[tuple[int, int], str] = {}
        for entry in sorted(os.listdir(top)):
            path = os.path.join(top, entry)
            self._add_tree(path, entry, os.lstat(path), None, None, links, upper=True)

    def _add_tree(
        self,
        path: str,
        name: str,
        st: os.stat_result,
        owner: tuple[int, int] | None,
        mode: int | None,
        links: dict[tuple[int, int], str],
        *,
        upper: bool,
    ) -> None:
        xattrs, opaque = _xattrs_of(path, upper=upper)
        if upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            head, _, base = name.rpartition("/")
            self._marker(f"{head}/{_WHITEOUT}{base}" if head else _WHITEOUT + base, st)
            return
        if name:
            info = self._info(path, name, st, owner, mode, xattrs, links)
            if info.type == tarfile.REGTYPE:
                with open(path, "rb", buffering=0) as f:
                    self._add(info, f)
            else:
                self._add(info)
        if not stat.S_ISDIR(st.st_mode):
            return
        if opaque:
            self._marker(f"{name}/{_OPAQUE}", st)
        for entry in sorted(os.listdir(path)):
            child = os.path.join(path, entry)
            child_name = f"{name}/{entry}" if name else entry
            self._add_tree(child, child_name, os.lstat(child), owner, None, links, upper=upper)

    def _marker(self, name: str, st: os.stat_result) -> None:
        """An empty file that marks a whiteout or an opaque directory."""
        info = tarfile.TarInfo(name)
        info.mtime = st.st_mtime
        self._add(info, io.BytesIO(b""))

    def _info(
        self,
        path: str,
        name: str,
        st: os.stat_result,
        owner: tuple[int, int] | None,
        mode: int | None,
        xattrs: dict[str, bytes],
        links: dict[tuple[int, int], str],
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode) if mode is None else mode
        info.uid, info.gid = owner if owner is not None else (st.st_uid, st.st_gid)
        info.mtime = st.st_mtime_ns / 1e9
        info.uname = info.gname = ""
        if xattrs:
            info.pax_headers = {
                _XATTR_PAX + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()
            }
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
        elif kind == stat.S_IFREG:
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in links:
                info.type = tarfile.LNKTYPE
                info.linkname = links[inode]
            else:
                if st.st_nlink > 1:
                    links[inode] = name
                info.type = tarfile.REGTYPE
                info.size = st.st_size
        elif kind == stat.S_IFLNK:
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        else:
            raise ImageError(f"add {path}: a socket cannot go into an image layer")
        return info

    # -- finishing -----------------------------------------------------------------------

    def finish(self) -> WrittenLayer:
        """Close the archive and store it under its digest.

        Returns:
            The stored blob's descriptor and the layer's diff ID.
        """
        self._tar.close()
        self._gzip.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = "sha256:" + self._blob.hash.hexdigest()
        final = self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        os.replace(self._temp, final)
        self._done = True
        return WrittenLayer(
            descriptor=Descriptor(
                media_type=MEDIA_TYPE_OCI_LAYER_GZIP, digest=digest, size=self._blob.size
            ),
            diff_id="sha256:" + self._tar_stream.hash.hexdigest(),
        )
