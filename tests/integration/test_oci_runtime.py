"""containerlib-runtime, the OCI runtime command line, driven as runc is: by hand through
its lifecycle (modelled on runtime-tools' lifecycle, state, kill, delete and pidfile
checks), and by podman (``podman --runtime``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containerlib.image.builtin import busybox_rootfs
from containerlib.runtime import nativeinit
from containerlib.spec.defaults import default_spec

from .conftest import CGROUP_PARENT, needs_root, reap_adopted
from .signalling import PRELUDE

pytestmark = [
    pytest.mark.root,
    needs_root("the OCI command line makes root's containers"),
    pytest.mark.usefixtures("state"),
    pytest.mark.skipif(
        nativeinit.helper_path() is None, reason="needs the native helper (a C compiler)"
    ),
]

RUNTIME = str(Path(sys.executable).with_name("containerlib-runtime"))


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs(tmp_path_factory.mktemp("oci") / "rootfs")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    yield state
    reap_adopted()
    # Whatever a test left: force-delete it, then check nothing is left.
    if state.exists():
        for entry in state.iterdir():
            subprocess.run(
                [RUNTIME, "--root", str(state), "delete", "--force", entry.name],
                capture_output=True,
                check=False,
            )
        assert not list(state.iterdir())
    reap_adopted()


def bundle(where: Path, rootfs: Path, *args: str, **changes: Any) -> Path:
    """A bundle at ``where`` whose config.json is ``runc spec``'s, running ``args`` on
    ``rootfs``, in this run's cgroup parent."""
    where.mkdir()
    config = default_spec(args=args, terminal=False).to_dict()
    config["root"] = {"path": str(rootfs), "readonly": False}
    config["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/{where.name}"
    config.update(changes)
    (where / "config.json").write_text(json.dumps(config))
    return where


def rt(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the runtime. Its output goes through files, not pipes: a created container
    keeps the stdio of ``create`` (as under runc), and a pipe would not end before it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = subprocess.run(
            [RUNTIME, "--root", str(root), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            check=False,
        ).returncode
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(args, code, out.read().decode(), err.read().decode())
    if check:
        assert done.returncode == 0, done.stderr
    return done


def state(root: Path, cid: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(rt(root, "state", cid).stdout)
    return doc


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_lifecycle_create_start_state_delete(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = bundle(tmp_path / "c1", rootfs, "sh", "-c", "echo started > /tmp/mark; sleep 30")
    pid_file = tmp_path / "pid"
    rt(root, "create", "--bundle", str(b), "--pid-file", str(pid_file), "c1")
    s = state(root, "c1")
    assert (s["ociVersion"], s["id"], s["status"], s["bundle"]) == (
        "1.0.2",
        "c1",
        "created",
        str(b),
    )
    assert int(pid_file.read_text()) == s["pid"]
    # Created, not started: the command has not run yet.
    assert not (rootfs / "tmp" / "mark").exists()
    assert Path(f"/proc/{s['pid']}").exists()
    rt(root, "start", "c1")
    wait_for((rootfs / "tmp" / "mark").exists)
    assert state(root, "c1")["status"] == "running"
    again = rt(root, "start", "c1", check=False)
    assert again.returncode == 1
    assert "running, not created" in again.stderr
    busy = rt(root, "delete", "c1", check=False)
    assert busy.returncode == 1
    assert "--force" in busy.stderr
    rt(root, "kill", "c1", "KILL")
    wait_for(lambda: state(root, "c1")["status"] == "stopped")
    assert state(root, "c1")["pid"] == 0
    rt(root, "delete", "c1")
    assert rt(root, "state", "c1", check=False).returncode == 1
    (rootfs / "tmp" / "mark").unlink()


def test_run_passes_output_and_exit_code(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = bundle(tmp_path / "c2", rootfs, "sh", "-c", "echo out; echo err >&2; exit 7")
    done = rt(root, "run", "--bundle", str(b), "c2", check=False)
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    assert not (root / "c2").exists()


def test_kill_by_name_and_number_and_a_created_container_is_deleted(
    root: Path, rootfs: Path, tmp_path: Path
) -> None:
    b = bundle(tmp_path / "c3", rootfs, "sleep", "30")
    rt(root, "create", "--bundle", str(b), "c3")
    rt(root, "start", "c3")
    rt(root, "kill", "c3", "SIGSTOP")
    pid = state(root, "c3")["pid"]
    wait_for(lambda: Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T")
    rt(root, "kill", "c3", "9")
    wait_for(lambda: state(root, "c3")["status"] == "stopped")
    rt(root, "delete", "c3")
    assert rt(root, "kill", "c3", "KILL", check=False).returncode == 1
    rt(root, "create", "--bundle", str(b), "c4")
    pid = state(root, "c4")["pid"]
    rt(root, "delete", "c4")  # created, never started: deleting kills it
    wait_for(
        lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    )


def test_exec_joins_the_running_container(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = bundle(tmp_path / "c7", rootfs, "sh", "-c", "echo first > /tmp/by-first; sleep 30")
    rt(root, "create", "--bundle", str(b), "c7")
    rt(root, "start", "c7")
    wait_for((rootfs / "tmp" / "by-first").exists)
    first = state(root, "c7")["pid"]
    done = rt(root, "exec", "c7", "sh", "-c", "cat /tmp/by-first; echo $$; exit 5", check=False)
    assert done.returncode == 5
    text, pid = done.stdout.split()
    assert text == "first"
    assert int(pid) > 1  # in the container's PID namespace, beside its PID 1
    assert Path(f"/proc/{first}/ns/pid").resolve() != Path("/proc/self/ns/pid").resolve()
    process = json.loads((b / "config.json").read_text())["process"]
    process["args"] = ["id", "-u"]
    process["user"] = {"uid": 65534, "gid": 65534}
    (tmp_path / "process.json").write_text(json.dumps(process))
    as_nobody = rt(root, "exec", "--process", str(tmp_path / "process.json"), "c7")
    assert as_nobody.stdout == "65534\n"
    rt(root, "kill", "c7", "KILL")
    wait_for(lambda: state(root, "c7")["status"] == "stopped")
    stopped = rt(root, "exec", "c7", "true", check=False)
    assert stopped.returncode == 1
    assert "stopped, not running" in stopped.stderr
    rt(root, "delete", "c7")
    (rootfs / "tmp" / "by-first").unlink()


def test_ps_pause_resume_and_features(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = bundle(tmp_path / "c10", rootfs, "sh", "-c", "sleep 30 & sleep 30")
    rt(root, "create", "--bundle", str(b), "c10")
    rt(root, "start", "c10")
    first = state(root, "c10")["pid"]
    wait_for(lambda: len(json.loads(rt(root, "ps", "--format", "json", "c10").stdout)) == 2)
    pids = json.loads(rt(root, "ps", "--format", "json", "c10").stdout)
    assert first in pids
    rt(root, "pause", "c10")
    assert state(root, "c10")["status"] == "paused"
    for pid in pids:  # every process stops where it is
        wait_for(lambda pid=pid: _proc_state(pid) in ("S", "D", "T", "t"))
    assert "paused, not running" in rt(root, "pause", "c10", check=False).stderr
    rt(root, "resume", "c10")
    assert state(root, "c10")["status"] == "running"
    assert "running, not paused" in rt(root, "resume", "c10", check=False).stderr
    rt(root, "delete", "--force", "c10")
    features = json.loads(rt(root, "features").stdout)
    assert features["linux"]["cgroup"]["systemd"] is False
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]
    assert "rbind" in features["mountOptions"]
    assert {"createContainer", "startContainer"} <= set(features["hooks"])
    assert "user" in features["linux"]["namespaces"]


def test_update_and_events_stats(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = bundle(tmp_path / "c14", rootfs, "sleep", "30")
    rt(root, "create", "--bundle", str(b), "c14")
    rt(root, "start", "c14")
    memory = Path(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/c14/memory.limit_in_bytes")
    pids = Path(f"/sys/fs/cgroup/pids/{CGROUP_PARENT}/c14/pids.max")
    rt(root, "update", "--memory", str(64 << 20), "--pids-limit", "20", "c14")
    assert int(memory.read_text()) == 64 << 20
    assert pids.read_text().strip() == "20"
    (tmp_path / "r.json").write_text(json.dumps({"memory": {"limit": 96 << 20}}))
    rt(root, "update", "--resources", str(tmp_path / "r.json"), "c14")
    assert int(memory.read_text()) == 96 << 20
    assert pids.read_text().strip() == "20"  # what is not given stays
    stats = json.loads(rt(root, "events", "--stats", "c14").stdout)
    assert (stats["type"], stats["id"]) == ("stats", "c14")
    assert stats["data"]["memory"]["usage"]["usage"] > 0
    assert stats["data"]["pids"]["current"] == 1
    bad = rt(root, "update", "--memory", "-5", "c14", check=False)
    assert bad.returncode == 1
    assert int(memory.read_text()) == 96 << 20
    rt(root, "delete", "--force", "c14")


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_hooks_run_with_the_state_on_stdin(root: Path, rootfs: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\nread -r state\necho "$1 $state" >> {log}\n')
    script.chmod(0o755)

    def hook(name: str) -> dict[str, Any]:
        return {"path": str(script), "args": ["hook.sh", name], "timeout": 10}

    hooks = {n: [hook(n)] for n in ("prestart", "createRuntime", "poststart", "poststop")}
    b = bundle(tmp_path / "c11", rootfs, "sleep", "30", hooks=hooks)
    rt(root, "create", "--bundle", str(b), "c11")
    rt(root, "start", "c11")
    pid = state(root, "c11")["pid"]
    rt(root, "delete", "--force", "c11")
    seen = []
    for line in log.read_text().splitlines():
        name, _, doc = line.partition(" ")
        st = json.loads(doc)
        seen.append((name, st["id"], st["status"], st["pid"]))
    assert seen == [
        ("prestart", "c11", "creating", pid),
        ("createRuntime", "c11", "creating", pid),
        ("poststart", "c11", "running", pid),
        ("poststop", "c11", "stopped", 0),
    ]
    # A createRuntime hook that fails fails the create, naming it, and leaves nothing.
    failing = {"createRuntime": [{"path": "/bin/false"}]}
    b2 = bundle(tmp_path / "c12", rootfs, "sleep", "30", hooks=failing)
    done = rt(root, "create", "--bundle", str(b2), "c12", check=False)
    assert done.returncode == 1
    assert "run hook /bin/false" in done.stderr
    assert not (root / "c12").exists()


def test_list_shows_every_container(root: Path, rootfs: Path, tmp_path: Path) -> None:
    for name in ("a1", "a2"):
        rt(root, "create", "--bundle", str(bundle(tmp_path / name, rootfs, "true")), name)
    listed = json.loads(rt(root, "list", "--format", "json").stdout)
    assert [(c["id"], c["status"]) for c in listed] == [("a1", "created"), ("a2", "created")]
    assert rt(root, "list", "-q").stdout.split() == ["a1", "a2"]


def test_errors_are_clear_and_leave_nothing(root: Path, rootfs: Path, tmp_path: Path) -> None:
    missing = rt(root, "create", "--bundle", str(tmp_path / "nothing"), "x", check=False)
    assert missing.returncode == 1
    assert "config.json" in missing.stderr
    b = bundle(tmp_path / "c5", rootfs, "true")
    rt(root, "create", "--bundle", str(b), "c5")
    twice = rt(root, "create", "--bundle", str(b), "c5", check=False)
    assert "exists" in twice.stderr
    rt(root, "delete", "c5")
    log = tmp_path / "log.json"
    bad = subprocess.run(
        [RUNTIME, "--root", str(root), "--log", str(log), "--log-format", "json",
         "--systemd-cgroup", "create", "--bundle", str(b), "c6"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error"
    assert "systemd-cgroup" in entry["msg"]
    assert rt(root, "delete", "nothing-here", check=False).returncode == 1
    rt(root, "delete", "--force", "nothing-here")  # as runc: callers clean up this way
    bad_id = rt(root, "create", "--bundle", str(b), "../escape", check=False)
    assert bad_id.returncode == 1
    assert "not a valid container id" in bad_id.stderr
    assert not (root.parent / "escape").exists()


# -- podman --------------------------------------------------------------------------------


@pytest.fixture
def podman() -> Iterator[list[str]]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    # In /tmp: podman refuses a run root of more than 50 characters.
    store = Path(tempfile.mkdtemp(prefix="clib-podman-", dir="/tmp"))
    base = [
        "podman", "--root", str(store / "root"), "--runroot", str(store / "run"),
        "--runtime", RUNTIME, "--runtime-flag", f"root={store / 'state'}",
        "--cgroup-manager", "cgroupfs", "--events-backend", "none",
    ]  # fmt: skip
    yield base
    subprocess.run([*base, "rm", "--all", "--force"], capture_output=True, check=False)
    subprocess.run([*base, "system", "reset", "--force"], capture_output=True, check=False)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(store) not in mounts
    shutil.rmtree(store, ignore_errors=True)
    reap_adopted()  # conmon, which podman leaves to the nearest subreaper


# Root here may not raise hard rlimits (no CAP_SYS_RESOURCE); podman's defaults would.
PODMAN_RUN = ["run", "--network", "none", "--ulimit", "nofile=1024:1024",
              "--ulimit", "nproc=4096:4096"]  # fmt: skip


def test_podman_runs_containers_through_it(podman: list[str], rootfs: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*podman, *PODMAN_RUN, *args], capture_output=True, text=True, timeout=120, check=False
        )

    hello = run("--rm", "--rootfs", str(rootfs), "sh", "-c", "echo hi from $(hostname)")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.startswith("hi from ")
    assert run("--rm", "--rootfs", str(rootfs), "sh", "-c", "exit 42").returncode == 42
    limited = run("--rm", "--memory", "64m", "--rootfs", str(rootfs), "cat", "/proc/self/cgroup")
    memory = next(line for line in limited.stdout.splitlines() if ":memory:" in line)
    path = memory.split(":", 2)[2]
    # The cgroup it was in had the limit (it is gone now: read it while one runs).
    detached = run("-d", "--name", "clib-podman", "--memory", "64m", "--rootfs", str(rootfs),
                   "sleep", "300")  # fmt: skip
    assert detached.returncode == 0, detached.stderr
    cid = detached.stdout.strip()
    inspect = subprocess.run(
        [*podman, "inspect", "--format", "{{.State.Pid}}", cid],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    pid = int(inspect.stdout)
    cgroup = next(
        line.split(":", 2)[2]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if ":memory:" in line
    )
    limit = Path(f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes").read_text()
    assert int(limit) == 64 << 20
    assert path.startswith("/libpod_parent/")
    executed = subprocess.run(
        [*podman, "exec", cid, "sh", "-c", "echo in $(hostname); exit 4"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (executed.returncode, executed.stdout) == (4, f"in {cid[:12]}\n"), executed.stderr
    stop = subprocess.run(
        [*podman, "stop", "--time", "1", cid], capture_output=True, text=True, check=False
    )
    assert stop.returncode == 0, stop.stderr
    assert not _alive(pid)
    # podman's cleanup (`podman container cleanup`, from conmon) has the runtime delete
    # the container, and so its cgroup, after `stop` has returned.
    gone = Path(f"/sys/fs/cgroup/memory{cgroup}")
    deadline = time.monotonic() + 30
    while gone.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not gone.exists()


def _on_a_terminal(argv: list[str], timeout: float = 60) -> tuple[int, bytes]:
    """Run ``argv`` with a new pseudo terminal as its stdio; its exit code and output."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_podman_gives_a_terminal_to_run_and_exec(podman: list[str], rootfs: Path) -> None:
    code, out = _on_a_terminal(
        [*podman, *PODMAN_RUN, "--rm", "-it", "--rootfs", str(rootfs),
         "sh", "-c", "tty; echo $TERM; exit 3"]
    )  # fmt: skip
    assert code == 3, out
    assert b"/dev/pts/0" in out
    assert b"xterm" in out
    detached = subprocess.run(
        [*podman, *PODMAN_RUN, "-d", "--rootfs", str(rootfs), "sleep", "300"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    cid = detached.stdout.strip()
    code, out = _on_a_terminal([*podman, "exec", "-it", cid, "sh", "-c", "tty; exit 2"])
    assert code == 2, out
    assert b"/dev/pts/" in out
    subprocess.run([*podman, "rm", "--force", "--time", "0", cid], capture_output=True, check=False)


def test_a_terminal_goes_to_the_console_socket(root: Path, rootfs: Path, tmp_path: Path) -> None:
    import socket

    config_process = default_spec(args=("sh", "-c", "tty; stty size; exit 4")).to_dict()
    process = config_process["process"]
    process["consoleSize"] = {"height": 33, "width": 111}
    b = bundle(tmp_path / "c8", rootfs, "sh", process=process)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "console.sock"))
    listener.listen(1)
    with listener:
        proc = subprocess.Popen(
            [RUNTIME, "--root", str(root), "run", "--bundle", str(b),
             "--console-socket", str(tmp_path / "console.sock"), "c8"],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        conn, _ = listener.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 64, 1)
    master = fds[0]
    out = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    assert proc.wait(timeout=30) == 4
    assert out.split() == [b"/dev/pts/0", b"33", b"111"]
    bad = rt(root, "create", "--bundle", str(b), "c9", check=False)
    assert "--console-socket" in bad.stderr


# -- signals in the foreground ---------------------------------------------------------------

#: After :data:`PRELUDE`: ``containerlib-runtime ARGS...`` in a process of its own, with
#: ``{patch}`` (code of the prelude's) in place first, and SIGTERM at ``{inherited}``
#: until then, as if inherited from whoever started it.
PATCHED_RUNTIME = """
signal.signal(signal.SIGTERM, signal.{inherited})
from containerlib.cli.runtime import main
from containerlib.runtime import bundle, warm
{patch}
sys.exit(main(sys.argv[1:]))
"""
#: A container's first process, PID 1 in its PID namespace: it says its trap is set (in a
#: file), and ends with 42 on SIGTERM, or with 0 once a sleep of 20 seconds is over.
TRAPPING = 'trap "exit 42" TERM; touch /tmp/{ready}; sleep 20 & wait'


def rt_patched(
    root: Path, patch: str, *args: str, inherited: str = "SIG_DFL"
) -> subprocess.CompletedProcess[str]:
    """:func:`rt` in a process of its own with ``patch`` in place."""
    script = PRELUDE + PATCHED_RUNTIME.format(patch=patch, inherited=inherited)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = subprocess.run(
            [sys.executable, "-c", script, "--root", str(root), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            check=False,
            timeout=60,
        ).returncode
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, code, out.read().decode(), err.read().decode())


@pytest.fixture
def ready(rootfs: Path, tmp_path: Path) -> Iterator[Path]:
    """The file a :data:`TRAPPING` container makes (in the shared rootfs) once its trap
    is set."""
    path = rootfs / "tmp" / f"ready-{tmp_path.name}"
    yield path
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("inherited", ["SIG_DFL", "SIG_IGN"])
def test_run_passes_on_a_signal_that_comes_as_soon_as_the_container_runs(
    root: Path, rootfs: Path, tmp_path: Path, ready: Path, inherited: str
) -> None:
    # SIGTERM comes once start() has let the container go and its trap is set, before
    # the command is back in its own code: it was lost, or ended the command (the
    # container with it).
    b = bundle(tmp_path / "c20", rootfs, "sh", "-c", TRAPPING.format(ready=ready.name))
    patch = (
        "after(bundle.BundleRuntime, 'start', lambda: "
        f"(wait_for_file({str(ready)!r}), os.kill(os.getpid(), signal.SIGTERM)))"
    )
    done = rt_patched(root, patch, "run", "--bundle", str(b), "c20", inherited=inherited)
    assert (done.returncode, done.stdout, done.stderr) == (42, "", "")
    assert not (root / "c20").exists()


@pytest.mark.parametrize("inherited", ["SIG_DFL", "SIG_IGN"])
def test_exec_passes_on_a_signal_that_comes_as_soon_as_its_process_runs(
    root: Path, rootfs: Path, tmp_path: Path, inherited: str
) -> None:
    b = bundle(tmp_path / "c21", rootfs, "sleep", "60")
    rt(root, "create", "--bundle", str(b), "c21")
    rt(root, "start", "c21")
    patch = "after(warm, 'run_exec_helper', lambda: os.kill(os.getpid(), signal.SIGTERM))"
    # Lost, the signal left the command waiting until its process ended (30 seconds).
    done = rt_patched(root, patch, "exec", "c21", "sleep", "30", inherited=inherited)
    assert (done.returncode, done.stdout, done.stderr) == (128 + 15, "", "")
    assert len(json.loads(rt(root, "ps", "--format", "json", "c21").stdout)) == 1
    rt(root, "delete", "--force", "c21")


def test_run_and_exec_pass_on_a_signal_that_lands_while_they_wait(
    root: Path, rootfs: Path, tmp_path: Path, ready: Path
) -> None:
    # Delivered to another thread once the command blocks in its wait: its handler runs
    # in the main thread only, so a wait that does not watch the wakeup descriptor went
    # on until the container ended by itself (0, after 20 seconds).
    b = bundle(tmp_path / "c22", rootfs, "sh", "-c", TRAPPING.format(ready=ready.name))
    patch = (
        "after(bundle.BundleRuntime, 'start', lambda: "
        f"(wait_for_file({str(ready)!r}), signal_in_a_thread()))"
    )
    done = rt_patched(root, patch, "run", "--bundle", str(b), "c22")
    assert (done.returncode, done.stdout, done.stderr) == (42, "", "")
    b = bundle(tmp_path / "c23", rootfs, "sleep", "60")
    rt(root, "create", "--bundle", str(b), "c23")
    rt(root, "start", "c23")
    patch = "after(warm, 'run_exec_helper', signal_in_a_thread)"
    done = rt_patched(root, patch, "exec", "c23", "sleep", "20")
    assert (done.returncode, done.stdout, done.stderr) == (128 + 15, "", "")
    rt(root, "delete", "--force", "c23")


# -- containerd ------------------------------------------------------------------------------

CONTAINERD_CONFIG = """version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
"""


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[list[str]]:
    """A containerd of the test's own (socket, root and state in tmp_path), and ``ctr``
    talking to it. Its shims keep their sockets in /run/containerd, which is removed
    after if the test made it."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd is not installed (apt-get install containerd)")
    made_run = not Path("/run/containerd").exists()
    base = tmp_path / "containerd"
    base.mkdir()
    (base / "config.toml").write_text(CONTAINERD_CONFIG)
    sock = base / "c.sock"
    log = open(base / "log.txt", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        ["containerd", "--config", str(base / "config.toml"), "--address", str(sock),
         "--root", str(base / "root"), "--state", str(base / "state")],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(sock.exists)
        yield ["ctr", "--address", str(sock)]
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()
        mounts = Path("/proc/self/mountinfo").read_text()
        for line in reversed(mounts.splitlines()):
            if str(base) in line:  # a snapshot containerd left mounted: ours to remove
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        if made_run:
            shutil.rmtree("/run/containerd", ignore_errors=True)
        reap_adopted()


def test_containerd_runs_containers_through_it(
    containerd: list[str], tmp_path: Path, roots: dict[str, str]
) -> None:
    from containerlib import Image
    from tests.image_builders import busybox_layout

    # The image, saved as an OCI archive by containerlib, imported by containerd.
    busybox_layout(tmp_path / "layout", ref="latest")
    archive = tmp_path / "busybox.tar"
    image = Image.from_oci_layout(tmp_path / "layout", "latest").tag("localhost/clib-busybox:1")
    image.save(archive, format="oci")
    subprocess.run([*containerd, "images", "import", str(archive)], check=True, capture_output=True)
    run = subprocess.run(
        [*containerd, "run", "--rm", "--runc-binary", RUNTIME, "localhost/clib-busybox:1",
         "ctr1", "sh", "-c", "echo hi; ls /proc | grep -c '^[0-9]'; exit 3"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    hello, processes = run.stdout.split()
    assert hello == "hi"
    assert int(processes) <= 3  # its own PID namespace: sh, ls and grep
    tasks = subprocess.run(
        [*containerd, "tasks", "ls", "-q"], capture_output=True, text=True, check=True
    )
    assert tasks.stdout.split() == []


@needs_root("cgroup memory limits")
def test_events_streams_figures_and_oom_kills_until_the_container_stops(
    root: Path, rootfs: Path, tmp_path: Path
) -> None:
    b = bundle(tmp_path / "c15", rootfs, "sleep", "30")
    config = json.loads((b / "config.json").read_text())
    config["linux"]["resources"] = {"memory": {"limit": 32 << 20, "swap": 32 << 20}}
    (b / "config.json").write_text(json.dumps(config))
    rt(root, "create", "--bundle", str(b), "c15")
    rt(root, "start", "c15")
    events = subprocess.Popen(
        [RUNTIME, "--root", str(root), "events", "--interval", "200ms", "c15"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert events.stdout is not None
        kinds = []
        for line in events.stdout:
            doc = json.loads(line)
            assert doc["id"] == "c15"
            kinds.append(doc["type"])
            if kinds == ["stats"]:
                # Past the limit once the stream runs: an OOM kill before it started
                # is not an event of it (runc's neither).
                hog = rt(
                    root, "exec", "c15", "sh", "-c", "head -c 200m /dev/zero | tail", check=False
                )
                assert hog.returncode != 0
            if "oom" in kinds and kinds.count("stats") >= 2:
                break
        rt(root, "kill", "c15", "KILL")
        # It ends by itself once the container has stopped.
        assert events.wait(timeout=10) == 0
    finally:
        events.kill()
        events.wait()
        events.stdout.close()  # type: ignore[union-attr]
    assert kinds[0] == "stats"
    rt(root, "delete", "c15")
    bad = rt(root, "events", "--interval", "soon", "c15", check=False)
    assert bad.returncode == 1
    assert "'soon' is not a duration" in bad.stderr
