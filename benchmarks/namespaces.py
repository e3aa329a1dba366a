"""Running a benchmark in namespaces of its own, so that what its peers make (bridges,
firewall rules, sysctls, netns and state files) never meets the host's."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Sequence

from containerlib.linux import syscalls


def enter_private_namespaces(script: str, tmpfs: Sequence[str] = ("/run",)) -> None:
    """Move this process into a new network namespace with its loopback up, and a new
    mount namespace whose mounts do not propagate to the host's, with an empty tmpfs on
    each directory of ``tmpfs`` that exists (no mount point is made on the host).
    Whatever the run makes in them goes when its last process ends.

    Raises:
        SystemExit: a thread is already running (unshare(2) would move only this one).
    """
    if threading.active_count() != 1:
        raise SystemExit(f"{script} must unshare before any thread starts")
    syscalls.unshare(syscalls.CLONE_NEWNET | syscalls.CLONE_NEWNS)
    syscalls.mount(None, b"/", None, syscalls.MS_REC | syscalls.MS_PRIVATE, None)
    for path in tmpfs:
        if os.path.isdir(path):
            syscalls.mount(b"tmpfs", path.encode(), b"tmpfs", 0, b"mode=0755")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
