"""The parts image archives are made of: tars read by member name and written in one pass,
hashed streams, and the JSON documents inside.

An image archive is a tar whose members are found by name, not extracted:
``manifest.json`` or ``index.json`` says which member is the config and which the layers.
:class:`ArchiveReader` indexes a tar's headers once and refuses what an image archive never
holds (absolute names, ``..``, device nodes, links leading out of the archive, two members
of one name), then opens members by name, following links only inside the archive.
:class:`TarWriter` writes a tar into a seekable file, streaming each member's data and
filling in its size afterwards, so a layer whose uncompressed size is known only once it
has been read is neither held in memory nor copied twice. :class:`HashingReader` hashes
what passes through it, to verify blobs and layers as they are copied. See ``tar(5)``.

Example:
    >>> import io
    >>> out = io.BytesIO()
    >>> writer = TarWriter(out)
    >>> writer.add_bytes("manifest.json", b"[]")
    >>> writer.close()
    >>> with ArchiveReader(io.BytesIO(out.getvalue()), "example.tar") as archive:
    ...     archive.read("manifest.json", "the manifest", 100)
    b'[]'
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from typing import IO, Any, BinaryIO, Final, TypeVar

from containerlib._closing import Closing
from containerlib.errors import LayerError, SpecError
from containerlib.image.layers import SupportsRead, read_checked
from containerlib.spec.image import CONFIG_MEDIA_TYPES, LAYER_MEDIA_TYPES, ImageConfig, Manifest

__all__ = [
    "ANNOTATION_CONTAINERD_NAME",
    "CHUNK",
    "ArchiveReader",
    "HashingReader",
    "TarWriter",
    "blob_member",
    "check_image",
    "dumps",
    "json_of",
    "normalize_member_name",
    "parse_json",
]

#: The annotation containerd (and so Docker 25+) gives an image's full name in ``index.json``.
ANNOTATION_CONTAINERD_NAME: Final = "io.containerd.image.name"
#: How much is read and written at a time when streaming.
CHUNK: Final = 1 << 20
_BLOCK: Final = tarfile.BLOCKSIZE
_MAX_LINK_HOPS: Final = 16
_T = TypeVar("_T")
_KINDS: Final = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a named pipe",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


def normalize_member_name(name: str, what: str) -> str:
    """``name`` as a relative archive path without ``.`` or empty components.

    Args:
        name: a member name, or a path that a document inside the archive names.
        what: what the name is, for the error message.

    Returns:
        The normalized name; ``""`` for the archive's top directory.

    Raises:
        LayerError: the name is absolute or has a ``..`` component.

    Example:
        >>> normalize_member_name("./blobs//sha256/ab", "member")
        'blobs/sha256/ab'
    """
    if name.startswith("/"):
        raise LayerError(f"{what} {name!r} is an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{what} {name!r} leads out of the archive ('..')")
    return "/".join(parts)


def _link_target(member: tarfile.TarInfo, name: str, what: str) -> str:
    """The archive path a link member points at; never outside the archive."""
    if member.islnk():  # a hard link names an archive path
        return normalize_member_name(member.linkname, f"{what}: hard link {name!r} to")
    if member.linkname.startswith("/"):
        raise LayerError(f"{what}: symlink {name!r} points to the absolute {member.linkname!r}")
    parts = name.split("/")[:-1]
    for part in member.linkname.split("/"):
        if part == "..":
            if not parts:
                raise LayerError(
                    f"{what}: symlink {name!r} -> {member.linkname!r} leads out of the archive"
                )
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


class ArchiveReader(Closing):
    """A tar archive opened for reading members by name; nothing is extracted to disk.

    Every header is read and checked when the reader is made: member names must be
    relative and free of ``..``, members must be regular files, directories or links,
    links must point inside the archive, no two members other than directories may share
    a name, and every file's data must lie inside the archive (a truncated archive fails
    here, not halfway through an import).

    Args:
        file: the uncompressed tar, open for reading and seekable.
        what: the archive's name for error messages, usually its path.

    Raises:
        LayerError: the file is not a tar archive, is truncated, or holds a member that
            breaks one of the rules above; the message names the member.
    """

    def __init__(self, file: BinaryIO, what: str) -> None:
        self.what = what
        size = file.seek(0, 2)
        file.seek(0)
        try:
            self._tar = tarfile.open(fileobj=file, mode="r:")  # noqa: SIM115 - closed by close()
        except tarfile.TarError as e:
            raise LayerError(f"{what} is not a tar archive: {e}") from None
        try:
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError) as e:
            self._tar.close()
            raise LayerError(f"{what} is truncated or corrupt: {e}") from None
        try:
            self._members = self._index(members, size)
        except LayerError:
            self._tar.close()
            raise

    def _index(self, members: list[tarfile.TarInfo], size: int) -> dict[str, tarfile.TarInfo]:
        found: dict[str, tarfile.TarInfo] = {}
        for member in members:
            name = normalize_member_name(member.name, f"{self.what}: member")
            plain = member.isreg() or member.isdir() or member.issym() or member.islnk()
            if member.type in _KINDS or not plain:
                kind = _KINDS.get(member.type, f"of unknown type {member.type!r}")
                raise LayerError(
                    f"{self.what}: member {member.name!r} is {kind}: an image archive "
                    "holds only files, directories and links"
                )
            if member.isreg() and member.offset_data + member.size > size:
                raise LayerError(
                    f"{self.what} is truncated: member {member.name!r} needs "
                    f"{member.offset_data + member.size} bytes, the archive has {size}"
                )
            earlier = found.get(name)
            if earlier is not None and not (earlier.isdir() and member.isdir()):
                raise LayerError(f"{self.what} has two members named {name!r}")
            if name:
                found[name] = member
        for name, member in found.items():
            if member.islnk() or member.issym():
                target = _link_target(member, name, self.what)
                if member.islnk() and target not in found:
                    raise LayerError(
                        f"{self.what}: hard link {name!r} points to {member.linkname!r}, "
                        "which is not in the archive"
                    )
        return found

    def close(self) -> None:
        """Close the archive (not the file it was read from)."""
        self._tar.close()

    def has(self, name: str) -> bool:
        """Whether the archive has a member called ``name`` (of any kind)."""
        return name in self._members

    def member(self, name: str, what: str) -> tarfile.TarInfo:
        """The regular file that ``name`` is, or that the link ``name`` leads to.

        Args:
            name: the path, as a document in the archive names it.
            what: what the path is (``"layer 0 of manifest.json"``), for errors.

        Raises:
            LayerError: the path is absolute or has ``..``, there is no such member, or it
                is (or leads to) something other than a regular file.
        """
        path = normalize_member_name(name, f"{self.what}: {what}")
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(path)
            if member is None:
                raise LayerError(f"{self.what}: {what} {name!r} is not in the archive")
            if member.isreg():
                return member
            if not (member.issym() or member.islnk()):
                raise LayerError(f"{self.what}: {what} {name!r} is not a regular file")
            path = _link_target(member, path, self.what)
        raise LayerError(f"{self.what}: {what} {name!r}: too many levels of links")

    def open(self, name: str, what: str) -> IO[bytes]:
        """Open the regular file :meth:`member` finds, for streaming its data.

        Raises:
            LayerError: as :meth:`member`.
        """
        stream = self._tar.extractfile(self.member(name, what))
        assert stream is not None  # a regular file always has data to extract
        return stream

    def read(self, name: str, what: str, limit: int) -> bytes:
        """Read a whole member of at most ``limit`` bytes, such as a JSON document.

        Raises:
            LayerError: as :meth:`member`, or the member is larger than ``limit``.
        """
        member = self.member(name, what)
        if member.size > limit:
            raise LayerError(
                f"{self.what}: {what} {name!r} is {member.size} bytes, more than the "
                f"{limit} allowed"
            )
        with self.open(name, what) as stream:
            return stream.read()


class TarWriter:
    """Writes a tar archive (GNU format, owner 0:0, times 0) into a seekable binary file.

    Args:
        file: where the archive goes, positioned at its start.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    @staticmethod
    def _header(name: str, kind: bytes, size: int, mode: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mode = mode
        info.mtime = 0
        # GNU format keeps the header's length independent of the size (which goes
        # base-256 past 8 GiB), so a header can be rewritten in place once the size is known.
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self._file.write(b"\0" * (_BLOCK - size % _BLOCK))

    def add_directory(self, name: str) -> None:
        """Add a directory entry ``name``, mode 0755."""
        self._file.write(self._header(name, tarfile.DIRTYPE, 0, 0o755))

    def add_bytes(self, name: str, data: bytes) -> None:
        """Add a regular file ``name`` (mode 0644) holding ``data``."""
        self._file.write(self._header(name, tarfile.REGTYPE, len(data), 0o644))
        self._file.write(data)
        self._pad(len(data))

    def add_stream(self, name: str, source: SupportsRead) -> int:
        """Add a regular file ``name`` (mode 0644) with everything ``source`` reads.

        Returns:
            The number of bytes the file holds.
        """
        start = self._file.tell()
        placeholder = self._header(name, tarfile.REGTYPE, 0, 0o644)
        self._file.write(placeholder)
        size = 0
        while chunk := source.read(CHUNK):
            self._file.write(chunk)
            size += len(chunk)
        self._pad(size)
        end = self._file.tell()
        header = self._header(name, tarfile.REGTYPE, size, 0o644)
        if len(header) != len(placeholder):  # pragma: no cover - GNU headers keep their length
            raise LayerError(f"tar member {name!r}: its header changed length")
        self._file.seek(start)
        self._file.write(header)
        self._file.seek(end)
        return size

    def close(self) -> None:
        """End the archive (two zero blocks, padded to a whole record) and flush."""
        self._file.write(b"\0" * (2 * _BLOCK))
        end = self._file.tell()
        if end % tarfile.RECORDSIZE:
            self._file.write(b"\0" * (tarfile.RECORDSIZE - end % tarfile.RECORDSIZE))
        self._file.flush()


def dumps(document: Any) -> bytes:
    """``document`` as compact JSON with sorted keys: the same document, the same bytes."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def parse_json(data: bytes, parse: Callable[[Any], _T], what: str) -> _T:
    """Decode a JSON document and build a model of it with ``parse``.

    Raises:
        LayerError: the bytes are not UTF-8 JSON or not what ``parse`` accepts; the
            message starts with ``what``.
    """
    try:
        return parse(json.loads(data))
    except (ValueError, SpecError) as e:  # JSON, UTF-8 and model errors are all ValueErrors
        raise LayerError(f"{what}: {e}") from None


def json_of(data: bytes, kind: type[_T], what: str) -> _T:
    """A JSON document that must be of ``kind`` (``dict`` or ``list``)."""
    document = parse_json(data, lambda x: x, what)
    if not isinstance(document, kind):
        raise LayerError(f"{what}: expected a JSON {kind.__name__}, got {type(document).__name__}")
    return document


def blob_member(digest: str) -> str:
    """The path of the blob ``digest`` (already validated) inside an OCI layout or archive."""
    algorithm, _, hex_part = digest.partition(":")
    return f"blobs/{algorithm}/{hex_part}"


def check_image(manifest: Manifest, config: ImageConfig, what: str) -> None:
    """What every image needs before it is written anywhere: known media types, and a
    diff ID for each layer."""
    if manifest.config.media_type not in CONFIG_MEDIA_TYPES:
        raise LayerError(
            f"{what}: config media type {manifest.config.media_type!r} is not an image config"
        )
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in LAYER_MEDIA_TYPES:
            raise LayerError(
                f"{what}: layer {i} ({layer.digest}) has unsupported media type "
                f"{layer.media_type!r}"
            )
    if len(config.rootfs.diff_ids) != len(manifest.layers):
        raise LayerError(
            f"{what} has {len(manifest.layers)} layers but its config lists "
            f"{len(config.rootfs.diff_ids)} diff IDs"
        )


class HashingReader:
    """A stream hashed as it is read (unless ``algorithm`` is None), optionally copied to
    ``sink``; a decompressor's errors become LayerErrors naming ``what``.

    Attributes:
        count: the bytes read so far.
        head: the first four of them, to tell the compression by its magic number.
    """

    def __init__(
        self,
        source: SupportsRead,
        algorithm: str | None,
        what: str,
        sink: Callable[[bytes], None] | None = None,
    ) -> None:
        self._source = source
        self._hash = hashlib.new(algorithm) if algorithm is not None else None
        self._algorithm = algorithm
        self._what = what
        self._sink = sink
        self.count = 0
        self.head = b""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes from the source, hashing and copying them."""
        data = read_checked(self._source, size, self._what)
        if len(self.head) < 4:
            self.head += data[: 4 - len(self.head)]
        if self._hash is not None:
            self._hash.update(data)
        self.count += len(data)
        if self._sink is not None and data:
            self._sink(data)
        return data

    def drain(self) -> None:
        """Read to the end."""
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        """``algorithm:hex`` of what was read."""
        assert self._hash is not None, "a stream read without hashing has no digest"
        return f"{self._algorithm}:{self._hash.hexdigest()}"
