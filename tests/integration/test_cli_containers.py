"""The ``containerlib`` command as docker's: run -d, ps, logs, exec, stop, kill, rm, inspect,
stats, container prune, and run's docker flags in the foreground.

Each test runs the command as a subprocess with the test roots in its environment, as a
user would, and looks at what it prints and how it exits. Detached containers' keepers
outlive the command that started them: this process is made their subreaper, so that it
can wait for them to be gone before the leak checks look.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import containerlib
from containerlib.runtime import nativeinit
from tests.integration.conftest import ROOT, needs_root
from tests.integration.signalling import PRELUDE

pytestmark = pytest.mark.usefixtures("state")

CLI = [sys.executable, "-m", "containerlib.cli"]
needs_native_helper = pytest.mark.skipif(
    nativeinit.helper_path() is None, reason="a terminal needs the native helper (a C compiler)"
)
#: A shell that says it runs, and ends with 143 on SIGTERM (as PID 1 it has no default
#: action for it: without the trap, SIGTERM would be ignored).
TRAPPING = (
    'trap "echo got TERM; exit 143" TERM; echo up; echo oops >&2; while :; do sleep 0.05; done'
)


def cli(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``containerlib ARGS...``; its stdin is ``input`` or /dev/null."""
    return subprocess.run(
        [*CLI, *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )


def ok(*args: str, input: bytes | None = None) -> str:
    """Run ``containerlib ARGS...``, which must succeed; returns its stdout."""
    r = cli(*args, input=input)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r.stdout.decode()


def keepers() -> list[int]:
    """The keepers this process has adopted (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm == "clib-keeper" and int(stat.rpartition(")")[2].split()[1]) == os.getpid():
            found.append(int(entry.name))
    return found


def wait_for_keepers() -> None:
    """Wait until the adopted keepers have ended (they clean up after their container)
    and reap them."""
    for pid in keepers():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            assert select.select([fd], [], [], 60)[0], f"keeper {pid} still runs"
        finally:
            os.close(fd)
        os.waitpid(pid, 0)


@pytest.fixture(autouse=True)
def no_containers_left(state: None) -> Iterator[None]:
    """Removes what a test left (it fails before the leak checks of ``state`` look)."""
    yield
    left = containerlib.list(all=True)
    for box in left:
        box.remove(force=True)
    wait_for_keepers()
    assert not left, f"containers left behind: {left}"


@pytest.fixture
def rootfs(busybox: Path) -> str:
    return str(busybox)


def run_detached(rootfs: str, *args: str, script: str = TRAPPING) -> str:
    """``containerlib run -d ARGS... ROOTFS sh -c SCRIPT`` once it has written its first
    line; returns its id."""
    cid = ok("run", "-d", *args, rootfs, "sh", "-c", script).strip()
    assert re.fullmatch(r"[0-9a-f]{32}", cid), cid
    box = containerlib.get(cid)
    # The first line in its log says the script runs (its trap is set).
    next(box.logs(stdout=True, stderr=False, follow=True))
    return cid


def exit_code(reference: str) -> int:
    [data] = json.loads(ok("inspect", reference))
    assert data["State"]["Status"] == "exited"
    return int(data["State"]["ExitCode"])


# -- run -d, ps, logs ---------------------------------------------------------------------


def test_run_detached_is_listed_by_ps_until_it_ends(rootfs: str) -> None:
    cid = run_detached(rootfs, "--name", "web")
    lines = ok("ps").splitlines()
    header = ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert lines[0].split() == header
    [row] = lines[1:]
    assert row.startswith(cid[:12] + " ")
    assert f" {rootfs} " in row
    assert '"sh -c trap \\"echo go…"' in row
    assert re.search(r" (Less than a second|\d+ seconds?) ago +Up ", row), row
    assert row.endswith(" web")
    assert ok("ps", "-q").split() == [cid[:12]]
    assert ok("ps", "-q", "--no-trunc").split() == [cid]

    assert ok("stop", "web") == "web\n"
    assert ok("ps", "-q") == ""
    [row] = ok("ps", "-a").splitlines()[1:]
    assert re.search(r" Exited \(143\) (Less than a second|\d+ seconds?) ago +web$", row), row
    assert ok("rm", "web") == "web\n"
    assert ok("ps", "-aq") == ""


def test_logs_separate_the_streams_and_follow_until_the_end(rootfs: str) -> None:
    cid = ok("run", "-d", rootfs, "sh", "-c", "echo one; echo oops >&2; sleep 1; echo two").strip()
    follow = cli("logs", "-f", cid)  # returns when the container has ended
    assert (follow.returncode, follow.stdout, follow.stderr) == (0, b"one\ntwo\n", b"oops\n")
    r = cli("logs", cid)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"one\ntwo\n", b"oops\n")
    assert ok("logs", "--tail", "1", cid) == "two\n"
    stamped = ok("logs", "-t", "--tail", "1", cid)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z two\n", stamped), stamped
    assert ok("logs", "--since", "2100-01-01T00:00:00Z", cid) == ""
    assert ok("logs", "--until", "1h", cid) == ""  # an hour before now: nothing yet
    assert ok("logs", "--since", "1h", cid) == "one\ntwo\n"
    bad = cli("logs", "--since", "yesterday", cid)
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("containerlib: logs: since: 'yesterday' is no time")
    assert ok("rm", cid) == f"{cid}\n"


def test_logs_follow_ends_at_ctrl_c_while_the_container_runs(rootfs: str) -> None:
    cid = run_detached(rootfs)
    with subprocess.Popen(
        [*CLI, "logs", "-f", cid], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert containerlib.get(cid).status == "running"
    ok("rm", "-f", cid)


def test_run_rm_detached_leaves_nothing_once_it_has_ended(
    rootfs: str, roots: dict[str, str]
) -> None:
    cid = ok("run", "-d", "--rm", rootfs, "sh", "-c", "echo bye").strip()
    wait_for_keepers()  # its keeper removes it as it ends, then exits
    assert not containerlib.list(all=True)
    assert os.listdir(roots["CONTAINERLIB_RUN_ROOT"]) in ([], [".lock"])
    r = cli("logs", cid)
    assert r.returncode == 1
    assert r.stderr.decode() == f"containerlib: logs: no such container: {cid}\n"


# -- exec ---------------------------------------------------------------------------------


def test_exec_runs_in_the_container_with_its_output_and_exit_code(rootfs: str) -> None:
    cid = run_detached(rootfs, "--name", "box", "-e", "FROM_RUN=yes")
    r = cli("exec", "box", "sh", "-c", "echo out $FROM_RUN; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out yes\n", b"err\n")
    # Its processes are the container's: PID 1 is the trapping shell.
    assert ok("exec", cid[:8], "cat", "/proc/1/cmdline").startswith("sh\0-c\0trap ")
    out = ok("exec", "-e", "X=1", "-w", "/etc", "box", "sh", "-c", "echo $X $(pwd)")
    assert out == "1 /etc\n"
    # stdin with -i only, as docker's.
    assert ok("exec", "-i", "box", "cat", input=b"piped") == "piped"
    assert ok("exec", "box", "cat", input=b"piped") == ""
    r = cli("exec", "box")
    assert (r.returncode, r.stderr) == (
        1,
        b"containerlib: exec: cmd: give the command to run after the container\n",
    )
    r = cli("exec", "box", "no-such-command")
    assert r.returncode == 127
    assert b"no-such-command" in r.stderr
    ok("stop", "box")
    r = cli("exec", "box", "true")
    assert r.returncode == 1
    assert r.stderr.decode().endswith("it is not running\n")
    ok("rm", "box")


@needs_root("another uid inside, which a user namespace that maps one id lacks")
def test_exec_as_another_user(rootfs: str) -> None:
    run_detached(rootfs, "--name", "box")
    assert ok("exec", "-u", "nobody", "box", "id", "-un") == "nobody\n"
    r = cli("exec", "-u", "no-such-user", "box", "true")
    assert r.returncode == 126
    assert b"no-such-user" in r.stderr
    ok("rm", "-f", "box")


def test_exec_output_comes_as_it_is_written_and_signals_pass_on(rootfs: str) -> None:
    run_detached(rootfs, "--name", "box")
    with subprocess.Popen(
        [*CLI, "exec", "box", "sh", "-c", "echo first; exec sleep 60"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"  # while the command still runs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    ok("rm", "-f", "box")


#: ``containerlib exec ...`` that gets SIGTERM the moment its request has gone to the
#: keeper: the process may start, and write, before the keeper's answer is read. SIGTERM
#: was at ``{}`` until then, as if inherited from whoever started the command.
SIGNALLED_AS_SOON_AS_ASKED = """
import os, runpy, signal
from containerlib.runtime import messages
signal.signal(signal.SIGTERM, signal.{})
send = messages.send_message
def send_then_signal(sock, obj, fds=()):
    send(sock, obj, fds)
    if obj[0] == "exec":
        os.kill(os.getpid(), signal.SIGTERM)
messages.send_message = send_then_signal
runpy.run_module("containerlib.cli", run_name="__main__")
"""


@pytest.mark.parametrize("inherited", ["SIG_DFL", "SIG_IGN"])
def test_exec_passes_on_a_signal_that_comes_before_the_keepers_answer(
    rootfs: str, inherited: str
) -> None:
    # Even one that whoever started the command had ignored (as nohup does SIGHUP) is
    # passed on: the command is there to pass them on.
    run_detached(rootfs, "--name", "box")
    script = SIGNALLED_AS_SOON_AS_ASKED.format(inherited)
    r = subprocess.run(
        [sys.executable, "-c", script, "exec", "box", "sleep", "60"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=20,
    )
    assert (r.returncode, r.stdout, r.stderr) == (128 + signal.SIGTERM, b"", b"")
    ok("rm", "-f", "box")


#: After :data:`PRELUDE`: ``containerlib ARGS...`` that gets SIGTERM in another thread
#: once the descriptor ``$GO`` has said so and its main thread blocks in its wait.
SIGNALLED_WHILE_IT_WAITS = """
import runpy
signal_in_a_thread(int(os.environ["GO"]))
runpy.run_module("containerlib.cli", run_name="__main__")
"""
#: A container's first process: PID 1, it needs the trap; it would end by itself, with
#: 0, after 20 seconds.
WAITING = 'trap "exit 42" TERM; echo up; sleep 20 & wait'


@pytest.mark.parametrize(
    ("command", "code"),
    [("run", 42), ("run -t", 42), ("exec", 143), ("exec -t", 143)],
)
def test_a_signal_that_lands_while_the_command_waits_is_passed_on_at_once(
    rootfs: str, command: str, code: int
) -> None:
    # The signal lands in another thread (as it may in the terminal relay's, with -t), or
    # just before the main thread blocks: its handler runs in the main thread only, and
    # only once the wait has ended, unless the wait watches the wakeup descriptor too.
    if command.startswith("exec"):
        run_detached(rootfs, "--name", "box")
        args = [*command.split(), "box", "sh", "-c", "echo up; exec sleep 20"]
    else:
        args = [*command.split(), rootfs, "sh", "-c", WAITING]
    go, said = os.pipe()
    try:
        with subprocess.Popen(
            [sys.executable, "-c", PRELUDE + SIGNALLED_WHILE_IT_WAITS, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            pass_fds=[go],
            env={**os.environ, "GO": str(go)},
        ) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().rstrip() == b"up"  # it runs, its trap set
            os.write(said, b"x")
            assert proc.wait(timeout=60) == code
    finally:
        os.close(go)
        os.close(said)
    if command.startswith("exec"):
        ok("rm", "-f", "box")


# -- stop, kill, rm, inspect ------------------------------------------------------------


def test_stop_kills_what_ignores_sigterm_after_the_grace_period(rootfs: str) -> None:
    run_detached(rootfs, "--name", "stubborn", script="echo up; exec sleep 60")
    assert ok("stop", "-t", "0.5", "stubborn") == "stubborn\n"
    assert exit_code("stubborn") == 137
    ok("rm", "stubborn")


def test_kill_sends_the_signal_given(rootfs: str) -> None:
    script = 'trap "echo got USR1" USR1; echo up; while :; do sleep 0.05; done'
    cid = run_detached(rootfs, script=script)
    assert ok("kill", "-s", "USR1", cid[:12]) == f"{cid[:12]}\n"
    seen = b""
    for chunk in containerlib.get(cid).logs(follow=True):  # until the trap has run
        seen += chunk
        if b"got USR1\n" in seen:
            break
    assert seen == b"up\ngot USR1\n"
    r = cli("kill", "-s", "NOPE", cid)
    assert r.returncode == 1
    assert r.stderr.decode() == (
        "containerlib: kill: signal: 'NOPE' is not a signal: give a name such as TERM, or 15\n"
    )
    assert ok("kill", cid) == f"{cid}\n"  # SIGKILL, as docker's
    containerlib.get(cid).wait()
    assert exit_code(cid) == 137
    r = cli("kill", cid)
    assert r.returncode == 1
    assert r.stderr.decode().endswith("it is not running\n")
    ok("rm", cid)


def test_rm_refuses_a_running_container_without_force(rootfs: str) -> None:
    cid = run_detached(rootfs, "--name", "busy")
    r = cli("rm", "busy")
    assert r.returncode == 1
    assert r.stdout == b""
    assert r.stderr.decode() == (
        "containerlib: rm: remove container 'busy': Device or resource busy "
        "(it is running: stop it, or use -f)\n"
    )
    assert ok("ps", "-q") == f"{cid[:12]}\n"
    assert ok("rm", "-f", "busy") == "busy\n"
    assert ok("ps", "-aq") == ""


def test_inspect_gives_a_json_list_as_docker_inspect(rootfs: str) -> None:
    cid = run_detached(rootfs, "--name", "web")
    [by_name] = json.loads(ok("inspect", "web"))
    [by_prefix] = json.loads(ok("inspect", cid[:5]))
    assert by_name["Id"] == by_prefix["Id"] == cid
    assert by_name["Name"] == "/web"
    assert by_name["Path"] == "sh"
    assert by_name["Args"] == ["-c", TRAPPING]
    state = by_name["State"]
    assert state["Status"] == "running"
    assert state["Running"] is True
    assert state["Pid"] == containerlib.get(cid).pid
    assert state["FinishedAt"] == "0001-01-01T00:00:00Z"
    ok("stop", "web")
    r = cli("inspect", "web", "nothing-here")
    assert r.returncode == 1
    [data] = json.loads(r.stdout)
    assert data["State"]["Status"] == "exited"
    assert data["State"]["Running"] is False
    assert data["State"]["ExitCode"] == 143
    assert r.stderr.decode() == "containerlib: inspect: no such container: nothing-here\n"
    ok("rm", "web")


def test_unknown_containers_are_one_line_errors_with_exit_code_1(rootfs: str) -> None:
    for args in (
        ["logs", "nope"],
        ["stop", "nope"],
        ["kill", "nope"],
        ["rm", "nope"],
        ["exec", "nope", "true"],
        ["stats", "--no-stream", "nope"],
    ):
        r = cli(*args)
        assert (r.returncode, r.stdout) == (1, b""), args
        assert r.stderr.decode() == f"containerlib: {args[0]}: no such container: nope\n"
    r = cli("stop", "bad/name")
    assert r.returncode == 1
    assert r.stderr.decode() == (
        "containerlib: stop: no such container: bad/name (not a container id or name)\n"
    )


def test_names_are_unique(rootfs: str) -> None:
    run_detached(rootfs, "--name", "one")
    r = cli("run", "-d", "--name", "one", rootfs, "true")
    assert r.returncode == 125
    assert b"'one'" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert len(containerlib.list(all=True)) == 1
    ok("rm", "-f", "one")


# -- stats, container prune ---------------------------------------------------------------


def test_stats_no_stream_shows_one_table(rootfs: str) -> None:
    # A non-root user's containers have no cgroup here: their figures are zeros.
    limits = ["--memory", "64m"] if ROOT else []
    cid = run_detached(rootfs, "--name", "web", *limits)
    lines = ok("stats", "--no-stream").splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O", "PIDS",
    ]  # fmt: skip
    [row] = lines[1:]
    cells = re.split(r"\s{2,}", row)
    assert cells[:2] == [cid[:12], "web"]
    assert re.fullmatch(r"\d+\.\d\d%", cells[2])
    assert re.fullmatch(r"[\d.]+(B|KiB|MiB) / [\d.]+(KiB|MiB|GiB|TiB)", cells[3]), cells[3]
    assert re.fullmatch(r"\d+\.\d\d%", cells[4])
    if ROOT:
        assert int(cells[-1]) >= 1  # the shell, and its sleep now and then
    assert ok("stats", "--no-stream", "web").splitlines()[1].startswith(cid[:12])
    ok("rm", "-f", "web")


def test_stats_refreshes_until_interrupted(rootfs: str) -> None:
    cid = run_detached(rootfs)
    with subprocess.Popen(
        [*CLI, "stats"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(b"\033[2J\033[HCONTAINER ID ")  # a clear screen, a table
        assert proc.stdout.readline().startswith(cid[:12].encode())
        assert proc.stdout.readline().startswith(b"\033[2J\033[HCONTAINER ID ")  # again
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    ok("rm", "-f", cid)


def test_container_prune_removes_those_that_have_ended(rootfs: str) -> None:
    ended = ok("run", "-d", rootfs, "true").strip()
    containerlib.get(ended).wait()
    running = run_detached(rootfs)
    # Without -f it asks first; anything but y keeps them.
    r = cli("container", "prune", input=b"n\n")
    assert r.returncode == 0
    assert b"Are you sure" in r.stdout
    assert len(containerlib.list(all=True)) == 2
    assert ok("container", "prune", "-f") == f"Deleted Containers:\n{ended}\n"
    assert [box.id for box in containerlib.list(all=True)] == [running]
    ok("rm", "-f", running)


# -- run in the foreground ----------------------------------------------------------------


def test_run_in_the_foreground_with_docker_flags(rootfs: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    r = cli(
        "run", "--rm", "-e", "GREETING=hi", "-v", f"{shared}:/data", "--workdir", "/data",
        rootfs, "sh", "-c", "echo $GREETING; pwd; cat in.txt; echo back > out.txt",
    )  # fmt: skip
    assert (r.returncode, r.stdout, r.stderr) == (0, b"hi\n/data\nfrom the host\n", b"")
    assert (shared / "out.txt").read_text() == "back\n"  # -v is read-write by default
    r = cli("run", "-v", f"{shared}:/data:ro", rootfs, "sh", "-c", "echo x > /data/no.txt")
    assert r.returncode != 0
    assert b"Read-only file system" in r.stderr
    assert not (shared / "no.txt").exists()


@needs_root("another uid inside, which a user namespace that maps one id lacks")
def test_run_in_the_foreground_as_another_user(rootfs: str) -> None:
    assert ok("run", "--user", "nobody", rootfs, "id", "-u") == "65534\n"
    assert ok("run", "--user", "1234:5678", rootfs, "id").startswith("uid=1234 gid=5678")


def test_run_passes_stdin_on_with_i_only(rootfs: str) -> None:
    assert ok("run", rootfs, "cat", input=b"piped") == ""
    assert ok("run", "-i", rootfs, "cat", input=b"piped") == "piped"


@needs_root("a cgroup for the CPU limit (none is delegated rootless)")
def test_run_cpus_sets_the_cfs_quota(rootfs: str) -> None:
    cid = run_detached(rootfs, "--cpus", "0.5")
    [data] = json.loads(ok("inspect", cid))
    cgroup = data["Containerlib"]["cgroup_path"]
    quotas = [
        p.read_text().split()
        for p in (Path(f"/sys/fs/cgroup/cpu/{cgroup}/cpu.cfs_quota_us"),
                  Path(f"/sys/fs/cgroup/{cgroup}/cpu.max"))
        if p.exists()
    ]  # fmt: skip
    assert quotas in ([["50000"]], [["50000", "100000"]])
    ok("rm", "-f", cid)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-v", "relative:/data"], "the source must be an absolute host path"),
        (["-v", "/no/such/dir:/data"], "the source '/no/such/dir' does not exist"),
        (["-v", "/tmp:/data:rx"], "unknown option 'rx'"),
        (["-v", "/tmp"], "is not SRC:DST[:ro]"),
        (["--name", "x"], "--name needs -d"),
        (["-d", "-i"], "-i with -d is not supported"),
        (["--cpus", "lots"], "cpus"),
    ],
)
def test_bad_run_input_is_one_line_and_exit_code_125(
    rootfs: str, args: list[str], message: str
) -> None:
    r = cli("run", *args, rootfs, "true")
    assert r.returncode == 125
    [line] = r.stderr.decode().splitlines()
    assert line.startswith("containerlib: run: ")
    assert message in line
    assert not containerlib.list(all=True)


# -- terminals ------------------------------------------------------------------------------


def read_until(fd: int, wanted: bytes, seen: bytearray) -> None:
    """Read ``fd`` into ``seen`` until ``wanted`` is in it (or it ends: the caller's
    assertion then shows what came)."""
    while wanted not in seen:
        if not select.select([fd], [], [], 30)[0]:
            return
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other end is closed
            return
        if not chunk:
            return
        seen += chunk


@contextlib.contextmanager
def users_terminal(columns: int, rows: int) -> Iterator[tuple[int, int]]:
    """A pseudo terminal of that size, as the user's own: its master and other end."""
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


@needs_native_helper
def test_run_t_gives_a_terminal_of_the_users_size_and_restores_theirs(rootfs: str) -> None:
    script = "tty; stty size; read line; echo got $line; exit 7"
    with users_terminal(100, 30) as (master, slave):
        with subprocess.Popen(
            [*CLI, "run", "-i", "-t", rootfs, "sh", "-c", script],
            stdin=slave,
            stdout=slave,
            stderr=slave,
        ) as proc:
            seen = bytearray()
            read_until(master, b"30 100\r\n", seen)
            assert bytes(seen) == b"/dev/pts/0\r\n30 100\r\n"
            # Raw mode: this process's terminal hands keys on as they are typed.
            assert not termios.tcgetattr(slave)[3] & termios.ICANON
            os.write(master, b"hello\r")
            read_until(master, b"got hello\r\n", seen)
            assert bytes(seen).endswith(b"hello\r\ngot hello\r\n")
            assert proc.wait(timeout=30) == 7
        assert termios.tcgetattr(slave)[3] & termios.ICANON  # as it was


@needs_native_helper
def test_run_t_without_a_terminal_of_ones_own(rootfs: str) -> None:
    r = cli("run", "-t", rootfs, "sh", "-c", "tty; stty size; echo err >&2; exit 3")
    # Both streams are the terminal's: they come out on stdout, with its \r\n.
    assert (r.returncode, r.stdout, r.stderr) == (3, b"/dev/pts/0\r\n24 80\r\nerr\r\n", b"")
    r = cli("run", "-i", "-t", rootfs, "cat", input=b"line\n")
    assert (r.returncode, r.stdout) == (0, b"line\r\nline\r\n")  # its echo, then cat's


def test_t_is_refused_with_d(rootfs: str) -> None:
    r = cli("run", "-d", "-t", rootfs, "true")
    assert r.returncode == 125
    assert r.stderr.decode() == (
        "containerlib: run: tty: -t with -d is not supported: there is no attach yet\n"
    )


@needs_native_helper
def test_exec_t_gives_the_process_a_terminal_of_the_users_size(rootfs: str) -> None:
    cid = run_detached(rootfs)
    script = "tty; stty size; read line; echo got $line; exit 5"
    with users_terminal(120, 33) as (master, slave):
        with subprocess.Popen(
            [*CLI, "exec", "-i", "-t", cid, "sh", "-c", script],
            stdin=slave,
            stdout=slave,
            stderr=slave,
        ) as proc:
            seen = bytearray()
            read_until(master, b"33 120\r\n", seen)
            assert bytes(seen).startswith(b"/dev/pts/")
            os.write(master, b"there\r")
            read_until(master, b"got there\r\n", seen)
            assert proc.wait(timeout=30) == 5
        assert termios.tcgetattr(slave)[3] & termios.ICANON  # restored
    # Without a terminal of its own, the exec'd process still gets one (80x24).
    r = cli("exec", "-t", cid, "sh", "-c", "tty >/dev/null && stty size; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"24 80\r\nerr\r\n", b"")
    ok("rm", "-f", cid)


#: ``containerlib ARGS...`` whose terminal relay starts a second late, as under load: the
#: process may run before the relay has its terminal's master end.
LATE_RELAY = """
import runpy, time
from containerlib.cli import tty
relay = tty.TerminalRelay._relay
def late(self):
    time.sleep(1)
    relay(self)
tty.TerminalRelay._relay = late
runpy.run_module("containerlib.cli", run_name="__main__")
"""


@needs_native_helper
@pytest.mark.parametrize("command", ["run", "exec"])
@pytest.mark.parametrize("relay", ["", "late"])
def test_the_users_terminal_size_is_there_before_the_process_runs(
    rootfs: str, command: str, relay: str
) -> None:
    # The process's first instruction reads the size. It used to be set by the relay
    # once the terminal's master end had come: an exec'd process that ran first found
    # none (busybox's stty then fails), or the container's.
    target = run_detached(rootfs) if command == "exec" else rootfs
    line = [sys.executable, "-c", LATE_RELAY] if relay else CLI
    for _ in range(1 if relay else 10):
        with (
            users_terminal(123, 45) as (master, slave),
            subprocess.Popen(
                [*line, command, "-i", "-t", target, "stty", "size"],
                stdin=slave,
                stdout=slave,
                stderr=slave,
            ) as proc,
        ):
            seen = bytearray()
            read_until(master, b"\r\n", seen)
            assert (proc.wait(timeout=30), bytes(seen)) == (0, b"45 123\r\n")
    if command == "exec":
        ok("rm", "-f", target)


def page(url: str) -> bytes:
    """The page at ``url``, once the server in the container has come up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return bytes(answer.read())
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_run_d_publishes_ports_and_ps_shows_them(rootfs: str) -> None:
    script = (
        "mkdir -p /www && echo published > /www/index.html && echo up && httpd -f -p 80 -h /www"
    )
    cid = run_detached(rootfs, "-p", "80", "-p", "127.0.0.1::81/udp", script=script)
    row = ok("ps").splitlines()[1]
    found = re.search(r"127\.0\.0\.1:(\d+)->80/tcp, 127\.0\.0\.1:\d+->81/udp", row)
    assert found, row
    assert page(f"http://127.0.0.1:{found[1]}/") == b"published\n"
    ok("rm", "-f", cid)
    bad = cli("run", "-p", "80:eighty", rootfs, "true")
    assert bad.returncode == 125
    assert b"is not [IP:][HOST_PORT:]PORT[/udp]" in bad.stderr


def test_run_in_the_foreground_publishes_while_it_runs(rootfs: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (
        "trap 'exit 0' TERM; mkdir -p /www && echo fg > /www/index.html && httpd -p 80 -h /www"
        " && sleep 30 & wait"
    )
    with subprocess.Popen(
        [*CLI, "run", "-p", f"{port}:80", rootfs, "sh", "-c", script],
        stdout=subprocess.DEVNULL,
        env=os.environ,
    ) as proc:
        try:
            assert page(f"http://127.0.0.1:{port}/") == b"fg\n"
        finally:
            proc.send_signal(signal.SIGTERM)  # passed on to the container
            assert proc.wait(timeout=30) == 0


@needs_root("a bridge and veth pairs on the host")
def test_run_on_a_named_network_reaches_a_detached_member_by_name(rootfs: str) -> None:
    cid = ok(
        "run", "-d", "--rm", "--name", "clibtest-cli-db", "--network", "clibtest-cli",
        "--network-alias", "db", rootfs, "--",
        "sh", "-c", "exec nc -ll -p 7000 -e echo hello from $(hostname)",
    ).strip()  # fmt: skip
    try:
        for name in ("db", "clibtest-cli-db"):
            script = (
                f"until nc -w 5 {name} 7000 </dev/null; do sleep 0.1; done; "  # until it listens
                "grep -h 192.0.2 /etc/hosts /etc/resolv.conf"
            )
            out = ok(
                "run", "--network", "clibtest-cli", "--add-host", "extra:192.0.2.9",
                "--dns", "192.0.2.53", rootfs, "--", "sh", "-c", script,
            )  # fmt: skip
            assert out == f"hello from {cid[:12]}\n192.0.2.9\textra\nnameserver 192.0.2.53\n"
        assert cli("run", "--network", "bad name", rootfs, "--", "true").returncode != 0
    finally:
        ok("rm", "-f", cid)  # an --rm container, removed by its keeper as it ends
    wait_for_keepers()
