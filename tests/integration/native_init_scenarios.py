"""Key container behaviours, run in a process of their own and printed as JSON.

test_native_init.py runs this module twice, with the native init helper and with
``CONTAINERLIB_NATIVE_INIT=0`` (the Python child), and compares the two outputs. Everything
printed must therefore be the same from run to run: no pids, no random ids, no timings.

Run as ``python -m tests.integration.native_init_scenarios BUSYBOX SCRATCH`` as root, with
the run and data roots and the cgroup parent in the environment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from containerlib import Container, ContainerSetupError, Image
from containerlib.runtime.client import spawner
from containerlib.runtime.specconv import Roots, plan_from_spec
from containerlib.runtime.stdio import Pipes
from containerlib.spec import oci

Outcome = dict[str, Any]


def outcome(c: Container, cmd: list[str], **kw: Any) -> Outcome:
    r = c.run(cmd, **kw)
    return {
        "exit_code": r.exit_code,
        "stdout": r.stdout.decode(errors="replace"),
        "stderr": r.stderr.decode(errors="replace"),
        "oom_killed": r.oom_killed,
        "timed_out": r.timed_out,
    }


def setup_failure(c: Container, cmd: list[str], cid: str) -> Outcome:
    try:
        c.run(cmd, id=cid)
    except ContainerSetupError as e:
        return {"step": e.step, "errno": e.errno, "message": str(e)}
    return {"step": None}


def tree(root: Path) -> list[str]:
    return sorted(
        f"{p.relative_to(root)} {p.lstat().st_mode:o} {p.lstat().st_size}" for p in root.rglob("*")
    )


def writes_stay_in_the_container(image: Image, busybox: Path) -> Outcome:
    before = tree(busybox)
    r = outcome(
        Container(image),
        ["sh", "-c", "echo x > /new; rm /bin/ls; echo y > /etc/passwd; mkdir /tmp/d"],
    )
    after = outcome(Container(image), ["sh", "-c", "ls /new 2>&1; ls /bin/ls"])
    return {"first": r, "second": after, "image_unchanged": tree(busybox) == before}


def mount_targets_stay_inside(image: Image, scratch: Path) -> Outcome:
    """Mount points made through the image's symlinks, absolute and relative, to a path
    that exists on the host and in the image: they must be made in the image's copy. A
    symlink to a path only the host has is a setup error. Nothing is made on the host."""
    outside = scratch / "outside"
    host_only = scratch / "host-only"
    outside.mkdir()
    host_only.mkdir()
    layer = scratch / "layer"
    (layer / str(outside).lstrip("/")).mkdir(parents=True)
    (layer / "abs").symlink_to(outside)
    (layer / "rel").symlink_to("../../../../../../../../.." + str(outside))
    (layer / "dangling").symlink_to(host_only)
    image = attrs.evolve(image, layers=(*image.layers, str(layer)))
    c = Container(image).tmpfs("/abs/made/here").tmpfs("/rel/made/there")
    return {
        # Both links lead to the image's copy of the host path: one directory.
        "run": outcome(c, ["sh", "-c", "ls -d /abs/made/* /rel/made/*"]),
        "dangling": setup_failure(
            Container(image).tmpfs("/dangling/x"), ["true"], "dangling-symlink"
        ),
        "host_side": sorted(p.name for p in (*outside.iterdir(), *host_only.iterdir())),
    }


def plan_features(image: Image) -> Outcome:
    """What the fluent API does not reach: sysctls, rlimits, oom_score_adj, umask, extra
    groups, a domain name, ambient capabilities and extra devices, set on the spec."""
    script = (
        "cat /proc/sys/kernel/msgmax /proc/sys/kernel/domainname /proc/self/oom_score_adj;"
        "ulimit -n; umask; id -G; grep CapAmb /proc/self/status; ls -ln /dev/box-null "
        "/dev/box-fifo | awk '{print $1, $3, $4}'; echo x > /dev/box-null && echo written"
    )
    spec = Container(image).hostname("features").spec(["sh", "-c", script], id="features")
    assert spec.process is not None
    assert spec.linux is not None
    caps = spec.process.capabilities
    assert caps is not None
    process = attrs.evolve(
        spec.process,
        user=oci.User(uid=1000, gid=1001, umask=0o027, additional_gids=(10, 20)),
        rlimits=(oci.POSIXRlimit(type="RLIMIT_NOFILE", soft=100, hard=200),),
        oom_score_adj=500,
        capabilities=attrs.evolve(
            caps,
            inheritable=("CAP_NET_BIND_SERVICE",),
            ambient=("CAP_NET_BIND_SERVICE",),
        ),
    )
    devices = (
        oci.LinuxDevice(
            path="/dev/box-null", type="c", major=1, minor=3, file_mode=0o620, uid=1000, gid=1001
        ),
        oci.LinuxDevice(path="/dev/box-fifo", type="p", file_mode=0o600),
    )
    linux = attrs.evolve(spec.linux, sysctl={"kernel.msgmax": "12345"}, devices=devices)
    spec = attrs.evolve(spec, process=process, linux=linux, domainname="example.org")
    plan = plan_from_spec(
        spec,
        container_id="features",
        lowerdirs=tuple(reversed(image.layers)),
        roots=Roots.from_env(),
    )
    pipes = Pipes()
    try:
        process_ = spawner.start(plan, pipes.theirs)
        pipes.release_theirs()
        pipes.pump()
        exited = process_.wait()
    finally:
        pipes.close()
    assert exited is not None
    return {
        "exit_code": exited.exit_code,
        "stdout": pipes.stdout.decode(),
        "stderr": pipes.stderr.decode(),
    }


def warm_process_kind() -> str:
    """What the spawner keeps waiting for the next plan: the helper or a Python fork."""
    pid = spawner.pid
    assert pid is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            try:
                exe = os.readlink(f"/proc/{child}/exe")
                if Path(f"/proc/{child}/comm").read_text().strip() == "clib-janitor":
                    continue  # the spawner's janitor, not a warm process
            except OSError:
                continue
            if os.path.basename(exe).startswith("clib-init-"):
                return "native"
            if exe == os.path.realpath(sys.executable):
                return "python"
        time.sleep(0.01)
    return "none"


def run_all(busybox: Path, scratch: Path) -> Outcome:
    image = Image.from_rootfs(busybox)
    c = Container(image)
    (scratch / "in.txt").write_text("from the host")
    procs = "ls /proc | grep -E '^[0-9]+$' | while read p; do [ $p -lt 10 ] || echo $p; done"
    caps = ["grep", "^Cap", "/proc/self/status"]
    scenarios: dict[str, Callable[[], Any]] = {
        "pid_1": lambda: outcome(c, ["sh", "-c", f"echo $$; {procs}"]),
        "only_lo_and_up": lambda: outcome(
            c, ["sh", "-c", "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo up"]
        ),
        "hostname": lambda: outcome(c.hostname("box-1"), ["hostname"]),
        "proc_sys_read_only": lambda: outcome(
            c, ["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"]
        ),
        "sys_read_only": lambda: outcome(c, ["touch", "/sys/kernel/x"]),
        "masked_paths": lambda: outcome(
            c, ["sh", "-c", "wc -c < /proc/keys; ls /sys/firmware | wc -l"]
        ),
        "dev": lambda: outcome(c, ["sh", "-c", "ls /dev; ls -l /dev/null | cut -c1-10"]),
        # Which messages the shell and head print, in which order, is a race: not kept.
        "oom_kill": lambda: {
            k: v
            for k, v in outcome(
                c.limit(mem="32M"), ["sh", "-c", "head -c 200m /dev/zero | tail"]
            ).items()
            if k in ("exit_code", "oom_killed")
        },
        "bind_ro": lambda: outcome(
            c.mount(scratch, "/data"), ["sh", "-c", "cat /data/in.txt; touch /data/x"]
        ),
        "bind_rw": lambda: outcome(
            c.mount(scratch, "/data", read_only=False),
            ["sh", "-c", "echo hi > /data/out.txt; cat /data/out.txt"],
        ),
        "bind_a_file": lambda: outcome(
            c.mount(scratch / "in.txt", "/etc/in.txt"), ["cat", "/etc/in.txt"]
        ),
        "user_1000_1001": lambda: outcome(
            c.env(GREETING="hello world").workdir("/tmp").user("1000:1001"),
            ["sh", "-c", 'echo "$GREETING"; pwd; id -u; id -g; id -G; umask; echo $HOME'],
        ),
        "signals_at_default": lambda: outcome(c, ["grep", "^Sig[IB]", "/proc/self/status"]),
        "sigpipe_kills_a_writer": lambda: outcome(
            c, ["sh", "-c", "(yes; echo $? >&2) | head -c 2"]
        ),
        "docker_capabilities": lambda: outcome(c, caps),
        "capabilities_as_1000": lambda: outcome(c.user("1000:1001"), caps),
        "exit_42": lambda: outcome(c, ["sh", "-c", "exit 42"]),
        "not_found_127": lambda: outcome(c, ["no-such-command"]),
        "no_such_path_127": lambda: outcome(c, ["/no/such/file"]),
        "not_executable_126": lambda: outcome(c, ["/etc/passwd"]),
        "killed_137": lambda: outcome(c, ["sleep", "30"], timeout=0.3),
        "stdin_to_stdout": lambda: outcome(c, ["cat"], input=b"\0bytes\xff"),
        "read_only_root": lambda: outcome(
            c.read_only().tmpfs("/scratch", size="1M"),
            ["sh", "-c", "touch /scratch/x && echo tmpfs-ok; touch /x"],
        ),
        "bad_workdir": lambda: setup_failure(c.workdir("/etc/passwd"), ["true"], "bad-workdir"),
        "mount_under_a_file": lambda: setup_failure(
            c.mount(scratch, "/etc/passwd/x"), ["true"], "mount-under-a-file"
        ),
        "writes_stay_in_the_container": lambda: writes_stay_in_the_container(image, busybox),
        "mount_targets_stay_inside": lambda: mount_targets_stay_inside(image, scratch),
        "plan_features": lambda: plan_features(image),
    }
    results = {name: run() for name, run in scenarios.items()}
    results["warm_process"] = warm_process_kind()
    return results


if __name__ == "__main__":
    print(json.dumps(run_all(Path(sys.argv[1]), Path(sys.argv[2])), indent=1, sort_keys=True))
