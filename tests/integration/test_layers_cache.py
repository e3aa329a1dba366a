"""The layer cache: one unpack per diff ID across threads and processes, nothing half-made.

Everything here runs as root and as any other user, who owns every file it unpacks and
must still remove layers whose directories not even their owner may write or enter.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containerlib.errors import LayerError
from containerlib.image import cache as cache_module
from containerlib.image.cache import LayerCache, LayerHold
from containerlib.image.layout import ResolvedImage, open_layout
from tests.image_builders import (
    BuiltImage,
    build_oci_layout,
    busybox_layout,
    directory,
    file,
    hardlink,
    make_layer,
    symlink,
)
from tests.layer_holders import hold_elsewhere, release

pytestmark = [pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_layers(tmp_path: Path) -> BuiltImage:
    """busybox plus a layer that adds /etc/motd."""
    layout = tmp_path / "layout"
    base = busybox_layout(layout, ref="base")
    top = make_layer([directory("etc"), file("etc/motd", b"hello from the top\n")])
    return build_oci_layout(layout, [base.layers[0], top], ref="latest")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the diff ID of every real unpack; each is slowed so that callers overlap."""
    calls: list[str] = []
    real = cache_module.unpack_layer

    def slow_unpack(*args: Any, **kwargs: Any) -> str:
        time.sleep(0.2)
        diff_id = real(*args, **kwargs)
        calls.append(diff_id)
        return diff_id

    monkeypatch.setattr(cache_module, "unpack_layer", slow_unpack)
    return calls


def _left_in(root: Path) -> list[str]:
    found = [*root.glob("layers/*/*"), *root.glob("tmp/*")]
    return sorted(str(p.relative_to(root)) for p in found)


def test_ensure_unpacks_each_layer_once(
    tmp_path: Path, two_layers: BuiltImage, counted: list[str]
) -> None:
    image = open_layout(two_layers.path, "latest")
    cache = LayerCache(tmp_path / "c")
    paths = cache.ensure(image)
    assert [p.parent.name for p in paths] == [d.partition(":")[2] for d in image.diff_ids]
    assert all(
        p == cache.path(d) and cache.has(d) for p, d in zip(paths, image.diff_ids, strict=True)
    )
    assert (paths[0] / "bin/busybox").stat().st_mode & 0o111
    assert (paths[1] / "etc/motd").read_bytes() == b"hello from the top\n"
    metadata = json.loads((paths[1].parent / "layer.json").read_text())
    assert metadata["diff_id"] == image.diff_ids[1]
    assert metadata["digest"] == image.layers[1].digest
    assert counted == list(image.diff_ids)
    assert cache.ensure(image) == paths
    assert cache.ensure(open_layout(two_layers.path, "base")) == paths[:1]
    assert counted == list(image.diff_ids), "nothing unpacked twice"
    assert _left_in(tmp_path / "c") == sorted(
        f"layers/sha256/{d.partition(':')[2]}" for d in image.diff_ids
    )


