"""Start latency when starts come one at a time, with a pause before each.

``run.py`` starts containers back to back, which is how a benchmark loop runs but not how
a test suite or a script does: there, a start usually follows a quiet spell. Some costs
only show then (on this host, moving a process into a cgroup waits for an RCU grace period
after a quiet spell; see docs/design.md). This measures containerlib in-process (with
``mem=512M pids=64``, so that it makes a cgroup as runc does), ``runc run`` and ``bwrap``
with a pause before every start, interleaved, and writes docs/benchmarks-sporadic.md.

Run as root from the repository::

    python benchmarks/sporadic.py                 # 40 starts a case, 0.2 s apart
    python benchmarks/sporadic.py --runs 20 --pause 0.5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cases import _make_bundle
from rootfs import build_rootfs
from runners import CommandRunner, ContainerlibRunner, Runner

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-sporadic.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="starts a case")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds before each start")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("sporadic.py needs root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="containerlib-sporadic-") as tmp:
        work = Path(tmp)
        rootfs, _how = build_rootfs(work / "rootfs")
        bundle = work / "bundle"
        _make_bundle(bundle, rootfs)
        cases: dict[str, Runner] = {
            "containerlib, mem=512M pids=64": ContainerlibRunner(rootfs, limits=True)
        }
        if shutil.which("runc"):
            runc = ["runc", "--root", str(work / "runc-state"), "run", "--bundle", str(bundle)]
            cases["runc run"] = CommandRunner([*runc, "{id}"], "sporadic")
        if shutil.which("bwrap"):
            bwrap = ["bwrap", "--unshare-all", "--bind", str(rootfs), "/", "--proc", "/proc",
                     "--dev", "/dev", "/bin/true"]  # fmt: skip
            cases["bwrap"] = CommandRunner(bwrap, "sporadic")
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, runner in cases.items():
                time.sleep(args.pause)
                start = time.perf_counter()
                runner.run_once()
                times[name].append(time.perf_counter() - start)
    lines = [
        "| case | starts | median | p90 |",
        "|---|---:|---:|---:|",
    ]
    for name, xs in times.items():
        xs.sort()
        p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
        lines.append(
            f"| {name} | {len(xs)} | {statistics.median(xs) * 1000:.2f} ms | {p90 * 1000:.2f} ms |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_docs:
        DOCS.write_text(
            "# Start latency, one start at a time\n\n"
            "<!-- Written by `python benchmarks/sporadic.py`: rerun it rather than edit. -->\n\n"
            f"{__doc__.split(chr(10) + chr(10))[1]}\n\n"
            f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Linux {platform.release()}, "
            f"{os.cpu_count()} CPUs, {args.runs} starts a case with {args.pause} s before each, "
            "interleaved (`python benchmarks/sporadic.py "
            f"--runs {args.runs} --pause {args.pause}`).\n\n{table}\n"
        )
        print(f"report: {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
