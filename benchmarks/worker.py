"""A timing loop in a process of its own, driven by ``run.py`` over a pipe.

Two cases cannot be timed in the benchmark's main process: containerlib in a caller that
holds 1 GiB of touched memory (the main process must stay small for the other cases), and
crun, which on a hybrid cgroup host must run in a private mount namespace. ``run.py``
starts this module for them and asks it for batches of timed runs, so that those cases are
interleaved with the others as if they ran in the main process.

Protocol, one JSON object a line: the worker sends ``{"ready": true, "rss_kib": N}`` after
its warm-up run (or ``{"error": "..."}``); then, for each ``{"runs": N}`` it reads, it sends
``{"times": [seconds, ...]}`` (or ``{"error": "..."}``). It exits at end of input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from runners import CommandRunner, ContainerlibRunner, Runner, rss_kib, time_runs

PAGE = 4096


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # The pipe to run.py is kept on a private descriptor; anything else that writes to
    # stdout (a library, a child process) goes to stderr instead of into the protocol.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    ballast = _touched_ballast(args.ballast_mib) if args.kind == "containerlib" else b""
    try:
        runner = _make_runner(args)
    except Exception as exc:
        _send(channel, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _send(channel, {"ready": True, "rss_kib": rss_kib()})
    try:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                times = time_runs(runner, int(request["runs"]))
            except Exception as exc:
                _send(channel, {"error": f"{type(exc).__name__}: {exc}"})
                return 1
            _send(channel, {"times": times})
    except KeyboardInterrupt:
        return 130
    # Keep the ballast alive, and visibly so, until the last timed run has ended.
    del ballast
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = parser.add_subparsers(dest="kind", required=True)
    clib = kinds.add_parser("containerlib", help="containerlib in this process")
    clib.add_argument("--rootfs", type=Path, required=True)
    clib.add_argument("--limits", action="store_true", help="mem=512M, pids=64")
    clib.add_argument("--no-seccomp", action="store_true", help="seccomp(None)")
    clib.add_argument("--userns", action="store_true", help="userns() with the default maps")
    clib.add_argument("--ballast-mib", type=int, default=0, help="memory to touch first")
    command = kinds.add_parser("command", help="an outside program; {id} is a unique id")
    command.add_argument("--id-prefix", default="bench")
    command.add_argument("argv", nargs="+")
    return parser.parse_args(argv)


def _make_runner(args: argparse.Namespace) -> Runner:
    if args.kind == "containerlib":
        return ContainerlibRunner(
            args.rootfs, limits=args.limits, seccomp=not args.no_seccomp, userns=args.userns
        )
    runner = CommandRunner(args.argv, args.id_prefix)
    runner.run_once()  # the warm-up run, as for every case
    return runner


def _touched_ballast(mib: int) -> bytearray:
    """``mib`` MiB that are really resident: one byte written in every page."""
    ballast = bytearray(mib << 20)
    for offset in range(0, len(ballast), PAGE):
        ballast[offset] = 1
    return ballast


def _send(channel: TextIO, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")


if __name__ == "__main__":
    sys.exit(main())
