"""Unpacking image layers into a directory that overlayfs can stack, safely.

A layer is a tar archive of what one build step added or changed; a deletion is an empty
``.wh.NAME`` entry, and ``.wh..wh..opq`` marks a directory whose lower contents are hidden.
They are converted to overlayfs's own format (a 0:0 character device ``NAME``, the
``overlay.opaque=y`` xattr) so the unpacked layers can be overlayfs lower directories as they
are (``Documentation/filesystems/overlayfs.rst``, "Whiteouts and opaque directories"). An
overlay mounted with ``userxattr``, as in a user namespace, reads ``user.overlay.opaque``;
any other reads ``trusted.overlay.opaque``, which only a process with ``CAP_SYS_ADMIN`` may
set (``xattr(7)``).
Every member is created relative to a directory file descriptor, reaching its parent one
path component at a time with ``O_NOFOLLOW | O_DIRECTORY``, so no symlink, whether planted
by an earlier member or not, can lead a write outside the target (``openat(2)``).

Decisions:

* A member whose name is absolute or has a ``..`` component is rejected with a
  :class:`~containerlib.errors.LayerError` naming it, not silently rewritten: normal tools
  never write such names, and a rewritten name could overwrite another file.
* A member whose parent path runs through a symlink or a non-directory is rejected.
  A hard link's target obeys the same rules and must already be in the layer.
* Symlinks are created with their target verbatim (absolute or not) and never followed.
* A later member replaces an earlier one of the same name, as tar does; a directory over a
  directory keeps the contents and takes the new metadata.
* Parents missing from the archive are created ``0755``, owned by the unpacking user.
* An opaque directory gets ``trusted.overlay.opaque=y`` as root and
  ``user.overlay.opaque=y`` otherwise: root's overlays are mounted by root in the host's
  user namespace (also for a container with ``.userns()``, over id-mapped layers), a
  non-root user's in a user namespace with ``userxattr``. One marker only: an overlay
  without ``userxattr`` shows ``user.overlay.opaque`` to the container as a plain xattr,
  and copies it up with the directory.
* As a user other than root (rootless), what needs privilege is left out rather than
  failing the layer: owners (every file becomes the caller's) and the ``trusted.*`` and
  ``security.*`` xattrs the kernel refuses (``security.capability`` among them). Whiteouts
  need no privilege since Linux 5.8. Device nodes still fail, naming the member.
* xattrs come from ``SCHILY.xattr.*`` PAX records, except ``trusted.overlay.*``,
  ``user.overlay.*`` (a layer must not forge overlayfs metadata) and ``security.*`` other
  than ``security.capability``. ``user.*`` xattrs of symlinks, device nodes and FIFOs are
  left out: the kernel refuses them to everyone (``xattr(7)``).
* Directory modes and times are applied at the end, deepest directory first, so that a
  directory without search permission (``0000``) does not stop a user other than root
  from reaching the directories below it.
* Everything a layer can make grow is bounded by :class:`UnpackLimits`: bytes read and
  written (a sparse member counts at its full size and is refused before it is written),
  members, each member's headers (tarfile holds them in memory), path length and depth,
  xattr size.
* tarfile's leniency is removed where other tools disagree with it: a corrupt or
  truncated header after the first fails instead of silently ending the archive, as in
  Go's ``archive/tar`` (Docker, containerd), so that every tool sees the same files.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import importlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, Protocol, Self

import attrs

from containerlib.errors import LayerError, SpecError
from containerlib.spec.image import LAYER_MEDIA_TYPES

__all__ = ["SupportsRead", "UnpackLimits", "decompressed", "read_checked", "unpack_layer"]

_CHUNK: Final = 1 << 20
# tarfile's stream buffer. Each read from it copies what remains buffered, so a large
# buffer costs a large copy per member header: with 1 MiB, parsing 5000 small files took
# 2.5 s instead of 0.1 s.
_TAR_BUFFER: Final = 64 << 10
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_WHITEOUT: Final = ".wh."
_OPAQUE: Final = ".wh..wh..opq"
_XATTR_PAX: Final = "SCHILY.xattr."
_TRUSTED_OPAQUE: Final = "trusted.overlay.opaque"
_USER_OPAQUE: Final = "user.overlay.opaque"
_GIB: Final = 1 << 30
_BLOCK: Final = tarfile.BLOCKSIZE
_InvalidHeader: Final = tarfile.InvalidHeaderError  # type: ignore[attr-defined]
_TruncatedHeader: Final = tarfile.TruncatedHeaderError  # type: ignore[attr-defined]


class SupportsRead(Protocol):
    """Anything with a binary ``read``, such as an open file or a verified blob."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes; ``b""`` at the end."""


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(attribute.name, f"must be a positive integer, got {value!r}")


