"""A cache of unpacked layers, one directory per diff ID, shared by threads and processes.

A layer is unpacked once, whatever image or container needs it, into
``<root>/layers/sha256/<hex>/fs``, where overlayfs can use it as a lower directory as it is.
The work happens in a temporary directory under ``<root>/tmp`` that is renamed into place
only after the blob's digest and the layer's diff ID were verified, so a directory under
``layers/`` is always complete (``rename(2)`` is atomic).

Each layer has a lock file, ``<root>/locks/<hex>.lock``, locked with ``flock(2)``: an unpack
holds it exclusively (``LOCK_EX``), so concurrent unpacks of one layer wait for the first
instead of repeating it; a container using the layer holds it shared (``LOCK_SH``, see
:meth:`LayerCache.hold`) for its whole life; :meth:`LayerCache.prune` removes a layer only
if it gets the lock exclusively without waiting, so a layer in use is never removed. See
``flock(2)``: the lock belongs to the open file, and goes when the last descriptor of it is
closed, also when the holder dies.

Prune also removes the lock files of layers that are gone, and only while it holds them
exclusively. Someone who opened such a file just before could still get a lock on it after
the unlink: a lock on an inode no one else can find, which excludes no one. So whoever
locks a lock file checks afterwards that its path still names the inode locked (``fstat``
against ``stat``), and starts over if not.

Example:
    >>> cache = LayerCache(Path("/var/lib/containerlib"))  # doctest: +SKIP
    >>> image = open_layout(Path("busybox-oci"), "latest")  # doctest: +SKIP
    >>> with cache.ensure_held(image) as held:  # doctest: +SKIP
    ...     held.paths[0].name
    'fs'
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Final

from containerlib._closing import Closing
from containerlib.errors import LayerError, SpecError
from containerlib.image.layers import UnpackLimits, unpack_layer
from containerlib.image.layout import ResolvedImage, open_blob
from containerlib.linux.trees import remove_tree
from containerlib.spec.image import split_digest

__all__ = ["LayerCache", "LayerHold", "disk_usage"]

_CONTENT: Final = "fs"
_METADATA: Final = "layer.json"
_LOCK_SUFFIX: Final = ".lock"
# How often ensure_held unpacks a layer that a concurrent prune keeps removing.
_MAX_ATTEMPTS: Final = 5


def disk_usage(path: Path) -> int:
    """The bytes ``path`` and everything under it take on disk, as ``du -s --block-size=1``
    counts them: allocated blocks (``st_blocks``), a file with several hard links once,
    symbolic links not followed. A directory the caller cannot read (a ``0000`` one in a
    layer a user unpacked) counts only itself.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    seen: set[tuple[int, int]] = set()
    top = os.lstat(path)
    total = top.st_blocks * 512
    if not stat.S_ISDIR(top.st_mode):
        return total
    pending = [os.fspath(path)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except FileNotFoundError:
            continue  # removed while we walked: it takes nothing now
        except PermissionError:
            continue  # du would complain and go on
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                pending.append(entry.path)
    return total


def _remove_tree(path: Path) -> None:
    """Remove ``path`` and what it holds (see :func:`containerlib.linux.trees.remove_tree`:
    a layer may hold read-only directories, which a user other than root must make
    writable first; the tree is the cache's own, renamed away from ``layers/`` under its
    lock, so nothing changes it while it is walked).

    Raises:
        OSError: a file could not be removed, with its path.
    """
    remove_tree(path)


def _remove_tree_quietly(path: Path) -> None:
    """:func:`_remove_tree`, ignoring any error: for cleanup while an error is raised."""
    with contextlib.suppress(OSError):
        _remove_tree(path)


class LayerHold(Closing):
    """Shared locks on some layers of a :class:`LayerCache`, held until :meth:`close`.

    While a hold is open no :meth:`LayerCache.prune`, in this process or another, removes
    its layers. Get one from :meth:`LayerCache.hold` or :meth:`LayerCache.ensure_held` and
    keep it open for as long as a container runs from the layers. It is also a context
    manager. A forked child shares the locks until it closes them or exits (they are
    ``O_CLOEXEC``, so ``exec`` drops them).

    Attributes:
        diff_ids: the layers held, in the order asked for.
        paths: their directories (``.../<hex>/fs``), in the same order.
    """

    def __init__(self, diff_ids: tuple[str, ...], paths: tuple[Path, ...], fds: list[int]):
        self.diff_ids = diff_ids
        self.paths = paths
        self._fds = fds
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LayerHold {len(self.diff_ids)} layers, {state}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def fds(self) -> tuple[int, ...]:
        """The locked descriptors: a process that gets copies (SCM_RIGHTS, a fork) holds
        the layers until it closes them, whatever this hold does."""
        return tuple(self._fds)

    def close(self) -> None:
        """Release the locks; the layers may be pruned from now on. Closing twice is fine."""
        self._closed = True
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


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

    # -- locks ------------------------------------------------------------------------

    def _lock_path(self, hex_part: str) -> Path:
        return self.root / "locks" / f"{hex_part}{_LOCK_SUFFIX}"

    def _lock(self, hex_part: str, operation: int, *, create: bool = True) -> int | None:
        """Lock the layer's lock file with ``operation`` (``LOCK_SH``/``LOCK_EX``, maybe
        ``| LOCK_NB``) and return the descriptor holding it.

        Returns None if ``LOCK_NB`` was asked and someone else holds a conflicting lock,
        or if the file does not exist and ``create`` is false.

        A pruner unlinks a lock file while it holds it exclusively. Whoever opened the file
        before that and gets the lock after it holds a lock on a file no one else can find
        any more; so after locking, the path must still name the inode that was locked,
        else the lock is worth nothing and we start again.
        """
        path = self._lock_path(hex_part)
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(path, flags, 0o600)
            except FileNotFoundError:
                if create:
                    raise
                return None
            try:
                # flock, not lockf: flock locks belong to the open file, so they also keep
                # apart two threads of one process that opened the lock file separately.
                fcntl.flock(fd, operation)
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            locked = os.fstat(fd)
            try:
                now = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (locked.st_dev, locked.st_ino):
                return fd
            os.close(fd)
            if not create:
                return None

    # -- unpacking --------------------------------------------------------------------

    def unpack(self, image: ResolvedImage, index: int) -> Path:
        """Unpack layer ``index`` of ``image`` unless it is cached; return its directory.

        Without a :meth:`hold`, a concurrent :meth:`prune` may remove the layer again at
        any time; use :meth:`ensure_held` to unpack and hold.

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
        lock = self._lock(final.name, fcntl.LOCK_EX)
        assert lock is not None  # a blocking lock, on a file made if missing
        try:
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

    def ensure_held(self, image: ResolvedImage) -> LayerHold:
        """Unpack every layer of ``image`` that is not cached yet, and hold them all.

        This is what starting a container needs: a layer that a concurrent :meth:`prune`
        removes between its unpack and its hold is unpacked again.

        Returns:
            A hold on the image's layers, bottom layer first; close it when done.

        Raises:
            LayerError: as :meth:`unpack`, or a layer was removed again after each of
                several unpacks.
        """
        fds: list[int] = []
        try:
            for i, diff_id in enumerate(image.diff_ids):
                hex_part = self._layer_dir(diff_id).name
                for _ in range(_MAX_ATTEMPTS):
                    self.unpack(image, i)
                    fd = self._hold_one(diff_id, hex_part)
                    if fd is not None:
                        fds.append(fd)
                        break
                else:
                    raise LayerError(
                        f"layer {diff_id} in {self.root}: removed by a concurrent prune "
                        f"after each of {_MAX_ATTEMPTS} unpacks"
                    )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        paths = tuple(self.path(d) for d in image.diff_ids)
        return LayerHold(tuple(image.diff_ids), paths, fds)

    def _unpack_locked(self, image: ResolvedImage, index: int, final: Path) -> None:
        tmp_root = self.root / "tmp"
        # Holding the lock, any temporary directory for this layer is a crashed unpacker's
        # (or one a pruner is deleting: either of us may finish that).
        for stale in tmp_root.glob(f"{final.name}.*"):
            _remove_tree_quietly(stale)
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
            _remove_tree_quietly(tmp)
            raise

    # -- holding ----------------------------------------------------------------------

    def _diff_id_of(self, item: str | os.PathLike[str]) -> str:
        if isinstance(item, str) and ":" in item and "/" not in item:
            self._layer_dir(item)  # validates it
            return item
        path = Path(os.path.abspath(item))
        if path.name == _CONTENT:
            path = path.parent
        layers = (self.root / "layers").absolute()
        if path.parent.parent != layers:
            raise LayerError(f"hold {os.fspath(item)!r}: not a layer of the cache {self.root}")
        diff_id = f"{path.parent.name}:{path.name}"
        self._layer_dir(diff_id)
        return diff_id

    def _hold_one(self, diff_id: str, hex_part: str) -> int | None:
        """A shared lock on the layer, or None if the layer is not (or no longer) there."""
        fd = self._lock(hex_part, fcntl.LOCK_SH, create=False)
        if fd is None:
            # No lock file: no unpack of the layer is under way (an unpacker keeps its lock
            # file in place), so there is a whole layer or none. Only a layer that is
            # there needs a lock file made.
            if not (self._layer_dir(diff_id) / _CONTENT).is_dir():
                return None
            (self.root / "locks").mkdir(parents=True, exist_ok=True)
            fd = self._lock(hex_part, fcntl.LOCK_SH)
            assert fd is not None  # a blocking lock, on a file made if missing
        # A pruner renames the layer away only while it holds the lock exclusively, so
        # what we see now stays as it is while we hold the lock.
        if (self._layer_dir(diff_id) / _CONTENT).is_dir():
            return fd
        os.close(fd)
        return None

    def hold(self, layers: Iterable[str | os.PathLike[str]]) -> LayerHold:
        """Hold unpacked layers so that :meth:`prune` leaves them alone until released.

        Each layer's lock file is locked shared, which waits for an unpack of that layer in
        progress; then the layer must still be there. A layer that is not is an error, not
        unpacked again here (this cache does not know which image it came from): use
        :meth:`ensure_held` to unpack and hold in one step.

        Args:
            layers: diff IDs (``sha256:…``) or the layer directories :meth:`ensure`
                returned (``…/layers/sha256/<hex>/fs``).

        Returns:
            The hold, with the layers' diff IDs and directories in the order given.

        Raises:
            LayerError: an item is not a diff ID or a directory of this cache, or the layer
                is not unpacked (never was, or was pruned); nothing stays held.

        Example:
            >>> with cache.hold(image.layers):  # doctest: +SKIP
            ...     run_container(image)
        """
        diff_ids = tuple(self._diff_id_of(item) for item in layers)
        fds: list[int] = []
        try:
            for diff_id in diff_ids:
                fd = self._hold_one(diff_id, self._layer_dir(diff_id).name)
                if fd is None:
                    raise LayerError(
                        f"hold layer {diff_id}: it is not unpacked in the cache {self.root} "
                        "(pruned?); unpack it again with ensure() or ensure_held()"
                    )
                fds.append(fd)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return LayerHold(diff_ids, tuple(self.path(d) for d in diff_ids), fds)

    # -- sizes ------------------------------------------------------------------------

    def layers(self) -> list[str]:
        """The diff IDs of the unpacked layers, sorted."""
        found = []
        base = self.root / "layers"
        for algorithm in sorted(base.iterdir()) if base.is_dir() else ():
            for entry in sorted(algorithm.iterdir()):
                diff_id = f"{algorithm.name}:{entry.name}"
                try:
                    self._layer_dir(diff_id)
                except LayerError:
                    continue  # not a layer of ours
                if (entry / _CONTENT).is_dir():
                    found.append(diff_id)
        return found

    def layer_size(self, diff_id: str) -> int:
        """The bytes the unpacked layer ``diff_id`` takes on disk (see :func:`disk_usage`).

        Raises:
            LayerError: the layer is not unpacked.
        """
        try:
            return disk_usage(self._layer_dir(diff_id))
        except FileNotFoundError:
            raise LayerError(f"layer {diff_id} is not unpacked in the cache {self.root}") from None

    def size(self) -> int:
        """The bytes all unpacked layers take on disk, a file with several links once.

        Temporary directories of unpacks in progress are not counted.
        """
        base = self.root / "layers"
        try:
            # The directories layers/ and layers/<alg>/ are counted too, as du would.
            return disk_usage(base)
        except FileNotFoundError:
            return 0

    # -- pruning ----------------------------------------------------------------------

    def prune(self, keep: Collection[str], *, grace: float = 3600.0) -> list[str]:
        """Remove the unpacked layers not in ``keep`` that no one holds.

        A layer someone holds (:meth:`hold`) or is unpacking right now is skipped: its lock
        cannot be taken exclusively without waiting. A layer that can be is renamed under
        ``<root>/tmp`` while locked (so it vanishes from ``layers/`` at once and whole)
        and deleted after. Also removed: the temporary directories of unpacks that crashed
        (known by their layer's lock being free), other entries of ``<root>/tmp`` older
        than ``grace`` seconds, and the lock files of layers that are gone.

        Args:
            keep: the diff IDs to keep, such as those of the images in the image store.
            grace: the age in seconds below which an unknown temporary entry is left alone.

        Returns:
            The diff IDs of the layers removed.
        """
        removed = self.prune_layers(keep, grace=grace)
        return [name for name, _ in removed if not name.startswith("tmp/")]

    def prune_layers(
        self, keep: Collection[str], *, grace: float = 3600.0
    ) -> list[tuple[str, int]]:
        """:meth:`prune`, returning each removed layer's diff ID with the bytes it took
        (temporary directories removed are counted as ``("tmp/<name>", bytes)``)."""
        removed: list[tuple[str, int]] = []
        keep = set(keep)
        for diff_id in self.layers():
            if diff_id in keep:
                continue
            freed = self._remove_layer(diff_id)
            if freed is not None:
                removed.append((diff_id, freed))
        removed += self._remove_stale_temporaries(grace)
        self._remove_stale_locks()
        return removed

    def _remove_layer(self, diff_id: str) -> int | None:
        final = self._layer_dir(diff_id)
        lock = self._lock(final.name, fcntl.LOCK_EX | fcntl.LOCK_NB, create=False)
        if lock is None:
            if self._lock_path(final.name).exists():
                return None  # held or being unpacked
            # Unpacked by a cache that had no lock file for it (it always makes one):
            # make one, and take it the same careful way.
            (self.root / "locks").mkdir(parents=True, exist_ok=True)
            lock = self._lock(final.name, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if lock is None:
                return None
        try:
            if not final.is_dir():
                return None  # pruned by someone else meanwhile
            freed = disk_usage(final)
            gone = self.root / "tmp" / f"{final.name}.gone.{secrets.token_hex(4)}"
            gone.parent.mkdir(parents=True, exist_ok=True)
            os.rename(final, gone)
            # Unlinked while locked exclusively: see _lock for why that is safe.
            self._lock_path(final.name).unlink(missing_ok=True)
        finally:
            os.close(lock)
        _remove_tree(gone)
        return freed

    def _remove_stale_temporaries(self, grace: float) -> list[tuple[str, int]]:
        tmp_root = self.root / "tmp"
        if not tmp_root.is_dir():
            return []
        removed = []
        now = time.time()
        for entry in sorted(tmp_root.iterdir()):
            hex_part = entry.name.partition(".")[0]
            try:
                split_digest(f"sha256:{hex_part}")
            except SpecError:
                hex_part = ""
            try:
                age = now - entry.lstat().st_mtime
            except FileNotFoundError:
                continue
            lock = None
            if hex_part:
                # An unpacker keeps its layer locked for as long as its directory exists;
                # a free (or missing) lock means the directory's unpacker is gone.
                lock = self._lock(hex_part, fcntl.LOCK_EX | fcntl.LOCK_NB, create=False)
                if lock is None and self._lock_path(hex_part).exists():
                    continue
            elif age < grace:
                continue
            try:
                try:
                    freed = disk_usage(entry)
                except FileNotFoundError:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    _remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)
                removed.append((f"tmp/{entry.name}", freed))
            finally:
                if lock is not None:
                    os.close(lock)
        return removed

    def _remove_stale_locks(self) -> None:
        locks = self.root / "locks"
        if not locks.is_dir():
            return
        for path in sorted(locks.iterdir()):
            hex_part, dot, suffix = path.name.partition(".")
            if f"{dot}{suffix}" != _LOCK_SUFFIX:
                continue
            diff_id = f"sha256:{hex_part}"
            try:
                layer = self._layer_dir(diff_id)
            except LayerError:
                continue
            if layer.exists():
                continue
            lock = self._lock(hex_part, fcntl.LOCK_EX | fcntl.LOCK_NB, create=False)
            if lock is None:
                continue  # in use: an unpack is about to make the layer
            try:
                # Checked again under the lock: an unpack may have finished in between.
                if not layer.exists():
                    try:
                        path.unlink()
                    except OSError as e:
                        if e.errno != errno.ENOENT:
                            raise
            finally:
                os.close(lock)
