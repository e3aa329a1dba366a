"""What a default container must not be able to do, tried from inside it.

Each test runs a probe in a container made with nothing but ``Container(image)`` (Docker's
14 capabilities, no_new_privs, masked and read-only /proc paths, a minimal /dev, the device
cgroup), asserts the failure a user would see (the errno, or the shell's message), and,
where the probe could have changed the host, checks from the host that nothing happened.

Some probes only a seccomp filter stops (Docker's default profile): unshare of a user
namespace, keyrings, perf_event_open, userfaultfd.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib import Container, Image
from containerlib.image.builtin import busybox_rootfs
from containerlib.runtime import nativeinit
from containerlib.runtime.client import spawner
from containerlib.spec.defaults import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS
from tests.security_probes import build_probe, errno_name, probe_results

from .conftest import ROOT, mounts_under, needs_root

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]


#: Docker's capability set (capabilities(7) bits), as /proc/<pid>/status shows it.
DOCKER_CAPS = "00000000a80425fb"


@pytest.fixture(scope="module")
def probed(roots: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The busybox root file system with the static ``/probe`` program in it."""
    base = tmp_path_factory.mktemp("probed")
    try:
        probe = build_probe(base / "probe")
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot build the static probe program: {e}")
    rootfs = busybox_rootfs(base / "rootfs")
    shutil.copy2(probe, rootfs / "probe")
    return Image.from_rootfs(rootfs)


def probe(image: Image, *args: str, container: Container | None = None) -> dict[str, int]:
    """Run ``/probe args`` in a default container; its results by name."""
    r = (container or Container(image)).run(["/probe", *args])
    assert r.exit_code == 0, (r.exit_code, r.stderr)
    return probe_results(r.stdout)


def sh(image: Image, script: str, container: Container | None = None) -> tuple[int, str, str]:
    r = (container or Container(image)).run(["sh", "-c", script])
    return r.exit_code, r.stdout.decode(), r.stderr.decode()


def assert_errno(results: dict[str, int], name: str, *allowed: int) -> None:
    got = results[name]
    assert got in allowed, (
        f"{name}: got {errno_name(got)}, want {' or '.join(map(errno_name, allowed))}"
    )


# -- kernel modules, mounts, namespaces ---------------------------------------------------


def _host_modules() -> str | None:
    try:
        return Path("/proc/modules").read_text()
    except FileNotFoundError:
        return None  # a kernel built without module support


def test_loading_a_kernel_module_is_denied(probed: Image) -> None:
    before = _host_modules()
    # ENOSYS: a kernel without module support (CONFIG_MODULES=n) has no such call.
    r = probe(probed, "init_module")
    assert_errno(r, "init_module", errno.EPERM, errno.ENOSYS)
    r = probe(probed, "finit_module", "/etc/passwd")
    assert_errno(r, "finit_module", errno.EPERM, errno.ENOSYS)
    code, _, err = sh(probed, "printf 'not a module' > /tmp/x.ko; insmod /tmp/x.ko")
    assert code != 0
    assert "x.ko" in err
    assert _host_modules() == before


def test_mount_and_umount_are_denied(probed: Image) -> None:
    code, out, err = sh(
        probed,
        "mkdir /mnt; mount -t tmpfs x /mnt; echo mount=$?; grep -c ' /mnt ' /proc/self/mountinfo",
    )
    assert out.split()[0] != "mount=0", "mount -t tmpfs succeeded"
    assert out.split()[1] == "0", out
    assert "Operation not permitted" in err or "permission denied" in err, err
    assert_errno(probe(probed, "mount", "/tmp"), "mount", errno.EPERM)
    assert_errno(probe(probed, "umount", "/proc"), "umount", errno.EPERM)
    code, out, _ = sh(probed, "umount /proc; echo umount=$?; ls /proc/self/status")
    assert code == 0
    assert out.split()[0] != "umount=0", "umount /proc succeeded"
    assert out.split()[1] == "/proc/self/status"


def test_unshare_of_a_mount_namespace_is_denied(probed: Image) -> None:
    assert_errno(probe(probed, "unshare", "m"), "unshare", errno.EPERM)
    code, _, err = sh(probed, "unshare -m true")
    assert code != 0
    assert "Operation not permitted" in err


def test_unshare_of_a_user_namespace_is_denied(probed: Image) -> None:
    # Docker's profile refuses CLONE_NEWUSER without CAP_SYS_ADMIN: a user namespace
    # hands out every capability over new namespaces, the kernel's biggest attack surface.
    assert_errno(probe(probed, "unshare", "U"), "unshare", errno.EPERM)
    code, _, err = sh(probed, "unshare -U true")
    assert code != 0, "unshare -U succeeded"
    assert "Operation not permitted" in err


