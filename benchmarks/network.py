"""Networking: what a bridge adds to a container's start, and how fast bytes reach a
server in a container through a published port and at the container's own address.

Start latency: ``Container(image).network("none").run(["true"])`` beside
``.network("bridge")`` (a veth pair on the host bridge ``clib0`` and a leased address),
and the same with ``podman run --rm --network none`` and ``--network bridge`` (netavark's
``podman0``; with ``--rootfs`` and runc, as in benchmarks/detached.py). A container that
is alone on its bridge makes the bridge and removes it again, with both tools; the rows
"bridge already up" have another container on the bridge meanwhile, as beside a running
service. runc, crun and bubblewrap make no bridge of their own (their users wire one with
CNI plugins), so podman is the peer here; their starts without a network are in
docs/benchmarks.md.

Starts at once: the bridge starts again (bridge already up), from several processes at
once, each starting containers one after another, as the workers of ``pytest -n``.

Throughput: the host sends N MiB over one TCP connection to a server in a container
(busybox ``nc -ll -e`` hands each connection to ``dd of=/dev/null bs=1M
iflag=fullblock``, which reads until the sender's half-close and then answers with its
record counts); a run is timed from the connect to that answer, and the answer is checked
to hold every byte. The sender is a Python process of its own writing 1 MiB at a time. The
paths: the container's bridge address (the kernel's veth and bridge only), its port
published on 127.0.0.1 (containerlib: the proxy thread in the calling process; podman:
netavark's DNAT rules), and the same server on the host's loopback, for reference.

The whole run happens in a network namespace and a mount namespace of its own (unshare(2)),
so that the bridges, firewall rules and sysctls that both tools make are gone with it and
never meet the host's or another run's. The cases alternate in rounds, so that all share
the machine's conditions. Written to docs/benchmarks-network.md.

Run as root from the repository: ``python benchmarks/network.py`` (``--runs N``,
``--transfers N``, ``--mib N``, ``--procs N``; ``--only throughput`` or ``--only starts``
for one part, ``--no-podman`` to leave podman out, ``--no-docs`` to leave the page as it
is).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from namespaces import enter_private_namespaces
from report import latency_rows, page_header, throughput_rows, write_page
from rootfs import build_rootfs

from containerlib import Container, Image

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-network.md"
# Root here may not raise hard rlimits (no CAP_SYS_RESOURCE); podman's defaults would.
PODMAN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
PORT = 5201
#: The server: each connection goes to a dd that reads it to the end and answers.
SINK = "dd of=/dev/null bs=1M iflag=fullblock 2>&1"
SERVER = ["nc", "-ll", "-p", str(PORT), "-e", "sh", "-c", SINK]

# The sender: one line "HOST PORT MIB" in, one JSON line [seconds, answer or error] out.
SENDER = r"""
import json, socket, sys, time
chunk = bytes(1 << 20)
for line in sys.stdin:
    host, port, mib = line.split()
    try:
        t = time.perf_counter()
        with socket.create_connection((host, int(port)), timeout=60) as s:
            for _ in range(int(mib)):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while data := s.recv(4096):
                answer += data
        out = [time.perf_counter() - t, answer.decode(errors="replace")]
    except OSError as e:
        out = [None, f"{host}:{port}: {e}"]
    print(json.dumps(out), flush=True)
