"""The busybox root file system that every case starts its container on.

containerlib ships a builder (``containerlib.image.builtin.busybox_rootfs``); while it does
not exist, or on an older checkout, the same tree is built here from the host's static
busybox (Debian: ``apt-get install busybox-static``).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["build_rootfs"]

_DIRS = ("bin", "proc", "sys", "dev", "tmp", "etc")


def build_rootfs(dest: Path) -> tuple[Path, str]:
    """Build the root file system in ``dest`` (which must not exist yet).

    Returns:
        the root's path and a sentence saying how it was built, for the report.
    """
    try:
        builtin = importlib.import_module("containerlib.image.builtin")
    except ImportError:
        builtin = None
    if builtin is not None and hasattr(builtin, "busybox_rootfs"):
        returned = builtin.busybox_rootfs(dest)
        root = Path(returned) if isinstance(returned, str | os.PathLike) else dest
        return root, "built by `containerlib.image.builtin.busybox_rootfs`"
    busybox = _host_busybox()
    _build_from_busybox(dest, busybox)
    return dest, f"built by benchmarks/rootfs.py from the host's `{busybox}`"


def _host_busybox() -> Path:
    found = shutil.which("busybox")
    if found is None:
        raise SystemExit("busybox not found: apt-get install -y busybox-static")
    return Path(found).resolve()


def _build_from_busybox(dest: Path, busybox: Path) -> None:
    for name in _DIRS:
        (dest / name).mkdir(parents=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
