"""The ``containerlib`` command's subcommands that need no container (spec, rootfs), its
errors found before anything runs, and the pieces of the docker-like commands (the columns
of ``ps``, the times of ``logs``, ``-v`` and ``kill -s``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from containerlib.cli.formats import (
    bytes_size,
    command_column,
    env_variables,
    human_duration,
    parse_signal,
    parse_time,
    parse_volume,
    status_column,
    table,
)
from containerlib.cli.main import EXIT_ERROR, main
from containerlib.errors import SpecError
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


# -- the docker-like commands -------------------------------------------------------------


def test_the_command_line_imports_no_container_machinery_for_help() -> None:
    code = (
        "import sys, json; import containerlib.cli.main; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('containerlib'))))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert "containerlib.cli.containers" in loaded
    for heavy in ("containerlib.container", "containerlib.detached", "containerlib.runtime"):
        assert heavy not in loaded, heavy


def test_help_lists_the_container_commands() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "containerlib.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("exec", "ps", "logs", "stop", "kill", "rm", "inspect", "stats", "container"):
        assert f"    {command} " in r.stdout, command


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "Less than a second"),
        (1.9, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (59 * 60 + 59, "59 minutes"),
        (3600, "About an hour"),
        (2 * 3600 - 1, "2 hours"),
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (13 * 86400, "13 days"),
        (14 * 86400, "2 weeks"),
        (60 * 86400, "2 months"),
        (3 * 365 * 86400, "3 years"),
    ],
)
def test_durations_read_as_dockers(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_status_column_as_docker_ps() -> None:
    now = 1000.0
    assert status_column({"status": "running", "started": now - 3}, now) == "Up 3 seconds"
    assert status_column({"status": "paused", "started": now - 120}, now) == (
        "Up 2 minutes (Paused)"
    )
    ended = {"status": "exited", "exit_code": 137, "finished": now - 7200}
    assert status_column(ended, now) == "Exited (137) 2 hours ago"
    assert status_column({"status": "dead"}, now) == "Dead"
    assert status_column({"status": "creating"}, now) == "Created"


def test_command_column_is_quoted_and_cut_at_20_characters() -> None:
    assert command_column(["sleep", "60"]) == '"sleep 60"'
    assert command_column(["sh", "-c", 'echo "hi"; sleep 60']) == '"sh -c echo \\"hi\\"; sl…"'
    assert command_column(["a" * 20]) == '"' + "a" * 20 + '"'
    assert command_column(["a" * 21]) == '"' + "a" * 19 + '…"'
    assert command_column(["a" * 21], truncate=False) == '"' + "a" * 21 + '"'


def test_times_for_since_and_until() -> None:
    now = 1_800_000_000.0
    assert parse_time("1796074200.5", "since", now) == 1796074200.5
    assert parse_time("10m", "since", now) == now - 600
    assert parse_time("1h30m", "since", now) == now - 5400
    assert parse_time("1.5s", "since", now) == now - 1.5
    assert parse_time("2026-11-29T21:30:00Z", "since", now) == 1795987800.0
    assert parse_time("2026-11-29T22:30:00+01:00", "until", now) == 1795987800.0
    assert parse_time("10", "since", now) == 10.0  # a number: seconds since the epoch
    for bad in ("yesterday", "10x", "m", "2026-13-01", "1h 30m"):
        with pytest.raises(SpecError, match=f"until: {bad!r} is no time"):
            parse_time(bad, "until", now)


def test_signals_by_name_or_number() -> None:
    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == 9
    assert parse_signal("usr1") == 10
    for bad in ("NOPE", "0", "999", "SIG", "-9"):
        with pytest.raises(SpecError, match=f"{bad!r} is not a signal"):
            parse_signal(bad)


def test_volumes_are_read_write_unless_ro(tmp_path: Path) -> None:
    src = str(tmp_path)
    assert parse_volume(f"{src}:/data") == (src, "/data", False)
    assert parse_volume(f"{src}:/data:ro") == (src, "/data", True)
    assert parse_volume(f"{src}:/data:rw") == (src, "/data", False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/tmp", "is not SRC:DST"),
        (":/data", "is not SRC:DST"),
        ("/tmp:", "is not SRC:DST"),
        ("/tmp:/a:ro:x", "is not SRC:DST"),
        ("data:/data", "must be an absolute host path"),
        ("/tmp:/data:z", "unknown option 'z'"),
        ("/tmp:data", "the target must be an absolute path"),
    ],
)
def test_bad_volumes_are_refused(text: str, message: str) -> None:
    with pytest.raises(SpecError, match="volume") as info:
        parse_volume(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def test_a_volume_of_a_missing_source_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(SpecError, match="does not exist"):
        parse_volume(f"{missing}:/data")
    assert not missing.exists()  # docker would make it; we do not


def test_env_passes_the_callers_value_for_a_bare_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert env_variables(["A=1", "B=", "C=x=y", "FROM_HOST", "NOT_SET"]) == {
        "A": "1", "B": "", "C": "x=y", "FROM_HOST": "h", "NOT_SET": "",
    }  # fmt: skip


def test_table_columns_as_dockers() -> None:
    rows = [["CONTAINER ID", "NAMES"], ["abc", ""], ["d", "web"]]
    assert table(rows).splitlines() == [
        "CONTAINER ID   NAMES",
        "abc",  # no trailing spaces
        "d              web",
    ]
    # Each column but the last is at least 10 wide, and 3 spaces go after it.
    assert table([["A", "B", "C"], ["x", "y", "z"]]) == "A".ljust(13) + "B".ljust(13) + "C\n" + (
        "x".ljust(13) + "y".ljust(13) + "z"
    )


def test_bytes_size_as_docker_stats() -> None:
    assert bytes_size(0) == "0B"
    assert bytes_size(1023) == "1023B"
    assert bytes_size(1024) == "1KiB"
    assert bytes_size(1536 * 1024) == "1.5MiB"
    assert bytes_size(25_270_000_000) == "23.53GiB"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-d", "-t"], "tty: -t with -d is not supported: there is no attach yet"),
        (["-d", "-i"], "interactive: -i with -d is not supported"),
        (["--name", "web"], "name: --name needs -d"),
        (["-d", "--timeout", "3"], "timeout: --timeout is for a container in the foreground"),
    ],
)
def test_run_refuses_what_it_cannot_do_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["run", *args, str(tmp_path / "no-rootfs"), "true"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err == f"containerlib: run: {message}" + err.partition(message)[2]
    assert err.count("\n") == 1
