"""containerlib-runtime against the checks of the OCI runtime-tools validation suite
(``runtime-tools/validation/``): each test drives the real ``containerlib-runtime``
command on a real bundle (a busybox rootfs) and looks at what the container got, from
the host (``/proc/PID``, the cgroup files) or from inside (what its command prints).

The checks are runtime-tools', the tests are our own: lifecycle and state, kill, delete,
pid file, hooks (their order, their stdin, where each runs), mounts, masked and
read-only paths, rlimits, capabilities, sysctl, user namespaces, rootfs propagation,
cgroups, hostname, env, cwd, user and a read-only root.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from containerlib.linux.capabilities import mask

from . import test_oci_runtime as oci_cli
from .conftest import CGROUP_PARENT
from .test_oci_runtime import RUNTIME, bundle, rt, state, wait_for

# Root, the leak checks and the native helper, as test_oci_runtime.
pytestmark = oci_cli.pytestmark

# The fixtures of test_oci_runtime: a busybox rootfs for the module and a state root per
# test (force-deleted and checked empty after it). The session makes this process the
# subreaper that adopts what ``create`` leaves behind, as conmon does (conftest.py).
rootfs = oci_cli.rootfs
root = oci_cli.root

_ids = itertools.count()

Edit = Callable[[dict[str, Any]], None]


def make(tmp_path: Path, rootfs: Path, script: str, edit: Edit | None = None) -> Path:
    """A bundle running ``sh -c script``, its config.json changed by ``edit``."""
    where = bundle(tmp_path / f"b{next(_ids)}", rootfs, "sh", "-c", script)
    if edit is not None:
        config = json.loads((where / "config.json").read_text())
        edit(config)
        (where / "config.json").write_text(json.dumps(config))
    return where


def run(
    root: Path, tmp_path: Path, rootfs: Path, script: str, edit: Edit | None = None
) -> subprocess.CompletedProcess[str]:
    """``containerlib-runtime run`` of ``sh -c script``; its output and exit code."""
    b = make(tmp_path, rootfs, script, edit)
    return rt(root, "run", "--bundle", str(b), b.name, check=False)


def create(root: Path, b: Path, cid: str, out: Path) -> subprocess.CompletedProcess[str]:
    """``create`` with the container's stdout and stderr going to the file ``out``, which
    outlives the command (the container keeps create's stdio, as under runc)."""
    with open(out, "ab") as f, tempfile.TemporaryFile() as err:
        code = subprocess.run(
            [RUNTIME, "--root", str(root), "create", "--bundle", str(b), cid],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=err,
            check=False,
        ).returncode
        err.seek(0)
        return subprocess.CompletedProcess([], code, "", err.read().decode())


def status_fields(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def mountinfo(text: str, target: str) -> list[str]:
    """The fields of the last mountinfo line (``/proc/PID/mountinfo``) of ``target``."""
    found = [line.split() for line in text.splitlines() if line.split()[4] == target]
    assert found, f"{target} is not mounted"
    return found[-1]


# -- lifecycle, state, kill, delete, pid file ---------------------------------------------


def test_state_goes_created_running_stopped(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = make(tmp_path, rootfs, "sleep 30")
    out = tmp_path / "out"
    assert create(root, b, "life", out).returncode == 0
    created = state(root, "life")
    assert created["status"] == "created"
    assert created["pid"] > 0
    assert status_fields(created["pid"])["State"].startswith("S")  # waits for start
    rt(root, "start", "life")
    assert state(root, "life")["status"] == "running"
    again = rt(root, "start", "life", check=False)
    assert (again.returncode, "running, not created" in again.stderr) == (1, True)
    busy = rt(root, "delete", "life", check=False)
    assert (busy.returncode, "--force" in busy.stderr) == (1, True)
    rt(root, "kill", "life", "KILL")
    wait_for(lambda: state(root, "life")["status"] == "stopped")
    assert state(root, "life")["pid"] == 0
    late = rt(root, "start", "life", check=False)
    assert (late.returncode, "stopped, not created" in late.stderr) == (1, True)
    rt(root, "delete", "life")


def test_a_command_that_exits_leaves_a_stopped_container(
    root: Path, rootfs: Path, tmp_path: Path
) -> None:
    b = make(tmp_path, rootfs, "exit 3")
    create(root, b, "quick", tmp_path / "out")
    rt(root, "start", "quick")
    wait_for(lambda: state(root, "quick")["status"] == "stopped")
    rt(root, "delete", "quick")
    assert not (root / "quick").exists()


def test_kill_sends_the_signal_and_a_stopped_container_refuses_it(
    root: Path, rootfs: Path, tmp_path: Path
) -> None:
    script = "trap 'echo got-usr1; exit 0' USR1; while :; do sleep 0.05; done"
    b = make(tmp_path, rootfs, script)
    out = tmp_path / "out"
    create(root, b, "killed", out)
    rt(root, "start", "killed")
    wait_for(lambda: status_fields(state(root, "killed")["pid"])["SigCgt"] != "0" * 16)
    rt(root, "kill", "killed", "USR1")
    wait_for(lambda: state(root, "killed")["status"] == "stopped")
    assert out.read_text() == "got-usr1\n"
    refused = rt(root, "kill", "killed", "KILL", check=False)
    assert (refused.returncode, "not running" in refused.stderr) == (1, True)
    rt(root, "delete", "killed")


def test_delete_removes_the_state_and_the_cgroup(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = make(tmp_path, rootfs, "true")
    cgroup_path = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    create(root, b, "gone", tmp_path / "out")
    cgroups = [d / cgroup_path for d in Path("/sys/fs/cgroup").iterdir()]
    made = [c for c in cgroups if c.is_dir()]
    assert made  # the container's cgroup, in each hierarchy
    rt(root, "delete", "gone")  # created, not started: killed and removed
    assert not (root / "gone").exists()
    assert not [c for c in made if c.exists()]
    missing = rt(root, "state", "gone", check=False)
    assert (missing.returncode, "no such container" in missing.stderr) == (1, True)
    assert rt(root, "delete", "gone", check=False).returncode == 1


def test_the_pid_file_holds_the_containers_pid(root: Path, rootfs: Path, tmp_path: Path) -> None:
    b = make(tmp_path, rootfs, "true")
    pid_file = tmp_path / "pid"
    rt(root, "create", "--bundle", str(b), "--pid-file", str(pid_file), "pidf")
    pid = state(root, "pidf")["pid"]
    assert pid_file.read_text() == str(pid)
    assert Path(f"/proc/{pid}/ns/mnt").resolve() != Path("/proc/self/ns/mnt").resolve()
    rt(root, "delete", "pidf")


# -- hooks ----------------------------------------------------------------------------------

HOOK = """#!/bin/sh
state=$(cat)
if [ -d /hooks ]; then where=container; else where=host; fi
echo "$1|$HOOK_MARK|$(readlink /proc/self/ns/mnt)|$where|$state" >> "$HOOK_LOG"
"""


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    """A host directory with the hook script, bound at /hooks in the containers."""
    where = tmp_path / "hooks"
    where.mkdir()
    (where / "hook.sh").write_text(HOOK)
    (where / "hook.sh").chmod(0o755)
    return where


def _with_hooks(hooks_dir: Path, hooks: dict[str, Any]) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = hooks
        config["mounts"].append(
            {"destination": "/hooks", "type": "bind", "source": str(hooks_dir),
             "options": ["rbind"]}
        )  # fmt: skip

    return edit


def _hook(path: str, name: str, log: str, timeout: int = 10) -> dict[str, Any]:
    env = [f"HOOK_LOG={log}", "HOOK_MARK=m-" + name, "PATH=/usr/bin:/bin"]
    return {"path": path, "args": ["hook.sh", name], "env": env, "timeout": timeout}


def test_hooks_run_in_order_with_the_state_where_the_spec_says(
    root: Path, rootfs: Path, tmp_path: Path, hooks_dir: Path
) -> None:
    host_script, log = str(hooks_dir / "hook.sh"), str(hooks_dir / "log")
    names = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    hooks: dict[str, Any] = {n: [_hook(host_script, n, log)] for n in names}
    # In the container, after pivot_root: its own paths.
    hooks["startContainer"] = [_hook("/hooks/hook.sh", "startContainer", "/hooks/log")]
    b = make(
        tmp_path, rootfs, "echo command >> /hooks/log; sleep 30", _with_hooks(hooks_dir, hooks)
    )
    assert create(root, b, "hooked", tmp_path / "out").returncode == 0
    pid = state(root, "hooked")["pid"]
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    rt(root, "start", "hooked")
    wait_for(lambda: "command" in Path(log).read_text())
    rt(root, "kill", "hooked", "KILL")
    wait_for(lambda: state(root, "hooked")["status"] == "stopped")
    rt(root, "delete", "hooked")
    host_mnt = os.readlink("/proc/self/ns/mnt")
    seen = []
    for line in Path(log).read_text().splitlines():
        if line == "command":
            seen.append(("command",))
            continue
        name, mark, mnt, where, doc = line.split("|", 4)
        st = json.loads(doc)
        assert mark == "m-" + name  # the hook's env, as given
        assert (st["id"], st["bundle"], st["ociVersion"]) == ("hooked", str(b), "1.0.2")
        seen.append((name, st["status"], st["pid"], mnt, where))
    assert [s for s in seen if s != ("command",)] == [
        ("prestart", "creating", pid, host_mnt, "host"),
        ("createRuntime", "creating", pid, host_mnt, "host"),
        # In the container's mount namespace, before pivot_root (the host's paths).
        ("createContainer", "creating", pid, container_mnt, "host"),
        # In the container, after pivot_root.
        ("startContainer", "created", pid, container_mnt, "container"),
        ("poststart", "running", pid, host_mnt, "host"),
        ("poststop", "stopped", 0, host_mnt, "host"),
    ]
    # The command runs after startContainer (poststart runs as it starts: either first).
    order = [s[0] for s in seen]
    assert order.index("startContainer") < order.index("command") < order.index("poststop")


def test_a_failing_create_container_hook_fails_create_and_leaves_nothing(
    root: Path, rootfs: Path, tmp_path: Path, hooks_dir: Path
) -> None:
    failing = hooks_dir / "fail.sh"
    failing.write_text("#!/bin/sh\necho broken mount >&2\nexit 4\n")
    failing.chmod(0o755)
    hooks = {"createContainer": [{"path": str(failing)}]}
    b = make(tmp_path, rootfs, "true", _with_hooks(hooks_dir, hooks))
    done = create(root, b, "cc-fail", tmp_path / "out")
    assert done.returncode == 1
    assert f"run createContainer hook '{failing}': exit status 4: broken mount" in done.stderr
    assert not (root / "cc-fail").exists()


def test_a_hook_past_its_timeout_is_killed_and_fails(
    root: Path, rootfs: Path, tmp_path: Path, hooks_dir: Path
) -> None:
    hooks = {"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    b = make(tmp_path, rootfs, "true", _with_hooks(hooks_dir, hooks))
    done = create(root, b, "slow", tmp_path / "out")
    assert done.returncode == 1
    assert "run createContainer hook '/bin/sleep': it ran past its timeout of 1s" in done.stderr
    assert not (root / "slow").exists()


def test_a_failing_start_container_hook_fails_start_and_the_command_never_runs(
    root: Path, rootfs: Path, tmp_path: Path, hooks_dir: Path
) -> None:
    (hooks_dir / "fail.sh").write_text("#!/bin/sh\necho no go >&2\nexit 9\n")
    (hooks_dir / "fail.sh").chmod(0o755)
    hooks = {"startContainer": [{"path": "/hooks/fail.sh"}]}
    b = make(tmp_path, rootfs, "touch /hooks/ran", _with_hooks(hooks_dir, hooks))
    create(root, b, "sc-fail", tmp_path / "out")
    done = rt(root, "start", "sc-fail", check=False)
    assert done.returncode == 1
    assert "run startContainer hook '/hooks/fail.sh': exit status 9: no go" in done.stderr
    wait_for(lambda: state(root, "sc-fail")["status"] == "stopped")
    assert not (hooks_dir / "ran").exists()
    rt(root, "delete", "sc-fail")


# -- mounts, masked and read-only paths, read-only root ---------------------------------


def test_mounts_bind_tmpfs_with_options_and_read_only(
    root: Path, rootfs: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")

    def edit(config: dict[str, Any]) -> None:
        config["mounts"] += [
            {"destination": "/data", "type": "bind", "source": str(shared),
             "options": ["rbind", "ro"]},
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "size=1m", "mode=1770"]},
        ]  # fmt: skip

    script = (
        "cat /data/in.txt; touch /data/new 2>/dev/null && echo wrote-ro; "
        "touch /scratch/x && echo wrote-tmpfs; stat -c %a /scratch; cat /proc/self/mountinfo"
    )
    done = run(root, tmp_path, rootfs, script, edit)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n", 3)
    assert lines[:3] == ["from the host", "wrote-tmpfs", "1770"]
    assert not (shared / "new").exists()
    data = mountinfo(lines[3], "/data")
    assert "ro" in data[5].split(",")
    scratch = mountinfo(lines[3], "/scratch")
    assert {"nosuid", "nodev"} <= set(scratch[5].split(","))
    assert scratch[-3] == "tmpfs"
    assert "size=1024k" in scratch[-1].split(",")


def test_masked_and_read_only_paths(root: Path, rootfs: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["maskedPaths"] = ["/proc/timer_list", "/sys/firmware"]
        config["linux"]["readonlyPaths"] = ["/proc/sys"]

    script = (
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo wrote; "
        "cat /proc/self/mountinfo"
    )
    done = run(root, tmp_path, rootfs, script, edit)
    assert done.returncode == 0, done.stderr
    timers, firmware, text = done.stdout.split("\n", 2)
    assert (timers.strip(), firmware.strip()) == ("0", "0")
    assert "ro" in mountinfo(text, "/proc/sys")[5].split(",")
    assert Path("/proc/timer_list").read_text()  # the host's are untouched
    assert any(Path("/sys/firmware").iterdir())


def test_a_read_only_root(root: Path, rootfs: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["root"]["readonly"] = True

    script = "touch /ro-mark 2>/dev/null && echo wrote; cat /proc/self/mountinfo"
    done = run(root, tmp_path, rootfs, script, edit)
    assert done.returncode == 0, done.stderr
    assert "wrote" not in done.stdout
    assert "ro" in mountinfo(done.stdout, "/")[5].split(",")
    assert not (rootfs / "ro-mark").exists()


@pytest.fixture
def shared_rootfs(rootfs: Path, tmp_path: Path) -> Iterator[Path]:
    """The rootfs on a shared mount of its own on the host (this host's ``/`` is private,
    and a slave needs a master to follow), unmounted after the test."""
    where = tmp_path / "shared-rootfs"
    where.mkdir()
    subprocess.run(["mount", "--bind", str(rootfs), str(where)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize(
    ("propagation", "tag"),
    [
        ("shared", "shared:"),
        ("slave", "master:"),
        ("rslave", "master:"),
        ("private", None),
    ],
)
def test_rootfs_propagation(
    root: Path, shared_rootfs: Path, tmp_path: Path, propagation: str, tag: str | None
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["rootfsPropagation"] = propagation

    done = run(root, tmp_path, shared_rootfs, "cat /proc/self/mountinfo", edit)
    assert done.returncode == 0, done.stderr
    # None of the container's own mounts (/proc, /dev, ...) showed up on the host.
    host = Path("/proc/self/mountinfo").read_text()
    assert f"{shared_rootfs}/" not in host
    fields = mountinfo(done.stdout, "/")
    optional = fields[6 : fields.index("-")]
    if tag is None:
        assert optional == []
    else:
        assert [f for f in optional if f.startswith(tag)], optional


# -- process: rlimits, capabilities, user, env, cwd, hostname, sysctl -------------------


def test_rlimits(root: Path, rootfs: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
        ]

    done = run(root, tmp_path, rootfs, "cat /proc/self/limits", edit)
    limits = {line[:26].strip(): line[26:].split() for line in done.stdout.splitlines()}
    assert limits["Max open files"][:2] == ["512", "1000"]
    assert limits["Max core file size"][:2] == ["0", "4096"]


def test_capabilities_as_proc_status_shows_them(root: Path, rootfs: Path, tmp_path: Path) -> None:
    three = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]

    def edit(config: dict[str, Any]) -> None:
        config["process"]["user"] = {"uid": 1000, "gid": 1000}
        config["process"]["capabilities"] = {
            "bounding": three,
            "permitted": three[:2],
            "effective": three[:2],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"],
        }

    done = run(root, tmp_path, rootfs, "grep ^Cap /proc/self/status", edit)
    caps = {
        k: int(v, 16)
        for k, _, v in (line.partition(":\t") for line in done.stdout.split("\n") if line)
    }
    # A non-root user's exec keeps the ambient set alone (capabilities(7)).
    kill = mask(["CAP_KILL"], "ambient")
    assert caps == {
        "CapInh": kill,
        "CapPrm": kill,
        "CapEff": kill,
        "CapBnd": mask(three, "bounding"),
        "CapAmb": kill,
    }


def test_process_user_env_cwd_and_hostname(root: Path, rootfs: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["process"]["user"] = {"uid": 1234, "gid": 2345, "additionalGids": [10, 20]}
        config["process"]["env"] += ["GREETING=hello world", "EMPTY="]
        config["process"]["cwd"] = "/tmp"
        config["hostname"] = "validation"

    script = (
        'echo "$GREETING|${EMPTY-unset}|$(pwd)|$(hostname)"; '
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status"
    )
    done = run(root, tmp_path, rootfs, script, edit)
    assert done.returncode == 0, done.stderr
    first, *status = done.stdout.splitlines()
    assert first == "hello world||/tmp|validation"
    fields = {k: v.split() for k, _, v in (line.partition(":") for line in status)}
    assert fields == {
        "Uid": ["1234"] * 4,
        "Gid": ["2345"] * 4,
        "Groups": ["10", "20"],
    }


def test_sysctl(root: Path, rootfs: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "4321"}

    done = run(
        root, tmp_path, rootfs, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax", edit
    )
    assert done.stdout.split() == ["1", "4321"]
    assert Path("/proc/sys/kernel/msgmax").read_text().strip() != "4321"  # the host's


# -- cgroups --------------------------------------------------------------------------------


def _cgroup_file(path: str, controller: str, name: str) -> Path:
    v1 = Path("/sys/fs/cgroup") / controller / path / name
    return v1 if v1.exists() else Path("/sys/fs/cgroup") / path / name


def test_cgroups_path_and_memory_and_pids_limits(root: Path, rootfs: Path, tmp_path: Path) -> None:
    path = f"{CGROUP_PARENT}/validation-{os.getpid()}"

    def edit(config: dict[str, Any]) -> None:
        config["linux"]["cgroupsPath"] = path
        config["linux"]["resources"]["memory"] = {"limit": 64 * 2**20}
        config["linux"]["resources"]["pids"] = {"limit": 32}
        config["linux"]["resources"]["cpu"] = {"quota": 50000, "period": 100000, "shares": 512}

    b = make(tmp_path, rootfs, "cat /proc/self/cgroup; sleep 30", edit)
    out = tmp_path / "out"
    create(root, b, "limited", out)
    pid = state(root, "limited")["pid"]
    memory = _cgroup_file(path, "memory", "memory.limit_in_bytes")
    if not memory.exists():
        memory = _cgroup_file(path, "memory", "memory.max")
    assert int(memory.read_text()) == 64 * 2**20
    assert _cgroup_file(path, "pids", "pids.max").read_text().strip() == "32"
    cpu = Path("/sys/fs/cgroup/cpu") / path
    if cpu.is_dir():  # cgroup v1
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert (cpu / "cpu.shares").read_text().strip() == "512"
    else:
        assert (Path("/sys/fs/cgroup") / path / "cpu.max").read_text().split() == [
            "50000",
            "100000",
        ]
    procs = _cgroup_file(path, "pids", "cgroup.procs").read_text().split()
    assert str(pid) in procs
    rt(root, "start", "limited")
    wait_for(lambda: out.read_text() != "")
    rt(root, "delete", "--force", "limited")
    assert not _cgroup_file(path, "pids", "").exists()


# -- user namespaces ---------------------------------------------------------------------


def _userns(host: int) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["namespaces"].append({"type": "user"})
        mapping = [{"containerID": 0, "hostID": host, "size": 65536}]
        config["linux"]["uidMappings"] = mapping
        config["linux"]["gidMappings"] = mapping

    return edit


def test_uid_and_gid_mappings(root: Path, rootfs: Path, tmp_path: Path) -> None:
    host = 200000
    script = (
        "cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /bin/busybox; "
        "mkdir /userns-mark && echo made; exec sleep 30"
    )
    b = make(tmp_path, rootfs, script, _userns(host))
    out = tmp_path / "out"
    done = create(root, b, "mapped", out)
    assert done.returncode == 0, done.stderr
    try:
        rt(root, "start", "mapped")
        wait_for(lambda: out.read_text().endswith("made\n"))
        pid = state(root, "mapped")["pid"]
        wait_for(lambda: status_fields(pid)["Name"] == "sleep")
        fields = status_fields(pid)
        # Root in the container is the mapped host uid, seen from the host.
        assert fields["Uid"].split() == [str(host)] * 4
        assert fields["Gid"].split() == [str(host)] * 4
        lines = [line.split() for line in out.read_text().splitlines()]
        assert lines[:2] == [["0", str(host), "65536"]] * 2
        # The rootfs is the host's root's: id-mapped, it shows as the container root's,
        # and what that root makes there belongs to the host's root.
        assert lines[2] == ["0:0"]
        assert (rootfs / "userns-mark").stat().st_uid == 0
        # exec joins its user namespace too.
        joined = rt(root, "exec", "mapped", "sh", "-c", "id -u; cat /proc/self/uid_map")
        assert joined.stdout.split() == ["0", "0", str(host), "65536"]
    finally:
        rt(root, "delete", "--force", "mapped")
        (rootfs / "userns-mark").rmdir()


def test_a_rootfs_the_mapping_owns_is_bound_as_it_is(
    root: Path, rootfs: Path, tmp_path: Path
) -> None:
    host = 300000
    own = tmp_path / "owned"
    subprocess.run(["cp", "-a", str(rootfs), str(own)], check=True)
    subprocess.run(["chown", "-R", f"{host}:{host}", str(own)], check=True)
    b = make(tmp_path, own, "stat -c %u /bin/busybox; touch /mark && echo wrote", _userns(host))
    done = rt(root, "run", "--bundle", str(b), b.name, check=False)
    assert (done.returncode, done.stdout) == (0, "0\nwrote\n"), done.stderr
    assert (own / "mark").stat().st_uid == host


# -- devices, oom score, seccomp, invalid processes, namespace paths ---------------------


def test_devices_are_made_with_their_numbers_mode_and_owner(
    root: Path, rootfs: Path, tmp_path: Path
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["devices"] = [
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
             "fileMode": 0o620, "uid": 5, "gid": 6},
        ]  # fmt: skip

    done = run(root, tmp_path, rootfs, "stat -c '%F %t:%T %a %u:%g' /dev/mynull", edit)
    assert done.stdout == "character special file 1:3 620 5:6\n", done.stderr


def test_oom_score_adj(root: Path, rootfs: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["process"]["oomScoreAdj"] = 345

    done = run(root, tmp_path, rootfs, "cat /proc/self/oom_score_adj", edit)
    assert done.stdout == "345\n", done.stderr


def test_seccomp_denies_what_the_profile_denies(root: Path, rootfs: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ],
        }

    done = run(root, tmp_path, rootfs, "mkdir /tmp/denied; echo $?; touch /tmp/allowed", edit)
    assert done.stdout == "1\n"
    assert "Operation not permitted" in done.stderr
    assert not (rootfs / "tmp" / "denied").exists()
    (rootfs / "tmp" / "allowed").unlink()


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("process.capabilities.bounding", {"capabilities": {"bounding": ["CAP_NOT_ONE"]}}),
        ("process.rlimits", {"rlimits": [{"type": "RLIMIT_NOT_ONE", "soft": 1, "hard": 1}]}),
    ],
    ids=["capability", "rlimit"],
)
def test_an_invalid_process_fails_create_naming_the_field(
    root: Path, rootfs: Path, tmp_path: Path, field: str, change: dict[str, Any]
) -> None:
    b = make(tmp_path, rootfs, "true", lambda config: config["process"].update(change))
    done = create(root, b, "invalid", tmp_path / "out")
    assert done.returncode == 1
    assert field in done.stderr
    assert not (root / "invalid").exists()


def test_a_namespace_path_is_joined(root: Path, rootfs: Path, tmp_path: Path) -> None:
    holder = subprocess.Popen(["unshare", "--uts", "sh", "-c", "hostname held; sleep 30"])
    try:
        wait_for(
            lambda: os.readlink(f"/proc/{holder.pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
        )
        path = f"/proc/{holder.pid}/ns/uts"

        def edit(config: dict[str, Any]) -> None:
            for ns in config["linux"]["namespaces"]:
                if ns["type"] == "uts":
                    ns["path"] = path
            config.pop("hostname", None)

        done = run(root, tmp_path, rootfs, "hostname", edit)
        assert done.stdout == "held\n", done.stderr
    finally:
        holder.kill()
        holder.wait()
