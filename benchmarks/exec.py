"""Exec latency: starting ``/bin/true`` in a running container and seeing it exit.

Beside containerlib's ``RunningContainer.exec(["/bin/true"])`` (and
``DetachedContainer.exec``, into a detached container), ``runc exec`` into a runc
container running the same ``sleep`` on the same busybox root (one process a run, as a
user of runc pays; runc's own default spec). The runs alternate between the two, in
rounds, so that both share the machine's conditions. Written to docs/benchmarks-exec.md.

Run as root from the repository: ``python benchmarks/exec.py`` (``--runs N``).
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

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-exec.md"


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(rootfs: Path, work: Path, runs: int, rounds: int) -> dict[str, list[float] | str]:
    times: dict[str, list[float] | str] = {
        "containerlib `exec`": [],
        "containerlib `exec`, detached container": [],
    }
    runc = ["runc", "--root", str(work / "runc-state")]
    cid = f"clib-bench-exec-{os.getpid()}"
    have_runc = shutil.which("runc") is not None
    if have_runc:
        bundle = work / "bundle"
        _make_bundle(bundle, rootfs)
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["args"] = ["sleep", "600"]
        (bundle / "config.json").write_text(json.dumps(config))
        subprocess.run(
            [*runc, "run", "-d", "--bundle", str(bundle), cid],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times["runc exec"] = []
    else:
        times["runc exec"] = "skipped: runc is not installed"

    def runc_exec() -> None:
        subprocess.run([*runc, "exec", cid, "/bin/true"], check=True, capture_output=True)

    image = Image.from_rootfs(rootfs)
    detached = Container(image).start(["sleep", "600"], detach=True)
    try:
        with Container(image).start(["sleep", "600"]) as box:

            def clib_exec() -> None:
                if box.exec(["/bin/true"]).exit_code != 0:
                    raise RuntimeError("containerlib exec /bin/true failed")

            def clib_exec_detached() -> None:
                if detached.exec(["/bin/true"]).exit_code != 0:
                    raise RuntimeError("containerlib exec /bin/true (detached) failed")

            ways = [
                ("containerlib `exec`", clib_exec),
                ("containerlib `exec`, detached container", clib_exec_detached),
                ("runc exec", runc_exec),
            ]
            for name, fn in ways:  # the untimed warm-up run of each
                if isinstance(times[name], list):
                    fn()
            per_round = max(1, runs // rounds)
            for _ in range(rounds):
                for name, fn in ways:
                    bucket = times[name]
                    if isinstance(bucket, list):
                        bucket += [_timed(fn) for _ in range(per_round)]
            box.kill()
    finally:
        detached.remove(force=True)
        if have_runc:
            subprocess.run([*runc, "delete", "--force", cid], check=False, capture_output=True)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed runs each (200)")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("exec.py needs root", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="containerlib-bench-exec-") as tmp:
        work = Path(tmp)
        rootfs, _how = build_rootfs(work / "rootfs")
        # Detached containers' state in the run's own directory, not the host's.
        os.environ["CONTAINERLIB_RUN_ROOT"] = str(work / "run")
        results = measure(rootfs, work, args.runs, rounds=20)
    lines = page_header(
        "Exec latency", "exec.py", __doc__, started, f"load average {load:.2f} at the start, "
        f"{args.runs} runs each",
    )  # fmt: skip
    lines += latency_rows(results)
    lines += [
        "",
        "containerlib's exec is a request to its spawner, which starts `clib-init --exec`",
        "(it joins the container's cgroup and namespaces, then clones the command's process);",
        "`runc exec` is a whole runc process each time, which re-executes itself to join.",
        "Into a detached container, the request goes to the container's keeper process",
        "(docs/containers.md), which starts the same helper.",
    ]
    write_page(lines, DOCS, write=not args.no_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
