"""The pytest plugin as a project uses it: pytest runs the sample project (``sample/``) in
a subprocess, with the plugin loaded from its entry point, and nothing may be left
behind: no container process, cgroup, state directory, writable layer, mount or helper
process, whether the run passes, fails, is interrupted with SIGINT, or runs under
pytest-xdist; and when pytest is killed (SIGKILL), no teardown runs, but no more than the
detached container is left.

Each run has its own run and data roots (and pytest temporary directory) under the
test's ``tmp_path``, and the cgroup parent of the integration suite's leak checks, whose
helpers these tests use. Root only, as those checks are.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    cgroup_dirs,
    helper_processes,
    mounts_under,
    needs_root,
    processes_holding,
    processes_in_our_cgroups,
)

#: The sample runs' cgroup parent: their own, so that the leak checks see only what they
#: made (not the cgroups the spawner of a test run in the same process holds ready).
CGROUP_PARENT = f"containerlib/e2e-{os.getpid()}"

pytestmark = needs_root("the leak checks look at cgroups and other users' processes")

SAMPLE = Path(__file__).parent / "sample"
#: How long a run of the sample may take before the test gives up on it (seconds).
RUN_TIMEOUT = 300


class Project:
    """A copy of the sample project, with private roots, and a way to run pytest on it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dir = base / "project"
        shutil.copytree(SAMPLE, self.dir, ignore=shutil.ignore_patterns("__pycache__"))
        self.notes = base / "notes"
        self.notes.mkdir()
        self.run_root = base / "run"
        self.data_root = base / "data"
        self.env = {
            **os.environ,
            "CONTAINERLIB_RUN_ROOT": str(self.run_root),
            "CONTAINERLIB_DATA_ROOT": str(self.data_root),
            "CONTAINERLIB_CGROUP_PARENT": CGROUP_PARENT,
            "SAMPLE_NOTES": str(self.notes),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for name in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            self.env.pop(name, None)

    def command(self, *args: str) -> list[str]:
        # pytest-benchmark, where installed, warns under xdist: an error here.
        base = [sys.executable, "-m", "pytest", "-p", "no:benchmark"]
        return [*base, "--basetemp", str(self.base / "tmp"), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run pytest on the project with ``args``; its output is printed for a failure."""
        done = subprocess.run(
            self.command(*args),
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        print(done.stdout, done.stderr)
        return done

    def noted(self, name: str) -> list[str]:
        """The lines the sample's tests wrote to the note ``name``."""
        path = self.notes / name
        return path.read_text().split() if path.exists() else []

    def state_dirs(self) -> list[Path]:
        """The state directories of detached containers under the run root."""
        return [p for p in self.run_root.glob("*") if p.name != "networks"]

    def remove_detached(self) -> None:
        """Remove the detached containers left under the run root (after a failure)."""
        from containerlib.detached import DetachedContainer

        for state_dir in self.state_dirs():
            with contextlib.suppress(Exception):
                DetachedContainer(state_dir).remove(force=True)


def processes_of(base: Path) -> dict[int, str]:
    """Processes whose environment names a root under ``base``: the run's pytest
    processes, spawners, janitors and keepers (pid -> name)."""
    marker = f"CONTAINERLIB_RUN_ROOT={base}/run".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found[int(entry.name)] = (entry / "comm").read_text().strip()
    return found


def what_is_left(project: Project) -> list[str]:
    """Everything of the run still on the host, described; empty if nothing is."""
    from containerlib.linux.netlink import links
    from containerlib.network.bridge import network_state_dir, user_bridge_name

    data = project.data_root
    left = [f"state {p}" for p in project.state_dirs()]
    left += [f"networks state {p}" for p in Path(network_state_dir()).glob("*")]
    left += [f"writable layer {p}" for p in (data / "containers").glob("*")]
    left += [f"{p}" for p in (data / "pool", data / "trash") if p.exists()]
    left += [f"cgroup {p}" for p in cgroup_dirs(parents=True, under=CGROUP_PARENT)]
    left += [f"container process {pid}" for pid in processes_in_our_cgroups(under=CGROUP_PARENT)]
    left += [f"helper process {pid}" for pid in helper_processes(data / "helpers")]
    left += [f"mount {m}" for m in mounts_under(str(project.base))]
    left += [f"{name} {pid} holds a file" for pid, name in processes_holding(project.base).items()]
    left += [f"process {pid} {name}" for pid, name in processes_of(project.base).items()]
    bridges = set(links("clibn"))
    left += [
        f"bridge of network {name}"
        for name in project.noted("networks")
        if user_bridge_name(name) in bridges
    ]
    return left


def assert_nothing_left(project: Project) -> None:
    """Nothing of the run is left on the host. Processes that end as the run ends (a
    keeper after its container) get a few seconds to do so."""
    deadline = time.monotonic() + 10
    while (left := what_is_left(project)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"left behind: {left}"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A copy of the sample project; its containers, if a test left any, are removed."""
    sample = Project(tmp_path)
    yield sample
    sample.remove_detached()


def test_sample_passes_and_leaves_nothing(project: Project) -> None:
    done = project.run("check_server.py")
    assert done.returncode == 0
    assert re.search(r"\b7 passed\b", done.stdout)
    # The tests ran containers, found by their ids, and a network.
    assert len(project.noted("containers")) >= 5
    assert len(project.noted("networks")) == 1
    assert_nothing_left(project)


def section(output: str, cid: str) -> str:
    """The report section of container ``cid`` in pytest's ``output``: the log."""
    title = rf"-+ containerlib: {cid[:12]} \(sh -c .*\), running, last 100 lines of its log -+\n"
    found = re.search(title, output)
    assert found is not None, f"no report section for container {cid}"
    return output[found.end() :].split("\n___", 1)[0].split("\n===", 1)[0]


def test_failed_test_report_shows_container_logs(project: Project) -> None:
    done = project.run("check_fails.py")
    assert done.returncode == 1
    assert re.search(r"\b1 failed, 1 error\b", done.stdout)
    web, broken = project.noted("containers")
    # The failed test's report: what httpd logged, the failed request too.
    log = section(done.stdout, web)
    assert log.startswith("httpd starting\n")
    assert "url:/no-such-page-4f1e\n" in log
    assert log.endswith("response:404")
    # The report of the test whose fixture failed, after it had started a container.
    assert section(done.stdout, broken) == "config missing-7c2d"
    assert "kept for inspection" not in done.stdout
    assert_nothing_left(project)


def test_keep_keeps_the_containers_of_failed_tests(project: Project) -> None:
    from containerlib.detached import DetachedContainer

    done = project.run("--containerlib-keep", "check_fails.py", "check_server.py")
    assert done.returncode == 1
    assert re.search(r"\b1 failed, 7 passed, 1 error\b", done.stdout)
    web, broken = project.noted("containers")[:2]  # check_fails.py runs first
    summary = done.stdout.split("containers kept for inspection", 1)[1]
    assert f"{web}  check_fails.py::test_fails" in summary
    assert f"{broken}  check_fails.py::test_with_failing_fixture" in summary
    # Only the failed tests' containers are kept, running, with their logs.
    assert sorted(p.name for p in project.state_dirs()) == sorted([web, broken])
    for cid, logged in ((web, b"response:404"), (broken, b"config missing-7c2d")):
        kept = DetachedContainer(project.run_root / cid)
        assert kept.status == "running"
        assert logged in kept.logs()
        kept.remove(force=True)
    assert_nothing_left(project)


def interrupt(project: Project, sig: int) -> tuple[int, str]:
    """Run check_interrupted.py, send ``sig`` to pytest's process group once its test
    runs its two containers (an attached server and a detached one), and return how
    pytest exited and what it printed."""
    run = subprocess.Popen(
        project.command("check_interrupted.py"),
        cwd=project.dir,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own process group, to which the signal goes as a terminal sends Ctrl-C's.
        start_new_session=True,
    )
    try:
        running = project.notes / "running"
        deadline = time.monotonic() + RUN_TIMEOUT
        while not running.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.exists(), "the sample's test did not start its containers"
        assert len(project.noted("containers")) == 2
        assert len(project.state_dirs()) == 1
        assert processes_in_our_cgroups(under=CGROUP_PARENT)
        os.killpg(run.pid, sig)
        output, _ = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    print(output)
    return run.returncode, output


def test_sigint_in_the_middle_leaves_nothing(project: Project) -> None:
    returncode, output = interrupt(project, signal.SIGINT)
    assert returncode == pytest.ExitCode.INTERRUPTED
    assert "KeyboardInterrupt" in output
    assert_nothing_left(project)


def test_sigkill_leaves_only_the_detached_container(project: Project) -> None:
    # No teardown runs: the attached container dies with pytest all the same, the
    # detached one lives on, as it is meant to.
    returncode, _ = interrupt(project, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    attached, detached = project.noted("containers")
    deadline = time.monotonic() + 10
    while (
        any(attached in c for c in cgroup_dirs(under=CGROUP_PARENT)) and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not [c for c in cgroup_dirs(under=CGROUP_PARENT) if attached in c]
    assert [p.name for p in project.state_dirs()] == [detached]
    assert any(detached in c for c in cgroup_dirs(under=CGROUP_PARENT))
    project.remove_detached()
    assert_nothing_left(project)


def test_xdist_runs_pass_and_leave_nothing(project: Project) -> None:
    done = project.run("-n", "4", "check_server.py")
    assert done.returncode == 0
    assert re.search(r"\b7 passed\b", done.stdout)
    assert "4 workers" in done.stdout
    # Names made unique per worker.
    [network] = project.noted("networks")
    assert re.fullmatch(r"backend-gw[0-3]-\d+-\d+", network)
    assert_nothing_left(project)
