"""The pytest plugin's registration, markers, options and names, in pytest runs of small
projects (``pytester``); no container runs here (tests/e2e runs them).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import containerlib._hostcheck
from containerlib.pytest_plugin import unique_name

pytest_plugins = ["pytester"]

HEAVY = ("attrs", "httpx", "pyroute2", "ctypes", "containerlib.container", "containerlib.runtime")


def test_the_entry_point_names_the_plugin() -> None:
    points = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in points if p.name == "containerlib"] == ["containerlib.pytest_plugin"]


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, pytest; before = set(sys.modules); import containerlib.pytest_plugin; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout.split()
    assert "containerlib.pytest_plugin" in loaded
    assert [m for m in loaded if m.startswith(HEAVY)] == []


def test_unique_names_carry_the_worker_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    first, second = unique_name("backend"), unique_name("backend")
    assert first != second
    assert first.startswith(f"backend-gw3-{__import__('os').getpid()}-")
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert unique_name("x").startswith("x-main-")


def test_unique_names_fit_the_limit() -> None:
    name = unique_name("n" * 100, limit=64)
    assert len(name) <= 64
    assert name.startswith("nnnn")


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the host check answers in the runs of these tests: no problem, unless the
    test puts one in."""
    problems: list[str] = []

    def fake(*, root: bool = False) -> tuple[str, ...]:
        return (*problems, *(["needs root (fake)"] if root else []))

    monkeypatch.setattr(containerlib._hostcheck, "host_problems", fake)
    return problems


MARKED = """
import pytest

@pytest.mark.containerlib
def test_plain():
    pass

@pytest.mark.containerlib(root=True)
def test_root():
    pass
"""


def test_marker_is_registered_and_runs_where_containers_can(
    pytester: pytest.Pytester, host: list[str]
) -> None:
    pytester.makepyfile(MARKED)
    result = pytester.runpytest("--strict-markers", "--strict-config", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    # The skip names the test's file, not the plugin's.
    where = "SKIPPED [[]1[]] test_marker_is_registered*.py:*: "
    result.stdout.fnmatch_lines([where + "containerlib cannot run*needs root (fake)"])


def test_marker_skips_saying_why(pytester: pytest.Pytester, host: list[str]) -> None:
    host.append("the kernel has no overlayfs: load it with modprobe overlay")
    pytester.makepyfile(MARKED)
    result = pytester.runpytest("--strict-markers", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*containerlib cannot run containers here*overlayfs*"])


def test_require_fails_rather_than_skips(pytester: pytest.Pytester, host: list[str]) -> None:
    host.append("no cgroup file system is mounted on /sys/fs/cgroup")
    pytester.makepyfile(MARKED)
    result = pytester.runpytest("--containerlib-require")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*containerlib cannot run containers here*cgroup*"])


def test_fixtures_skip_where_containers_cannot_run(
    pytester: pytest.Pytester, host: list[str]
) -> None:
    host.append("user namespaces are disabled (sysctl user.max_user_namespaces=0)")
    pytester.makepyfile(
        """
        def test_containers(containers):
            pass

        def test_image(busybox_image):
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*max_user_namespaces=0*"])


def test_networks_need_root(pytester: pytest.Pytester, host: list[str]) -> None:
    pytester.makepyfile("def test_networks(networks):\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*needs root (fake)*"])


def test_marker_with_bad_arguments_is_an_error(pytester: pytest.Pytester, host: list[str]) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.containerlib(rootless=True)
        def test_x():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_x: @pytest.mark.containerlib takes only root=True*"])


def test_options_are_in_the_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        ["*--containerlib-keep*", "*--containerlib-log-lines=N*", "*--containerlib-require*"]
    )
