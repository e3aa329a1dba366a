"""Images without root: unpacking layers, the cache, builds, archives and overlays.

The scenarios are in rootless_scenarios.py. When the suite runs as a user they run in
this process. When it runs as root they run as ``nobody`` (``setpriv``) in a process of
their own, with Debian's ``/usr/bin/python3`` (the pyenv python under ``/root`` is out of
nobody's reach) and this checkout on ``PYTHONPATH``; ``CONTAINERLIB_TEST_USER_PYTHON``
names another python, for example a venv that has containerlib's dependencies. If that
python cannot import them the tests skip, saying so.

As root, one more test mounts an overlay of layers root unpacked, as root's containers
(with or without a user namespace) see them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image_builders import directory, file, opaque, whiteout
from tests.integration import rootless_scenarios
from tests.integration.rootless_scenarios import unpacked

ROOT = Path(__file__).resolve().parents[2]
USER_PYTHON = os.environ.get("CONTAINERLIB_TEST_USER_PYTHON", "/usr/bin/python3")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty directory the user running the scenarios owns, also their ``HOME``.

    As root that user is nobody, and the directory is made in /tmp (tmp_path is
    root's alone) and removed after.
    """
    if os.geteuid() != 0:
        for name in ("XDG_DATA_HOME", "CONTAINERLIB_DATA_ROOT", "CONTAINERLIB_RUN_ROOT"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
        yield tmp_path
        return
    nobody = pwd.getpwnam("nobody")
    path = Path(tempfile.mkdtemp(prefix="containerlib-rootless-", dir="/tmp"))
    try:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        yield path
    finally:
        shutil.rmtree(path)


def _as_nobody(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    nobody = pwd.getpwnam("nobody")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }
    user = [f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    return subprocess.run(
        ["setpriv", *user, "--inh-caps=-all", "--", USER_PYTHON, *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _run(scenario: str, home: Path) -> None:
    """Run ``scenario`` as a user: here if this is one, else as nobody."""
    if os.geteuid() != 0:
        try:
            rootless_scenarios.SCENARIOS[scenario](home)
        except rootless_scenarios.Unavailable as e:
            pytest.skip(str(e))
        return
    probe = _as_nobody(["-c", "import attrs, httpx, containerlib.images"], home)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"{USER_PYTHON} run as nobody cannot import containerlib ({last}); set "
            "CONTAINERLIB_TEST_USER_PYTHON to a python that can"
        )
    done = _as_nobody(["-m", "tests.integration.rootless_scenarios", scenario, str(home)], home)
    if done.returncode == rootless_scenarios.UNAVAILABLE:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stderr


def test_a_user_unpacks_whiteouts_opaque_directories_links_and_foreign_owners(
    home: Path,
) -> None:
    _run("unpack", home)


def test_a_user_cannot_unpack_a_device_node(home: Path) -> None:
    _run("device_node", home)


def test_a_users_layers_stack_in_an_overlay_in_a_user_namespace(home: Path) -> None:
    _run("overlay", home)


def test_a_user_builds_saves_loads_and_prunes_images_in_the_default_data_root(
    home: Path,
) -> None:
    _run("images", home)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts overlayfs on the host")
def test_root_unpacked_opaque_directory_hides_lower_files(tmp_path: Path) -> None:
    lower = unpacked(
        tmp_path / "lower", [file("var/cache/old"), file("etc/motd"), file("etc/hostname")]
    )
    upper = unpacked(
        tmp_path / "upper",
        [directory("etc"), whiteout("etc/motd"), opaque("var/cache"), file("var/cache/new")],
    )
    assert os.getxattr(upper / "var/cache", "trusted.overlay.opaque") == b"y"
    # Root's overlays are mounted without userxattr, which would show this one to the
    # container as a plain xattr (and copy it up).
    with pytest.raises(OSError, match="No data available"):
        os.getxattr(upper / "var/cache", "user.overlay.opaque")
    merged = tmp_path / "merged"
    merged.mkdir()
    mount_options = f"lowerdir={upper}:{lower}"
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", mount_options, str(merged)], check=True
    )
    try:
        assert os.listdir(merged / "var/cache") == ["new"]
        assert os.listdir(merged / "etc") == ["hostname"]
        assert os.listxattr(merged / "var/cache") == []
    finally:
        subprocess.run(["umount", str(merged)], check=True)
