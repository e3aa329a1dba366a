"""Without root, starting a container says what to do, and creates nothing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image


def test_without_root_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rootfs").mkdir()
    monkeypatch.setenv("CONTAINERLIB_RUN_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("CONTAINERLIB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ContainerSetupError, match="needs root") as info:
        Container(Image.from_rootfs(tmp_path / "rootfs")).run(["true"])
    assert info.value.errno == errno.EPERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rootfs"]
