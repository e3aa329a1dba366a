"""Running containers for real: isolation, limits, stdio, exit codes, concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from containerlib import Container, ContainerError, Image
from containerlib.runtime import nativeinit
from containerlib.runtime.spawner import WARM_STOCK

from .conftest import (
    CGROUP_PARENT,
    ROOT,
    cgroups_left,
    mounts_under,
    needs_root,
    processes_left,
)

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]


def sh(image: Image, script: str, **kw: object) -> tuple[int, str, str]:
    r = Container(image).run(["sh", "-c", script], **kw)  # type: ignore[arg-type]
    return r.exit_code, r.stdout.decode(), r.stderr.decode()


def test_command_is_pid_1_and_sees_no_host_process(image: Image) -> None:
    code, out, _ = sh(image, "echo $$; ls /proc | grep -E '^[0-9]+$'")
    lines = out.split()
    assert code == 0
    assert lines[0] == "1"
    # Only PID 1 and the ls/grep pipeline it started; no host process.
    assert all(int(p) < 10 for p in lines[1:]), lines
    assert str(os.getpid()) not in lines[1:] or os.getpid() < 10


def test_network_has_only_loopback_and_it_is_up(image: Image) -> None:
    code, out, _ = sh(
        image,
        "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo pinged",
    )
    assert code == 0
    names, *_rest = out.split("\n", 1)
    assert names == "lo"
    assert "pinged" in out


def test_host_network_sees_the_host_interfaces(image: Image) -> None:
    host = sorted(os.listdir("/sys/class/net"))
    r = Container(image).network("host").run(["ls", "/sys/class/net"])
    assert sorted(r.stdout.decode().split()) == host


def test_own_hostname(image: Image) -> None:
    r = Container(image).hostname("box-1").run(["hostname"])
    assert r.stdout == b"box-1\n"
    assert os.uname().nodename != "box-1"
    # Without one, the short id, as Docker does.
    r = Container(image).run(["sh", "-c", "hostname; echo $HOSTNAME"])
    assert r.stdout.decode().split() == [r.id[:12]] * 2


def test_writes_stay_in_the_container(image: Image, busybox: Path) -> None:
    before = sorted(str(p) for p in busybox.rglob("*"))
    passwd = (busybox / "etc" / "passwd").read_text()
    code, _, err = sh(image, "echo x > /new; rm /bin/ls; echo y > /etc/passwd; mkdir /tmp/d")
    assert code == 0, err
    assert sorted(str(p) for p in busybox.rglob("*")) == before
    assert (busybox / "etc" / "passwd").read_text() == passwd
    assert (busybox / "bin" / "ls").is_symlink()
    # And the next container starts from the image again.
    code, out, _ = sh(image, "ls /new 2>&1; ls /bin/ls")
    assert "/bin/ls" in out
    assert "No such file" in out


def test_proc_sys_and_sys_are_read_only(image: Image) -> None:
    code, _, err = sh(image, "echo 1 > /proc/sys/kernel/domainname")
    assert code != 0
    assert "Read-only file system" in err
    code, _, err = sh(image, "touch /sys/kernel/x")
    assert code != 0
    assert "Read-only file system" in err


def test_read_only_root(image: Image) -> None:
    r = Container(image).read_only().run(["touch", "/x"])
    assert r.exit_code == 1
    assert b"Read-only file system" in r.stderr
    r = Container(image).read_only().tmpfs("/scratch", size="1M").run(["touch", "/scratch/x"])
    assert r.exit_code == 0


def test_bind_mount_read_only_and_read_write(image: Image, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from the host")
    ro = Container(image).mount(tmp_path, "/data")
    assert ro.run(["cat", "/data/in.txt"]).stdout == b"from the host"
    assert ro.run(["touch", "/data/x"]).exit_code != 0
    rw = Container(image).mount(tmp_path, "/data", read_only=False)
    assert rw.run(["sh", "-c", "echo hi > /data/out.txt"]).exit_code == 0
    assert (tmp_path / "out.txt").read_text() == "hi\n"


@needs_root("another uid inside, which a user namespace that maps one id lacks")
def test_env_workdir_user(image: Image) -> None:
    c = Container(image).env(GREETING="hello world").workdir("/tmp").user("1000:1001")
    r = c.run(["sh", "-c", 'echo "$GREETING"; pwd; id -u; id -g; echo $PATH'])
    assert r.stdout.decode().split("\n")[:4] == ["hello world", "/tmp", "1000", "1001"]


def test_default_capabilities_are_dockers(image: Image) -> None:
    r = Container(image).run(["grep", "^Cap", "/proc/self/status"])
    caps = dict(line.split(":\t") for line in r.stdout.decode().splitlines())
    # Docker's 14 capabilities.
    assert caps["CapBnd"] == caps["CapEff"] == caps["CapPrm"] == "00000000a80425fb"
    assert caps["CapInh"] == caps["CapAmb"] == "0000000000000000"


def test_mknod_of_a_host_disk_is_refused_by_the_device_cgroup(image: Image) -> None:
    code, _, err = sh(image, "mknod /tmp/sda b 8 0 && cat /tmp/sda > /dev/null")
    assert code != 0
    assert "Operation not permitted" in err


@needs_root("cgroup limits; no cgroup is delegated to this user")
def test_memory_limit_oom_kills(image: Image) -> None:
    r = Container(image).limit(mem="32M").run(["sh", "-c", "head -c 200m /dev/zero | tail"])
    assert r.oom_killed
    assert r.exit_code != 0
    assert r.memory_peak is not None
    assert r.memory_peak <= 32 * 1024 * 1024


@needs_root("cgroup limits; no cgroup is delegated to this user")
def test_within_the_memory_limit_nothing_is_killed(image: Image) -> None:
    r = Container(image).limit(mem="64M").run(["sh", "-c", "head -c 8m /dev/zero | tail -c 1"])
    assert not r.oom_killed
    assert r.exit_code == 0


@needs_root("cgroup limits; no cgroup is delegated to this user")
def test_pids_limit_contains_a_fork_bomb(image: Image) -> None:
    # PID 1 becomes a sleep, so it survives the bomb's failed forks and keeps it contained.
    script = "f() { f & f; }; f 2>/dev/null & exec sleep 30"
    with Container(image).limit(pids=20).start(["sh", "-c", script]) as running:
        current = Path("/sys/fs/cgroup/pids") / CGROUP_PARENT / running.id / "pids.current"
        deadline = time.monotonic() + 20
        count = 0
        while count < 20 and time.monotonic() < deadline:
            count = int(current.read_text())
            time.sleep(0.05)
        assert count == 20
        # The host still forks fine.
        assert subprocess.run(["true"], check=False).returncode == 0
        running.stop(timeout=0.1)


def test_timeout_kills_and_reports(image: Image) -> None:
    r = Container(image).run(["sleep", "30"], timeout=0.5)
    assert r.timed_out
    assert r.exit_code == 137
    assert r.duration < 10


@pytest.mark.parametrize("code", [0, 1, 2, 42, 255])
def test_exit_codes(image: Image, code: int) -> None:
    assert Container(image).run(["sh", "-c", f"exit {code}"]).exit_code == code


def test_killed_by_signal_is_128_plus_n(image: Image) -> None:
    # PID 1 ignores signals without a handler, so the shell kills a child.
    assert sh(image, "sh -c 'kill -SEGV $$'; echo $?")[1] == "139\n"
    with Container(image).start(["sleep", "30"]) as running:
        running.kill(9)
        assert running.wait().exit_code == 137


def test_command_not_found_and_not_executable(image: Image) -> None:
    r = Container(image).run(["no-such-command"])
    assert r.exit_code == 127
    assert b"no-such-command" in r.stderr
    assert b"not found" in r.stderr
    r = Container(image).run(["/etc/passwd"])
    assert r.exit_code == 126
    with pytest.raises(ContainerError) as info:
        Container(image).run(["no-such-command"], check=True)
    assert info.value.result.exit_code == 127
    assert "no-such-command" in str(info.value)


def test_stdio_exact_bytes(image: Image) -> None:
    data = bytes(range(256)) * 4096 + b"\0end"
    r = Container(image).run(["cat"], input=data)
    assert r.stdout == data
    r = Container(image).run(["sh", "-c", "cat >&2; printf out"], input=b"to stderr")
    assert r.stderr == b"to stderr"
    assert r.stdout == b"out"


def test_stdin_is_empty_without_input(image: Image) -> None:
    assert Container(image).run(["cat"]).stdout == b""


def test_100_mb_of_output_does_not_deadlock(image: Image) -> None:
    r = Container(image).run(
        ["sh", "-c", "head -c 100000000 /dev/zero; head -c 1000000 /dev/zero >&2"],
        input=b"x" * 1_000_000,
        timeout=120,
    )
    assert r.exit_code == 0
    assert len(r.stdout) == 100_000_000
    assert len(r.stderr) == 1_000_000


def test_start_wait_stop(image: Image) -> None:
    c = Container(image)
    with c.start(["sh", "-c", "echo up; sleep 30"]) as running:
        assert running.pid > 0
        assert len(running.id) == 32
        with pytest.raises(TimeoutError):
            running.wait(timeout=0.2)
        # sh as PID 1 has no SIGTERM handler: stop escalates to SIGKILL.
        result = running.stop(timeout=0.5)
    assert result.exit_code == 137
    assert result.stdout == b"up\n"
    trap = c.start(["sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"])
    with trap:
        time.sleep(0.3)
        result = trap.stop(timeout=5)
    assert result.exit_code == 0
    assert result.stdout == b"bye\n"


def test_leaving_the_with_block_kills_the_container(image: Image) -> None:
    with Container(image).start(["sleep", "30"]) as running:
        pid = running.pid
    assert not Path(f"/proc/{pid}").exists()


def test_many_threads_many_containers(image: Image, roots: dict[str, str]) -> None:
    errors: list[BaseException] = []
    outputs: list[bytes] = []
    lock = threading.Lock()

    # Limits need a cgroup: root's (rootless, no cgroup is delegated here).
    box = Container(image).limit(mem="32M", pids=16) if ROOT else Container(image)

    def work(n: int) -> None:
        try:
            for i in range(20):
                r = box.run(["echo", f"{n}-{i}"])
                with lock:
                    outputs.append(r.stdout)
                assert r.exit_code == 0
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sorted(outputs) == sorted(f"{n}-{i}\n".encode() for n in range(8) for i in range(20))
    assert not cgroups_left()
    assert not processes_left()
    assert not mounts_under(roots["CONTAINERLIB_RUN_ROOT"], roots["CONTAINERLIB_DATA_ROOT"])
    run_root = Path(roots["CONTAINERLIB_RUN_ROOT"])
    assert not run_root.exists() or not any(run_root.iterdir())
    assert not any((Path(roots["CONTAINERLIB_DATA_ROOT"]) / "containers").iterdir())


def test_containers_die_with_their_owner(busybox: Path, tmp_path: Path) -> None:
    """A process that started a container and is killed takes the container with it."""
    script = f"""
