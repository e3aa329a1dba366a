"""What a container's first process does between clone(2) and execve(2).

This code runs in a process just cloned from the spawner, already in its new mount, PID,
UTS, IPC and network namespaces. It must not import, log or take a lock: everything it
needs was computed into the :class:`~containerlib.runtime.plan.Plan` and bound at import
time. On failure it writes ``errno NUL step`` to the error pipe and exits; on success the
pipe closes at execve(2) (it is close-on-exec), which tells the spawner the command started.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import pickle
import resource
import signal
import socket
import stat
import struct
from typing import NoReturn

import attrs

from containerlib.linux import syscalls as sc
from containerlib.runtime.joins import JOINABLE
from containerlib.runtime.plan import MountStep, Plan

__all__ = ["EXIT_NOT_EXECUTABLE", "EXIT_NOT_FOUND", "SETUP_FAILED", "child_main"]

#: Exit codes of a command that could not be run, as Docker gives them.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
#: The exit code of a child whose setup failed; the error pipe says why.
SETUP_FAILED = 125

_DEFAULT_PATH = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
_SIOCSIFFLAGS = 0x8914
_IFF_UP_LOOPBACK_RUNNING = 0x1 | 0x8 | 0x40
_STATVFS_MOUNT_FLAGS = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
# The stdio descriptors, and one for each namespace a plan joins (see Plan.namespace_paths).
_MAX_FDS = 3 + 8


class _Step(Exception):
    def __init__(self, step: str, err: int) -> None:
        self.step = step
        self.err = err


def _fd_path(fd: int) -> bytes:
    return b"/proc/self/fd/%d" % fd


def _show(path: bytes) -> str:
    return path.decode(errors="replace")


def _open_in_root(rootfd: int, path: bytes, *, create: bool, is_file: bool) -> int:
    """Open ``path`` (absolute, inside the container) without leaving the root.

    Missing components are created as directories (the last as an empty file when
    ``is_file``); each is created relative to its already-resolved parent, so a symlink
    in the rootfs cannot send the creation elsewhere.
    """
    rel = path.lstrip(b"/") or b"."
    try:
        return sc.openat2(rootfd, rel, os.O_PATH, _RESOLVE)
    except FileNotFoundError:
        if not create:
            raise
    parts = [p for p in rel.split(b"/") if p and p != b"."]
    parent = os.dup(rootfd)
    try:
        for i, part in enumerate(parts):
            if part == b"..":
                raise OSError(errno.EINVAL, "'..' in a mount target")
            prefix = b"/".join(parts[: i + 1])
            last = i == len(parts) - 1
            try:
                fd = sc.openat2(rootfd, prefix, os.O_PATH, _RESOLVE)
            except FileNotFoundError:
                if last and is_file:
                    os.close(
                        os.open(
                            part,
                            os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            0o644,
                            dir_fd=parent,
                        )
                    )
                else:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=parent)
                fd = sc.openat2(rootfd, prefix, os.O_PATH, _RESOLVE)
            os.close(parent)
            parent = fd
        return os.dup(parent)
    finally:
        os.close(parent)


def _mount_one(rootfd: int, m: MountStep, have_cgroup2: bool) -> None:
    step = f"mount {_show(m.fstype or b'bind')} on '{_show(m.target)}'"
    try:
        fd = _open_in_root(rootfd, m.target, create=True, is_file=m.is_file)
    except OSError as e:
        raise _Step(f"make mount point '{_show(m.target)}'", e.errno or errno.EIO) from None
    try:
        target = _fd_path(fd)
        fstype, source, data, flags = m.fstype, m.source, m.data, m.flags
        if m.cgroup:
            if have_cgroup2:
                fstype, source, data = b"cgroup2", b"cgroup", None
            else:
                fstype, source, data = b"tmpfs", b"tmpfs", b"size=0,mode=755"
        sc.mount(source, target, fstype, flags, data)
        if m.remount_flags is not None or m.propagation:
            # The descriptor still points below the new mount; look the target up again.
            os.close(fd)
            fd = sc.openat2(rootfd, m.target.lstrip(b"/"), os.O_PATH, _RESOLVE)
            target = _fd_path(fd)
            if m.remount_flags is not None:
                sc.mount(None, target, None, m.remount_flags, None)
            if m.propagation:
                sc.mount(None, target, None, m.propagation, None)
    except OSError as e:
        raise _Step(step, e.errno or errno.EIO) from None
    finally:
        os.close(fd)


def _make_dev(rootfd: int, plan: Plan) -> None:
    try:
        devfd = sc.openat2(rootfd, b"dev", _O_PATH_DIR, _RESOLVE)
    except OSError as e:
        raise _Step("open '/dev'", e.errno or errno.EIO) from None
    try:
        # An O_PATH descriptor cannot be a dir_fd for mknod; reopen it for real.
        real = os.open(_fd_path(devfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(devfd)
    try:
        for d in plan.devices:
            try:
                # The umask is 0 during setup, so the mode is exact without a chmod.
                os.mknod(d.path, d.mode, os.makedev(d.major, d.minor), dir_fd=real)
                if d.uid or d.gid:
                    os.chown(d.path, d.uid, d.gid, dir_fd=real, follow_symlinks=False)
            except FileExistsError:
                pass
            except OSError as e:
                raise _Step(f"mknod '/dev/{_show(d.path)}'", e.errno or errno.EIO) from None
        for target, name in plan.dev_symlinks:
            try:
                os.symlink(target, name, dir_fd=real)
            except FileExistsError:
                pass
            except OSError as e:
                raise _Step(f"symlink '/dev/{_show(name)}'", e.errno or errno.EIO) from None
    finally:
        os.close(real)


def _mask_and_protect(plan: Plan) -> None:
    for path in plan.masked_paths:
        try:
            st = os.stat(path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise _Step(f"mask '{_show(path)}'", e.errno or errno.EIO) from None
        try:
            if stat.S_ISDIR(st.st_mode):
                sc.mount(b"tmpfs", path, b"tmpfs", sc.MS_RDONLY, b"size=0")
            else:
                sc.mount(b"/dev/null", path, None, sc.MS_BIND, None)
        except OSError as e:
            raise _Step(f"mask '{_show(path)}'", e.errno or errno.EIO) from None
    for path in plan.readonly_paths:
        try:
            flags = os.statvfs(path).f_flag & _STATVFS_MOUNT_FLAGS
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC, None)
            sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | flags, None)
        except OSError as e:
            raise _Step(f"make '{_show(path)}' read-only", e.errno or errno.EIO) from None


def _loopback_up() -> None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", _IFF_UP_LOOPBACK_RUNNING))
    except OSError as e:
        raise _Step("bring up 'lo'", e.errno or errno.EIO) from None


def _set_credentials(plan: Plan, last_cap: int) -> None:
    step = "set capabilities"
    try:
        if plan.cap_bounding is not None:
            for cap in range(last_cap + 1):
                if not plan.cap_bounding & (1 << cap):
                    sc.prctl(sc.PR_CAPBSET_DROP, cap)
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
        step = f"set groups {list(plan.additional_gids)}"
        os.setgroups(list(plan.additional_gids))
        step = f"set gid {plan.gid}"
        os.setresgid(plan.gid, plan.gid, plan.gid)
        step = f"set uid {plan.uid}"
        os.setresuid(plan.uid, plan.uid, plan.uid)
        step = "set capabilities"
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
        sc.capset(plan.cap_effective, plan.cap_permitted, plan.cap_inheritable)
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
        for cap in plan.cap_ambient:
            # Not permitted and inheritable: runc goes on without it, and so do we.
            with contextlib.suppress(PermissionError):
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, cap)
        # A change of uid clears the parent-death signal; ask for it again.
        step = "set the parent-death signal"
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if plan.no_new_privileges:
            step = "set no_new_privs"
            sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as e:
        raise _Step(step, e.errno or errno.EIO) from None


_MAX_ACCOUNT_FILE = 4 << 20


def _account_lines(path: str) -> list[list[str]]:
    """The colon-separated fields of each line of the container's ``path`` (after
    pivot_root, its own), or nothing if there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise _Step(f"read '{path}'", e.errno or errno.EIO) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_ACCOUNT_FILE:
            raise _Step(f"read '{path}': not a regular file of at most 4 MiB", errno.EINVAL)
        text = f.read(_MAX_ACCOUNT_FILE).decode(errors="surrogateescape")
    return [line.split(":") for line in text.splitlines()]


