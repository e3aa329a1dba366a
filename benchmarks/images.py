"""Pulling and unpacking a 200 MB image, beside skopeo + umoci and GNU tar.

The image: five gzip layers (about 200 MB unpacked) cut from this host's own /usr (shared
libraries, /usr/share's many small files, programs, Python's standard library, headers),
built once as an OCI layout and kept in ``$CONTAINERLIB_BENCH_DIR`` (by default
``/var/tmp/containerlib-bench``), then pushed with skopeo to a docker-registry on 127.0.0.1
that this script starts. Each round times, interleaved, into fresh directories:

1. containerlib: ``pull()`` into an empty OCI layout, then ``LayerCache.ensure()`` (every
   blob verified, every layer unpacked and its diff ID checked);
2. ``skopeo copy docker://… oci:…`` then ``umoci unpack``, the same work with the usual tools;
3. unpacking alone, from the local blobs: containerlib's ``unpack_layer`` (which also hashes
   the tar stream for the diff ID), ``LayerCache.ensure`` from a local layout (also hashing
   each blob), and GNU ``tar -xzf`` as root (owners and modes kept, nothing verified): the
   floor;
4. a start of the cached image: ``Image.from_oci_layout`` when every layer is unpacked, for
   this image and for a one-layer busybox image (it must not grow with the image's size).

The page cache is not dropped: every case reads blobs the registry or the layout just
served, and writes into a fresh directory. After every case its directory is removed and
``sync`` run, untimed, so that no case pays for the previous one's writeback.

Run as root from the repository: ``python benchmarks/images.py`` (``--rounds N``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for tests.registry_server

from containerlib import Image  # noqa: E402
from containerlib.image.builtin import busybox_rootfs  # noqa: E402
from containerlib.image.cache import LayerCache  # noqa: E402
from containerlib.image.layers import unpack_layer  # noqa: E402
from containerlib.image.layout import host_platform, open_layout  # noqa: E402
from containerlib.image.registry import pull  # noqa: E402
from tests.registry_server import DOCKER_REGISTRY, docker_registry  # noqa: E402

DOCS = REPO / "docs" / "benchmarks-images.md"
RESULTS = REPO / "benchmarks" / "results"
BENCH_DIR = Path(os.environ.get("CONTAINERLIB_BENCH_DIR", "/var/tmp/containerlib-bench"))
# Bump when the recipe changes, so that an old cached image is built again.
RECIPE = "images-v2"
MB = 1_000_000
# (source directory under /, uncompressed budget in MB): about 200 MB in all.
LAYERS = [
    ("usr/lib/x86_64-linux-gnu", 60),
    ("usr/share", 50),
    ("usr/bin", 40),
    ("usr/lib/python3.11", 30),
    ("usr/include", 20),
]
REF = "bench"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _select(source: Path, budget: int) -> list[str]:
    """Paths (relative to /) under ``source``: its directories and symbolic links, and its
    files in sorted walk order as long as they fit in ``budget`` bytes."""
    chosen: list[str] = []
    taken = 0
    for top, dirs, files in os.walk(source):
        dirs.sort()
        chosen.append(os.path.relpath(top, "/"))
        for name in sorted(files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            if os.path.islink(path):
                chosen.append(os.path.relpath(path, "/"))
            elif os.path.isfile(path) and taken + st.st_size <= budget:
                chosen.append(os.path.relpath(path, "/"))
                taken += st.st_size
    return chosen


def _store_blob(layout: Path, path: Path) -> tuple[str, int]:
    digest = _sha256_file(path)
    final = layout / "blobs" / "sha256" / digest.partition(":")[2]
    path.rename(final)
    return digest, final.stat().st_size


def _write_json_blob(layout: Path, document: Any) -> dict[str, Any]:
    data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    (layout / "blobs" / "sha256" / digest.partition(":")[2]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _write_layout(layout: Path, tars: list[Path], cmd: list[str]) -> None:
    """An OCI layout named ``REF`` whose layers are the tar files ``tars`` (gzipped here)."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    layers, diff_ids = [], []
    for tar in tars:
        diff_ids.append(_sha256_file(tar))
        subprocess.run(["gzip", "-6", "-n", str(tar)], check=True)
        digest, size = _store_blob(layout, tar.with_name(tar.name + ".gz"))
        layers.append({"mediaType": GZIP, "digest": digest, "size": size})
    host = host_platform()
    config = _write_json_blob(
        layout,
        {
            "architecture": host.architecture,
            "os": host.os,
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": cmd},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
    )
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = _write_json_blob(
        layout,
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        },
    )
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["annotations"] = {"org.opencontainers.image.ref.name": REF}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def build_images(base: Path) -> tuple[Path, Path]:
    """The big image's and busybox's OCI layouts under ``base``, built unless cached."""
    big, small = base / RECIPE / "big", base / RECIPE / "busybox"
    if big.is_dir() and small.is_dir():
        return big, small
    work = base / RECIPE / f"building-{os.getpid()}"
    shutil.rmtree(base / RECIPE, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"building the benchmark images in {base / RECIPE} (once)", file=sys.stderr)
    tars = []
    for i, (source, budget) in enumerate(LAYERS):
        if not (Path("/") / source).is_dir():
            continue
        listing = work / f"layer{i}.list"
        listing.write_text("\0".join(_select(Path("/") / source, budget * MB)) + "\0")
        tar = work / f"layer{i}.tar"
        subprocess.run(
            ["tar", "--create", f"--file={tar}", "--directory=/", "--no-recursion",
             "--null", f"--files-from={listing}", "--numeric-owner", "--sort=none"],
            check=True,
        )  # fmt: skip
        tars.append(tar)
    _write_layout(work / "big", tars, ["/usr/bin/true"])
    busybox_rootfs(work / "bb-root")
    bb_tar = work / "busybox.tar"
    subprocess.run(
        ["tar", "--create", f"--file={bb_tar}", f"--directory={work / 'bb-root'}",
         "--numeric-owner", "."],
        check=True,
    )  # fmt: skip
    _write_layout(work / "busybox", [bb_tar], ["sh"])
    (work / "big").rename(big)
    (work / "busybox").rename(small)
    shutil.rmtree(work)
    return big, small


