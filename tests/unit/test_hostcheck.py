"""What the host check says about hosts that cannot run containers, with the files it
reads under /proc and /sys replaced."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from containerlib import _hostcheck

check = _hostcheck.host_problems.__wrapped__  # not the answer cached for this process


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make the check see a host: a non-root user (uid 1000) by default, with files
    read as ``files`` says (others as on a host where everything works)."""

    def make(*, uid: int = 1000, **files: str) -> None:
        working = {
            "/proc/filesystems": "nodev\tproc\nnodev\toverlay\n",
            "/proc/self/status": "Name:\tpython\nCapEff:\t000001ffffffffff\n",
        }
        table = {**working, **{"/" + k.replace("__", "/"): v for k, v in files.items()}}
        monkeypatch.setattr(_hostcheck.os, "geteuid", lambda: uid)
        monkeypatch.setattr(_hostcheck, "_read", table.get)
        monkeypatch.setattr(_hostcheck, "_userns_problem_by_trying", lambda: None)

    return make


def test_a_working_host_has_no_problem(host: Callable[..., None]) -> None:
    host()
    assert check() == ()


def test_root_is_needed(host: Callable[..., None]) -> None:
    host()
    assert check(root=True) == ("needs root, and this process runs as uid 1000",)


def test_user_namespaces_turned_off(host: Callable[..., None]) -> None:
    host(proc__sys__user__max_user_namespaces="0\n")
    [problem] = check()
    assert "user.max_user_namespaces=0" in problem


def test_apparmor_restricts_user_namespaces(host: Callable[..., None]) -> None:
    host(proc__sys__kernel__apparmor_restrict_unprivileged_userns="1\n")
    [problem] = check()
    assert "AppArmor" in problem


def test_root_without_cap_sys_admin(host: Callable[..., None]) -> None:
    host(uid=0, proc__self__status="CapEff:\t00000000a80425fb\n")  # docker's default set
    assert any("CAP_SYS_ADMIN" in p for p in check())
