"""Detached starts: from the call to a container running in the background, as
``docker run -d``.

Beside containerlib's ``Container.start(["sleep", "600"], detach=True)`` (its keeper is
forked from the spawner; the call returns once the container runs), ``podman run -d
--rootfs`` (with runc: crun 1.8 refuses this hybrid host; no network; as root) and
``runc run -d`` (a whole runc process, runc's own default spec), all on the same busybox
root. Stopping and
removing each container is not timed. The runs alternate between the three, in rounds,
so that all share the machine's conditions. Written to docs/benchmarks-detached.md.

Run as root from the repository: ``python benchmarks/detached.py`` (``--runs N``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-detached.md"
QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def measure(rootfs: Path, work: Path, runs: int, rounds: int) -> dict[str, list[float] | str]:
    times: dict[str, list[float] | str] = {"containerlib `start(detach=True)`": []}
    image = Image.from_rootfs(rootfs)
    podman = [
        "podman", "--root", str(work / "p-root"), "--runroot", str(work / "p-run"),
        "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc",
    ]  # fmt: skip
    runc = ["runc", "--root", str(work / "runc-state")]
    bundle = work / "bundle"
    _make_bundle(bundle, rootfs)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["sleep", "600"]
    (bundle / "config.json").write_text(json.dumps(config))
    times["podman run -d (runc)"] = (
        [] if shutil.which("podman") else "skipped: podman is not installed"
    )
    times["runc run -d"] = [] if shutil.which("runc") else "skipped: runc is not installed"
    n = [0]

    def clib() -> Callable[[], None]:
        box = Container(image).start(["sleep", "600"], detach=True)
        return lambda: box.remove(force=True)

    def podman_run() -> Callable[[], None]:
        # Root here may not raise hard rlimits (no CAP_SYS_RESOURCE); podman's defaults would.
        done = subprocess.run(
            [*podman, "run", "-d", "--network", "none", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=4096:4096", "--rootfs", str(rootfs), "sleep", "600"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        cid = done.stdout.strip()
        return lambda: subprocess.run([*podman, "rm", "-f", "-t", "0", cid], check=False, **QUIET)

    def runc_run() -> Callable[[], None]:
        n[0] += 1
        cid = f"clib-bench-detached-{os.getpid()}-{n[0]}"
        subprocess.run([*runc, "run", "-d", "--bundle", str(bundle), cid], check=True, **QUIET)
        return lambda: subprocess.run([*runc, "delete", "--force", cid], check=False, **QUIET)

    ways = [
        ("containerlib `start(detach=True)`", clib),
        ("podman run -d (runc)", podman_run),
        ("runc run -d", runc_run),
    ]
    try:
        for name, start in ways:  # an untimed warm-up run of each
            if isinstance(times[name], list):
                start()()
        per_round = max(1, runs // rounds)
        for _ in range(rounds):
            for name, start in ways:
                bucket = times[name]
                if not isinstance(bucket, list):
                    continue
                for _ in range(per_round):
                    t = time.perf_counter()
                    stop = start()
                    bucket.append(time.perf_counter() - t)
                    stop()
    finally:
        if shutil.which("podman"):
            subprocess.run([*podman, "rm", "--all", "--force"], check=False, **QUIET)
            subprocess.run([*podman, "system", "reset", "--force"], check=False, **QUIET)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed runs each (40)")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("detached.py needs root", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    # In /tmp: podman refuses a run root of more than 50 characters.
    with tempfile.TemporaryDirectory(prefix="clib-bench-d-", dir="/tmp") as tmp:
        work = Path(tmp)
        rootfs, _how = build_rootfs(work / "rootfs")
        # Detached containers' state in the run's own directory, not the host's.
        os.environ["CONTAINERLIB_RUN_ROOT"] = str(work / "run")
        results = measure(rootfs, work, args.runs, rounds=10)
    lines = page_header(
        "Detached starts", "detached.py", __doc__, started,
        f"load average {load:.2f} at the start, {args.runs} runs each",
    )  # fmt: skip
    lines += latency_rows(results, digits=1)
    lines += [
        "",
        "containerlib's figure includes making the container's state directory and its",
        "keeper; podman's and runc's are whole processes (podman also starts conmon).",
    ]
    write_page(lines, DOCS, write=not args.no_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
