"""Roots.from_env for root and for other users: XDG directories, the /tmp fallback, overrides.

The caller's identity is faked with ``os.geteuid``; directories are real, under tmp_path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from containerlib.errors import SpecError
from containerlib.runtime import specconv
from containerlib.runtime.specconv import Roots

_VARIABLES = (
    "CONTAINERLIB_RUN_ROOT",
    "CONTAINERLIB_DATA_ROOT",
    "CONTAINERLIB_CGROUP_PARENT",
    "XDG_RUNTIME_DIR",
    "XDG_DATA_HOME",
)


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> int:
    """A user other than root with a clean environment, HOME under tmp_path and the /tmp
    fallback moved to tmp_path/tmp. Returns the uid: the real one when the tests run as
    a user, else 1000."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    uid = os.geteuid() or 1000
    monkeypatch.setattr(os, "geteuid", lambda: uid)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(specconv, "DEFAULT_ROOTLESS_RUN_PARENT", str(tmp_path / "tmp"))
    return uid


def _own_directory(path: Path, uid: int, mode: int = 0o700) -> None:
    """Make ``path`` a directory of ``uid`` (chown needs root; a user makes its own)."""
    path.mkdir()
    path.chmod(mode)
    if os.stat(path).st_uid != uid:
        os.chown(path, uid, uid)


def test_root_keeps_the_system_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.setenv("XDG_DATA_HOME", "/root/.local/share")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert Roots.from_env() == Roots(
        run="/run/containerlib", data="/var/lib/containerlib", cgroup_parent="containerlib"
    )


def test_a_user_gets_the_xdg_directories(
    user: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", f"/run/user/{user}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    roots = Roots.from_env()
    assert roots.run == f"/run/user/{user}/containerlib"
    assert roots.data == str(tmp_path / "data-home" / "containerlib")
    assert roots.cgroup_parent == "containerlib"
    assert not (tmp_path / "data-home").exists(), "the data root is made when first needed"


def test_without_xdg_data_home_the_data_goes_to_local_share(
    user: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", f"/run/user/{user}")
    assert Roots.from_env().data == str(tmp_path / "home" / ".local/share/containerlib")


@pytest.mark.parametrize("value", ["", "relative/data"])
def test_an_empty_or_relative_xdg_variable_counts_as_unset(
    user: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", value)
    monkeypatch.setenv("XDG_RUNTIME_DIR", value)
    roots = Roots.from_env()
    assert roots.data == str(tmp_path / "home" / ".local/share/containerlib")
    assert roots.run == str(tmp_path / "tmp" / f"containerlib-{user}")


def test_without_xdg_runtime_dir_state_goes_to_a_private_tmp_directory(
    user: int, tmp_path: Path
) -> None:
    roots = Roots.from_env()
    run = tmp_path / "tmp" / f"containerlib-{user}"
    assert roots.run == str(run)
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    # Once it exists (and is the user's), it is taken as it is.
    if os.stat(run).st_uid != user:
        os.chown(run, user, user)
    assert Roots.from_env().run == str(run)


def test_the_users_existing_tmp_directory_is_used(user: int, tmp_path: Path) -> None:
    run = tmp_path / "tmp" / f"containerlib-{user}"
    _own_directory(run, user, 0o755)
    assert Roots.from_env().run == str(run)


@pytest.mark.parametrize(
    ("owner", "mode", "complaint"),
    [("other", 0o700, "owner uid 4242"), ("user", 0o777, "drwxrwxrwx")],
)
def test_a_tmp_directory_someone_else_controls_is_refused(
    user: int, tmp_path: Path, owner: str, mode: int, complaint: str
) -> None:
    run = tmp_path / "tmp" / f"containerlib-{user}"
    if owner == "other" and os.getuid() != 0:
        pytest.skip("giving a directory to another uid needs root")
    _own_directory(run, 4242 if owner == "other" else user, mode)
    with pytest.raises(SpecError) as info:
        Roots.from_env()
    assert info.value.field == "CONTAINERLIB_RUN_ROOT"
    assert complaint in str(info.value)
    assert "set CONTAINERLIB_RUN_ROOT or XDG_RUNTIME_DIR" in str(info.value)


def test_a_symlink_in_place_of_the_tmp_directory_is_refused(user: int, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    _own_directory(elsewhere, user)
    (tmp_path / "tmp" / f"containerlib-{user}").symlink_to(elsewhere)
    with pytest.raises(SpecError, match="is not a directory of uid"):
        Roots.from_env()


def test_the_containerlib_variables_win(
    user: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", f"/run/user/{user}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.setenv("CONTAINERLIB_RUN_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("CONTAINERLIB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CONTAINERLIB_CGROUP_PARENT", "mine")
    assert Roots.from_env() == Roots(
        run=str(tmp_path / "run"), data=str(tmp_path / "data"), cgroup_parent="mine"
    )
    assert not list((tmp_path / "tmp").iterdir()), "no fallback directory was made"


def test_no_home_and_no_xdg_data_home_asks_for_the_data_root(
    user: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "")
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", f"/run/user/{user}")
    with pytest.raises(SpecError) as info:
        Roots.from_env()
    assert info.value.field == "CONTAINERLIB_DATA_ROOT"
    assert "set CONTAINERLIB_DATA_ROOT" in str(info.value)