import sys
from containerlib import Container, Image
c = Container(Image.from_rootfs({str(busybox)!r}))
r = c.start(["sleep", "300"])
print(r.pid, flush=True)
sys.stdin.read()
"""
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as owner:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        assert Path(f"/proc/{pid}").exists()
        owner.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists()
    while processes_left() and time.monotonic() < deadline:
        time.sleep(0.02)
    rw_root = Path(os.environ["CONTAINERLIB_DATA_ROOT"]) / "containers"
    while (cgroups_left() or any(rw_root.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not cgroups_left()
    assert not any(rw_root.iterdir())


def test_killing_the_owners_process_group_leaves_nothing(busybox: Path) -> None:
    """A supervisor that kills the owner's whole process group (as Jupyter does with a
    kernel) must not catch the spawner before it has cleaned up."""
    script = f"""
import sys
from containerlib import Container, Image
c = Container(Image.from_rootfs({str(busybox)!r}))
print(c.run(["true"]).exit_code, flush=True)
r = c.start(["sleep", "300"])
print(r.pid, flush=True)
sys.stdin.read()
"""
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    ) as owner:
        assert owner.stdout is not None
        assert owner.stdout.readline() == b"0\n"
        pid = int(owner.stdout.readline())
        os.killpg(owner.pid, signal.SIGKILL)
    data = Path(os.environ["CONTAINERLIB_DATA_ROOT"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        Path(f"/proc/{pid}").exists()
        or any((data / "containers").iterdir())
        or (data / "pool").exists()
        or processes_left()
    ):
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists()
    assert not any((data / "containers").iterdir())
    assert not processes_left()


def test_ending_the_spawner_with_sigterm_leaves_nothing(busybox: Path) -> None:
    """`kill <spawner pid>` (SIGTERM) cleans up as the owner's exit does: containers,
    writable layers, and the cgroup held ready for the next container."""
    script = f"""
