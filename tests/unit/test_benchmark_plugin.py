"""benchmarks/plugin.py: the generated pytest projects and the page, without Docker."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit import benchmark_scripts

ROOT = Path(__file__).resolve().parent.parent.parent


def _load_plugin_bench() -> ModuleType:
    return benchmark_scripts.load("plugin")


bench = _load_plugin_bench()

TIMES = {
    "containerlib": [3.0, 2.0, 4.0],
    "testcontainers": [30.0, 32.0, 31.0],
    "testcontainers-none": [25.0, 26.0, 27.0],
    "pytest": [1.0, 1.0, 1.5],
}


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def projects(tmp_path: Path) -> dict[str, Path]:
    return bench.write_projects(tmp_path, 7)  # type: ignore[no-any-return]


def test_every_project_collects_its_tests(projects: dict[str, Path]) -> None:
    assert set(projects) == set(bench.SESSIONS)
    for key, project in projects.items():
        if key.startswith("testcontainers") and importlib.util.find_spec("testcontainers") is None:
            continue
        done = _pytest(project, "--collect-only")
        assert "7 tests collected" in done.stdout, (key, done.stdout, done.stderr)


def test_the_project_without_containers_passes(projects: dict[str, Path]) -> None:
    done = _pytest(projects["pytest"])
    assert done.returncode == 0, done.stdout
    assert "7 passed" in done.stdout


def test_only_the_network_less_project_asks_for_no_network(projects: dict[str, Path]) -> None:
    none = (projects["testcontainers-none"] / "test_echo.py").read_text()
    bridge = (projects["testcontainers"] / "test_echo.py").read_text()
    assert 'network_mode="none"' in none
    assert "network_mode" not in bridge
    assert bench.IMAGE in bridge


def test_session_rows_give_medians_per_container_and_ratios() -> None:
    rows = bench.session_rows(TIMES, 100)
    clib = next(r for r in rows if r.startswith("| containerlib"))
    docker = next(r for r in rows if r.startswith("| testcontainers-python + Docker |"))
    # containerlib: median 3 s, 30 ms a container, (3 - 1) / 100 net, 1x.
    cells = ["3", "3.00 s", "2.00 s", "4.00 s", "30.0 ms", "20.0 ms", "1.00x |"]
    assert clib.split(" | ")[1:] == cells
    assert docker.endswith("| 310.0 ms | 300.0 ms | 10.33x |")


def test_the_page_tells_the_ratios_and_shows_the_tests() -> None:
    ctx = bench.Context(
        started=datetime(2026, 1, 1, tzinfo=UTC),
        load=0.5,
        elapsed=200.0,
        dockerd_start=0.3,
        image_import=0.1,
        facts={"version": "20.10", "api": "1.41", "storage": "overlay2"}
        | {"cgroups": "cgroupfs, cgroup v1", "runtime": "runc"},
        rootfs="built here",
    )
    text = "\n".join(bench.render(TIMES, 100, 3, ctx))
    assert "10.3 times as long as containerlib's plugin" in text
    assert "TESTCONTAINERS_RYUK_DISABLED=true" in text
    assert 'containers.start(Container(busybox_image), ["echo", f"hi {n}"])' in text
    assert "range(100)" in text
    assert '"""' not in text.split("## Setup")[1]  # the tests' docstrings are left out
