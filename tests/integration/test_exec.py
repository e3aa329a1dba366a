"""RunningContainer.exec: a process started in a running container, as ``docker exec``,
checked from inside (its namespaces, cgroup, privileges, descriptors) and from the host
(the process that joins is non-dumpable before it joins)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib import (
    Container,
    ContainerError,
    ContainerNotRunning,
    ContainerSetupError,
    Image,
    SpecError,
)
from containerlib.runtime import nativeinit

from .conftest import ROOT

pytestmark = [
    pytest.mark.usefixtures("state"),
    pytest.mark.skipif(
        nativeinit.helper_path() is None, reason="exec needs the native helper (a C compiler)"
    ),
]

NAMESPACES = ("pid", "mnt", "net", "ipc", "uts", "cgroup", "user")


@pytest.fixture
def box(image: Image) -> Iterator[object]:
    with Container(image).hostname("box").start(["sleep", "60"]) as running:
        yield running


def test_the_process_is_in_every_namespace_and_the_cgroup_of_the_container(box: object) -> None:
    from containerlib.container import RunningContainer

    assert isinstance(box, RunningContainer)
    script = (
        f"for n in {' '.join(NAMESPACES)}; do readlink /proc/1/ns/$n; readlink /proc/self/ns/$n;"
        " done; cat /proc/1/cgroup /proc/self/cgroup"
    )
    out = box.exec(["sh", "-c", script])
    lines = out.stdout.decode().split("\n")
    for i, name in enumerate(NAMESPACES):
        container, own = lines[2 * i], lines[2 * i + 1]
        assert container == own, name
    cgroups = lines[2 * len(NAMESPACES) : -1]
    half = len(cgroups) // 2
    assert cgroups[:half] == cgroups[half:]
    # Its pid is the container's (small), not the host's; it sees the container's
    # processes only, and the container's host name and files.
    box.exec(["sh", "-c", "echo made > /tmp/by-exec"], check=True)
    script = "echo $$; ls /proc | grep -c '^[0-9]'; hostname; cat /tmp/by-exec"
    pid, count, hostname, made = box.exec(["sh", "-c", script]).stdout.decode().split()
    assert int(pid) < 100  # the container numbers its own processes from 1
    assert int(count) <= 4
    assert (hostname, made) == ("box", "made")


def test_it_has_the_containers_privileges(box: object) -> None:
    from containerlib.container import RunningContainer

    assert isinstance(box, RunningContainer)
    keys = "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Uid|Gid):"
    out = box.exec(
        ["sh", "-c", f"grep -E '{keys}' /proc/1/status; grep -E '{keys}' /proc/self/status"]
    )
    lines = out.stdout.decode().splitlines()
    half = len(lines) // 2
    assert lines[:half] == lines[half:]
    assert "NoNewPrivs:\t1" in lines
    assert "Seccomp:\t2" in lines
    refused = box.exec(["mount", "-t", "tmpfs", "t", "/mnt"])
    assert refused.exit_code != 0


def test_only_stdio_crosses_in_even_when_the_caller_holds_many(box: object, tmp_path: Path) -> None:
    from containerlib.container import RunningContainer

    assert isinstance(box, RunningContainer)
    held = [os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)]
    held += [os.open("/dev/null", os.O_RDONLY) for _ in range(49)]
    for fd in held:
        os.set_inheritable(fd, True)
    try:
        out = box.exec(["ls", "-l", "/proc/self/fd"]).stdout.decode()
    finally:
        for fd in held:
            os.close(fd)
    fds = {}
    for line in out.splitlines():
        if " -> " in line:
            name, _, target = line.partition(" -> ")
            fds[int(name.split()[-1])] = target
    # 0, 1, 2 and the directory ls reads, /proc/<its pid>/fd: not the container's pidfd
    # the joining process was given, nor the spawner's sockets, nor the caller's.
    extra = {fd: t for fd, t in fds.items() if fd > 2}
    assert set(fds) >= {0, 1, 2}
    assert len(extra) <= 1, fds
    assert all(t.endswith("/fd") for t in extra.values()), fds
    assert str(tmp_path) not in out


def test_user_env_workdir_input_and_exit_codes(box: object) -> None:
    from containerlib.container import RunningContainer

    assert isinstance(box, RunningContainer)
    if ROOT:
        assert box.exec(["id", "-un"], user="nobody").stdout == b"nobody\n"
        assert box.exec(["sh", "-c", "echo $HOME"], user="nobody").stdout == b"/nonexistent\n"
    out = box.exec(["sh", "-c", 'echo "$X $HOSTNAME"; pwd'], env={"X": "y"}, workdir="/tmp")
    assert out.stdout == b"y box\n/tmp\n"
    assert box.exec(["cat"], input=b"to stdin").stdout == b"to stdin"
    assert box.exec(["sh", "-c", "echo err >&2; exit 3"]).exit_code == 3
    missing = box.exec(["no-such-command"])
    assert missing.exit_code == 127
    assert b"executable file not found" in missing.stderr
    with pytest.raises(ContainerError):
        box.exec(["false"], check=True)
    slow = box.exec(["sleep", "30"], timeout=0.3)
    assert slow.timed_out
    assert slow.exit_code == 128 + 9


def test_bad_input_and_an_ended_container(image: Image) -> None:
    with Container(image).start(["sleep", "60"]) as running:
        for bad in ([], "ls", [b"ls"]):
            with pytest.raises(SpecError):
                running.exec(bad)  # type: ignore[arg-type]
        with pytest.raises(SpecError):
            running.exec(["true"], workdir="relative")
        with pytest.raises(SpecError):
            running.exec(["true"], env={"A=B": "c"})
        with pytest.raises(ContainerSetupError) as info:
            running.exec(["true"], workdir="/no/such/dir")
        assert "/no/such/dir" in str(info.value)
        running.kill()
        running.wait(timeout=10)
        with pytest.raises(ContainerNotRunning):
            running.exec(["true"])


def test_an_exec_ends_with_its_container(image: Image) -> None:
    import threading

    with Container(image).start(["sleep", "60"]) as running:
        results: list[object] = []
        worker = threading.Thread(target=lambda: results.append(running.exec(["sleep", "60"])))
        worker.start()
        time.sleep(0.5)
        running.kill()
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert getattr(results[0], "exit_code", None) == 128 + 9


@pytest.mark.skipif(not ROOT, reason="needs root: strace attaches to the spawner")
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_joining_process_is_non_dumpable_before_it_joins(busybox: Path) -> None:
    # In a process of its own, whose spawner strace follows: the order of the calls of
    # the process that joins the container.
    script = f"""
import subprocess, sys, time
from containerlib import Container, Image
from containerlib.runtime.client import spawner
c = Container(Image.from_rootfs({str(busybox)!r}))
with c.start(["sleep", "30"]) as box:
    trace = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=prctl,setns,execve", "-p", str(spawner.pid)],
        stderr=subprocess.PIPE,
    )
    time.sleep(1)
    box.exec(["true"], check=True)
    time.sleep(0.2)
    trace.terminate()
    sys.stdout.write(trace.communicate()[1].decode())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    calls = [line for line in done.stdout.decode().splitlines() if "resumed" not in line]
    dumpable = next(i for i, c in enumerate(calls) if "PR_SET_DUMPABLE" in c)
    joined = next(i for i, c in enumerate(calls) if "setns(" in c)
    assert dumpable < joined
    assert "SUID_DUMP_DISABLE" in calls[dumpable]
    assert " = 0" in calls[joined]