@attrs.frozen(kw_only=True)
class UnpackLimits:
    """Bounds that stop a hostile layer (a decompression bomb) from exhausting the host.

    Every limit is checked while the layer streams in, so a layer over one fails as soon
    as it passes it, with a :class:`~containerlib.errors.LayerError` naming the limit.

    Attributes:
        max_bytes: the most uncompressed tar bytes read, and file bytes written, per layer.
            A sparse member counts with its full expanded size.
        max_files: the most tar members per layer.
        max_header_bytes: the most bytes of headers one member may have: its PAX records
            (xattrs among them), GNU long names and sparse maps, which are held in memory.
            Go's ``archive/tar`` (Docker, containerd) allows 1 MiB.
        max_path_bytes: the longest member name, link target or hard link target, in
            bytes; Linux's ``PATH_MAX`` is 4096 with the terminating NUL.
        max_path_depth: the most components in a member name. Deeper trees defeat tools
            that recurse per directory (Python's ``shutil.rmtree`` fails past about 1000).
        max_xattr_bytes: the largest extended attribute value; ``XATTR_SIZE_MAX`` in Linux.
    """

    max_bytes: int = attrs.field(default=64 * _GIB, validator=_positive)
    max_files: int = attrs.field(default=5_000_000, validator=_positive)
    max_header_bytes: int = attrs.field(default=1 << 20, validator=_positive)
    max_path_bytes: int = attrs.field(default=4095, validator=_positive)
    max_path_depth: int = attrs.field(default=256, validator=_positive)
    max_xattr_bytes: int = attrs.field(default=65536, validator=_positive)


class _Prefixed:
    """A stream with bytes already read from its start put back in front."""

    def __init__(self, head: bytes, rest: SupportsRead) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("a layer stream cannot seek")


class _Counted:
    """The uncompressed tar stream: hashed for the diff ID and bounded by the limits."""

    def __init__(self, source: SupportsRead, max_bytes: int) -> None:
        self._source = source
        self._max = max_bytes
        self.total = 0
        self.hash = hashlib.sha256()
        # While tarfile parses one member's headers, which it keeps in memory: where in
        # the tar stream they start, and how many bytes they may take.
        self._header_at: int | None = None
        self._header_start = 0
        self._header_limit = 0

    def begin_header(self, at: int, limit: int) -> None:
        """Bound what is read from here until :meth:`end_header` to ``limit`` bytes.

        tarfile reads ahead up to one buffer (``_TAR_BUFFER``), so the bound is enforced
        with that slack here and exactly once the member is parsed.
        """
        self._header_at, self._header_start, self._header_limit = at, self.total, limit

    def end_header(self) -> None:
        """Stop bounding reads: the member's data follows."""
        self._header_at = None

    def read(self, size: int = -1, /) -> bytes:
        data = read_checked(self._source, size, "layer")
        self.total += len(data)
        if self.total > self._max:
            raise LayerError(f"layer is larger than the limit of {self._max} uncompressed bytes")
        if (
            self._header_at is not None
            and self.total - self._header_start > self._header_limit + _TAR_BUFFER
        ):
            raise _header_too_large(self._header_at, self._header_limit)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        """Read to the end, so the diff ID covers any padding after the archive's end."""
        while self.read(_CHUNK):
            pass


def _header_too_large(at: int, limit: int) -> LayerError:
    return LayerError(
        f"layer member at byte {at}: its tar headers (PAX records, GNU long names, "
        f"sparse map) are larger than the limit of {limit} bytes"
    )


def read_checked(source: SupportsRead, size: int, what: str) -> bytes:
    """``source.read(size)``; a truncated or corrupt compressed stream is a LayerError
    naming ``what``.

    Raises:
        LayerError: the stream ended early or cannot be decompressed.
    """
    try:
        return source.read(size)
    except LayerError:
        raise
    except EOFError as e:
        raise LayerError(f"{what} is truncated: {e}") from e
    except Exception as e:
        # gzip, zlib and zstd each have their own error types for corrupt input.
        raise LayerError(f"{what} is corrupt: cannot decompress: {e}") from e