import sys
from containerlib import Container, Image
from containerlib.runtime.client import spawner
c = Container(Image.from_rootfs({str(busybox)!r}))
c.run(["true"])
r = c.start(["sleep", "300"])
print(spawner.pid, r.pid, flush=True)
sys.stdin.read()
try:
    c.run(["true"])
except Exception as e:
    print(type(e).__name__, flush=True)
"""
    data = Path(os.environ["CONTAINERLIB_DATA_ROOT"])

    def pool() -> set[str]:
        return {p.name for p in (data / "pool").glob("*")}

    ours = pool()
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as owner:
        assert owner.stdout is not None
        spawner_pid, pid = map(int, owner.stdout.readline().split())
        os.kill(spawner_pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        # The owner reaps it only when it next uses it: till then it is a zombie.
        while running(spawner_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not Path(f"/proc/{pid}").exists()
        assert not any((data / "containers").iterdir())
        # Writable layers made ahead of time: only this process's spawner's are left.
        assert pool() <= ours
        assert not cgroups_left()
        assert not processes_left()
        # The owner's next container gets a new spawner.
        out, _ = owner.communicate(b"", timeout=30)
    assert out == b""
    assert owner.returncode == 0


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_warm_processes_come_from_the_forker_which_ends_with_the_spawner(busybox: Path) -> None:
    if nativeinit.helper_path() is None:
        pytest.skip("no native helper here (no C compiler, or CONTAINERLIB_NATIVE_INIT=0)")
    script = f"""
