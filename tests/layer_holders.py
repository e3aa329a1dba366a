"""Holding cached layers from another process, as a running container's owner does: the
locks are the other process's, so a prune here meets them as it would a container's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_HOLD = """
import sys
from containerlib.image.cache import LayerCache
with LayerCache(sys.argv[1]).hold(sys.argv[2:]):
    print("held", flush=True)
    sys.stdin.read()
"""


def hold_elsewhere(children: list[subprocess.Popen[str]], root: Path, *layers: str) -> None:
    """Hold ``layers`` (diff IDs or layer directories) of the cache at ``root`` from a new
    process, added to ``children``; returns once they are held."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root), *layers],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    children.append(child)
    assert child.stdout is not None
    assert child.stdout.readline() == "held\n"


def release(child: subprocess.Popen[str]) -> None:
    """End a holder and wait for it: its locks are gone when it is."""
    child.communicate(timeout=60)
