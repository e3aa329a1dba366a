"""The native init helper and the Python child make the same containers.

native_init_scenarios.py runs a set of key behaviours (PID 1, loopback, hostname,
read-only /proc/sys, OOM kill, bind mounts, users and capabilities, exit codes, setup
failures, the image left untouched, mount points behind symlinks, signals at their
defaults, and what only a spec reaches: sysctls, rlimits, devices...) in a process of its
own. It runs once with the helper and once with ``CONTAINERLIB_NATIVE_INIT=0``; both
outputs must be what Docker gives, and equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from containerlib.runtime import nativeinit
from tests.integration.conftest import needs_root

pytestmark = [
    pytest.mark.root,
    needs_root(
        "the Python child makes no user namespace; the scenarios set limits and use other uids"
    ),
    pytest.mark.usefixtures("state"),
]

ROOT = Path(__file__).resolve().parents[2]


def scenarios(busybox: Path, scratch: Path, native: bool) -> Any:
    env = dict(os.environ)
    env.pop("CONTAINERLIB_NATIVE_INIT", None)
    if not native:
        env["CONTAINERLIB_NATIVE_INIT"] = "0"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.native_init_scenarios", busybox, scratch],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def python_child(busybox: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return scenarios(busybox, tmp_path_factory.mktemp("python") / "scratch", native=False)


@pytest.fixture(scope="module")
def native(busybox: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if nativeinit._find_compiler() is None:
        pytest.skip("no C compiler: the native helper cannot be built here")
    return scenarios(busybox, tmp_path_factory.mktemp("native") / "scratch", native=True)


def test_each_run_used_the_init_it_was_asked_for(python_child: Any, native: Any) -> None:
    assert python_child["warm_process"] == "python"
    assert native["warm_process"] == "native"


def test_both_make_the_same_containers(python_child: Any, native: Any) -> None:
    names = native.keys() - {"warm_process"}
    assert names == python_child.keys() - {"warm_process"}
    for name in sorted(names):
        assert native[name] == python_child[name], name


@pytest.mark.parametrize("kind", ["python_child", "native"])
def test_the_behaviour_is_dockers(kind: str, request: pytest.FixtureRequest) -> None:
    r = request.getfixturevalue(kind)
    # PID 1, and no process of the host in sight.
    assert (r["pid_1"]["exit_code"], r["pid_1"]["stdout"]) == (0, "1\n")
    assert r["only_lo_and_up"]["stdout"] == "lo\nup\n"
    assert r["hostname"]["stdout"] == "box-1\n"
    assert "Read-only file system" in r["proc_sys_read_only"]["stderr"]
    assert "Read-only file system" in r["sys_read_only"]["stderr"]
    assert r["masked_paths"]["stdout"] == "0\n0\n"
    assert r["dev"]["stdout"].split() == [
        *("fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr"),
        *("stdin", "stdout", "tty", "urandom", "zero", "crw-rw-rw-"),
    ]
    assert r["oom_kill"]["oom_killed"]
    assert r["oom_kill"]["exit_code"] != 0
    assert r["bind_ro"]["stdout"] == "from the host"
    assert "Read-only file system" in r["bind_ro"]["stderr"]
    assert r["bind_rw"]["stdout"] == "hi\n"
    assert r["bind_a_file"]["stdout"] == "from the host"
    user = r["user_1000_1001"]["stdout"].split("\n")
    assert user[:6] == ["hello world", "/tmp", "1000", "1001", "1001", "0022"]
    assert r["signals_at_default"]["stdout"] == (
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    )
    assert r["sigpipe_kills_a_writer"]["stderr"] == "141\n"
    caps = dict(line.split(":\t") for line in r["docker_capabilities"]["stdout"].splitlines())
    assert caps["CapBnd"] == caps["CapEff"] == caps["CapPrm"] == "00000000a80425fb"
    assert caps["CapInh"] == caps["CapAmb"] == "0000000000000000"
    caps = dict(line.split(":\t") for line in r["capabilities_as_1000"]["stdout"].splitlines())
    assert caps["CapBnd"] == "00000000a80425fb"
    assert caps["CapEff"] == caps["CapPrm"] == "0000000000000000"
    assert r["exit_42"]["exit_code"] == 42
    assert r["not_found_127"]["exit_code"] == 127
    assert r["not_found_127"]["stderr"] == (
        "containerlib: exec 'no-such-command': executable file not found in $PATH\n"
    )
    assert r["no_such_path_127"]["exit_code"] == 127
    assert r["no_such_path_127"]["stderr"] == (
        "containerlib: exec '/no/such/file': no such file or directory\n"
    )
    assert r["not_executable_126"]["exit_code"] == 126
    assert "permission denied" in r["not_executable_126"]["stderr"]
    assert r["killed_137"]["exit_code"] == 137
    assert r["killed_137"]["timed_out"]
    assert r["stdin_to_stdout"]["stdout"] == "\0bytes\ufffd"
    assert r["read_only_root"]["stdout"] == "tmpfs-ok\n"
    assert "Read-only file system" in r["read_only_root"]["stderr"]
    assert r["bad_workdir"] == {
        "step": "chdir to '/etc/passwd'",
        "errno": 20,
        "message": "chdir to '/etc/passwd' in container bad-workdir: Not a directory",
    }
    assert r["mount_under_a_file"]["step"] == "make mount point '/etc/passwd/x'"
    assert r["mount_under_a_file"]["errno"] == 20
    writes = r["writes_stay_in_the_container"]
    assert writes["first"]["exit_code"] == 0
    assert writes["image_unchanged"]
    assert "No such file" in writes["second"]["stdout"]
    assert "/bin/ls" in writes["second"]["stdout"]
    inside = r["mount_targets_stay_inside"]
    assert inside["run"]["stdout"].split() == [
        *("/abs/made/here", "/abs/made/there", "/rel/made/here", "/rel/made/there")
    ]
    assert inside["dangling"]["step"] == "make mount point '/dangling/x'"
    assert inside["host_side"] == []
    features = r["plan_features"]
    assert features["exit_code"] == 0, features["stderr"]
    assert features["stdout"].split("\n") == [
        "12345",
        "example.org",
        "500",
        "100",
        "0027",
        "1001 10 20",
        "CapAmb:\t0000000000000400",
        "prw------- 0 0",
        "crw--w---- 1000 1001",
        "written",
        "",
    ]
