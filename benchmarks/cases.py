"""The cases: containerlib three ways and its peers, each starting ``/bin/true``.

A case is set up once (its warm-up run happens there; a peer that is not installed or does
not work raises :class:`Skip`), then asked for batches of timed runs, then closed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runners import CommandRunner, ContainerlibRunner, RunFailed, rss_kib, time_runs

__all__ = ["Case", "Skip", "make_cases"]

WORKER = Path(__file__).with_name("worker.py")
HYBRID_CONTROLLERS = Path("/sys/fs/cgroup/unified/cgroup.controllers")


class Skip(Exception):
    """The case cannot run on this host; the message says why, for the report."""


class Case:
    """One way of starting a container.

    Attributes:
        number: the case's number in the report.
        key: short name used in the JSON and on the command line (``--cases``).
        title: the row's name in the table.
        command: what is timed, as shown in the report.
        context: Markdown after the command in the report: where and how it is timed.
        version_argv: the command that prints the peer's version, if any.
        info: facts measured while setting up (e.g. the caller's RSS), for the report.
    """

    def __init__(
        self,
        number: str,
        key: str,
        title: str,
        *,
        command: str,
        context: str = "",
        version_argv: Sequence[str] = (),
    ) -> None:
        self.number = number
        self.key = key
        self.title = title
        self.command = command
        self.context = context
        self.version_argv = list(version_argv)
        self.info: dict[str, Any] = {}

    def setup(self) -> None:
        """Get ready and do the untimed warm-up run, or raise :class:`Skip`."""

    def measure(self, n: int) -> list[float]:
        """Time ``n`` runs; raise :class:`RunFailed` if one fails."""
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever ``setup`` acquired."""


class InProcessCase(Case):
    """containerlib in the benchmark's own process."""

    def __init__(
        self,
        number: str,
        key: str,
        title: str,
        *,
        command: str,
        rootfs: Path,
        limits: bool,
        seccomp: bool = True,
    ) -> None:
        super().__init__(
            number, key, title, command=command, context=", in a loop in the benchmark's process"
        )
        self.rootfs = rootfs
        self.limits = limits
        self.seccomp = seccomp
        self.runner: ContainerlibRunner | None = None

    def setup(self) -> None:
        try:
            self.runner = ContainerlibRunner(self.rootfs, limits=self.limits, seccomp=self.seccomp)
        except ImportError as exc:
            raise Skip(f"containerlib's API is not importable yet: {exc}") from exc
        except Exception as exc:
            raise Skip(f"warm-up run failed: {type(exc).__name__}: {exc}") from exc
        self.info["caller_rss_kib"] = rss_kib()

    def measure(self, n: int) -> list[float]:
        assert self.runner is not None
        return time_runs(self.runner, n)


class CommandCase(Case):
    """An outside program started from the benchmark's process, e.g. ``runc run``."""

    def __init__(
        self,
        number: str,
        key: str,
        title: str,
        argv: Sequence[str],
        *,
        version_argv: Sequence[str] = (),
        leftovers: tuple[list[str], Path] | None = None,
    ) -> None:
        super().__init__(number, key, title, command=_shell(argv), version_argv=version_argv)
        self.argv = list(argv)
        self.leftovers = leftovers
        self.runner = CommandRunner(argv, key)

    def setup(self) -> None:
        _require(self.argv[0])
        try:
            self.runner.run_once()
        except RunFailed as exc:
            raise Skip(f"warm-up run failed: {exc}") from exc

    def measure(self, n: int) -> list[float]:
        return time_runs(self.runner, n)

    def close(self) -> None:
        if self.leftovers is not None:
            _delete_leftovers(*self.leftovers)


class WorkerCase(Case):
    """A timing loop in a child process (``worker.py``), asked for batches over a pipe."""

    def __init__(
        self,
        number: str,
        key: str,
        title: str,
        *,
        command: str,
        context: str,
        worker_argv: Sequence[str],
        requires: str | None = None,
        version_argv: Sequence[str] = (),
        leftovers: tuple[list[str], Path] | None = None,
    ) -> None:
        super().__init__(
            number, key, title, command=command, context=context, version_argv=version_argv
        )
        self.worker_argv = list(worker_argv)
        self.requires = requires
        self.leftovers = leftovers
        self.process: subprocess.Popen[str] | None = None

    def setup(self) -> None:
        if self.requires is not None:
            _require(self.requires)
        self.process = subprocess.Popen(
            self.worker_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        reply = self._receive()
        if "error" in reply:
            raise Skip(f"warm-up run failed: {reply['error']}")
        self.info["caller_rss_kib"] = reply["rss_kib"]

    def measure(self, n: int) -> list[float]:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"runs": n}) + "\n")
        self.process.stdin.flush()
        reply = self._receive()
        if "error" in reply:
            raise RunFailed(reply["error"])
        return [float(t) for t in reply["times"]]

    def close(self) -> None:
        if self.process is not None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
        if self.leftovers is not None:
            _delete_leftovers(*self.leftovers)

    def _receive(self) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            return {"error": f"worker exited with code {code}: {_shell(self.worker_argv)}"}
        reply: dict[str, Any] = json.loads(line)
        return reply