import sys
from containerlib import Container, Image
from containerlib.runtime.client import spawner
c = Container(Image.from_rootfs({str(busybox)!r}))
c.run(["true"])
with c.start(["sleep", "30"]) as r:
    print(spawner.pid, r.pid, flush=True)
    sys.stdin.readline()
"""
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as owner:
        assert owner.stdout is not None
        assert owner.stdin is not None
        spawner_pid, pid = map(int, owner.stdout.readline().split())

        # The forker runs the helper in the host's PID namespace; the processes it
        # clones run the same program, each in a PID namespace of its own.
        def from_helper(k: int) -> bool:
            return b"--forker" in Path(f"/proc/{k}/cmdline").read_bytes()

        def own_pid_namespace(k: int) -> bool:
            status = Path(f"/proc/{k}/status").read_text()
            return len(status.split("\nNSpid:")[1].split("\n")[0].split()) > 1

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = [k for k in children(spawner_pid) if running(k)]
            forkers = [k for k in kids if from_helper(k) and not own_pid_namespace(k)]
            waiting = [k for k in kids if from_helper(k) and own_pid_namespace(k)]
            if waiting:
                break
            time.sleep(0.01)
        # Rootless, the spawner may also start one of its own: a process in a new user
        # namespace must be cloned by the helper, and the first start cannot wait.
        assert 1 <= len(forkers) <= (1 if ROOT else 2)
        # The next containers' processes wait, cloned by the forker, and, as the running
        # container, it is the spawner's child (it must be, to be waited for).
        assert 1 <= len(waiting) <= WARM_STOCK
        assert pid in kids
        owner.stdin.write(b"\n")
        owner.stdin.flush()
        assert owner.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while (running(spawner_pid) or any(map(running, forkers))) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(map(running, forkers))
    assert not running(spawner_pid)
