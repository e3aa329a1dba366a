"""Root file systems containerlib can make without a registry.

``busybox_rootfs`` builds a small but complete root file system from the host's static
busybox binary (Debian's ``busybox-static`` package): one binary, a symlink per applet, and
the few files a shell expects (``/etc/passwd``, ``/etc/group``). It is what the quickstart,
the tests and the benchmarks run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from containerlib.errors import ImageNotFound

__all__ = ["busybox_rootfs", "find_static_busybox"]

_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"


def _is_static(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    # A dynamic ELF names its interpreter (PT_INTERP) near the start of the file.
    return head[:4] == b"\x7fELF" and b"/ld-linux" not in head and b"ld-musl" not in head


def find_static_busybox() -> str:
    """Return the path of a statically linked busybox on this host.

    Raises:
        ImageNotFound: none is installed; the message says which package to install.
    """
    for path in _CANDIDATES:
        if os.path.isfile(path) and _is_static(path):
            return path
    raise ImageNotFound(
        "no static busybox on this host (looked at "
        + ", ".join(_CANDIDATES)
        + "): install Debian's busybox-static package"
    )


def busybox_rootfs(dest: str | os.PathLike[str], busybox: str | None = None) -> Path:
    """Make a busybox root file system in ``dest`` (created; must not exist or be empty).

    Args:
        dest: the directory to fill.
        busybox: the static busybox binary to copy; found on the host by default.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile, containerlib
        >>> root = busybox_rootfs(tempfile.mkdtemp() + "/bb")
        >>> (root / "bin" / "sh").is_symlink()
        True
    """
    source = busybox or find_static_busybox()
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(17, f"rootfs directory {str(root)!r} is not empty")
    applets = subprocess.run(
        [source, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".bb-") as tmp:
        t = Path(tmp)
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "run"):
            (t / d).mkdir()
        (t / "tmp").chmod(0o1777)
        shutil.copy2(source, t / "bin" / "busybox")
        for name in applets:
            if name != "busybox" and "/" not in name:
                (t / "bin" / name).symlink_to("busybox")
        (t / "etc" / "passwd").write_text(_PASSWD)
        (t / "etc" / "group").write_text(_GROUP)
        for entry in t.iterdir():
            entry.rename(root / entry.name)
    return root