def _uncompressed_bytes(layout: Path) -> int:
    image = open_layout(layout, REF)
    total = 0
    for layer in image.layers:
        blob = layout / "blobs" / "sha256" / layer.digest.partition(":")[2]
        out = subprocess.run(
            f"gzip -dc {blob} | wc -c", shell=True, capture_output=True, text=True, check=True
        )
        total += int(out.stdout)
    return total


# -- the cases: each runs in an empty directory ``work`` and returns its timed parts ----------


def case_containerlib_pull(ref: str, host: str, work: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    pull(ref, work / "layout", insecure=[host])
    t1 = time.perf_counter()
    LayerCache(work / "cache").ensure(open_layout(work / "layout", ref.rpartition(":")[2]))
    t2 = time.perf_counter()
    return {"total": t2 - t0, "pull": t1 - t0, "unpack": t2 - t1}


def case_skopeo_umoci(ref: str, work: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
         f"oci:{work / 'oci'}:{REF}"],
        check=True,
    )  # fmt: skip
    t1 = time.perf_counter()
    subprocess.run(
        ["umoci", "unpack", "--image", f"{work / 'oci'}:{REF}", str(work / "bundle")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    t2 = time.perf_counter()
    return {"total": t2 - t0, "pull": t1 - t0, "unpack": t2 - t1}


def _blobs(layout: Path) -> list[tuple[Path, str]]:
    image = open_layout(layout, REF)
    return [
        (layout / "blobs" / "sha256" / d.digest.partition(":")[2], d.media_type)
        for d in image.layers
    ]


def case_unpack_layer(layout: Path, work: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    for i, (blob, media_type) in enumerate(_blobs(layout)):
        dest = work / str(i)
        dest.mkdir()
        unpack_layer(blob, dest, media_type)
    return {"total": time.perf_counter() - t0}


def case_cache_ensure(layout: Path, work: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    LayerCache(work / "cache").ensure(open_layout(layout, REF))
    return {"total": time.perf_counter() - t0}


def case_gnu_tar(layout: Path, work: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    for i, (blob, _) in enumerate(_blobs(layout)):
        dest = work / str(i)
        dest.mkdir()
        subprocess.run(
            ["tar", "-xzf", str(blob), "-C", str(dest), "--same-owner", "--same-permissions",
             "--numeric-owner"],
            check=True,
        )  # fmt: skip
    return {"total": time.perf_counter() - t0}


def cached_starts(layout: Path, cache: Path, runs: int) -> list[float]:
    Image.from_oci_layout(layout, REF, cache=cache)  # unpacks once, untimed
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        Image.from_oci_layout(layout, REF, cache=cache)
        times.append(time.perf_counter() - t)
    return times


def _in_fresh_dir(base: Path, run: Callable[[Path], dict[str, float]]) -> dict[str, float]:
    """Run a case in an empty directory under ``base``, removed after (untimed), and
    write back what it left in the page cache, so that the next case does not pay for it."""
    try:
        with tempfile.TemporaryDirectory(dir=base, prefix="run-") as tmp:
            return run(Path(tmp))
    finally:
        os.sync()


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return "missing"
    return out.splitlines()[0].strip() if out else "unknown"


def _med(times: list[float]) -> float:
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every case")
    parser.add_argument("--starts", type=int, default=30, help="cached starts an image")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("images.py needs root (owners of unpacked files)", file=sys.stderr)
        return 2
    missing = [t for t in ("skopeo", "umoci") if shutil.which(t) is None]
    if missing or DOCKER_REGISTRY is None:
        print(
            f"images.py needs skopeo, umoci and docker-registry; missing: "
            f"{', '.join(missing) or 'docker-registry'} (apt-get install skopeo umoci "
            "docker-registry)",
            file=sys.stderr,
        )
        return 2
    started = datetime.now(UTC)
    big, small = build_images(BENCH_DIR)
    unpacked = _uncompressed_bytes(big)
    compressed = sum(p.stat().st_size for p, _ in _blobs(big))
    n_layers = len(_blobs(big))
    work_base = BENCH_DIR / "work"
    work_base.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[dict[str, float]]] = {}
    with (
        tempfile.TemporaryDirectory(dir=work_base, prefix="registry-") as reg_dir,
        docker_registry(Path(reg_dir)) as host,
    ):
        ref = f"{host}/bench:1"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{big}:{REF}",
             f"docker://{ref}"],
            check=True,
        )  # fmt: skip
        cases: list[tuple[str, Callable[[Path], dict[str, float]]]] = [
            ("containerlib pull + unpack", lambda w: case_containerlib_pull(ref, host, w)),
            ("skopeo copy + umoci unpack", lambda w: case_skopeo_umoci(ref, w)),
            ("containerlib unpack_layer", lambda w: case_unpack_layer(big, w)),
            ("containerlib LayerCache.ensure (local)", lambda w: case_cache_ensure(big, w)),
            ("GNU tar -xzf", lambda w: case_gnu_tar(big, w)),
        ]
        for _, run in cases:  # one untimed warm-up each
            _in_fresh_dir(work_base, run)
        for r in range(args.rounds):
            for name, run in cases[r % len(cases) :] + cases[: r % len(cases)]:
                times.setdefault(name, []).append(_in_fresh_dir(work_base, run))
                print(f"round {r + 1}: {name}: {times[name][-1]['total']:.2f} s")
    with tempfile.TemporaryDirectory(dir=work_base, prefix="starts-") as tmp:
        starts = {
            f"{unpacked / MB:.0f} MB, {n_layers} layers": cached_starts(
                big, Path(tmp) / "c", args.starts
            ),
            "busybox, 1 layer": cached_starts(small, Path(tmp) / "c", args.starts),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"images-{started:%Y%m%dT%H%M%SZ}.json"
    raw.write_text(json.dumps({"times": times, "starts": starts}, indent=1))

    def med(name: str, part: str = "total") -> float:
        return _med([t[part] for t in times[name]])

    clib, peer = med("containerlib pull + unpack"), med("skopeo copy + umoci unpack")
    unpack, tar = med("containerlib unpack_layer"), med("GNU tar -xzf")
    start_big, start_small = (_med(v) for v in starts.values())
    lines = [
        "# Benchmarks: pulling and unpacking images",
        "",
        "<!-- Written by `python benchmarks/images.py`: rerun it rather than edit. -->",
        "",
        __doc__.split("\n\n", 1)[1].split("Run as root")[0].strip(),
        "",
        f"Last run: {started:%Y-%m-%d %H:%M} UTC, Linux {platform.release()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{_tool_version(['skopeo', '--version'])}, {_tool_version(['umoci', '--version'])}, "
        f"{_tool_version(['tar', '--version'])}, {args.rounds} rounds "
        f"(`python benchmarks/images.py --rounds {args.rounds}`). The image: {n_layers} "
        f"layers, {compressed / MB:.0f} MB compressed, {unpacked / MB:.0f} MB unpacked. Other "
        "work shared the machine; medians of few rounds are a guide, not a promise.",
        "",
        "## Pull and unpack (medians, seconds)",
        "",
        "| how | total | download | unpack | vs containerlib |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("containerlib pull + unpack", "skopeo copy + umoci unpack"):
        lines.append(
            f"| {name} | {med(name):.2f} | {med(name, 'pull'):.2f} | "
            f"{med(name, 'unpack'):.2f} | {med(name) / clib:.2f}x |"
        )
    lines += [
        "",
        "## Unpacking alone, from local blobs (medians)",
        "",
        "| how | seconds | MB/s unpacked | vs GNU tar |",
        "|---|---:|---:|---:|",
    ]
    for name in (
        "GNU tar -xzf",
        "containerlib unpack_layer",
        "containerlib LayerCache.ensure (local)",
    ):
        lines.append(
            f"| {name} | {med(name):.2f} | {unpacked / MB / med(name):.0f} | "
            f"{tar / med(name):.2f}x |"
        )
    lines += [
        "",
        f"## A start of a cached image (`Image.from_oci_layout`, {args.starts} runs)",
        "",
        "| image | median | p90 |",
        "|---|---:|---:|",
    ]
    for name, values in starts.items():
        p90 = sorted(values)[int(len(values) * 0.9)]
        lines.append(f"| {name} | {_med(values) * 1e3:.2f} ms | {p90 * 1e3:.2f} ms |")

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines += [
        "",
        "## Targets",
        "",
        f"- Pull and unpack faster than skopeo + umoci: {verdict(clib < peer)} "
        f"({clib:.2f} s against {peer:.2f} s).",
        f"- Unpacking at least 0.8x GNU tar's throughput: {verdict(tar / unpack >= 0.8)} "
        f"({tar / unpack:.2f}x).",
        f"- A cached start independent of the image's size: "
        f"{verdict(start_big < 2 * start_small + 0.002)} ({start_big * 1e3:.2f} ms for "
        f"{unpacked / MB:.0f} MB against {start_small * 1e3:.2f} ms for busybox).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_docs:
        DOCS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