def make_cases(rootfs: Path, work: Path) -> list[Case]:
    """Every case, in the order of the report. ``work`` is an empty scratch directory."""
    python = sys.executable
    bundle = work / "bundle"
    empty = work / "empty"
    empty.touch()
    _make_bundle(bundle, rootfs)
    bundle_userns = work / "bundle-userns"
    _make_bundle(bundle_userns, rootfs, userns=True)

    root = str(rootfs)
    clib = 'Container(Image.from_rootfs(ROOT)).run(["/bin/true"])'
    clib_limits = clib.replace(".run(", '.limit(mem="512M", pids=64).run(')
    clib_1g = [python, str(WORKER), "containerlib", "--rootfs", root, "--ballast-mib", "1024"]
    clib_unconfined = [python, str(WORKER), "containerlib", "--rootfs", root, "--no-seccomp"]
    clib_userns = [python, str(WORKER), "containerlib", "--rootfs", root, "--userns"]
    clib_1g_context = (
        f", in a loop in `{_shell(clib_1g)}`, which first writes one byte in every page of "
        "a `bytearray(1 << 30)`"
    )
    clib_cli = [_console_script("containerlib"), "run", root, "--", "/bin/true"]

    runc_state = work / "runc-state"
    runc = ["runc", "--root", str(runc_state)]
    crun_state = work / "crun-state"
    crun = ["crun", "--root", str(crun_state)]
    # crun 1.8 refuses a hybrid host ("drop all controllers from cgroupv2"); the cgroup2
    # mount here has no controllers anyway, so an empty cgroup.controllers, bind-mounted
    # in a private mount namespace that vanishes with the worker, tells crun the truth.
    hybrid_prefix: list[str] = []
    if HYBRID_CONTROLLERS.exists():
        hybrid_prefix = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", f'mount --bind "$1" {HYBRID_CONTROLLERS} && shift && exec "$@"',
            "sh", str(empty),
        ]  # fmt: skip
    crun_run = [*crun, "run", "--bundle", str(bundle), "{id}"]
    crun_worker = [python, str(WORKER), "command", "--id-prefix", "crun", "--", *crun_run]
    crun_context = ", timed by `python benchmarks/worker.py command -- <that command>`"
    if hybrid_prefix:
        crun_context += f", itself started by `{_shell(hybrid_prefix)}`"

    bwrap = ["bwrap", "--unshare-all", "--bind", root, "/", "--proc", "/proc", "--dev", "/dev",
             "/bin/true"]  # fmt: skip
    unshare = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
               "chroot", root, "/bin/true"]  # fmt: skip
    # Debian's podman runs crun first, and crun 1.8 refuses this hybrid host: runc, as the
    # runc case, with cgroupfs (no systemd here).
    podman = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm",
              "--network", "none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=4096:4096", "--rootfs", root, "/bin/true"]  # fmt: skip

    return [
        InProcessCase(
            "1", "containerlib", "containerlib, in-process",
            command=clib, rootfs=rootfs, limits=False,
        ),
        InProcessCase(
            "1b", "containerlib-limits", "containerlib, in-process, mem=512M pids=64",
            command=clib_limits, rootfs=rootfs, limits=True,
        ),
        WorkerCase(
            "1c", "containerlib-unconfined", "containerlib, no seccomp filter",
            command=clib.replace(".run(", ".seccomp(None).run("),
            context=f", in a loop in `{_shell(clib_unconfined)}` (a process, and so a spawner, "
            "of its own: warm processes hold the early part of one profile's filter)",
            worker_argv=clib_unconfined,
        ),
        WorkerCase(
            "1d", "containerlib-userns", "containerlib, .userns() (root 524288 on the host)",
            command=clib.replace(".run(", ".userns().run("),
            context=f", in a loop in `{_shell(clib_userns)}` (a spawner of its own, as case 1c)",
            worker_argv=clib_userns,
        ),
        WorkerCase(
            "2", "containerlib-1g", "containerlib, caller holding 1 GiB",
            command=clib, context=clib_1g_context, worker_argv=clib_1g,
        ),
        CommandCase("3", "containerlib-cli", "containerlib CLI, whole process", clib_cli),
        CommandCase(
            "4", "runc", "runc run", [*runc, "run", "--bundle", str(bundle), "{id}"],
            version_argv=["runc", "--version"], leftovers=(runc, runc_state),
        ),
        CommandCase(
            "4b", "runc-userns", "runc run, user namespace (root 524288 on the host)",
            [*runc, "run", "--bundle", str(bundle_userns), "{id}"],
            leftovers=(runc, runc_state),
        ),
        CommandCase(
            "4c", "containerlib-runtime", "containerlib-runtime run, whole process",
            [_console_script("containerlib-runtime"), "--root", str(work / "clib-state"),
             "run", "--bundle", str(bundle), "{id}"],
            leftovers=([_console_script("containerlib-runtime"), "--root",
                        str(work / "clib-state")], work / "clib-state"),
        ),
        WorkerCase(
            "5", "crun", "crun run",
            command=_shell(crun_run), context=crun_context,
            worker_argv=[*hybrid_prefix, *crun_worker], requires="crun",
            version_argv=["crun", "--version"], leftovers=([*hybrid_prefix, *crun], crun_state),
        ),
        CommandCase("6", "bwrap", "bwrap", bwrap, version_argv=["bwrap", "--version"]),
        CommandCase(
            "7", "unshare", "unshare + chroot", unshare, version_argv=["unshare", "--version"]
        ),
        CommandCase("8", "podman", "podman run", podman, version_argv=["podman", "--version"]),
    ]  # fmt: skip