def test_a_user_namespace_cannot_give_a_mount_of_ones_own(probed: Image) -> None:
    assert_errno(probe(probed, "userns_mount", "/tmp"), "userns_mount", errno.EPERM)


# -- keyrings (not namespaced: a key added here is the host root's) -----------------------

_KEYCTL_SEARCH = 10
_KEYCTL_INVALIDATE = 21
_KEY_SPEC_USER_KEYRING = -4
#: keyctl(2)'s system call number, for the host-side check and clean-up.
_NR_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)


def _purge_host_key(description: str) -> bool:
    """Remove the ``user`` key ``description`` from the host root's user keyring; True
    if there was one."""
    if _NR_KEYCTL is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    key = libc.syscall(
        _NR_KEYCTL, _KEYCTL_SEARCH, _KEY_SPEC_USER_KEYRING, b"user", description.encode(), 0
    )
    if key <= 0:
        return False
    libc.syscall(_NR_KEYCTL, _KEYCTL_INVALIDATE, key)
    return True


@pytest.fixture
def key_name() -> Iterator[str]:
    name = f"containerlib-probe-{secrets.token_hex(6)}"
    yield name
    _purge_host_key(name)


def test_add_key_to_the_shared_user_keyring_is_denied(probed: Image, key_name: str) -> None:
    if _NR_KEYCTL is None:
        pytest.skip(f"no keyctl number known for {os.uname().machine}")
    r = probe(probed, "add_key", key_name)
    planted = key_name in Path("/proc/keys").read_text()
    assert not planted, "the container added a key to the host root's user keyring"
    assert_errno(r, "add_key", errno.EPERM)


def test_keyctl_join_session_keyring_is_denied(probed: Image, key_name: str) -> None:
    assert_errno(probe(probed, "keyctl_join", key_name), "keyctl_join", errno.EPERM)


# -- ptrace -------------------------------------------------------------------------------


def test_a_host_process_cannot_be_seen_or_traced(probed: Image) -> None:
    with subprocess.Popen(["sleep", "60"]) as host:
        try:
            r = probe(probed, "ptrace", str(host.pid))
            _, out, _ = sh(probed, f"ls -d /proc/{host.pid} 2>&1; echo ls=$?")
            # The host process is still untouched: not stopped, not traced.
            status = Path(f"/proc/{host.pid}/status").read_text()
        finally:
            host.kill()
    assert_errno(r, "ptrace", errno.ESRCH)
    assert out.strip().endswith("ls=1"), out
    assert "\nTracerPid:\t0\n" in status
    assert "\nState:\tS" in status


@needs_root("another uid inside, which a user namespace that maps one id lacks")
def test_ptrace_of_another_users_process_needs_cap_sys_ptrace(probed: Image) -> None:
    r = probe(probed, "ptrace_other_uid")
    assert "ptrace_other_uid_setup" not in r, r
    assert_errno(r, "ptrace_other_uid", errno.EPERM)


# -- /proc ----------------------------------------------------------------------------------


def test_proc_sysrq_trigger_and_sysctls_are_read_only(probed: Image) -> None:
    # Only opened for writing, never written: a working probe changes nothing.
    paths = ("/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches")
    # A kernel without CONFIG_MAGIC_SYSRQ has no /proc/sysrq-trigger.
    # Rootless, the container's root is a user whom the files' modes refuse first.
    refusals = (errno.EROFS,) if ROOT else (errno.EACCES, errno.EROFS)
    for path in (p for p in paths if os.path.exists(p)):
        assert_errno(probe(probed, "open_write", path), "open_write", *refusals)
    code, _, err = sh(probed, "cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern")
    assert code != 0
    assert "Read-only file system" in err