"""

Times = dict[str, list[float] | str]

NETWORKS = ("none", "bridge", "bridge, already up")
#: The start cases' rows, by tool and network.
START_NAMES = {
    ("containerlib", "none"): 'containerlib `network("none")`',
    ("containerlib", "bridge"): 'containerlib `network("bridge")`',
    ("containerlib", NETWORKS[2]): 'containerlib `network("bridge")`, bridge already up',
    ("podman", "none"): "podman `--network none`",
    ("podman", "bridge"): "podman `--network bridge`",
    ("podman", NETWORKS[2]): "podman `--network bridge`, bridge already up",
}


def _quiet(argv: list[str], *, check: bool = False) -> None:
    subprocess.run(argv, check=check, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip


def private_network() -> None:
    """Move this process into a new network namespace with its loopback up, and a new
    mount namespace whose mounts do not propagate to the host's, with an empty tmpfs on
    /run (podman's netns files, runc's and netavark's state). Whatever the run makes in
    them goes when its last process ends.
    """
    enter_private_namespaces("network.py", ("/run",))


def podman_base(work: Path) -> list[str]:
    """podman with its storage, state and network configuration under ``work``."""
    return [
        "podman", "--root", str(work / "p-root"), "--runroot", str(work / "p-run"),
        "--tmpdir", str(work / "p-tmp"), "--network-config-dir", str(work / "p-net"),
        "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc",
    ]  # fmt: skip


def _podman_works(podman: list[str], rootfs: Path, network: str) -> str | None:
    """None if ``podman run --network NETWORK`` runs here, else why not (``podman`` is
    empty with ``--no-podman``)."""
    if not podman:
        return "skipped: --no-podman"
    if shutil.which("podman") is None:
        return "skipped: podman is not installed"
    done = subprocess.run(
        [*podman, "run", "--rm", "--network", network, *PODMAN_LIMITS, "--rootfs", str(rootfs),
         "true"],
        check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"failed: `podman run --network {network}`: {last}"
    return None


# -- start latency ---------------------------------------------------------------------------


def measure_starts(image: Image, rootfs: Path, podman: list[str], runs: int, rounds: int) -> Times:
    """Start-to-exit times of ``true`` on each network, with each tool."""

    def clib(network: Literal["none", "bridge"]) -> Callable[[], None]:
        box = Container(image).network(network)

        def run() -> None:
            result = box.run(["true"])
            if result.exit_code != 0:
                raise RuntimeError(f"containerlib network={network}: exit {result.exit_code}")

        return run

    def pm(network: str) -> Callable[[], None]:
        argv = [*podman, "run", "--rm", "--network", network, *PODMAN_LIMITS]
        argv += ["--rootfs", str(rootfs), "true"]
        return lambda: _quiet(argv, check=True)

    @contextlib.contextmanager
    def clib_neighbour() -> Iterator[None]:
        with Container(image).network("bridge").start(["sleep", "600"]):
            yield

    @contextlib.contextmanager
    def podman_neighbour() -> Iterator[None]:
        cid = subprocess.run(
            [*podman, "run", "-d", "--rm", "--network", "bridge", *PODMAN_LIMITS,
             "--rootfs", str(rootfs), "sleep", "600"],
            check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        ).stdout.strip()  # fmt: skip
        try:
            yield
        finally:
            _quiet([*podman, "rm", "-f", "-t", "0", cid])

    alone = contextlib.nullcontext
    up = "bridge, already up"
    ways: list[tuple[str, Callable[[], AbstractContextManager[object]], Callable[[], None]]] = [
        (START_NAMES["containerlib", "none"], alone, clib("none")),
        (START_NAMES["containerlib", "bridge"], alone, clib("bridge")),
        (START_NAMES["containerlib", up], clib_neighbour, clib("bridge")),
        (START_NAMES["podman", "none"], alone, pm("none")),
        (START_NAMES["podman", "bridge"], alone, pm("bridge")),
        (START_NAMES["podman", up], podman_neighbour, pm("bridge")),
    ]
    times: Times = {name: [] for name, _, _ in ways}
    for network in NETWORKS:
        why = _podman_works(podman, rootfs, network.split(",")[0])
        if why is not None:
            times[START_NAMES["podman", network]] = why
    for name, setup, run in ways:  # an untimed warm-up run of each
        if isinstance(times[name], list):
            with setup():
                run()
    rounds = max(1, min(rounds, runs))
    for i in range(rounds):
        # runs in all: the first rounds take one more each when rounds does not divide runs
        per_round = runs // rounds + (i < runs % rounds)
        for name, setup, run in ways:
            bucket = times[name]
            if not isinstance(bucket, list):
                continue
            with setup():
                for _ in range(per_round):
                    t = time.perf_counter()
                    run()
                    bucket.append(time.perf_counter() - t)
    return times


# -- starts at once -------------------------------------------------------------------------

# A process of its own that starts containers on the bridge one after another, as a test
# worker of pytest -n N does: argv TOOL N, with the image's root and podman's argv as JSON
# on stdin; out: the start-to-exit times, a JSON list.
STARTER = r"""
import json, subprocess, sys, time
tool, runs = sys.argv[1], int(sys.argv[2])
rootfs, podman, limits = json.loads(sys.stdin.read())
times = []
if tool == "containerlib":
    from containerlib import Container, Image
    box = Container(Image.from_rootfs(rootfs)).network("bridge")
    box.run(["true"])  # untimed: this process's spawner starts
    for _ in range(runs):
        t = time.perf_counter()
        if box.run(["true"]).exit_code != 0:
            sys.exit("containerlib: the container failed")
        times.append(time.perf_counter() - t)
else:
    argv = [*podman, "run", "--rm", "--network", "bridge", *limits, "--rootfs", rootfs, "true"]
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def measure_at_once(image: Image, rootfs: Path, podman: list[str], procs: int, runs: int) -> Times:
    """Start-to-exit times of ``true`` on a bridge that is up, from ``procs`` processes
    at once, ``runs`` each, with each tool."""
    results: Times = {}
    tools = ["containerlib", "podman"]
    why = _podman_works(podman, rootfs, "bridge") if podman else "skipped (--no-podman)"
    if why is not None:
        results[AT_ONCE_NAMES["podman"]] = why
        tools.remove("podman")
    for tool in tools:
        neighbour = ["sleep", "600"]
        holder = (
            Container(image).network("bridge").start(neighbour) if tool == "containerlib" else None
        )
        cid = None
        if tool == "podman":
            cid = subprocess.run(
                [*podman, "run", "-d", "--rm", "--network", "bridge", *PODMAN_LIMITS,
                 "--rootfs", str(rootfs), *neighbour],
                check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            ).stdout.strip()  # fmt: skip
        try:
            stdin = json.dumps([str(rootfs), podman, PODMAN_LIMITS])
            starters = [
                subprocess.Popen(
                    [sys.executable, "-c", STARTER, tool, str(runs)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(procs)
            ]
            times: list[float] = []
            for starter in starters:
                out, _ = starter.communicate(stdin)
                if starter.returncode != 0:
                    raise RuntimeError(f"{tool}: a starter process failed")
                times += json.loads(out)
            results[AT_ONCE_NAMES[tool]] = times
        finally:
            if holder is not None:
                holder.kill()
                holder.wait()
            if cid:
                _quiet([*podman, "rm", "-f", "-t", "0", cid])
    return results


# -- throughput ------------------------------------------------------------------------------


class Sender:
    """The sending process (``SENDER``): it times one transfer at a time."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SENDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, host: str, port: int, mib: int) -> float:
        """Send ``mib`` MiB to ``host:port``; the seconds from connect to the answer.

        Raises:
            RuntimeError: the transfer failed, or the server did not get every byte.
        """
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(f"{host} {port} {mib}\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sender ended (exit status {self._proc.wait()})")
        seconds, answer = json.loads(line)
        if seconds is None:
            raise RuntimeError(f"sending to {answer}")
        if f"{mib}+0 records in" not in answer:
            raise RuntimeError(f"{host}:{port} got less than {mib} MiB: {answer!r}")
        return float(seconds)

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=60)


def _wait_listening(host: str, port: int) -> None:
    """Wait until a server accepts on ``host:port`` (the probe's empty connection is
    served and forgotten)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((host, port), timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def measure_throughput(
    image: Image, rootfs: Path, podman: list[str], transfers: int, mib: int
) -> Times:
    """Seconds per ``mib`` MiB transfer on each path."""
    paths: dict[str, tuple[str, int] | str] = {}
    names = {
        "clib-ip": "containerlib container, at its bridge address",
        "clib-port": "containerlib container, through its published port (proxy)",
        "podman-ip": "podman container, at its bridge address",
        "podman-port": "podman container, through its published port (netavark DNAT)",
        "host": "no container: the host's loopback",
    }
    with contextlib.ExitStack() as stack:
        sender = Sender()
        stack.callback(sender.close)
        box = stack.enter_context(Container(image).network("bridge").publish(PORT).start(SERVER))
        if box.ip is None:
            raise RuntimeError("the containerlib container on the bridge has no address")
        _wait_listening(box.ip, PORT)
        paths["clib-ip"] = (box.ip, PORT)
        paths["clib-port"] = (box.ports[0].host_ip, box.ports[0].host_port)
        why = _podman_works(podman, rootfs, "bridge")
        if why is None:
            host_port = _free_port()
            cid = subprocess.run(
                [*podman, "run", "-d", "--rm", "--network", "bridge", *PODMAN_LIMITS,
                 "-p", f"127.0.0.1:{host_port}:{PORT}", "--rootfs", str(rootfs), *SERVER],
                check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            ).stdout.strip()  # fmt: skip
            stack.callback(_quiet, [*podman, "rm", "-f", "-t", "0", cid])
            address = subprocess.run(
                [*podman, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid],
                check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            _wait_listening(address, PORT)
            paths["podman-ip"] = (address, PORT)
            paths["podman-port"] = ("127.0.0.1", host_port)
        else:
            paths["podman-ip"] = paths["podman-port"] = why
        host_port = _free_port()
        server = subprocess.Popen(
            ["busybox", "nc", "-ll", "-p", str(host_port), "-e", "busybox", "sh", "-c",
             f"busybox {SINK}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(server.wait)
        stack.callback(server.kill)
        _wait_listening("127.0.0.1", host_port)
        paths["host"] = ("127.0.0.1", host_port)

        times: Times = {}
        for key, path in paths.items():  # an untimed warm-up transfer on each path
            if isinstance(path, str):
                times[names[key]] = path
                continue
            try:
                sender.send(*path, mib)
                times[names[key]] = []
            except RuntimeError as e:
                times[names[key]] = f"failed: {e}"
        for _ in range(transfers):
            for key, path in paths.items():
                bucket = times[names[key]]
                if isinstance(bucket, list) and not isinstance(path, str):
                    bucket.append(sender.send(*path, mib))
    return times


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the page --------------------------------------------------------------------------------


def _versions(podman: list[str]) -> str:
    found = []
    tools = [[*podman, "--version"], ["/usr/lib/podman/netavark", "--version"]] if podman else []
    for argv in (*tools, ["runc", "--version"]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        found.append(out.splitlines()[0].replace(" version", ""))
    return ", ".join(found)


#: The rows of starts from several processes at once, by tool.
AT_ONCE_NAMES = {
    "containerlib": 'containerlib `network("bridge")`',
    "podman": "podman `--network bridge`",
}


def _median_ms(times: list[float] | str) -> float | None:
    return statistics.median(times) * 1e3 if isinstance(times, list) and times else None


def compare_rows(starts: Times) -> list[str]:
    """A table of the start medians, tool beside tool and network beside network."""
    med = {key: _median_ms(starts[name]) for key, name in START_NAMES.items()}

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    def ratio(slow: float | None, fast: float | None, *, extra: bool = False) -> str:
        if slow is None or fast is None:
            return "-"
        return f"{slow / fast:.2f}x" + (f" ({slow - fast:+.1f} ms)" if extra else "")

    lines = [
        "| network | containerlib | podman | podman / containerlib |",
        "|---|---:|---:|---:|",
    ]
    for network in NETWORKS:
        clib, pm = med["containerlib", network], med["podman", network]
        lines.append(f"| {network} | {ms(clib)} | {ms(pm)} | {ratio(pm, clib)} |")
    for network in NETWORKS[1:]:
        cells = [
            ratio(med[tool, network], med[tool, "none"], extra=True)
            for tool in ("containerlib", "podman")
        ]
        lines.append(f"| {network} / none | {cells[0]} | {cells[1]} | |")
    return lines


def explain_starts() -> list[str]:
    """Where the bridge's time goes, for each tool (containerlib's NAT rules where this
    checkout makes them)."""
    nat = importlib.util.find_spec("containerlib.network.nat") is not None
    text = (
        "containerlib attaches a container from its spawner, with in-process netlink calls: "
        f"a lease, the bridge{' and its NAT rules (nftables, in-process)' if nat else ''} if "
        "it is missing, a veth pair, the address and route. When the container ends, before "
        "`run()` returns, it deletes the host end of the veth pair and, after the last "
        f"container, the bridge{' and the rules' if nat else ''}; deleting a network device "
        "waits for the kernel (RCU grace periods), which is much of the difference between "
        "a bridge that is already up and one made and removed for each run. podman runs "
        "netavark, a process of its own that also writes firewall rules, to set up and "
        "again to tear down."
    )
    return textwrap.wrap(text, 88)


def explain_throughput() -> list[str]:
    """How each path carries the bytes."""
    text = (
        "At a bridge address the kernel alone carries the bytes, through the veth pair. "
        "containerlib publishes a port with a proxy: a thread of the calling process accepts "
        "on the host and relays each connection to a socket it made in the container's "
        "network namespace (this needs neither root nor NAT rules, and serves "
        '`network("none")` the same way). The relay moves the bytes with splice(2) through '
        "a pipe for each direction, so they stay in the kernel (page references move from "
        "one socket to the pipe and on to the other socket) and the thread only wakes to "
        "pass them on. podman (as root) publishes with DNAT rules, so its published port "
        "stays in the kernel's packet path. On a shared machine the rates vary from one "
        "transfer to the next; the slow end column shows how far."
    )
    return textwrap.wrap(text, 88)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed starts each (40)")
    parser.add_argument("--transfers", type=int, default=10, help="timed transfers each (10)")
    parser.add_argument("--mib", type=int, default=256, help="MiB a transfer (256)")
    parser.add_argument(
        "--procs", type=int, default=3, help="processes starting containers at once (3)"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    parser.add_argument(
        "--only", choices=("starts", "throughput"), help="measure one part only (the page "
        "then has that part alone)",
    )  # fmt: skip
    parser.add_argument(
        "--no-podman", action="store_true", help="leave podman out (its rows say skipped)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("network.py needs root", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    private_network()
    # In /tmp: podman refuses a run root of more than 50 characters.
    with tempfile.TemporaryDirectory(prefix="clib-bench-n-", dir="/tmp") as tmp:
        work = Path(tmp)
        rootfs, _how = build_rootfs(work / "rootfs")
        # Containers' state and leases in the run's own directory, not the host's.
        os.environ["CONTAINERLIB_RUN_ROOT"] = str(work / "run")
        image = Image.from_rootfs(rootfs)
        podman = [] if args.no_podman else podman_base(work)
        versions = _versions(podman)
        starts: Times | None = None
        at_once: Times | None = None
        flows: Times | None = None
        try:
            if args.only in (None, "starts"):
                starts = measure_starts(image, rootfs, podman, args.runs, rounds=10)
                each = max(1, args.runs // 2)
                at_once = measure_at_once(image, rootfs, podman, args.procs, each)
            if args.only in (None, "throughput"):
                flows = measure_throughput(image, rootfs, podman, args.transfers, args.mib)
        finally:
            if podman and shutil.which("podman"):
                _quiet([*podman, "rm", "--all", "--force"])
                _quiet([*podman, "system", "reset", "--force"])
    elapsed = (datetime.now(UTC) - started).total_seconds()
    lines = page_header(
        "Networking", "network.py", __doc__, started,
        f"load average {load:.2f} at the start, {versions}, {elapsed:.0f} s in all",
    )  # fmt: skip
    if args.only is not None:
        lines += [f"This run measured the {args.only} part only (`--only {args.only}`).", ""]
    if starts is not None:
        lines += [
            "## Start latency",
            "",
            f"`true`, {args.runs} runs each; ratios to the first row.",
            "",
        ]
        lines += latency_rows(starts, digits=1)
        lines += ["", "Medians side by side:", "", *compare_rows(starts), ""]
        lines += [*explain_starts(), ""]
    if at_once is not None:
        lines += ["## Starts from several processes at once", ""]
        lines += textwrap.wrap(
            f"`true` on a bridge that is up, from {args.procs} processes at once (as the "
            "workers of `pytest -n` do), each starting one container after another; every "
            "start's time counts. Each containerlib process has a spawner of its own; what "
            "they share is the network's lock and the kernel's (RTNL), which is why a "
            "container's veth pair is deleted outside the lock.",
            88,
        )
        lines += [""]
        lines += latency_rows(at_once, digits=1)
        lines += [""]
    if flows is not None:
        lines += [
            "## Throughput",
            "",
            f"{args.mib} MiB a transfer over one TCP connection, {args.transfers} transfers "
            "each; MB/s is 10^6 bytes a second; ratios to the first row.",
            "",
        ]
        lines += throughput_rows(flows, mib=args.mib)
        lines += ["", *explain_throughput()]
    write_page(lines, DOCS, write=not args.no_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
