"""Container start latency: containerlib against runc, crun, bwrap, unshare and podman.

Every case starts a container running ``/bin/true`` on the same busybox root file system
and waits for it to exit. The cases are interleaved in rounds within this one process run,
so that they share the machine's conditions. Results: a table on stdout and in
docs/benchmarks.md, raw timings as JSON in benchmarks/results/.

Run as root from the repository::

    python benchmarks/run.py            # 200 runs a case
    python benchmarks/run.py --quick    # 30 runs a case
    python benchmarks/run.py --runs 50 --cases containerlib,runc --no-docs
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cases import WORKER, Case, Skip, make_cases
from report import CaseResult, Stats, evaluate_targets, render_markdown, table
from rootfs import build_rootfs
from runners import RunFailed

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "benchmarks" / "results"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if os.geteuid() != 0:
        print("run.py needs root: the cases create namespaces and cgroups", file=sys.stderr)
        return 2
    runs = 30 if args.quick else args.runs
    rounds = max(1, -(-runs // max(1, args.batch)))
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    cpu_start = _cpu_ticks()

    with tempfile.TemporaryDirectory(prefix="containerlib-bench-") as tmp:
        work = Path(tmp)
        # Searchable by others: runc's user-namespace case reaches the rootfs as the
        # namespace's root, host uid 524288 (containerlib opens it before it is that user).
        work.chmod(0o711)
        rootfs, rootfs_how = build_rootfs(work / "rootfs")
        cases = make_cases(rootfs, work)
        if args.cases:
            wanted = set(args.cases.split(","))
            unknown = wanted - {c.key for c in cases}
            if unknown:
                known = ", ".join(c.key for c in cases)
                print(f"unknown cases: {', '.join(sorted(unknown))} (known: {known})")
                return 2
            cases = [c for c in cases if c.key in wanted]
        names = {
            str(rootfs): "ROOT",
            str(work / "bundle"): "BUNDLE",
            str(work): "WORK",
            str(WORKER): "benchmarks/worker.py",
            sys.executable: "python",
            f"{Path(sys.executable).parent}/": "",  # the containerlib console script
        }
        results = _measure(cases, runs, rounds, names)
        versions = _versions(cases, rootfs)

    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "cgroups": _cgroup_mode(),
        "load_start": f"{load_start:.2f}",
        "load_end": f"{os.getloadavg()[0]:.2f}",
        "cpu_busy": f"{_busy_share(cpu_start, _cpu_ticks()):.0%}",
        "versions": versions,
        "rootfs": rootfs_how,
        "runs": runs,
        "rounds": rounds,
        "batch": -(-runs // rounds),
        "argv": shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "elapsed_s": time.monotonic() - started,
    }
    targets = evaluate_targets(results)

    json_path = _write_json(meta, results, targets)
    print()
    print(table(results))
    print()
    for target in targets:
        print(f"{target.verdict:>12}: {target.goal} ({target.detail})")
    for r in results:
        if r.status != "ok":
            print(f"{r.status:>12}: {r.title}: {r.note}")
    print(f"\nraw timings: {json_path}")
    if not args.no_docs:
        DOCS.write_text(render_markdown(meta, results, targets))
        print(f"report: {DOCS}")
        import plot  # the chart of the table just written

        plot.main([])
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200, help="timed runs a case (200)")
    parser.add_argument("--quick", action="store_true", help="30 runs a case")
    parser.add_argument(
        "--batch", type=int, default=5, help="runs a case does in a row before the next (5)"
    )
    parser.add_argument("--cases", help="comma-separated case keys (default: all)")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    return parser.parse_args(argv)


def _measure(
    cases: Sequence[Case], runs: int, rounds: int, names: dict[str, str]
) -> list[CaseResult]:
    results = {
        c.key: CaseResult(
            c.number, c.key, c.title, _symbolic(c.command, names), _symbolic(c.context, names)
        )
        for c in cases
    }
    with contextlib.ExitStack() as stack:
        active: list[Case] = []
        for case in cases:
            stack.callback(case.close)
            _progress(f"setting up {case.title}")
            try:
                case.setup()
            except Skip as exc:
                results[case.key].status = "skipped"
                results[case.key].note = _symbolic(str(exc), names)
                _progress(f"  skipped: {results[case.key].note}")
                continue
            results[case.key].info = case.info
            active.append(case)

        # Batches as even as they can be: 200 runs by 5 is 40 rounds of 5, 30 by 4 would be
        # 8 rounds: six of 4 and two of 3. Short batches spread bursts of load from other
        # processes over all cases alike.
        batches = [runs // rounds + (i < runs % rounds) for i in range(rounds)]
        for number, size in enumerate(batches):
            # Rotate the order every round, so that no case always follows the same one.
            shift = number % len(active) if active else 0
            for case in active[shift:] + active[:shift]:
                gc.collect()
                try:
                    results[case.key].times.extend(case.measure(size))
                except RunFailed as exc:
                    results[case.key].status = "failed"
                    results[case.key].note = _symbolic(str(exc), names)
                    active.remove(case)
            if (number + 1) % 10 == 0 or number + 1 == rounds:
                _progress(f"round {number + 1}/{rounds} done")
    return list(results.values())


def _write_json(meta: dict[str, Any], results: Sequence[CaseResult], targets: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"start-latency-{stamp}.json"
    cases = []
    for r in results:
        entry = dataclasses.asdict(r)
        stats: Stats | None = r.stats
        entry["stats_s"] = dataclasses.asdict(stats) if stats is not None else None
        entry["times_s"] = entry.pop("times")
        cases.append(entry)
    document = {
        "meta": meta,
        "cases": cases,
        "targets": [{**dataclasses.asdict(t), "verdict": t.verdict} for t in targets],
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def _versions(cases: Sequence[Case], rootfs: Path) -> list[str]:
    versions = [f"Python {platform.python_version()}", _containerlib_version()]
    busybox = rootfs / "bin" / "busybox"
    for case in cases:
        if case.version_argv:
            versions.append(_first_line([*case.version_argv]) or f"{case.key}: not installed")
    versions.append(_first_line([str(busybox)]).split(" multi-call")[0])
    return versions


def _containerlib_version() -> str:
    try:
        version = metadata.version("containerlib")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--", "containerlib"])
    tree = ", with uncommitted changes under containerlib/" if dirty else ""
    return f"containerlib {version} (commit {commit}{tree})"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    except OSError:
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from the first line of /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_share(start: tuple[int, int], end: tuple[int, int]) -> float:
    total = end[1] - start[1]
    return (end[0] - start[0]) / total if total else 0.0


def _cgroup_mode() -> str:
    """unified, hybrid or legacy, from the file systems mounted under /sys/fs/cgroup."""
    types: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount_point, fstype = fields[4], fields[fields.index("-") + 1]
        types[mount_point] = fstype
    if types.get("/sys/fs/cgroup") == "cgroup2":
        return "v2 (unified)"
    if types.get("/sys/fs/cgroup/unified") == "cgroup2":
        return "hybrid (v1 controllers, cgroup2 without controllers at /sys/fs/cgroup/unified)"
    return "v1 (legacy)"


def _symbolic(text: str, names: dict[str, str]) -> str:
    """``text`` with this run's scratch paths replaced by the names the report explains."""
    for path in sorted(names, key=len, reverse=True):
        text = text.replace(path, names[path])
    return text


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
