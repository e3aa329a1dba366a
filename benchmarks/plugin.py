"""The pytest plugin beside testcontainers-python and Docker: a whole pytest session that
starts and stops 100 short-lived containers.

Two generated pytest projects do the same thing in 100 tests: each test starts a busybox
container that runs ``echo hi N``, waits for it to end, checks its exit status and that
its output is ``hi N``, and removes it. One project uses containerlib's plugin (the
``containers`` and ``busybox_image`` fixtures); the other uses testcontainers-python's
``DockerContainer`` (``with_command``, ``start``, ``wait``, ``get_logs``, ``stop``)
against a Docker daemon. Both use the same busybox root file system: containerlib's
``busybox_image`` fixture builds it in each session (part of the session's time), and
the benchmark imports a tar of the same tree into Docker once (``docker import``), before
the timing. A third project, the same 100 tests without containers, shows what pytest
itself costs. Each session is a ``python -m pytest -q`` process of its own, timed from
spawn to exit; the sessions alternate in rounds, so that all share the machine's
conditions, after one untimed warm-up session of each with 5 tests.

The Docker daemon is Debian's ``docker.io`` (dockerd with the containerd and runc it
starts), started by the benchmark with its own data root, exec root, socket, pid file
and configuration, containers' cgroups under a parent of its own, and no iptables rules.
It runs with the whole benchmark in a network namespace and a mount namespace of their
own (unshare(2)), with an empty tmpfs on /run (containerd's shim sockets) and on
/etc/docker: its bridge, veth pairs, sysctls and mounts never meet the host's, and the
host's own Docker socket is out of sight. testcontainers' Ryuk reaper is disabled
(``TESTCONTAINERS_RYUK_DISABLED=true``): it would need an image of its own from a
registry, and ``with DockerContainer(...)`` removes every container anyway. As
testcontainers users get by default, Docker puts each container on its default bridge
(``docker0``), with a veth pair and an address; containerlib's default is no network
(``network("none")``), so a fourth project runs the testcontainers tests with
``network_mode="none"`` too. Written to docs/benchmarks-plugin.md.

Run as root from the repository: ``python benchmarks/plugin.py`` (``--containers N``,
``--rounds N``). It needs ``apt-get install -y docker.io busybox-static`` and ``pip
install testcontainers``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from namespaces import enter_private_namespaces
from report import page_header, write_page
from rootfs import build_rootfs

from containerlib.linux import syscalls

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks-plugin.md"
#: The Docker image both sides' containers run, imported from the busybox tree.
IMAGE = "clib-bench/busybox:latest"
WARMUP_TESTS = 5

SESSIONS = {
    "containerlib": "containerlib plugin (`containers` fixture)",
    "testcontainers": "testcontainers-python + Docker",
    "testcontainers-none": 'testcontainers-python + Docker, `network_mode="none"`',
    "pytest": "pytest alone (the same tests, no containers)",
}

TEST_CONTAINERLIB = '''\
"""{n} tests, each starting and removing one container with containerlib's plugin."""

import pytest

from containerlib import Container


@pytest.mark.parametrize("n", range({n}))
def test_echo(n, containers, busybox_image):
    box = containers.start(Container(busybox_image), ["echo", f"hi {{n}}"])
    assert box.wait().exit_code == 0
    assert box.logs() == f"hi {{n}}\\n".encode()
'''

TEST_TESTCONTAINERS = '''\
"""{n} tests, each starting and removing one container with testcontainers-python."""

import pytest
from testcontainers.core.container import DockerContainer


@pytest.mark.parametrize("n", range({n}))
def test_echo(n):
    box = DockerContainer("{image}").with_command(["echo", f"hi {{n}}"]){extra}
    with box:
        assert box.wait() == 0
        stdout, _ = box.get_logs()
        assert stdout == f"hi {{n}}\\n".encode()
