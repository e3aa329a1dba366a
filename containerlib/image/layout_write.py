"""Writing into an OCI image layout: its lock, its ``index.json``, and blobs that become
visible only whole.

Readers never see a half-written file: each is written to a temporary name in the same
directory, synced, and renamed over its final name (rename(2) is atomic within a file
system). Writers that change ``index.json`` hold an flock(2) on the layout directory so that
concurrent pulls, from threads or processes, do not lose each other's entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

from containerlib.errors import ImageError, LayerError, SpecError
from containerlib.image.layout import blob_path, open_blob
from containerlib.spec.image import ANNOTATION_REF_NAME, Descriptor, Index

__all__ = [
    "add_to_index",
    "has_valid_blob",
    "locked_layout",
    "read_index",
    "store_blob_bytes",
    "temporary",
    "write_all",
    "write_file_atomically",
    "write_index",
]


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, however many writes it takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def temporary(final: Path) -> Iterator[tuple[int, Path]]:
    """A temporary file next to ``final``, removed unless it was renamed to ``final``."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".partial-{final.name[:16]}-")
    temp = Path(name)
    try:
        yield fd, temp
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def has_valid_blob(layout: Path, descriptor: Descriptor) -> bool:
    """Whether ``layout`` holds the blob ``descriptor`` names, whole and verified."""
    try:
        with open_blob(layout, descriptor) as reader:
            reader.verify()
    except LayerError:
        return False
    return True


def write_file_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once: written aside, synced, then renamed."""
    with temporary(path) as (fd, temp):
        write_all(fd, data)
        os.fsync(fd)
        os.replace(temp, path)


def store_blob_bytes(layout: Path, descriptor: Descriptor, data: bytes) -> None:
    """Store ``data`` as the blob ``descriptor`` names, unless a valid copy is there."""
    if not has_valid_blob(layout, descriptor):
        write_file_atomically(blob_path(layout, descriptor.digest), data)


@contextlib.contextmanager
def locked_layout(layout: Path) -> Iterator[None]:
    """Make ``layout`` an OCI layout if it is not one, and hold its lock (flock on the
    directory) so that concurrent pulls do not lose each other's ``index.json`` entries."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    fd = os.open(layout, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        marker = layout / "oci-layout"
        if not marker.exists():
            write_file_atomically(marker, b'{"imageLayoutVersion":"1.0.0"}')
        if not (layout / "index.json").exists():
            write_index(layout, Index())
        yield
    finally:
        os.close(fd)


def read_index(layout: Path) -> Index:
    """The layout's ``index.json`` (empty if there is none yet).

    Raises:
        ImageError: it is not a valid index.
    """
    path = layout / "index.json"
    try:
        return Index.from_dict(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return Index()
    except (ValueError, SpecError) as e:
        raise ImageError(f"read {path}: {e}") from None


def write_index(layout: Path, index: Index) -> None:
    """Replace the layout's ``index.json`` at once (written aside, then renamed)."""
    data = json.dumps(index.to_dict(), separators=(",", ":"), sort_keys=True).encode()
    write_file_atomically(layout / "index.json", data)


def add_to_index(layout: Path, descriptor: Descriptor, name: str | None) -> None:
    """Add ``descriptor`` to ``index.json`` named ``name``, replacing the image of that
    name; without a name, only if the manifest is not listed yet. Hold the layout's lock."""
    index = read_index(layout)
    if name is not None:
        descriptor = attrs.evolve(
            descriptor, annotations={**descriptor.annotations, ANNOTATION_REF_NAME: name}
        )
        kept = [d for d in index.manifests if d.ref_name != name]
    elif any(d.digest == descriptor.digest for d in index.manifests):
        return  # pulled by digest: the layout finds it by digest already
    else:
        kept = list(index.manifests)
    write_index(layout, attrs.evolve(index, manifests=[*kept, descriptor]))