def _make_bundle(bundle: Path, rootfs: Path, *, userns: bool = False) -> None:
    """An OCI bundle for runc and crun: ``runc spec``, then run /bin/true on ``rootfs``;
    with ``userns``, in a user namespace whose root is host uid and gid 524288, as
    containerlib's ``.userns()`` (runc, unlike containerlib, does not id-map the rootfs:
    /bin/true on a root-owned rootfs runs all the same).

    Both runtimes get the very same config.json; it comes from ``crun spec`` only where
    runc is missing.
    """
    bundle.mkdir()
    tool = "runc" if shutil.which("runc") else "crun" if shutil.which("crun") else None
    if tool is None:
        return
    subprocess.run([tool, "spec"], cwd=bundle, check=True, capture_output=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["root"] = {"path": str(rootfs), "readonly": False}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    if userns:
        mapping = [{"containerID": 0, "hostID": 524288, "size": 65536}]
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = mapping
        config["linux"]["gidMappings"] = mapping
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _console_script(name: str) -> str:
    """The script installed next to this interpreter, not a pyenv shim that re-execs bash."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


def _require(program: str) -> None:
    if shutil.which(program) is None and not Path(program).exists():
        raise Skip(f"not installed (`{program}` not found)")


def _delete_leftovers(runtime: list[str], state: Path) -> None:
    """Delete containers that an interrupted run left in our own state directory."""
    if not state.is_dir():
        return
    for entry in state.iterdir():
        if entry.is_dir():
            subprocess.run(
                [*runtime, "delete", "--force", entry.name],
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )


def _shell(argv: Sequence[str]) -> str:
    """``argv`` as a shell command line, with the per-run container id shown as ``ID``."""
    return shlex.join(arg.replace("{id}", "ID") for arg in argv)