def decompressed(raw: SupportsRead, media_type: str) -> SupportsRead:
    """``raw`` (a layer blob) decompressed: gzip, zstd or plain tar, told by the magic
    number rather than the media type, which must still be a layer's.

    Raises:
        LayerError: not a layer media type, a read error, or zstd without its module.
    """
    if media_type not in LAYER_MEDIA_TYPES:
        raise LayerError(f"unsupported layer media type {media_type!r}")
    try:
        head = b""
        while len(head) < 4 and (more := raw.read(4 - len(head))):
            head += more
    except LayerError:
        raise
    except OSError as e:
        raise LayerError(f"read layer: {e}") from e
    source = _Prefixed(head, raw)
    # The magic number decides, not the media type: Docker's "tar.gzip" layers from
    # `docker save` are often plain tar, and a wrong label changes nothing once verified.
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=source, mode="rb")
    if head.startswith(_ZSTD_MAGIC):
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError:
            raise LayerError(
                "layer is zstd-compressed but the zstandard module is missing: "
                "install containerlib[zstd]"
            ) from None
        reader: SupportsRead = zstandard.ZstdDecompressor().stream_reader(
            source, read_across_frames=True
        )
        return reader
    return source


def _split(name: str, what: str, limits: UnpackLimits) -> tuple[str, ...]:
    """Split an archive path into components, rejecting anything that could escape."""
    if name.startswith("/"):
        raise LayerError(f"{what}: absolute path {name!r} is not allowed in a layer")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > limits.max_path_bytes:
        raise LayerError(
            f"{what}: path is {size} bytes long, more than the limit of {limits.max_path_bytes}"
        )
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"{what}: path {name!r} has a '..' component")
    if len(parts) > limits.max_path_depth:
        raise LayerError(
            f"{what}: path has {len(parts)} components, more than the limit of "
            f"{limits.max_path_depth}"
        )
    return parts


def _times_ns(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(member.mtime * 1_000_000_000)
    atime_text = member.pax_headers.get("atime")
    atime = int(float(atime_text) * 1_000_000_000) if atime_text else mtime
    return atime, mtime


def _xattrs(member: tarfile.TarInfo, limits: UnpackLimits) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PAX):
            continue
        name = key.removeprefix(_XATTR_PAX)
        if name.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        if name.startswith("security.") and name != "security.capability":
            continue
        # tarfile decodes PAX values as UTF-8 with surrogateescape; undo it for binary values.
        data = value.encode("utf-8", "surrogateescape")
        if len(data) > limits.max_xattr_bytes:
            raise LayerError(
                f"layer member {member.name!r}: xattr {name!r} is {len(data)} bytes, more "
                f"than the limit of {limits.max_xattr_bytes}"
            )
        yield name, data


# A member has at most a PAX global header, a PAX header and GNU long name and link
# headers before its own; tarfile follows each by recursion, so a long chain of them
# would end in RecursionError.
_MAX_CHAINED_HEADERS: Final = 8


def _bounded_tarinfo(stream: _Counted, limits: UnpackLimits) -> type[tarfile.TarInfo]:
    """A ``TarInfo`` class for ``tarfile.open(tarinfo=...)`` that parses within ``limits``.

    tarfile holds a member's extended headers in memory, follows chained headers by
    recursion, lets malformed sparse maps raise ``ValueError``, and takes a corrupt
    header after the first for the end of the archive, ignoring what follows (Go's
    ``archive/tar``, which Docker and containerd use, fails instead). All of these
    become a :class:`LayerError` here.
    """
    depth = 0

    class BoundedTarInfo(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, archive: tarfile.TarFile) -> Self:
            nonlocal depth
            # archive.offset stays at the member's first header until the member is parsed.
            at = archive.offset
            outer = depth == 0
            if outer:
                stream.begin_header(at, limits.max_header_bytes)
            elif depth >= _MAX_CHAINED_HEADERS:
                raise LayerError(
                    f"layer member at byte {at}: more than {_MAX_CHAINED_HEADERS} "
                    "tar headers in a row"
                )
            depth += 1
            try:
                member = super().fromtarfile(archive)
            except (_InvalidHeader, _TruncatedHeader) as e:
                if not outer:
                    raise
                raise LayerError(f"layer has a corrupt tar header at byte {at}: {e}") from None
            except LayerError:
                raise
            except (ValueError, IndexError, OverflowError) as e:
                raise LayerError(f"layer member at byte {at}: corrupt tar header: {e}") from None
            finally:
                depth -= 1
                if outer:
                    stream.end_header()
            if outer and member.offset_data - at - _BLOCK > limits.max_header_bytes:
                raise _header_too_large(at, limits.max_header_bytes)
            return member

    return BoundedTarInfo


