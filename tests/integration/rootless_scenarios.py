"""What a user other than root does with images, each scenario a function that asserts.

test_rootless_images.py calls these in its own process when the suite runs as a user, and
as root runs them as ``nobody`` in a process of their own::

    python -m tests.integration.rootless_scenarios SCENARIO DIRECTORY

``DIRECTORY`` is an empty directory the user owns; everything is made under it. A scenario
the host cannot run (no unprivileged user namespaces, no busybox) raises :class:`Unavailable`, which
the command reports with exit status 77 and the reason on stdout.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from containerlib import Image
from containerlib.errors import LayerError
from containerlib.image.cache import LayerCache
from containerlib.image.layers import unpack_layer
from containerlib.image.store import prune
from containerlib.runtime.specconv import Roots
from tests.image_builders import (
    BUSYBOX,
    Entry,
    build_oci_layout,
    busybox_layout,
    chardev,
    directory,
    fifo,
    file,
    hardlink,
    make_layer,
    opaque,
    symlink,
    whiteout,
)

UNAVAILABLE = 77
# The caller becomes root of a new user namespace, with a mount namespace of its own.
_IN_USER_NAMESPACE = ("unshare", "--user", "--map-root-user", "--mount")

# A valid VFS_CAP_REVISION_2 security.capability value: cap_net_raw, effective.
_CAP_NET_RAW = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)


class Unavailable(Exception):
    """The host cannot run this scenario; the message says why."""


def unpacked(target: Path, entries: list[Entry]) -> Path:
    """``entries`` packed as a layer and unpacked into the new directory ``target``."""
    target.mkdir()
    layer = make_layer(entries)
    assert unpack_layer(io.BytesIO(layer.blob), target, layer.media_type) == layer.diff_id
    return target


def unpack(base: Path) -> None:
    """Whiteouts, opaque directories, other owners, links, a FIFO and privileged xattrs."""
    t = unpacked(
        base / "layer",
        [
            directory("etc"),
            file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            whiteout("etc/motd"),
            directory("home/alice", uid=1234, gid=1234, mode=0o750),
            file("home/alice/notes", b"mine", uid=1234, gid=1234, mode=0o640),
            file("bin/tool", b"#!/bin/sh\n", mode=0o755),
            hardlink("bin/tool-again", "bin/tool"),
            symlink("bin/sh", "/bin/busybox"),
            fifo("run/pipe", mode=0o600),
            opaque("var/cache"),
            file("var/cache/new", b"fresh"),
            file(
                "bin/ping",
                b"ping",
                mode=0o755,
                xattrs={
                    "user.origin": "kept",
                    "trusted.note": "root only",
                    "security.capability": _CAP_NET_RAW.decode("utf-8", "surrogateescape"),
                },
            ),
        ],
    )
    me = os.geteuid()
    for path in [t, *t.rglob("*")]:
        assert path.lstat().st_uid == me, f"{path} is owned by {path.lstat().st_uid}, not {me}"
    assert (t / "home/alice/notes").read_bytes() == b"mine"
    assert stat.S_IMODE((t / "home/alice/notes").stat().st_mode) == 0o640
    assert stat.S_IMODE((t / "home/alice").stat().st_mode) == 0o750
    assert (t / "bin/tool").stat().st_ino == (t / "bin/tool-again").stat().st_ino
    assert os.readlink(t / "bin/sh") == "/bin/busybox"
    assert stat.S_ISFIFO((t / "run/pipe").lstat().st_mode)
    motd = (t / "etc/motd").lstat()
    assert stat.S_ISCHR(motd.st_mode), "a whiteout is a character device"
    assert motd.st_rdev == 0, "a whiteout is device 0:0"
    assert os.getxattr(t / "var/cache", "user.overlay.opaque") == b"y"
    assert os.listdir(t / "var/cache") == ["new"]
    assert os.getxattr(t / "bin/ping", "user.origin") == b"kept"
    assert "security.capability" not in os.listxattr(t / "bin/ping")
    assert not list(t.rglob(".wh.*"))


def device_node(base: Path) -> None:
    """A device node other than a whiteout needs root: the error names it and says so."""
    message = ""
    try:
        unpacked(base / "layer", [directory("dev"), chardev("dev/null", 1, 3)])
    except LayerError as e:
        message = str(e)
    assert "'dev/null'" in message, f"not refused, or not naming the member: {message!r}"
    assert "unpacking device nodes needs root" in message, message


def overlay(base: Path) -> None:
    """Layers unpacked by the user stack in an overlay mounted with ``userxattr`` in a
    user namespace where the user is root, as a rootless container's rootfs is."""
    probe = subprocess.run([*_IN_USER_NAMESPACE, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        raise Unavailable("unprivileged user namespaces are not allowed here")
    lower = unpacked(
        base / "lower",
        [
            file("etc/motd", b"welcome"),
            file("etc/hostname", b"box"),
            file("var/cache/old"),
            file("opt/tool/bin"),
        ],
    )
    upper = unpacked(
        base / "upper",
        [
            directory("etc"),
            whiteout("etc/motd"),
            opaque("var/cache"),
            file("var/cache/new", b"fresh"),
            whiteout("opt/tool"),
        ],
    )
    merged = base / "merged"
    merged.mkdir()
    # The mount lives in the new mount namespace only: it goes when `sh` ends.
    script = (
        'mount -t overlay overlay -o "userxattr,lowerdir=$1:$2" "$3" && cd "$3" && '
        "ls -A etc && echo -- && ls -A var/cache && echo -- && ls -A opt"
    )
    done = subprocess.run(
        [*_IN_USER_NAMESPACE, "sh", "-c", script, "sh", str(upper), str(lower), str(merged)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("--\n") == ["hostname\n", "new\n", ""], done.stdout


def images(base: Path) -> None:
    """Images from a directory, an OCI layout and builds; save, load and prune, all in
    the default data root of a user whose home is ``base``.

    The caller sets ``HOME`` to ``base`` and ``XDG_RUNTIME_DIR``, and unsets
    ``XDG_DATA_HOME`` and the ``CONTAINERLIB_*_ROOT`` variables.
    """
    if not os.access(BUSYBOX, os.X_OK):
        raise Unavailable(f"{BUSYBOX} is missing: install busybox-static")
    data = Path(Roots.from_env().data)
    assert data == base / ".local/share/containerlib"
    rootfs = base / "rootfs"
    rootfs.mkdir()
    (rootfs / "hello").write_text("hi\n")
    from_dir = Image.from_rootfs(rootfs).add(b"more\n", "/more.txt")
    assert [Path(p, "more.txt").exists() for p in from_dir.layers] == [False, True]

    busybox = Image.from_oci_layout(busybox_layout(base / "busybox").path, "latest")
    (bottom,) = busybox.layers
    assert Path(bottom).is_relative_to(data / "layers")
    assert Path(bottom, "bin/busybox").stat().st_uid == os.geteuid()
    assert stat.S_IMODE(Path(bottom, "proc").stat().st_mode) == 0o555

    built = busybox.add(b"x\n", "/etc/x")
    assert Path(built.layers[-1], "etc/x").read_bytes() == b"x\n"
    scratch = Image.scratch().add(b"only\n", "/only.txt")
    assert Path(scratch.layers[-1], "only.txt").read_bytes() == b"only\n"

    name = "example.com/rootless/built:1"
    for kind in ("docker", "oci"):
        archive = base / f"built-{kind}.tar"
        built.tag(name).save(archive, format=kind)
        (loaded,) = Image.load(archive)
        assert loaded.name == name
        assert loaded.layers == built.layers

    # Read-only and unreadable directories with something in them: not even their owner
    # can empty them as they are, so removing the layer must make them writable first.
    read_only = build_oci_layout(
        base / "read-only",
        [
            [
                directory("ro", mode=0o555),
                file("ro/f", b"f"),
                directory("locked", mode=0o000),
                file("locked/g", b"g"),
            ]
        ],
    )
    (ro_layer,) = Image.from_oci_layout(read_only.path, "latest").layers
    assert stat.S_IMODE(Path(ro_layer, "ro").stat().st_mode) == 0o555

    Image.remove(name)
    report = prune(data, grace=0)
    assert read_only.diff_ids[0] in report.layers
    assert LayerCache(data).layers() == []
    assert not Path(ro_layer).exists()
    assert not list((data / "tmp").iterdir())


SCENARIOS: dict[str, Callable[[Path], None]] = {
    f.__name__: f for f in (unpack, device_node, overlay, images)
}


def main(argv: list[str]) -> int:
    scenario, directory_ = argv
    try:
        SCENARIOS[scenario](Path(directory_))
    except Unavailable as e:
        print(e)
        return UNAVAILABLE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
