"""What cgroups cost a container: setup and teardown, and reading the figures.

Two measurements, written to docs/benchmarks-cgroups.md:

1. The cgroup work of one container with the driver this host gets from ``probe()``:
   make the cgroup (with the limits of the row), move a process in, remove it. The
   process is a ``sleep`` started for the purpose; its start is not timed.
2. Reading a running container's figures: ``RunningContainer.stats()`` a thousand times,
   beside ``runc events --stats`` (one process a read, as a user of runc pays) on a runc
   container running the same ``sleep`` on the same busybox root.

Run as root from the repository: ``python benchmarks/cgroups.py`` (``--reads N``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cases import _make_bundle
from report import latency_rows, page_header, write_page
from rootfs import build_rootfs

from containerlib import Container, Image
from containerlib.linux.cgroups import CgroupLimits, probe

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-cgroups.md"
PARENT = f"containerlib/bench-{os.getpid()}"

_MEM = 512 << 20
ROWS: list[tuple[str, CgroupLimits]] = [
    ("no limits", CgroupLimits()),
    ("memory and pids (`mem=512M pids=64`)", CgroupLimits(memory=_MEM, pids=64)),
    (
        "+ CPU quota (`cpus=1.5`)",
        CgroupLimits(memory=_MEM, pids=64, cpu_quota=150000, cpu_period=100000),
    ),
    (
        '+ cpuset (`cpuset_cpus="0"`)',
        CgroupLimits(memory=_MEM, pids=64, cpu_quota=150000, cpu_period=100000,
                     cpuset_cpus="0", cpuset_mems="0"),
    ),
]  # fmt: skip


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def setup_teardown(runs: int) -> list[tuple[str, float, float, float]]:
    """(row, create ms, join ms, destroy ms), medians over ``runs``."""
    driver = probe()
    out = []
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        for name, limits in ROWS:
            create, join, destroy = [], [], []
            for i in range(runs):
                t0 = time.perf_counter()
                cg = driver.create(f"{PARENT}/c{i}", limits)
                t1 = time.perf_counter()
                for path in cg.procs_files():
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.write(fd, str(sleeper.pid).encode())
                    finally:
                        os.close(fd)
                t2 = time.perf_counter()
                # Out again (into the parent), as a container's processes leave by dying.
                for path in cg.procs_files():
                    parent = os.path.join(os.path.dirname(os.path.dirname(path)), "cgroup.procs")
                    fd = os.open(parent, os.O_WRONLY)
                    try:
                        os.write(fd, str(sleeper.pid).encode())
                    finally:
                        os.close(fd)
                t3 = time.perf_counter()
                cg.destroy()
                t4 = time.perf_counter()
                create.append(t1 - t0)
                join.append(t2 - t1)
                destroy.append(t4 - t3)
            out.append((name, _median_ms(create), _median_ms(join), _median_ms(destroy)))
    finally:
        sleeper.kill()
        sleeper.wait()
        driver.remove_parents(f"{PARENT}/c0")
    return out


def _time(fn: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def stats_reads(rootfs: Path, work: Path, reads: int) -> dict[str, list[float] | str]:
    out: dict[str, list[float] | str] = {}
    with (
        Container(Image.from_rootfs(rootfs)).limit(mem="512M", pids=64).start(["sleep", "600"]) as c
    ):
        c.stats()
        out["containerlib `RunningContainer.stats()`"] = _time(c.stats, reads)
        c.kill()
    if not shutil.which("runc"):
        out["runc events --stats"] = "skipped: runc is not installed"
        return out
    bundle = work / "bundle"
    _make_bundle(bundle, rootfs)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["sleep", "600"]
    config["linux"]["resources"]["memory"] = {"limit": 512 << 20}
    config["linux"]["resources"]["pids"] = {"limit": 64}
    (bundle / "config.json").write_text(json.dumps(config))
    runc = ["runc", "--root", str(work / "runc-state")]
    cid = f"clib-bench-{os.getpid()}"
    subprocess.run(
        [*runc, "run", "-d", "--bundle", str(bundle), cid],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        n = max(1, reads // 5)  # a process each: fewer reads, the same median
        out["runc events --stats"] = _time(
            lambda: subprocess.run(
                [*runc, "events", "--stats", cid], check=True, capture_output=True
            ),
            n,
        )
    finally:
        subprocess.run([*runc, "delete", "--force", cid], check=False, capture_output=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="cgroups made a row")
    parser.add_argument("--reads", type=int, default=1000, help="stats() reads")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("cgroups.py needs root", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    rows = setup_teardown(args.runs)
    with tempfile.TemporaryDirectory(prefix="containerlib-bench-cgroups-") as tmp:
        work = Path(tmp)
        rootfs, _how = build_rootfs(work / "rootfs")
        reads = stats_reads(rootfs, work, args.reads)
    driver = type(probe()).__name__
    lines = page_header(
        "What cgroups cost", "cgroups.py", __doc__, started, f"driver `{driver}`, "
        f"{args.runs} cgroups a row, {args.reads} reads",
    )  # fmt: skip
    lines += [
        "## Setup and teardown of one container's cgroup (medians)",
        "",
        "| limits | make | move a process in | remove | total |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, create, join, destroy in rows:
        total = create + join + destroy
        lines.append(
            f"| {name} | {create:.3f} ms | {join:.3f} ms | {destroy:.3f} ms | {total:.3f} ms |"
        )
    lines += [
        "",
        "A container given no id does the first two ahead of time (the spawner's ready",
        "cgroup, see docs/design.md) for memory, pids, devices, blkio and the cgroup2 directory;",
        "only the removal is on the way to its exit status. The cpu and cpuset hierarchies are",
        "joined when the container starts, if it asks for those limits.",
        "",
        "## Reading a running container's figures",
        "",
        *latency_rows(reads, digits=3, ratio=False),
    ]
    runc = reads.get("runc events --stats")
    first = next(iter(reads.values()))
    base = _median_ms(first) if isinstance(first, list) else None
    if base and isinstance(runc, list):
        lines += ["", f"`runc events --stats` takes {_median_ms(runc) / base:.0f}x as long a read."]
    write_page(lines, DOCS, write=not args.no_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