class _Extractor:
    """Creates members under one root directory fd; see the module docstring's rules."""

    def __init__(self, root_fd: int, limits: UnpackLimits, keep_owners: bool) -> None:
        self.root = root_fd
        self.limits = limits
        self.keep_owners = keep_owners
        # Anyone but root is refused trusted.* xattrs, file capabilities and device nodes.
        self.privileged = os.geteuid() == 0
        self.members = 0
        self.written = 0
        # (components, mode, atime_ns, mtime_ns): applied last, as writing into a
        # directory changes its mtime and a read-only mode would stop the writes.
        self.dirs: list[tuple[tuple[str, ...], int, int, int]] = []
        # The last parent reached, so that members of one directory walk it once.
        self._cached: tuple[tuple[str, ...], int] | None = None
        self._stale = False

    def close(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _walk(self, parts: tuple[str, ...], what: str, *, create: bool) -> int:
        """Open the directory ``parts`` under the root, never through a symlink.

        Returns a new fd that the caller closes.
        """
        fd = os.dup(self.root)
        try:
            for i, component in enumerate(parts):
                try:
                    next_fd = os.open(component, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise LayerError(
                            f"{what}: {'/'.join(parts[: i + 1])!r} does not exist"
                        ) from None
                    os.mkdir(component, 0o755, dir_fd=fd)
                    next_fd = os.open(component, _DIR_FLAGS, dir_fd=fd)
                    os.fchmod(next_fd, 0o755)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise LayerError(
                        f"{what}: {'/'.join(parts[: i + 1])!r} is a symlink or not a "
                        "directory; refusing to write through it"
                    ) from None
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, parts: tuple[str, ...], what: str) -> int:
        """The fd of a member's parent directory, created if missing; owned by the cache."""
        if self._cached is not None and (self._stale or self._cached[0] != parts):
            self.close()
        self._stale = False
        if self._cached is None:
            self._cached = (parts, self._walk(parts, what, create=True))
        return self._cached[1]

    def _clear(self, parent: int, name: str, *, keep_dir: bool) -> bool:
        """Remove what is at ``name`` before it is replaced; True if a directory stays."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent)
            return False
        if keep_dir:
            return True
        # rmtree with dir_fd works on fds and does not follow symlinks inside the tree.
        shutil.rmtree(name, dir_fd=parent)
        self._stale = True
        return False

    def add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self.members += 1
        if self.members > self.limits.max_files:
            raise LayerError(f"layer has more than the limit of {self.limits.max_files} members")
        what = f"layer member {member.name!r}"
        try:
            self._add(member, archive, what)
        except LayerError:
            raise
        except (OSError, ValueError, OverflowError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            if isinstance(e, OSError) and e.errno == errno.EPERM and not self.privileged:
                reason += " (unpacking device nodes needs root)"
            raise LayerError(f"{what}: {reason}") from e

    def _add(self, member: tarfile.TarInfo, archive: tarfile.TarFile, what: str) -> None:
        parts = _split(member.name, what, self.limits)
        if not parts:
            if not member.isdir():
                raise LayerError(f"{what}: only a directory can stand for the layer root")
            self._owner_and_xattrs(self.root, member)
            self.dirs.append(((), member.mode, *_times_ns(member)))
            return
        parent_parts, name = parts[:-1], parts[-1]
        for component in parent_parts:
            if component.startswith(_WHITEOUT + _WHITEOUT):
                return  # inside aufs bookkeeping such as .wh..wh.plnk/: not content
            if component.startswith(_WHITEOUT):
                raise LayerError(f"{what}: whiteout {component!r} used as a directory")
        if name.startswith(_WHITEOUT):
            self._whiteout(parent_parts, name, what)
            return
        parent = self._parent(parent_parts, what)
        if member.isdir():
            if not self._clear(parent, name, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            try:
                self._owner_and_xattrs(fd, member)
            finally:
                os.close(fd)
            self.dirs.append((parts, member.mode, *_times_ns(member)))
        elif member.isreg():
            self._clear(parent, name, keep_dir=False)
            self._regular(parent, name, member, archive, what)
        elif member.issym():
            size = len(member.linkname.encode("utf-8", "surrogateescape"))
            if size > self.limits.max_path_bytes:
                raise LayerError(
                    f"{what}: symlink target is {size} bytes long, more than the limit of "
                    f"{self.limits.max_path_bytes}"
                )
            self._clear(parent, name, keep_dir=False)
            os.symlink(member.linkname, name, dir_fd=parent)
            self._path_metadata(parent, name, member, chmod=False)
        elif member.islnk():
            self._hardlink(parent, name, member, what)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._clear(parent, name, keep_dir=False)
            if member.isfifo():
                os.mkfifo(name, 0o600, dir_fd=parent)
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                device = os.makedev(member.devmajor, member.devminor)
                os.mknod(name, kind | 0o600, device, dir_fd=parent)
            self._path_metadata(parent, name, member, chmod=True)
        else:
            raise LayerError(f"{what}: unsupported tar member type {member.type!r}")

    def _whiteout(self, parent_parts: tuple[str, ...], name: str, what: str) -> None:
        if name == _OPAQUE:
            self._opaque(self._parent(parent_parts, what))
            return
        if name.startswith(_WHITEOUT + _WHITEOUT):
            return  # aufs bookkeeping such as .wh..wh.plnk: nothing to do for overlayfs
        hidden = name.removeprefix(_WHITEOUT)
        if not hidden:
            raise LayerError(f"{what}: whiteout without a name")
        if hidden in (".", ".."):
            raise LayerError(f"{what}: whiteout of {hidden!r} is not allowed")
        parent = self._parent(parent_parts, what)
        self._clear(parent, hidden, keep_dir=False)
        try:
            os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        except PermissionError as e:
            if self.privileged or e.errno != errno.EPERM:
                raise
            raise LayerError(
                f"{what}: making the whiteout (a 0:0 character device) {hidden!r}: "
                f"{e.strerror}; without root this needs Linux 5.8 or later"
            ) from e

    def _opaque(self, fd: int) -> None:
        """Mark the directory ``fd`` opaque for the overlays this user mounts: without
        ``userxattr`` as root, with it otherwise."""
        os.setxattr(fd, _TRUSTED_OPAQUE if self.privileged else _USER_OPAQUE, b"y")

    def _regular(
        self,
        parent: int,
        name: str,
        member: tarfile.TarInfo,
        archive: tarfile.TarFile,
        what: str,
    ) -> None:
        # Checked before writing, so that a sparse member claiming terabytes fails at once.
        if self.written + member.size > self.limits.max_bytes:
            raise LayerError(
                f"{what}: its {member.size} bytes would make the layer write more than the "
                f"limit of {self.limits.max_bytes} bytes"
            )
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            source = archive.extractfile(member)
            assert source is not None  # always a file object for a regular member
            while chunk := source.read(_CHUNK):
                # Counted here too: a sparse member writes more than the archive holds.
                self.written += len(chunk)
                if self.written > self.limits.max_bytes:
                    raise LayerError(
                        f"{what}: layer writes more than the limit of {self.limits.max_bytes} bytes"
                    )
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            # chown before chmod and before security.capability: chown clears both
            # the set-id bits and file capabilities.
            self._owner_and_xattrs(fd, member)
            os.fchmod(fd, stat.S_IMODE(member.mode))
            atime, mtime = _times_ns(member)
            os.utime(fd, ns=(atime, mtime))
        finally:
            os.close(fd)

    def _hardlink(self, parent: int, name: str, member: tarfile.TarInfo, what: str) -> None:
        target = _split(member.linkname, f"{what} (hard link target)", self.limits)
        if not target:
            raise LayerError(f"{what}: hard link to the layer root is not allowed")
        source_dir = self._walk(target[:-1], f"{what} (hard link target)", create=False)
        try:
            self._clear(parent, name, keep_dir=False)
            try:
                # follow_symlinks=False: a link to a symlink links the symlink itself.
                os.link(
                    target[-1],
                    name,
                    src_dir_fd=source_dir,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                )
            except FileNotFoundError:
                raise LayerError(
                    f"{what}: hard link target {member.linkname!r} is not in the layer"
                ) from None
        finally:
            os.close(source_dir)

    def _setxattr(self, target: int | str, key: str, value: bytes) -> None:
        """Set one xattr of ``target`` (an fd, or a path whose last component is not
        followed); without privilege, a privileged namespace's refusal leaves it out."""
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except PermissionError as e:
            if self.privileged or e.errno != errno.EPERM or key.startswith("user."):
                raise

    def _owner_and_xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        if self.keep_owners:
            os.fchown(fd, member.uid, member.gid)
        for key, value in _xattrs(member, self.limits):
            self._setxattr(fd, key, value)

    def _path_metadata(
        self, parent: int, name: str, member: tarfile.TarInfo, *, chmod: bool
    ) -> None:
        """Metadata for symlinks, devices and FIFOs, which cannot be opened safely."""
        if self.keep_owners:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if chmod:
            # ``name`` was just created by mknod/mkfifo in this private tree; it is not a
            # symlink, and Linux cannot chmod without following one anyway.
            os.chmod(name, stat.S_IMODE(member.mode), dir_fd=parent)
        for key, value in _xattrs(member, self.limits):
            if key.startswith("user."):
                # The kernel allows user.* only on regular files and directories, to
                # root too (xattr(7)); other extractors leave them out as well.
                continue
            # /proc/self/fd/N reaches the parent fd itself; the last component is not
            # followed.
            self._setxattr(f"/proc/self/fd/{parent}/{name}", key, value)
        atime, mtime = _times_ns(member)
        os.utime(name, ns=(atime, mtime), dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        self.close()
        # Deepest first: a directory's mode may take away the search permission that
        # reaching the directories below it needs, and only root does without it.
        # (sorted is stable: of two entries for one directory, the later still wins.)
        for parts, mode, atime, mtime in sorted(self.dirs, key=lambda d: -len(d[0])):
            try:
                fd = self._walk(parts, "directory", create=False)
            except LayerError:
                continue  # replaced by a later member; its metadata no longer applies
            try:
                os.fchmod(fd, stat.S_IMODE(mode))
                os.utime(fd, ns=(atime, mtime))
            except (OSError, OverflowError) as e:
                raise LayerError(f"layer directory {'/'.join(parts)!r}: {e}") from e
            finally:
                os.close(fd)


def unpack_layer(
    blob: BinaryIO | SupportsRead | Path,
    target_dir: Path,
    media_type: str,
    *,
    limits: UnpackLimits = UnpackLimits(),
    keep_owners: bool | None = None,
) -> str:
    """Unpack one layer into ``target_dir`` in overlayfs format and return its diff ID.

    The compression (gzip, zstd or none) is read from the stream's magic number; zstd
    needs the ``zstandard`` module (``containerlib[zstd]``). The blob itself is not
    verified here: a caller reading from a layout uses a verified reader
    (:func:`containerlib.image.layout.open_blob`) and compares the returned diff ID with
    the image config's ``rootfs.diff_ids``.

    Args:
        blob: the layer as stored (possibly compressed): a path or a readable stream.
        target_dir: an existing directory, normally empty; nothing outside it is written.
        media_type: the layer's media type, one of
            :data:`~containerlib.spec.image.LAYER_MEDIA_TYPES`.
        limits: bounds against decompression bombs.
        keep_owners: set owners from the archive; by default only when running as root.

    Returns:
        The diff ID, ``sha256:`` and the hex digest of the whole uncompressed tar stream.

    Raises:
        LayerError: the layer is truncated or corrupt, exceeds ``limits``, has an unknown
            media type, or a member would escape ``target_dir``; the message names the
            member. What was unpacked before the error stays in ``target_dir``.
    """
    if keep_owners is None:
        keep_owners = os.geteuid() == 0
    with ExitStack() as stack:
        raw: SupportsRead = stack.enter_context(blob.open("rb")) if isinstance(blob, Path) else blob
        stream = _Counted(decompressed(raw, media_type), limits.max_bytes)
        try:
            root_fd = os.open(target_dir, _DIR_FLAGS)
        except OSError as e:
            raise LayerError(f"unpack layer into {str(target_dir)!r}: {e.strerror}") from e
        stack.callback(os.close, root_fd)
        extractor = _Extractor(root_fd, limits, keep_owners)
        stack.callback(extractor.close)
        try:
            fileobj: IO[bytes] = stream  # type: ignore[assignment]
            with tarfile.open(
                fileobj=fileobj,
                mode="r|",
                bufsize=_TAR_BUFFER,
                tarinfo=_bounded_tarinfo(stream, limits),
            ) as archive:
                while (member := archive.next()) is not None:
                    extractor.add(member, archive)
                    # A stream keeps every member for random access, which is never used
                    # here; millions of members would take gigabytes. (``members`` is a
                    # plain attribute of TarFile that typeshed does not declare.)
                    archive.members.clear()  # type: ignore[attr-defined]
        except tarfile.TarError as e:
            raise LayerError(f"layer is not a valid tar archive (truncated or corrupt): {e}") from e
        extractor.finish()
        stream.drain()
    return f"sha256:{stream.hash.hexdigest()}"