def _id(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 10 and int(text) < 2**32 - 1 else None


def _resolve_user(plan: Plan) -> Plan:
    """``plan.user`` looked up as ``_init.c``'s resolve_user does."""
    assert plan.user is not None
    spec = plan.user.decode(errors="surrogateescape")
    user, sep, group = spec.partition(":")
    uid = _id(user)
    numeric = uid is not None
    gid = 0
    name = None
    home = "/"
    for fields in _account_lines("/etc/passwd"):
        if len(fields) < 7 or _id(fields[2]) is None or _id(fields[3]) is None:
            continue
        if (_id(fields[2]) == uid) if numeric else fields[0] == user:
            uid, gid, name, home = _id(fields[2]), _id(fields[3]) or 0, fields[0], fields[5] or "/"
            break
    if name is None and not numeric:
        raise _Step(f"find user '{user}' in the container's /etc/passwd", errno.ENOENT)
    extra: list[int] = []
    group_id = _id(group) if sep else None
    found_group = not sep or group_id is not None
    if group_id is not None:
        gid = group_id
    for fields in _account_lines("/etc/group"):
        if len(fields) < 3 or (gid_field := _id(fields[2])) is None:
            continue
        if not found_group and fields[0] == group:
            gid, found_group = gid_field, True
        member = len(fields) > 3 and name is not None and name in fields[3].split(",")
        if member and not sep and gid_field != gid:
            extra.append(gid_field)
    if not found_group:
        raise _Step(f"find group '{group}' in the container's /etc/group", errno.ENOENT)
    env = plan.env
    if plan.set_home:
        env = (*env, b"HOME=" + home.encode(errors="surrogateescape"))
    return attrs.evolve(
        plan,
        uid=uid or 0,
        gid=gid,
        additional_gids=(*plan.additional_gids, *extra),
        env=env,
    )


def _install_seccomp(plan: Plan) -> None:
    if plan.seccomp:
        try:
            sc.seccomp_set_filter(plan.seccomp, plan.seccomp_flags)
        except OSError as e:
            raise _Step("install the seccomp filter", e.errno or errno.EIO) from None


def _exec(plan: Plan) -> NoReturn:
    env = {}
    for item in plan.env:
        key, _, value = item.partition(b"=")
        env[key] = value
    name = plan.args[0]
    if b"/" in name:
        candidates = [name]
    else:
        path = env.get(b"PATH", _DEFAULT_PATH)
        candidates = [(d or b".") + b"/" + name for d in path.split(b":")]
    denied = False
    other = 0
    for candidate in candidates:
        try:
            os.execve(candidate, list(plan.args), env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            denied = True
        except OSError as e:
            other = e.errno or errno.EIO
    shown = _show(name)
    if denied:
        msg, code = f"exec {shown!r}: permission denied", EXIT_NOT_EXECUTABLE
    elif other:
        msg, code = f"exec {shown!r}: {os.strerror(other)}", EXIT_NOT_EXECUTABLE
    elif b"/" in name:
        msg, code = f"exec {shown!r}: no such file or directory", EXIT_NOT_FOUND
    else:
        msg, code = f"exec {shown!r}: executable file not found in $PATH", EXIT_NOT_FOUND
    try:
        os.write(2, b"containerlib: " + msg.encode() + b"\n")
    finally:
        os._exit(code)


def child_main(sock: socket.socket, clone_flags: int, last_cap: int) -> NoReturn:
    """Prepare a new container, wait for its plan on ``sock``, set it up and exec.

    The spawner clones this process ahead of time, in the namespaces of ``clone_flags``,
    so that the namespace work and what every container needs (the parent-death signal,
    ``lo`` up, ``/`` private) is done before a request comes. Then it sends the pickled
    ``(plan, cgroup.procs files, has cgroup2)`` with the three stdio descriptors, then one
    for each namespace the plan joins. An empty message means the spawner does not need
    this process after all.
    """
    errfd = sock.fileno()
    try:
        try:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError as e:
            raise _Step("set the parent-death signal", e.errno or errno.EIO) from None
        if clone_flags & sc.CLONE_NEWNET:
            _loopback_up()
        try:
            sc.mount(None, b"/", None, sc.MS_REC | sc.MS_PRIVATE, None)
        except OSError as e:
            raise _Step("make '/' private", e.errno or errno.EIO) from None
        fds = array.array("i")
        try:
            data, anc, _flags, _addr = sock.recvmsg(
                1 << 20, socket.CMSG_SPACE(_MAX_FDS * fds.itemsize)
            )
        except OSError as e:
            raise _Step("receive the plan", e.errno or errno.EIO) from None
        if not data:
            os._exit(0)
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        plan, procs_files, have_cgroup2 = pickle.loads(data)
        # First, and closed before stdio takes descriptors 0 to 2.
        _join_namespaces(plan, list(fds[3:]))
        try:
            for target, fd in enumerate(fds[:3]):
                if fd != target:
                    os.dup2(fd, target)
        except OSError as e:
            raise _Step("set up stdio", e.errno or errno.EIO) from None
        plan = _setup(plan, procs_files, have_cgroup2, last_cap)
        sc.close_range_cloexec(3)
        if plan.no_new_privileges:
            _install_seccomp(plan)
    except _Step as e:
        _report(errfd, e.step, e.err)
    except OSError as e:
        _report(errfd, "set up", e.errno or errno.EIO)
    except BaseException:
        _report(errfd, "set up (internal error)", errno.EIO)
    _exec(plan)


def _join_namespaces(plan: Plan, fds: list[int]) -> None:
    """Join the namespaces of ``plan.namespace_paths`` (setns(2)), before anything is
    mounted: through the descriptors the spawner sent, else by opening the paths."""
    for i, (flag, path) in enumerate(plan.namespace_paths):
        kind = JOINABLE.get(flag, hex(flag))
        if i < len(fds):
            fd = fds[i]
        else:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise _Step(f"open the {kind} namespace '{path}'", e.errno or errno.EIO) from None
        try:
            sc.setns(fd, flag)
        except OSError as e:
            raise _Step(f"join the {kind} namespace '{path}'", e.errno or errno.EIO) from None
        finally:
            os.close(fd)


def _report(errfd: int, step: str, err: int) -> NoReturn:
    try:
        os.write(errfd, b"%d\0" % err + step.encode(errors="replace"))
    finally:
        os._exit(SETUP_FAILED)


def _setup(plan: Plan, procs_files: list[str], have_cgroup2: bool, last_cap: int) -> Plan:
    """Carry out the plan up to the exec; returns it with the user looked up."""
    os.umask(0)
    # No files: the process was placed in its cgroup ahead of time.
    try:
        for path in procs_files:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        if plan.new_cgroupns:
            sc.unshare(sc.CLONE_NEWCGROUP)
    except OSError as e:
        raise _Step("join cgroup", e.errno or errno.EIO) from None
    rootfs = plan.rootfs.encode()
    try:
        lower = b":".join(p.encode() for p in plan.lowerdirs)
        rw = plan.rw_dir.encode()
        data = b"lowerdir=" + lower + b",upperdir=" + rw + b"/upper,workdir=" + rw + b"/work"
        # "volatile" (Linux 5.10+) skips syncing a layer that is thrown away after the
        # container; older kernels refuse it with EINVAL.
        try:
            sc.mount(b"overlay", rootfs, b"overlay", 0, data + b",volatile")
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            sc.mount(b"overlay", rootfs, b"overlay", 0, data)
    except OSError as e:
        raise _Step("mount overlay rootfs", e.errno or errno.EIO) from None
    rootfd = os.open(rootfs, _O_PATH_DIR)
    for m in plan.mounts:
        _mount_one(rootfd, m, have_cgroup2)
    if plan.devices or plan.dev_symlinks:
        _make_dev(rootfd, plan)
    try:
        if plan.rootfs_propagation:
            sc.mount(None, rootfs, None, plan.rootfs_propagation, None)
        os.fchdir(rootfd)
        os.close(rootfd)
        sc.pivot_root(b".", b".")
        sc.umount2(b".", sc.MNT_DETACH)
        os.chdir(b"/")
    except OSError as e:
        raise _Step("pivot_root", e.errno or errno.EIO) from None
    for key, value in plan.sysctl:
        try:
            fd = os.open(b"/proc/sys/" + key.replace(b".", b"/"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
        except OSError as e:
            raise _Step(f"set sysctl {_show(key)}", e.errno or errno.EIO) from None
    _mask_and_protect(plan)
    if plan.readonly_root:
        try:
            sc.mount(None, b"/", None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY, None)
        except OSError as e:
            raise _Step("make the rootfs read-only", e.errno or errno.EIO) from None
    try:
        if plan.hostname is not None:
            sc.sethostname(plan.hostname)
        if plan.domainname is not None:
            sc.setdomainname(plan.domainname)
    except OSError as e:
        raise _Step("set hostname", e.errno or errno.EIO) from None
    if plan.oom_score_adj is not None:
        try:
            fd = os.open(b"/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"%d" % plan.oom_score_adj)
            finally:
                os.close(fd)
        except OSError as e:
            raise _Step("set oom_score_adj", e.errno or errno.EIO) from None
    os.setsid()
    for res, soft, hard in plan.rlimits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as e:
            err = e.errno if isinstance(e, OSError) and e.errno else errno.EPERM
            raise _Step(f"set rlimit {res} to {soft}:{hard}", err) from None
    if plan.user is not None:
        plan = _resolve_user(plan)
    if not plan.no_new_privileges:
        _install_seccomp(plan)  # while CAP_SYS_ADMIN still allows it
    _set_credentials(plan, last_cap)
    os.umask(plan.umask if plan.umask is not None else 0o022)
    try:
        os.chdir(plan.cwd)
    except OSError as e:
        raise _Step(f"chdir to '{_show(plan.cwd)}'", e.errno or errno.EIO) from None
    return plan