@pytest.mark.parametrize("path", DEFAULT_MASKED_PATHS)
def test_docker_masked_path_is_empty_inside(probed: Image, path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this host's kernel")
    script = f"if [ -d {path} ]; then ls -A {path} | wc -l; else cat {path} | wc -c; fi"
    code, out, err = sh(probed, script)
    assert code == 0, err
    assert out.strip() == "0", f"{path} is not masked: {out.strip()} entries or bytes"


@pytest.mark.parametrize("path", DEFAULT_READONLY_PATHS)
def test_docker_read_only_path_is_a_read_only_mount(probed: Image, path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this host's kernel")
    code, out, err = sh(probed, "cat /proc/self/mountinfo")
    assert code == 0, err
    options = [line.split()[5] for line in out.splitlines() if line.split()[4] == path]
    assert options, f"{path} is not a mount point in the container"
    assert "ro" in options[-1].split(","), f"{path} is mounted {options[-1]}"


def test_proc_keys_and_timer_list_are_empty(probed: Image) -> None:
    for path in ("/proc/keys", "/proc/timer_list", "/proc/kcore"):
        if not os.path.exists(path):
            continue
        code, out, _ = sh(probed, f"wc -c < {path}")
        assert (code, out.strip()) == (0, "0"), path


def test_cgroup_file_system_is_read_only(probed: Image) -> None:
    # A writable cgroup file system would let the container raise its own limits or, on
    # v1, set a release_agent that the host runs (CVE-2022-0492).
    code, out, err = sh(probed, "ls /sys/fs/cgroup | head -1; touch /sys/fs/cgroup/x")
    assert code != 0
    assert "Read-only file system" in err, (out, err)


# -- escapes Docker's defaults are known to stop ------------------------------------------


def test_chroot_cannot_climb_out_of_the_container(probed: Image) -> None:
    r = Container(probed).run(["/probe", "chroot_escape"])
    assert r.exit_code == 0, r.stderr
    # Still the container's root: the image's names, not the host's.
    assert r.stdout.decode().split() == sorted(os.listdir(probed.layers[0]))


def test_open_by_handle_at_is_denied(probed: Image) -> None:
    # On /dev/shm, a tmpfs: the overlay root has no file handles to give.
    r = probe(probed, "open_by_handle_at", "/dev/shm")
    assert "open_by_handle_setup" not in r, r
    assert_errno(r, "open_by_handle_at", errno.EPERM)


# -- devices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "major", "minor", "what"),
    [
        ("c", 1, 1, "mem"),
        ("c", 1, 2, "kmem"),
        ("c", 1, 11, "kmsg"),
        ("b", 8, 0, "sda"),
        ("c", 10, 237, "loop-control"),
    ],
)
def test_mknod_works_but_the_device_cgroup_denies_opening(
    probed: Image, kind: str, major: int, minor: int, what: str
) -> None:
    if not ROOT:
        # A user namespace refuses mknod itself, whatever the capabilities.
        code, out, err = sh(probed, f"mknod /tmp/{what} {kind} {major} {minor} && echo made")
        assert code != 0
        assert "Operation not permitted" in err
        return
    code, out, err = sh(probed, f"mknod /tmp/{what} {kind} {major} {minor} && echo made")
    assert (code, out) == (0, "made\n"), err
    script = f"mknod /tmp/{what} {kind} {major} {minor} && exec /probe open_read /tmp/{what}"
    code, out, err = sh(probed, script)
    assert code == 0, err
    assert_errno(probe_results(out.encode()), "open_read", errno.EPERM)


def test_the_minimal_dev_still_works(probed: Image) -> None:
    # The other side of the device probes: what Docker allows, works.
    code, out, err = sh(
        probed, "head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; echo x > /dev/null"
    )
    assert (code, out.split()) == (0, ["4", "4"]), err


# -- nothing of the host through /proc ----------------------------------------------------


def test_proc_1_root_is_the_containers_own_root(probed: Image, tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("host-only-content")
    code, out, err = sh(
        probed,
        "readlink /proc/1/root; readlink /proc/1/exe; readlink /proc/self/exe;"
        "ls /proc/1/root/ | tr '\\n' ' '; echo;"
        f"cat /proc/1/root{sentinel} /proc/self/root{sentinel} /proc/1/cwd{sentinel}",
    )
    lines = out.splitlines()
    assert lines[:3] == ["/", "/bin/busybox", "/bin/busybox"], out
    assert lines[3].split() == sorted(os.listdir(probed.layers[0]))
    assert code != 0
    assert err.count("No such file or directory") == 3, err
    assert "host-only-content" not in out


def _host_code() -> dict[tuple[int, int], str]:
    """(st_dev, st_ino) of the host's programs that run containerlib: python, the helper."""
    found = {}
    for path in (sys.executable, os.path.realpath(sys.executable), nativeinit.helper_path()):
        if path:
            st = os.stat(path)
            found[(st.st_dev, st.st_ino)] = path
    return found


def test_the_host_python_and_helper_cannot_be_reached(probed: Image) -> None:
    script = (
        "for f in /proc/[0-9]*/exe /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/fd/*"
        " /proc/[0-9]*/map_files/*; do"
        ' t=$(stat -L -c "%d %i" "$f" 2>/dev/null) && echo "$t $f $(readlink "$f")"; done; true'
    )
    code, out, err = sh(probed, script)
    assert code == 0, err
    host = _host_code()
    reached = []
    for line in out.splitlines():
        dev, ino, *names = line.split()
        if (int(dev), int(ino)) in host:
            reached.append(" ".join(names))
    assert not reached, f"host programs reachable from inside: {reached}"
    assert "python" not in out


def test_no_host_file_descriptor_is_inherited(probed: Image, tmp_path: Path) -> None:
    # A fresh spawner, started while this process holds inheritable descriptors: a
    # directory among them, the kind that lets a container walk the host's tree.
    spawner.stop()
    held = [os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)]
    held += [os.open("/dev/null", os.O_RDONLY) for _ in range(49)]
    try:
        for fd in held:
            os.set_inheritable(fd, True)
        code, out, err = sh(probed, "ls -l /proc/self/fd; echo --; ls -l /proc/1/fd")
    finally:
        for fd in held:
            os.close(fd)
    assert code == 0, err
    mine, _, first = out.partition("--\n")

    def fds(listing: str) -> dict[int, str]:
        found = {}
        for line in listing.splitlines():
            if " -> " in line:
                name, _, target = line.partition(" -> ")
                found[int(name.split()[-1])] = target
        return found

    own = fds(mine)
    # 0, 1, 2 and the directory ls reads, /proc/<its pid>/fd.
    extra = {fd: t for fd, t in own.items() if fd > 2}
    assert len(extra) <= 1, own
    assert all(t.endswith("/fd") for t in extra.values()), own
    assert set(fds(first)) == {0, 1, 2}, first
    assert str(tmp_path) not in out


# -- credentials --------------------------------------------------------------------------


def _status(image: Image) -> dict[str, str]:
    code, out, err = sh(image, "cat /proc/1/status")
    assert code == 0, err
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_pid_1_has_dockers_capabilities_and_no_new_privs(probed: Image) -> None:
    status = _status(probed)
    assert status["CapBnd"] == status["CapEff"] == status["CapPrm"] == DOCKER_CAPS
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"


def test_pid_1_runs_under_a_seccomp_filter(probed: Image) -> None:
    status = _status(probed)
    assert status["Seccomp"] == "2"
    assert int(status.get("Seccomp_filters", "0")) >= 1


@needs_root("another uid inside, which a user namespace that maps one id lacks")
def test_a_user_set_by_the_caller_has_no_capabilities(probed: Image) -> None:
    code, out, err = sh(probed, "cat /proc/1/status", Container(probed).user("1000:1000"))
    assert code == 0, err
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert fields["CapEff"] == fields["CapPrm"] == "0000000000000000"
    assert fields["CapBnd"] == DOCKER_CAPS
    assert fields["Uid"].split() == ["1000"] * 4


# -- other system calls Docker's defaults deny --------------------------------------------


def test_setting_the_clock_is_denied(probed: Image) -> None:
    # The probe sets the time it has just read: harmless should it succeed.
    assert_errno(probe(probed, "clock_settime"), "clock_settime", errno.EPERM)


def test_io_ports_are_denied(probed: Image) -> None:
    # ENOSYS: a kernel built without CONFIG_X86_IOPL_IOPERM.
    assert_errno(probe(probed, "iopl"), "iopl", errno.EPERM, errno.ENOSYS)


def test_bpf_is_denied(probed: Image) -> None:
    assert_errno(probe(probed, "bpf_map"), "bpf_map", errno.EPERM)


def test_perf_event_open_is_denied(probed: Image) -> None:
    assert_errno(probe(probed, "perf_event_open"), "perf_event_open", errno.EPERM)


def test_userfaultfd_is_denied(probed: Image) -> None:
    assert_errno(probe(probed, "userfaultfd"), "userfaultfd", errno.EPERM)


# -- read-only root -----------------------------------------------------------------------


def test_read_only_root_refuses_every_write(probed: Image, roots: dict[str, str]) -> None:
    ro = Container(probed).read_only()
    code, out, err = sh(
        probed,
        "touch /x; echo $?; mkdir /etc/d; echo $?; touch /tmp/x; echo $?; rm /bin/ls; echo $?",
        ro,
    )
    assert out.split() == ["1"] * 4, (out, err)
    assert err.count("Read-only file system") == 4, err
    assert_errno(
        probe(probed, "open_write", "/etc/passwd", container=ro), "open_write", errno.EROFS
    )
    # A tmpfs on /tmp makes /tmp, and only /tmp, writable; /dev/shm stays writable as in
    # Docker.
    code, out, err = sh(
        probed, "touch /tmp/x && touch /dev/shm/y && echo ok; touch /x", ro.tmpfs("/tmp")
    )
    assert code == 1
    assert out == "ok\n", err
    assert "Read-only file system" in err
    assert not mounts_under(roots["CONTAINERLIB_DATA_ROOT"])