def test_concurrent_threads_share_one_unpack(
    tmp_path: Path, two_layers: BuiltImage, counted: list[str]
) -> None:
    image = open_layout(two_layers.path, "latest")
    cache = LayerCache(tmp_path / "c")
    start = threading.Barrier(8)
    results: list[tuple[Path, ...]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(cache.ensure(image))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8
    assert len(set(results)) == 1
    assert sorted(counted) == sorted(image.diff_ids)
    assert (results[0][1] / "etc/motd").read_bytes() == b"hello from the top\n"
    assert not list((tmp_path / "c" / "tmp").iterdir())


_CHILD = """
import json, sys, time
from pathlib import Path
from containerlib.image import cache as cache_module
from containerlib.image.cache import LayerCache, LayerHold
from containerlib.image.layout import open_layout

layout, root, log, go = map(Path, sys.argv[1:5])
real = cache_module.unpack_layer

def logged(*args, **kwargs):
    diff_id = real(*args, **kwargs)
    time.sleep(0.2)
    with open(log, "a") as f:
        f.write(diff_id + "\\n")
    return diff_id

cache_module.unpack_layer = logged
image = open_layout(layout, "latest")
while not go.exists():
    time.sleep(0.005)
print(json.dumps([str(p) for p in LayerCache(root).ensure(image)]))
"""


def test_concurrent_processes_share_one_unpack(tmp_path: Path, two_layers: BuiltImage) -> None:
    root, log, go = tmp_path / "c", tmp_path / "unpacks.log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _CHILD, str(two_layers.path), str(root), str(log), str(go)]
    children = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    go.touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        outputs.append(json.loads(out))
    assert all(o == outputs[0] for o in outputs)
    assert sorted(log.read_text().split()) == sorted(two_layers.diff_ids)
    top = Path(outputs[0][1])
    assert (top / "etc/motd").read_bytes() == b"hello from the top\n"
    assert _left_in(root) == sorted(
        f"layers/sha256/{d.partition(':')[2]}" for d in two_layers.diff_ids
    )


def _image(layout: Path) -> ResolvedImage:
    return open_layout(layout, "latest")


def test_truncated_blob_leaves_nothing(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [[file("big", os.urandom(300_000))]])
    blob = tmp_path / "l/blobs/sha256" / built.layers[0].digest.partition(":")[2]
    blob.write_bytes(blob.read_bytes()[:150_000])
    cache = LayerCache(tmp_path / "c")
    with pytest.raises(LayerError, match="truncated"):
        cache.ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []
    assert not cache.has(built.diff_ids[0])


def test_blob_with_a_valid_tar_but_wrong_digest_leaves_nothing(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [make_layer([file("a", b"1")], compression="none")])
    forged = make_layer([file("a", b"2")], compression="none")
    assert len(forged.blob) == len(built.layers[0].blob)
    blob = tmp_path / "l/blobs/sha256" / built.layers[0].digest.partition(":")[2]
    blob.write_bytes(forged.blob)
    with pytest.raises(LayerError, match="does not match its digest"):
        LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []


def test_diff_id_mismatch_names_the_layer_and_leaves_nothing(tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    build_oci_layout(tmp_path / "l", [[file("a")]], diff_ids=[wrong])
    with pytest.raises(LayerError, match=f"layer 0 .* diff ID is sha256:.*says {wrong}"):
        LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []


def test_hostile_layer_leaves_nothing(tmp_path: Path) -> None:
    build_oci_layout(tmp_path / "l", [[symlink("evil", "/etc"), file("evil/x", b"pwned")]])
    with pytest.raises(LayerError, match="'evil' is a symlink"):
        LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []


def test_a_crashed_unpack_is_cleaned_up(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [[file("a", b"1")]])
    hex_part = built.diff_ids[0].partition(":")[2]
    stale = tmp_path / "c" / "tmp" / f"{hex_part}.crashed"
    (stale / "fs").mkdir(parents=True)
    (stale / "fs" / "half").write_bytes(b"x")
    (path,) = LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert (path / "a").read_bytes() == b"1"
    assert not stale.exists()


# Directories that a user other than root may neither empty nor, for 0000, enter, with
# content below them, as images have them (/proc is 0555 in most).
_LOCKED = [
    directory("proc", mode=0o555),
    directory("proc/self", mode=0o555),
    file("proc/self/status", b"x"),
    directory("vault", mode=0o000),
    directory("vault/inner", mode=0o500),
    file("vault/inner/secret", b"s", mode=0o000),
]


def test_a_layer_of_locked_directories_is_unpacked_and_pruned(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [_LOCKED])
    cache = LayerCache(tmp_path / "c")
    (path,) = cache.ensure(_image(tmp_path / "l"))
    assert stat.S_IMODE((path / "vault").stat().st_mode) == 0o000
    assert stat.S_IMODE((path / "proc/self").stat().st_mode) == 0o555
    assert (path / "proc/self/status").read_bytes() == b"x"
    assert cache.prune(keep=()) == list(built.diff_ids)
    assert _left_in(cache.root) == []


def test_a_refused_layer_of_locked_directories_leaves_nothing(tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    build_oci_layout(tmp_path / "l", [_LOCKED], diff_ids=[wrong])
    with pytest.raises(LayerError, match=f"says {wrong}"):
        LayerCache(tmp_path / "c").ensure(_image(tmp_path / "l"))
    assert _left_in(tmp_path / "c") == []


def test_bad_diff_ids_are_refused(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path)
    with pytest.raises(LayerError, match="malformed digest"):
        cache.path("sha256:../../x")
    with pytest.raises(LayerError, match="only sha256"):
        cache.path("sha512:" + "0" * 128)


# -- holding, pruning, sizes ---------------------------------------------------------------


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes holding layers (see :func:`hold_elsewhere`), ended after the test."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        release(child)


def _hex(diff_id: str) -> str:
    return diff_id.partition(":")[2]


def test_a_held_layer_survives_prune(
    tmp_path: Path, two_layers: BuiltImage, holders: list[subprocess.Popen[str]]
) -> None:
    image = open_layout(two_layers.path, "latest")
    cache = LayerCache(tmp_path / "c")
    base, top = cache.ensure(image)
    hold_elsewhere(holders, cache.root, str(top))  # by directory, as Image.layers has them

    assert cache.prune(keep=()) == [image.diff_ids[0]]
    assert cache.layers() == [image.diff_ids[1]]
    assert (top / "etc/motd").read_bytes() == b"hello from the top\n"
    assert not base.exists()
    assert _left_in(cache.root) == [f"layers/sha256/{_hex(image.diff_ids[1])}"]
    assert sorted(p.name for p in (cache.root / "locks").iterdir()) == [
        f"{_hex(image.diff_ids[1])}.lock"
    ]

    release(holders.pop())
    assert cache.prune(keep=()) == [image.diff_ids[1]]
    assert _left_in(cache.root) == []
    assert list((cache.root / "locks").iterdir()) == []
    with pytest.raises(LayerError, match=f"hold layer {image.diff_ids[1]}: it is not unpacked"):
        cache.hold([image.diff_ids[1]])


def test_prune_keeps_what_it_is_told_to(tmp_path: Path, two_layers: BuiltImage) -> None:
    image = open_layout(two_layers.path, "latest")
    cache = LayerCache(tmp_path / "c")
    cache.ensure(image)
    assert cache.prune(keep=[image.diff_ids[1]]) == [image.diff_ids[0]]
    assert cache.layers() == [image.diff_ids[1]]
    assert cache.prune(keep=image.diff_ids) == []


def test_a_hold_in_this_process_survives_prune_until_closed(
    tmp_path: Path, two_layers: BuiltImage
) -> None:
    image = open_layout(two_layers.path, "latest")
    cache = LayerCache(tmp_path / "c")
    with cache.ensure_held(image) as held:
        assert held.paths == cache.ensure(image)
        assert held.diff_ids == image.diff_ids
        assert cache.prune(keep=()) == []
        assert (held.paths[1] / "etc/motd").is_file()
    assert held.closed
    held.close()  # twice is fine
    assert sorted(cache.prune(keep=())) == sorted(image.diff_ids)
    # ensure_held unpacks again what a prune removed.
    with cache.ensure_held(image) as again:
        assert (again.paths[1] / "etc/motd").read_bytes() == b"hello from the top\n"


def test_hold_refuses_what_is_not_a_layer_of_the_cache(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "c")
    with pytest.raises(LayerError, match="not a layer of the cache"):
        cache.hold([tmp_path / "rootfs"])
    with pytest.raises(LayerError, match="malformed digest"):
        cache.hold(["sha256:nothex"])
    with pytest.raises(LayerError, match="not unpacked"):
        cache.hold(["sha256:" + "a" * 64])
    assert not (tmp_path / "c" / "locks").exists(), "no lock file made for nothing"


_SLOW_UNPACK = """
import sys, time
from pathlib import Path
from containerlib.image import cache as cache_module
from containerlib.image.cache import LayerCache, LayerHold
from containerlib.image.layout import open_layout

layout, root, started, go = sys.argv[1:5]
real = cache_module.unpack_layer

def waiting(*args, **kwargs):
    Path(started).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    return real(*args, **kwargs)

cache_module.unpack_layer = waiting
print(LayerCache(root).ensure(open_layout(Path(layout), "latest"))[-1])
"""


def _wait_for(path: Path, child: subprocess.Popen[str]) -> None:
    while not path.exists():
        assert child.poll() is None, "the child died before it started to unpack"
        time.sleep(0.01)


def _slow_unpack(layout: Path, root: Path, started: Path, go: Path) -> subprocess.Popen[str]:
    """A process that unpacks the layout's layer into the cache at ``root``, holding the
    layer's lock from when it touches ``started`` until ``go`` exists."""
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_UNPACK, str(layout), str(root), str(started), str(go)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_prune_during_an_unpack_of_the_same_layer_leaves_a_complete_layer(
    tmp_path: Path,
) -> None:
    built = build_oci_layout(tmp_path / "l", [[directory("d"), file("d/f", b"whole\n")]])
    (diff_id,) = built.diff_ids
    cache = LayerCache(tmp_path / "c")
    started, go = tmp_path / "started", tmp_path / "go"
    child = _slow_unpack(built.path, cache.root, started, go)
    try:
        _wait_for(started, child)
        # The unpacker holds the layer's lock: its half-made directory is not a crashed
        # unpacker's, however old, and the lock file stays.
        for entry in (cache.root / "tmp").iterdir():
            os.utime(entry, (0, 0))
        assert cache.prune(keep=(), grace=0) == []
        assert [p.name.partition(".")[0] for p in (cache.root / "tmp").iterdir()] == [_hex(diff_id)]
        assert (cache.root / "locks" / f"{_hex(diff_id)}.lock").exists()
        go.touch()
        out, _ = child.communicate(timeout=120)
    finally:
        go.touch()
        child.communicate(timeout=120)
    assert child.returncode == 0
    assert Path(out.strip()) == cache.path(diff_id)
    assert (cache.path(diff_id) / "d/f").read_bytes() == b"whole\n"
    assert json.loads((cache.path(diff_id).parent / "layer.json").read_text())["diff_id"] == (
        diff_id
    )
    assert cache.prune(keep=()) == [diff_id]
    assert _left_in(cache.root) == []


def _blocked_on(lock_file: Path) -> bool:
    """Whether some flock waits for ``lock_file`` (a ``->`` line of /proc/locks)."""
    inode = lock_file.stat().st_ino
    return any(
        "->" in line and line.split()[6].endswith(f":{inode}")
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 6
    )


def test_a_hold_waits_for_an_unpack_in_another_process(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path / "l", [[file("f", b"complete\n")]])
    (diff_id,) = built.diff_ids
    cache = LayerCache(tmp_path / "c")
    started, go = tmp_path / "started", tmp_path / "go"
    child = _slow_unpack(built.path, cache.root, started, go)
    holds: list[LayerHold] = []
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            holds.append(cache.hold([diff_id]))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    waiter = threading.Thread(target=hold, daemon=True)
    try:
        _wait_for(started, child)
        waiter.start()
        while not _blocked_on(cache.root / "locks" / f"{_hex(diff_id)}.lock"):
            assert waiter.is_alive(), errors
            time.sleep(0.01)
        assert not holds, "held while the layer was half made"
    finally:
        go.touch()
        child.communicate(timeout=120)
        waiter.join(60)
    assert not errors
    with holds[0] as held:
        assert (held.paths[0] / "f").read_bytes() == b"complete\n"
        assert cache.prune(keep=()) == []
    assert cache.prune(keep=()) == [diff_id]


def test_an_unpack_waiting_on_a_lock_file_that_is_unlinked_locks_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pruner removes the lock file of a layer that is gone while an unpacker waits on
    it; the unpacker must not unpack under a lock no one else can see."""
    built = build_oci_layout(tmp_path / "l", [[file("f", b"1")]])
    hex_part = _hex(built.diff_ids[0])
    cache = LayerCache(tmp_path / "c")
    lock_file = cache.root / "locks" / f"{hex_part}.lock"
    lock_file.parent.mkdir(parents=True)
    started, go = threading.Event(), threading.Event()
    real = cache_module.unpack_layer

    def waiting(*args: Any, **kwargs: Any) -> str:
        started.set()
        assert go.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "unpack_layer", waiting)
    results: list[object] = []
    pruner = os.open(lock_file, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(pruner, fcntl.LOCK_EX)
        worker = threading.Thread(
            target=lambda: results.append(cache.ensure(_image(built.path))), daemon=True
        )
        worker.start()
        while not _blocked_on(lock_file):
            assert worker.is_alive()
            time.sleep(0.01)
        lock_file.unlink()  # as prune does, holding the lock
    finally:
        os.close(pruner)
    try:
        assert started.wait(60)
        other = os.open(lock_file, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    finally:
        go.set()
        worker.join(60)
    assert results == [(cache.path(built.diff_ids[0]),)]
    assert (cache.path(built.diff_ids[0]) / "f").read_bytes() == b"1"


def test_prune_removes_leftovers(tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    cache = LayerCache(tmp_path / "c")
    built = build_oci_layout(tmp_path / "l", [[file("a", b"1")]])
    cache.ensure(_image(built.path))
    tmp, locks = cache.root / "tmp", cache.root / "locks"
    crashed = tmp / f"{'1' * 64}.x7"  # a dead unpacker's: its lock is free
    (crashed / "fs").mkdir(parents=True)
    (locks / f"{'1' * 64}.lock").touch()
    crashed_unlocked = tmp / f"{'2' * 64}.y8"  # and one whose lock file is gone too
    (crashed_unlocked / "fs").mkdir(parents=True)
    old, new = tmp / "old-junk", tmp / "new-junk"
    old.mkdir()
    (old / "x").write_bytes(b"x" * 10_000)
    os.utime(old, (0, 0))
    new.write_bytes(b"y")
    stale_lock = locks / f"{'3' * 64}.lock"  # of a layer that is no more
    stale_lock.touch()
    busy_lock = locks / f"{'4' * 64}.lock"  # an unpack holds it: the layer is coming
    busy = os.open(busy_lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(busy, fcntl.LOCK_EX)
        assert cache.prune(keep=built.diff_ids) == []
        assert busy_lock.exists()
    finally:
        os.close(busy)
    assert sorted(p.name for p in tmp.iterdir()) == ["new-junk"]
    assert sorted(p.name for p in locks.iterdir()) == sorted(
        [f"{_hex(built.diff_ids[0])}.lock", busy_lock.name]
    )
    assert cache.layers() == list(built.diff_ids)


def _du(path: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[0])


def test_sizes_are_what_du_says(tmp_path: Path, two_layers: BuiltImage) -> None:
    linked = build_oci_layout(
        tmp_path / "linked",
        [[file("big", os.urandom(1 << 20)), hardlink("same", "big"), hardlink("again", "big")]],
    )
    cache = LayerCache(tmp_path / "c")
    assert cache.size() == 0
    cache.ensure(open_layout(two_layers.path, "latest"))
    cache.ensure(_image(linked.path))
    (diff_id,) = linked.diff_ids
    size = cache.layer_size(diff_id)
    assert size == _du(cache.path(diff_id).parent)
    assert (1 << 20) <= size < 2 << 20, "three names, one file"
    assert cache.layer_size(two_layers.diff_ids[0]) > 1_000_000  # busybox
    assert cache.size() == _du(cache.root / "layers")
    assert cache.size() > sum(cache.layer_size(d) for d in cache.layers())  # plus dirs
    with pytest.raises(LayerError, match="not unpacked"):
        cache.layer_size("sha256:" + "5" * 64)