'''

#: What the testcontainers-none project adds: no network, as containerlib's default.
NO_NETWORK = '.with_kwargs(network_mode="none")'

TEST_PYTEST = '''\
"""{n} tests like the others, without containers: what pytest itself costs."""

import pytest


@pytest.mark.parametrize("n", range({n}))
def test_echo(n):
    assert f"hi {{n}}\\n".encode() == b"hi " + str(n).encode() + b"\\n"
'''


def private_namespaces() -> None:
    """Move this process into a new network namespace with its loopback up, and a new
    mount namespace whose mounts do not propagate to the host's, with an empty tmpfs on
    /run and, where it exists, /etc/docker (dockerd's key.json). Whatever dockerd makes
    in them goes with the namespaces.
    """
    enter_private_namespaces("plugin.py", ("/run", "/etc/docker"))


# -- the Docker daemon -----------------------------------------------------------------------


class Dockerd:
    """Debian's dockerd, started with everything under ``work/docker`` and stopped by the
    pid it wrote; its containers' cgroups go under ``/clib-bench-docker-PID`` in every
    cgroup hierarchy, removed after it.

    Example:
        >>> with Dockerd(Path("/tmp/x")) as daemon:  # doctest: +SKIP
        ...     os.environ["DOCKER_HOST"] = daemon.host
    """

    def __init__(self, work: Path) -> None:
        self.dir = work / "docker"
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "docker.pid"
        self.log = self.dir / "dockerd.log"
        self.cgroup_parent = f"clib-bench-docker-{os.getpid()}"
        self.started_in = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The daemon's address, for ``DOCKER_HOST``."""
        return f"unix://{self.socket}"

    def __enter__(self) -> Dockerd:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise SystemExit("dockerd not found: apt-get install -y docker.io")
        self.dir.mkdir()
        config = self.dir / "daemon.json"
        config.write_text("{}\n")
        argv = [
            dockerd, "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
            "-H", self.host, "--pidfile", str(self.pidfile), "--config-file", str(config),
            "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--exec-opt", "native.cgroupdriver=cgroupfs",
            "--cgroup-parent", f"/{self.cgroup_parent}", "--oom-score-adjust=0",
        ]  # fmt: skip
        t = time.perf_counter()
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.perf_counter() - t
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        import docker  # type: ignore[import-untyped]

        deadline = time.monotonic() + 60
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self._proc.returncode}: {self._tail()}")
            if self.socket.exists():
                try:
                    with _client(self.host) as client:
                        client.ping()
                    return
                except docker.errors.DockerException:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer on {self.socket}: {self._tail()}")
            time.sleep(0.05)

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " / ".join(lines[-3:]) or "no log"

    def stop(self) -> None:
        """Stop the daemon (SIGTERM to the pid it wrote, SIGKILL after 30 s), then kill
        any process still running from its directory (containerd shims) and remove its
        cgroup parent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            pid = proc.pid
            with contextlib.suppress(OSError, ValueError):
                written = int(self.pidfile.read_text())
                if written != pid:
                    print(f"plugin.py: dockerd wrote pid {written}, started {pid}", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in processes_under(self.dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(self.dir)
        remove_cgroups(self.cgroup_parent)


def processes_under(folder: Path) -> list[int]:
    """The pids of the processes whose command line or executable names ``folder``: the
    ones this run started there (dockerd's containerd and its shims)."""
    needle = str(folder).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found


def _wait_gone(folder: Path) -> None:
    deadline = time.monotonic() + 10
    while (left := processes_under(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        print(f"plugin.py: processes left running from {folder}: {left}", file=sys.stderr)


def remove_cgroups(name: str) -> None:
    """Remove the (empty) cgroup ``/name`` and its children from every cgroup hierarchy
    mounted here, deepest first."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    roots = [m[4] for m in mounts if m[m.index("-") + 1] in ("cgroup", "cgroup2")]
    for root in roots:
        top = Path(root) / name
        if not top.is_dir():
            continue
        for path in sorted(top.glob("**/"), key=lambda p: -len(p.parts)):
            try:
                path.rmdir()
            except OSError as e:
                print(f"plugin.py: cgroup {path} left behind: {e}", file=sys.stderr)


def mounts_under(folder: Path) -> list[str]:
    """The mount points at or under ``folder`` in this mount namespace."""
    prefix = str(folder)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


@contextlib.contextmanager
def _client(host: str) -> Iterator[Any]:
    """A docker-py client of the daemon at ``host``, closed after use."""
    import docker

    client = docker.DockerClient(base_url=host, version="auto")
    try:
        yield client
    finally:
        client.close()


def import_image(host: str, rootfs: Path, work: Path) -> float:
    """Import ``rootfs`` into the daemon as :data:`IMAGE` (``docker import`` of a tar of
    it); returns the seconds it took."""
    tar = work / "busybox.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(rootfs, arcname=".")
    t = time.perf_counter()
    with _client(host) as client:
        repository, tag = IMAGE.rsplit(":", 1)
        client.api.import_image_from_file(str(tar), repository=repository, tag=tag)
        client.images.get(IMAGE)  # raises ImageNotFound if the import went wrong
    tar.unlink()
    return time.perf_counter() - t


def docker_facts(host: str) -> dict[str, str]:
    """The daemon's version, storage driver and cgroup driver, for the page."""
    with _client(host) as client:
        info = client.info()
        version = client.version()
    return {
        "version": str(version.get("Version", "?")),
        "api": str(version.get("ApiVersion", "?")),
        "storage": str(info.get("Driver", "?")),
        "cgroups": f"{info.get('CgroupDriver', '?')}, cgroup v{info.get('CgroupVersion', '?')}",
        "runtime": str(info.get("DefaultRuntime", "?")),
    }


# -- the sessions ----------------------------------------------------------------------------


def write_projects(work: Path, n: int) -> dict[str, Path]:
    """The three pytest projects, each a folder with a ``pytest.ini`` (so that pytest
    looks for no configuration above it) and ``test_echo.py``."""
    sources = {
        "containerlib": TEST_CONTAINERLIB.format(n=n),
        "testcontainers": TEST_TESTCONTAINERS.format(n=n, image=IMAGE, extra=""),
        "testcontainers-none": TEST_TESTCONTAINERS.format(n=n, image=IMAGE, extra=NO_NETWORK),
        "pytest": TEST_PYTEST.format(n=n),
    }
    projects = {}
    for key, source in sources.items():
        folder = work / f"project-{key}"
        folder.mkdir()
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "test_echo.py").write_text(source)
        projects[key] = folder
    return projects


def clib_cgroup_parent() -> str:
    """The cgroup the containerlib sessions' containers go under, in every hierarchy
    (removed at the end, so that the run leaves no cgroup behind)."""
    return f"clib-bench-plugin-{os.getpid()}"


def session_env(key: str, work: Path, docker_host: str) -> dict[str, str]:
    """The environment of a session: containerlib's state and images under ``work`` and
    its cgroups under :func:`clib_cgroup_parent`; Docker's address and Ryuk off for
    testcontainers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "TESTCONTAINERS_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["CONTAINERLIB_RUN_ROOT"] = str(work / "clib-run")
    env["CONTAINERLIB_DATA_ROOT"] = str(work / "clib-data")
    env["CONTAINERLIB_CGROUP_PARENT"] = clib_cgroup_parent()
    if key.startswith("testcontainers"):
        env["DOCKER_HOST"] = docker_host
        env["DOCKER_CONFIG"] = str(work / "docker-config")
        env["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    return env


def run_session(project: Path, env: dict[str, str], work: Path, tests: int, n: int) -> float:
    """Run the project's first ``tests`` tests (of ``n``) in ``python -m pytest -q``;
    returns the wall time from spawn to exit.

    Raises:
        RuntimeError: the session did not pass every test.
    """
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    argv += ["--basetemp", str(work / f"basetemp-{project.name}")]
    if tests < n:
        argv += [f"test_echo.py::test_echo[{i}]" for i in range(tests)]
    t = time.perf_counter()
    done = subprocess.run(
        argv, check=False, cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t
    if done.returncode != 0 or f"{tests} passed" not in done.stdout:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{project.name}: pytest exited {done.returncode}:\n{tail}")
    return seconds


def measure(
    projects: dict[str, Path], work: Path, docker_host: str, n: int, rounds: int
) -> dict[str, list[float]]:
    """Session times of each project, in ``rounds`` rounds whose order rotates."""
    keys = list(projects)
    envs = {key: session_env(key, work, docker_host) for key in keys}
    (work / "docker-config").mkdir(exist_ok=True)
    for key in keys:  # warm-up: imports into the page cache, the daemon's first containers
        run_session(projects[key], envs[key], work, min(WARMUP_TESTS, n), n)
    times: dict[str, list[float]] = {key: [] for key in keys}
    for i in range(rounds):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            seconds = run_session(projects[key], envs[key], work, n, n)
            times[key].append(seconds)
            print(f"round {i + 1}/{rounds}: {key}: {seconds:.2f} s", file=sys.stderr)
    return times


# -- the page --------------------------------------------------------------------------------


def session_rows(times: dict[str, list[float]], n: int) -> list[str]:
    """The table: whole-session medians, per container, and the ratio to containerlib."""
    med = {key: statistics.median(t) for key, t in times.items()}
    base = med["pytest"]
    lines = [
        "| session | runs | median | fastest | slowest | per container | per container, "
        "net of pytest | ratio to containerlib |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, t in times.items():
        per = med[key] / n * 1e3
        net = "-" if key == "pytest" else f"{(med[key] - base) / n * 1e3:.1f} ms"
        lines.append(
            f"| {SESSIONS[key]} | {len(t)} | {med[key]:.2f} s | {min(t):.2f} s | "
            f"{max(t):.2f} s | {per:.1f} ms | {net} | {med[key] / med['containerlib']:.2f}x |"
        )
    return lines


def _version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"{argv[0]} (version unknown)"
    return out.splitlines()[0].replace(" version", "")


def versions() -> list[str]:
    found = []
    for dist in ("containerlib", "pytest", "testcontainers", "docker"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    found[-1] = found[-1].replace("docker ", "docker-py ")
    # "containerd github.com/containerd/containerd 1.6.20~ds1 <package version>"
    containerd = _version(["containerd", "--version"]).split()
    found.append(" ".join(containerd[:1] + containerd[2:3]))
    found.append(_version(["runc", "--version"]))
    return found


@contextlib.contextmanager
def work_dir() -> Iterator[Path]:
    """A scratch directory, removed at the end once nothing is mounted under it."""
    with tempfile.TemporaryDirectory(prefix="clib-bench-p-", dir="/tmp") as tmp:
        work = Path(tmp)
        try:
            yield work
        finally:
            for point in sorted(mounts_under(work), key=len, reverse=True):
                print(f"plugin.py: unmounting {point}, left mounted", file=sys.stderr)
                syscalls.umount2(point.encode(), syscalls.MNT_DETACH)


@dataclass(frozen=True)
class Context:
    """What the page says besides the session times."""

    started: datetime
    load: float
    elapsed: float
    dockerd_start: float
    image_import: float
    facts: dict[str, str]
    rootfs: str


def _test_source(template: str, n: int, **fields: str) -> list[str]:
    """A generated test file without its docstring, for the page."""
    return template.format(n=n, **fields).split('"""\n', 2)[-1].strip().splitlines()


def render(times: dict[str, list[float]], n: int, rounds: int, ctx: Context) -> list[str]:
    """The lines of docs/benchmarks-plugin.md."""
    med = {key: statistics.median(t) for key, t in times.items()}

    def net(key: str) -> float:
        return med[key] - med["pytest"]

    facts = ctx.facts
    lines = page_header(
        "pytest plugin beside testcontainers", "plugin.py", __doc__, ctx.started,
        f"load average {ctx.load:.2f} at the start, {ctx.elapsed:.0f} s in all",
    )  # fmt: skip
    summary = (
        f"testcontainers + Docker took {med['testcontainers'] / med['containerlib']:.1f} "
        f"times as long as containerlib's plugin for the same {n} containers "
        f"({med['testcontainers-none'] / med['containerlib']:.1f} times without a network)"
        + (
            f"; per container, net of pytest, {net('testcontainers') / net('containerlib'):.1f} "
            f"and {net('testcontainers-none') / net('containerlib'):.1f} times as long. "
            # pytest alone as slow as containerlib's session: no ratio of the nets.
            if net("containerlib") > 0
            else ". "
        )
        + f"Not in the sessions' times: starting dockerd ({ctx.dockerd_start:.1f} s here, "
        f"once per boot for a Docker user) and importing the image "
        f"({ctx.image_import:.2f} s, once); containerlib's side builds its busybox image "
        "in every session, and that is in its time."
    )
    return [
        *lines,
        "## Whole session",
        "",
        f"{n} tests a session, each starting and removing one container; {rounds} timed "
        f"sessions each. Per container: the median session over {n}; net of pytest: the "
        f"median session less pytest alone's, over {n}.",
        "",
        *session_rows(times, n),
        "",
        *textwrap.wrap(summary, 88),
        "",
        "## Setup",
        "",
        f"- Docker: dockerd {facts['version']} (API {facts['api']}), storage driver "
        f"{facts['storage']}, cgroup driver {facts['cgroups']}, runtime {facts['runtime']}; "
        "default bridge network, no iptables rules; Ryuk disabled "
        "(`TESTCONTAINERS_RYUK_DISABLED=true`)",
        f"- Software: {', '.join(versions())}, Python {sys.version.split()[0]}",
        f"- Root file system: {ctx.rootfs}; Docker's image `{IMAGE}` is a tar of it",
        "",
        "The containerlib test:",
        "",
        "<!-- docs-test: skip (a test file for pytest and the plugin's fixtures) -->",
        "```python",
        *_test_source(TEST_CONTAINERLIB, n),
        "```",
        "",
        "The testcontainers test:",
        "",
        "<!-- docs-test: skip (needs testcontainers and a Docker daemon) -->",
        "```python",
        *_test_source(TEST_TESTCONTAINERS, n, image=IMAGE, extra=""),
        "```",
        "",
        f"and, for the row without a network, the same with `{NO_NETWORK}` after "
        "`with_command(...)`.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100, help="tests a session (100)")
    parser.add_argument("--rounds", type=int, default=3, help="timed sessions each (3)")
    parser.add_argument("--no-docs", action="store_true", help="do not write the docs page")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("plugin.py needs root", file=sys.stderr)
        return 2
    if importlib.util.find_spec("testcontainers") is None:
        print("plugin.py needs testcontainers: pip install testcontainers", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    n = args.containers
    with work_dir() as work:
        private_namespaces()
        rootfs, how = build_rootfs(work / "rootfs")
        projects = write_projects(work, n)
        try:
            with Dockerd(work) as daemon:
                imported_in = import_image(daemon.host, rootfs, work)
                facts = docker_facts(daemon.host)
                times = measure(projects, work, daemon.host, n, args.rounds)
        finally:
            remove_cgroups(clib_cgroup_parent())
    elapsed = (datetime.now(UTC) - started).total_seconds()
    ctx = Context(started, load, elapsed, daemon.started_in, imported_in, facts, how)
    write_page(render(times, n, args.rounds, ctx), DOCS, write=not args.no_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
