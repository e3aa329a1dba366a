"""What the sample's tests share: the server's command, and talking to it."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from containerlib import DetachedContainer, RunningContainer

PAGE = "hello from busybox"
SERVE = (
    f"mkdir -p /www && echo {PAGE} > /www/index.html && echo httpd starting && "
    "exec httpd -f -vv -p 8080 -h /www"
)


def get(box: RunningContainer | DetachedContainer, path: str = "/") -> str:
    """GET ``path`` from the container's published port 8080."""
    port = box.ports[0].host_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return answer.read().decode()


def note(name: str, text: str) -> None:
    """Write ``text`` to the file ``name`` in $SAMPLE_NOTES, for ../test_plugin.py."""
    folder = os.environ.get("SAMPLE_NOTES")
    if folder:
        path = Path(folder) / name
        with path.open("a") as f:
            f.write(text + "\n")
