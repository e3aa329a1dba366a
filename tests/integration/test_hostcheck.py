"""The host check on this host, which runs containers (as root, and as ``nobody`` in
the nox session ``rootless``): it must find no problem, but root for a non-root user."""

from __future__ import annotations

import os

from containerlib._hostcheck import host_problems
from tests.integration.conftest import ROOT


def test_this_host_can_run_containers() -> None:
    assert host_problems() == ()


def test_root_is_a_problem_only_for_a_non_root_user() -> None:
    expected = () if ROOT else (f"needs root, and this process runs as uid {os.geteuid()}",)
    assert host_problems(root=True) == expected
