"""The ``containerlib`` command's subcommands that need no container: spec and rootfs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from containerlib.cli.main import EXIT_ERROR, main
from containerlib.spec.defaults import default_spec
from containerlib.spec.oci import Spec


def test_spec_writes_runc_specs_default(tmp_path: Path) -> None:
    assert main(["spec", "--bundle", str(tmp_path)]) == 0
    text = (tmp_path / "config.json").read_text()
    assert Spec.from_json(text) == default_spec()
    assert json.loads(text)["process"]["args"] == ["sh"]
    assert os.listdir(tmp_path) == ["config.json"]


def test_spec_writes_to_the_current_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["spec"]) == 0
    assert Spec.from_json((tmp_path / "config.json").read_text()) == default_spec()


def test_spec_does_not_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "-b", str(tmp_path)]) == 0
    config = tmp_path / "config.json"
    config.write_text('{"mine": true}')
    capsys.readouterr()
    assert main(["spec", "-b", str(tmp_path)]) == 1
    assert config.read_text() == '{"mine": true}'
    err = capsys.readouterr().err
    assert str(config) in err
    assert "exists" in err


def test_spec_rootless_has_a_user_namespace_with_mappings(tmp_path: Path) -> None:
    assert main(["spec", "--rootless", "--bundle", str(tmp_path)]) == 0
    spec = Spec.from_json((tmp_path / "config.json").read_text())
    assert spec.linux is not None
    assert spec.linux.namespace("user") is not None
    assert spec.linux.namespace("network") is None
    assert [(m.container_id, m.host_id, m.size) for m in spec.linux.uid_mappings] == [
        (0, os.geteuid(), 1)
    ]
    assert [(m.container_id, m.host_id, m.size) for m in spec.linux.gid_mappings] == [
        (0, os.getegid(), 1)
    ]
    assert spec == default_spec(rootless=True)


def test_spec_into_a_missing_bundle_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-bundle"
    assert main(["spec", "--bundle", str(missing)]) == EXIT_ERROR
    assert str(missing) in capsys.readouterr().err
    assert not missing.exists()


def test_run_of_a_missing_rootfs_is_an_error_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-rootfs"
    assert main(["run", str(missing), "--", "true"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("containerlib: run: ")
    assert "no-rootfs" in err


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="/bin/busybox is not installed")
def test_rootfs_busybox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "bb"
    assert main(["rootfs", "busybox", str(dest)]) == 0
    sh = dest / "bin" / "sh"
    assert sh.is_symlink()
    assert os.readlink(sh) == "busybox"
    assert (dest / "bin" / "busybox").is_file()
    assert os.access(dest / "bin" / "busybox", os.X_OK)
    assert (dest / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert capsys.readouterr().out.strip() == str(dest)


@pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="/bin/busybox is not installed")
def test_rootfs_into_a_non_empty_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["rootfs", "busybox", str(tmp_path)]) == EXIT_ERROR
    assert "not empty" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_pull_of_a_bad_reference_is_an_error_before_any_network(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["pull", "Team/App"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("containerlib: pull: image: ")
    assert "'Team/App'" in err
