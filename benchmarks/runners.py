"""One container start, and the timing loop around it.

The benchmark's main process and its worker processes (see ``worker.py``) use these same
classes, so every case is timed by the same code: ``time.perf_counter`` around one call
that starts a container running ``/bin/true`` and returns when it has exited.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

__all__ = [
    "CommandRunner",
    "ContainerlibRunner",
    "RunFailed",
    "Runner",
    "rss_kib",
    "time_runs",
]


class RunFailed(RuntimeError):
    """A container start did not end with exit code 0."""


class Runner(Protocol):
    def run_once(self) -> None:
        """Start one container running ``/bin/true`` and wait for it to exit."""


def time_runs(runner: Runner, n: int) -> list[float]:
    """Run ``runner`` ``n`` times; return each run's wall time in seconds."""
    times: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        runner.run_once()
        times.append(time.perf_counter() - start)
    return times


class CommandRunner:
    """Runs an outside program, e.g. ``runc run``, as a child process.

    ``{id}`` in an argument is replaced by a container id unique to this run, for runtimes
    that keep state per container.
    """

    def __init__(self, argv: Sequence[str], id_prefix: str) -> None:
        self.argv = list(argv)
        self._ids = (f"{id_prefix}-{os.getpid()}-{i}" for i in itertools.count())

    def run_once(self) -> None:
        container_id = next(self._ids)
        argv = [arg.replace("{id}", container_id) for arg in self.argv]
        done = subprocess.run(
            argv,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()
            raise RunFailed(f"{' '.join(argv)}: exit code {done.returncode}: {stderr}")


class ContainerlibRunner:
    """``Container(Image.from_rootfs(root)).run(["/bin/true"])`` in this process.

    Building it imports containerlib and does one untimed run, which starts containerlib's
    helper process (the spawner) so that the timed runs find it up.
    """

    def __init__(
        self, rootfs: Path, *, limits: bool, seccomp: bool = True, userns: bool = False
    ) -> None:
        # Imported here, not at the top: the crun worker uses this module without it.
        from containerlib import Container, Image

        container = Container(Image.from_rootfs(rootfs))
        if limits:
            container = container.limit(mem="512M", pids=64)
        if not seccomp:
            container = container.seccomp(None)
        if userns:
            container = container.userns()
        self.container = container
        self.run_once()

    def run_once(self) -> None:
        result = self.container.run(["/bin/true"])
        if result.exit_code != 0:
            stderr = bytes(result.stderr).decode(errors="replace").strip()
            raise RunFailed(f"containerlib run /bin/true: exit code {result.exit_code}: {stderr}")


def rss_kib() -> int:
    """This process's resident set size in KiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
