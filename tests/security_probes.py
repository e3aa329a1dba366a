"""A small static C program that tries, from inside a container, what a container must not do.

busybox has applets for most probes (``mount``, ``insmod``, ``unshare``, ``mknod``), but not
for the bare system calls: add_key, ptrace, perf_event_open, userfaultfd. :func:`build_probe`
compiles ``probe`` with ``gcc -static``, so it runs in any root file system. Each call
prints one line, ``<name> <errno>`` (0 when the call succeeded), and exits 0; a bad
command line exits 2. :func:`probe_results` reads those lines back.

Example (from a test)::

    probe = build_probe(tmp_path / "probe")
    r = Container(image).run(["/probe", "add_key", "name"])
    assert probe_results(r.stdout) == {"add_key": errno.EACCES}
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

__all__ = ["PROBE_SOURCE", "build_probe", "errno_name", "probe_results"]

PROBE_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int report(const char *name, long rc) {
    printf("%s %d\n", name, rc < 0 ? errno : 0);
    fflush(stdout);
    return 0;
}

static int unshare_by_name(const char *what) {
    int flags = 0;
    if (strchr(what, 'U')) flags |= CLONE_NEWUSER;
    if (strchr(what, 'm')) flags |= CLONE_NEWNS;
    if (strchr(what, 'n')) flags |= CLONE_NEWNET;
    if (strchr(what, 'p')) flags |= CLONE_NEWPID;
    return report("unshare", unshare(flags));
}

/* Root attaching to a process of another uid: only CAP_SYS_PTRACE allows it. The target
 * is our own child, so that Yama's ptrace_scope=1 (descendants only) does not decide. */
static int ptrace_other_uid(void) {
    int ready[2];
    char c;
    if (pipe(ready) < 0) return report("ptrace_other_uid_setup", -1);
    pid_t child = fork();
    if (child < 0) return report("ptrace_other_uid_setup", -1);
    if (child == 0) {
        if (setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0) _exit(3);
        if (write(ready[1], "x", 1) != 1) _exit(4);
        pause();
        _exit(0);
    }
    close(ready[1]);
    if (read(ready[0], &c, 1) != 1) return report("ptrace_other_uid_setup", -1);
    long rc = ptrace(PTRACE_ATTACH, child, NULL, NULL);
    int saved = errno;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    errno = saved;
    return report("ptrace_other_uid", rc);
}

/* The chroot escape: chroot into a subdirectory, climb with "..", chroot there. Under a
 * runtime that only chroots, this leaves the container; after pivot_root it cannot. Then
 * lists "/" with the root file system's busybox. */
static int chroot_escape(void) {
    mkdir("/tmp/jail", 0700);
    if (chroot("/tmp/jail") < 0) return report("chroot_escape_setup", -1);
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0) return report("chroot_escape_setup", -1);
    if (chroot(".") < 0) return report("chroot_escape_setup", -1);
    execl("/bin/busybox", "ls", "-1", "/", (char *)NULL);
    return report("chroot_escape_exec", -1);
}

/* The "shocker" escape: open a file by handle, which only CAP_DAC_READ_SEARCH allows
 * (the handle could name any inode of the file system, outside the container's root). */
static int open_by_handle(const char *path) {
    struct {
        struct file_handle fh;
        unsigned char data[MAX_HANDLE_SZ];
    } h;
    int mount_id;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0)
        return report("open_by_handle_setup", -1);
    int mount_fd = open(path, O_RDONLY | O_CLOEXEC);
    return report("open_by_handle_at", open_by_handle_at(mount_fd, &h.fh, O_RDONLY | O_CLOEXEC));
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *cmd = argv[1];
    const char *arg = argc > 2 ? argv[2] : "";
    if (!strcmp(cmd, "init_module")) {
        static char image[64];
        return report(cmd, syscall(SYS_init_module, image, sizeof image, ""));
    }
    if (!strcmp(cmd, "finit_module")) {
        int fd = open(arg, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return report("finit_module_open", -1);
        return report(cmd, syscall(SYS_finit_module, fd, "", 0));
    }
    if (!strcmp(cmd, "unshare")) return unshare_by_name(arg);
    if (!strcmp(cmd, "userns_mount")) {
        /* What a new user namespace would give: a mount namespace of one's own. */
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) return report(cmd, -1);
        return report(cmd, mount("x", arg, "tmpfs", 0, "size=1m"));
    }
    if (!strcmp(cmd, "add_key"))
        return report(cmd, syscall(SYS_add_key, "user", arg, "x", 1, KEY_SPEC_USER_KEYRING));
    if (!strcmp(cmd, "keyctl_join"))
        return report(cmd, syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, arg));
    if (!strcmp(cmd, "ptrace")) {
        pid_t pid = atoi(arg);
        long rc = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
        report(cmd, rc);
        if (rc == 0) ptrace(PTRACE_DETACH, pid, NULL, NULL);
        return 0;
    }
    if (!strcmp(cmd, "ptrace_other_uid")) return ptrace_other_uid();
    if (!strcmp(cmd, "mount")) return report(cmd, mount("x", arg, "tmpfs", 0, "size=1m"));
    if (!strcmp(cmd, "umount")) return report(cmd, umount2(arg, MNT_DETACH));
    if (!strcmp(cmd, "open_read")) return report(cmd, open(arg, O_RDONLY | O_CLOEXEC));
    if (!strcmp(cmd, "open_write")) return report(cmd, open(arg, O_WRONLY | O_CLOEXEC));
    if (!strcmp(cmd, "clock_settime")) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return report(cmd, clock_settime(CLOCK_REALTIME, &now));
    }
    if (!strcmp(cmd, "chroot_escape")) return chroot_escape();
    if (!strcmp(cmd, "open_by_handle_at")) return open_by_handle(arg);
    if (!strcmp(cmd, "iopl")) return report(cmd, iopl(3));
    if (!strcmp(cmd, "bpf_map")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        return report(cmd, syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    }
    if (!strcmp(cmd, "perf_event_open")) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_TASK_CLOCK;
        attr.exclude_kernel = 1;
        attr.exclude_hv = 1;
        return report(cmd, syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    }
    if (!strcmp(cmd, "userfaultfd")) /* 1: UFFD_USER_MODE_ONLY, open to anyone */
        return report(cmd, syscall(SYS_userfaultfd, O_CLOEXEC | 1));
    return 2;
}
"""


def build_probe(dest: Path) -> Path:
    """Compile the probe program, statically linked, to ``dest``.

    Args:
        dest: the executable to write; its directory must exist.

    Returns:
        ``dest``.

    Raises:
        FileNotFoundError: there is no ``gcc`` on this host.
        subprocess.CalledProcessError: it did not compile (no static libc, say).
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FileNotFoundError("gcc is needed to build the security probe")
    source = dest.with_suffix(".c")
    source.write_text(PROBE_SOURCE)
    subprocess.run(
        [gcc, "-static", "-O1", "-Wall", "-Werror", "-o", str(dest), str(source)],
        check=True,
        capture_output=True,
    )
    return dest


def probe_results(stdout: bytes) -> dict[str, int]:
    """The probe's lines as ``{name: errno}``, 0 for a call that succeeded."""
    results = {}
    for line in stdout.decode().splitlines():
        name, _, number = line.rpartition(" ")
        results[name] = int(number)
    return results


def errno_name(number: int) -> str:
    """``"EPERM"`` for 1; ``"success"`` for 0; for messages."""
    return errno.errorcode.get(number, str(number)) if number else "success"
