"""The native init helper: a container's first process as a small C program.

The spawner clones each container's process ahead of time. A fork of the spawner's Python
interpreter needs 2 to 3 ms to carry out a plan (copy-on-write faults and interpreter work)
and its final execve(2) tears down the whole forked address space. ``_init.c``, next to this
module, does the same steps in the same order with the same error reports in about 1 ms
(nearly all of it the kernel's mounts), from a process of about a megabyte: the cloned child
execs it at once, while the spawner is idle. This
module compiles it on first use, once per machine and source version, and encodes plans in
the binary form it reads. Without a C compiler (or with ``CONTAINERLIB_NATIVE_INIT=0``) the
spawner keeps using :mod:`containerlib.runtime._child`.

The plan format, version 6 (the comment at the top of ``_init.c`` is the reference; keep
the two in step). Integers are little-endian u32 or u64 (i32 for oom_score_adj):

- ``str``: u32 n >= 1, then n bytes whose last is the only NUL; ``ostr``: the same, or
  n = 0 for None; ``bool``: u32 0 or 1; ``opt T``: a bool, then T (0 when absent);
  ``list T``: u32 count, then the items.
- In order: magic ``b"CLIP"``, version; rootfs, rw_dir, lowerdirs, readonly_root,
  rootfs_propagation (u64), new_cgroupns; joins (each: the CLONE_NEW* flag as u64, the
  path), join_fds (a descriptor of each follows the stdio descriptors, after the rootfs:
  the process does not open the paths itself); mounts (target, source, fstype, flags, data,
  remount_flags, propagation, is_file, cgroup); devices (path, mode, major, minor, uid,
  gid); dev_symlinks; masked_paths; readonly_paths; hostname; domainname; sysctl; uid;
  gid; additional_gids; umask; rlimits (resource, soft, hard); no_new_privileges;
  cap_bounding; cap_effective; cap_permitted; cap_inheritable; cap_ambient;
  oom_score_adj; cwd; args; env (as execve gets it, one entry a name); procs_files;
  have_cgroup2; last_cap; premounted; seccomp_flags (u32); seccomp (``bytes``: u32 n, a
  multiple of 8, then n bytes; 0 for no filter); user (``ostr``: ``user[:group]`` to
  look up in the container's /etc/passwd and /etc/group); set_home; userns (the process
  is in a new user namespace); setgroups (that namespace allows setgroups(2)); rootfs_fd
  (the rootfs, a detached mount, follows the stdio descriptors); join_flags (u64, the
  namespaces an exec joins); bind_root; exec_fifo (``ostr``); terminal; console_width;
  console_height; init; pause_for_hooks; create_container_hooks (each: path, argv,
  env, timeout as u32 seconds, 0 for none); create_state (``ostr``, JSON);
  start_container_hooks; start_state; the magic again. An exec
  message (``clib-init --exec``) is the same with the magic ``b"CLIX"``. A premount
  message (the plan the next container most likely has, for the helper to mount ahead of
  time) is the same with the magic ``b"CLPM"``.

Example:
    >>> from containerlib.runtime.plan import Plan
    >>> plan = Plan(container_id="c1", rw_dir="/rw/c1",
    ...             lowerdirs=("/img",), clone_flags=0, args=(b"true",))
    >>> data = encode(plan, [], False, 40)
    >>> data[:8]
    b'CLIP\\x06\\x00\\x00\\x00'
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Sequence
from typing import Final

from containerlib.linux.syscalls import CLONE_NEWUSER
from containerlib.runtime.joins import joined_flags
from containerlib.runtime.plan import HookStep, Plan

__all__ = ["CFLAGS", "MAX_PLAN", "VERSION", "build", "build_error", "encode", "helper_path"]

#: The version of the plan format written by :func:`encode` and read by ``_init.c``.
VERSION: Final = 6
#: The largest plan ``_init.c`` reads.
MAX_PLAN: Final = 1 << 20
#: The flags the helper is compiled with (part of its file name's hash).
CFLAGS: Final = ("-O2", "-Wall", "-Wextra", "-Werror")

_MAGIC: Final = b"CLIP"
# BPF_MAXINSNS (4096) instructions of 8 bytes.
_MAX_SECCOMP: Final = 4096 * 8
_PREMOUNT_MAGIC: Final = b"CLPM"
_EXEC_MAGIC: Final = b"CLIX"
_SOURCE: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_init.c")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_I32: Final = struct.Struct("<i")
_U64_MASK: Final = (1 << 64) - 1

_helper: str | None = None
_looked_for_helper = False
#: Why the helper could not be built, for whoever wonders why the fallback runs.
build_error: str | None = None


class _Writer:
    """Appends fields in the plan format; a bad value raises ValueError naming the field."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [_MAGIC, _U32.pack(VERSION)]

    def _pack(self, fmt: struct.Struct, value: int, field: str) -> None:
        try:
            self.parts.append(fmt.pack(value))
        except struct.error:
            raise ValueError(f"{field}: {value!r} does not fit the plan format") from None

    def u32(self, value: int, field: str) -> None:
        self._pack(_U32, value, field)

    def u64(self, value: int, field: str) -> None:
        self._pack(_U64, value, field)

    def i32(self, value: int, field: str) -> None:
        self._pack(_I32, value, field)

    def boolean(self, value: bool, field: str) -> None:
        self.parts.append(_U32.pack(1 if value else 0))

    def string(self, value: bytes | None, field: str) -> None:
        if value is None:
            self.parts.append(_U32.pack(0))
            return
        if b"\0" in value:
            raise ValueError(f"{field}: {value!r} contains a NUL byte")
        self.parts += (_U32.pack(len(value) + 1), value, b"\0")

    def blob(self, value: bytes, field: str, *, multiple: int = 1, limit: int) -> None:
        if len(value) % multiple or len(value) > limit:
            raise ValueError(
                f"{field}: {len(value)} bytes, not a multiple of {multiple} up to {limit}"
            )
        self.parts += (_U32.pack(len(value)), value)

    def opt_u32(self, value: int | None, field: str) -> None:
        self.boolean(value is not None, field)
        self.u32(value or 0, field)

    def opt_u64(self, value: int | None, field: str) -> None:
        self.boolean(value is not None, field)
        self.u64(value or 0, field)

    def strings(self, values: Sequence[bytes], field: str) -> None:
        self.u32(len(values), field)
        for v in values:
            self.string(v, field)

    def pairs(self, values: Sequence[tuple[bytes, bytes]], field: str) -> None:
        self.u32(len(values), field)
        for a, b in values:
            self.string(a, field)
            self.string(b, field)

    def u32s(self, values: Sequence[int], field: str) -> None:
        self.u32(len(values), field)
        for v in values:
            self.u32(v, field)


def _environment(env: Iterable[bytes]) -> list[bytes]:
    """``env`` as the Python child passes it to execve: one entry a name, the last value
    winning at the first one's place, ``NAME`` alone read as ``NAME=``."""
    merged: dict[bytes, bytes] = {}
    for item in env:
        key, _, value = item.partition(b"=")
        merged[key] = value
    return [key + b"=" + value for key, value in merged.items()]


def encode(
    plan: Plan,
    procs_files: Sequence[str],
    have_cgroup2: bool,
    last_cap: int,
    *,
    premounted: bool = False,
    premount: bool = False,
    setgroups: bool = True,
    rootfs_fd: bool = False,
    join_flags: int | None = None,
    join_fds: bool = False,
) -> bytes:
    """The plan, the container's cgroup.procs files, whether it has a cgroup2 directory
    and the kernel's last capability, in the binary form ``_init.c`` reads.

    Args:
        premounted: the process mounted the rootfs and mounts of this plan ahead of time.
        premount: encode a premount message: the plan to mount ahead of time.
        setgroups: the container's user namespace allows setgroups(2).
        rootfs_fd: the rootfs, a detached mount, goes with the plan after the stdio
            descriptors, for the process to attach instead of mounting its own.
        join_flags: encode an exec message (``clib-init --exec``): the CLONE_NEW* flags of
            the namespaces to join; those the plan joins by path (``namespace_paths``)
            are added, as the container's first process is in them.
        join_fds: a descriptor of each namespace the plan joins by path goes with it, after
            the rootfs's (see :mod:`containerlib.runtime.joins`); without, the process
            opens the paths itself (one cloned just now sees what this process sees).

    Raises:
        ValueError: a value does not fit the format (a NUL in a string, a number out of
            range); the message names the field.
    """
    w = _Writer()
    w.string(os.fsencode(plan.rootfs), "rootfs")
    w.string(os.fsencode(plan.rw_dir), "rw_dir")
    w.strings([os.fsencode(p) for p in plan.lowerdirs], "lowerdirs")
    w.boolean(plan.readonly_root, "readonly_root")
    w.u64(plan.rootfs_propagation, "rootfs_propagation")
    w.boolean(plan.new_cgroupns, "new_cgroupns")
    w.u32(len(plan.namespace_paths), "namespace_paths")
    for flag, path in plan.namespace_paths:
        w.u64(flag, "namespace_paths.flag")
        w.string(os.fsencode(path), "namespace_paths.path")
    w.boolean(join_fds and bool(plan.namespace_paths), "join_fds")
    w.u32(len(plan.mounts), "mounts")
    for m in plan.mounts:
        w.string(m.target, "mounts.target")
        w.string(m.source, "mounts.source")
        w.string(m.fstype, "mounts.fstype")
        w.u64(m.flags, "mounts.flags")
        w.string(m.data, "mounts.data")
        w.opt_u64(m.remount_flags, "mounts.remount_flags")
        w.u64(m.propagation, "mounts.propagation")
        w.boolean(m.is_file, "mounts.is_file")
        w.boolean(m.cgroup, "mounts.cgroup")
    w.u32(len(plan.devices), "devices")
    for d in plan.devices:
        w.string(d.path, "devices.path")
        w.u32(d.mode, "devices.mode")
        w.u32(d.major, "devices.major")
        w.u32(d.minor, "devices.minor")
        w.u32(d.uid, "devices.uid")
        w.u32(d.gid, "devices.gid")
    w.pairs(plan.dev_symlinks, "dev_symlinks")
    w.strings(plan.masked_paths, "masked_paths")
    w.strings(plan.readonly_paths, "readonly_paths")
    w.string(plan.hostname, "hostname")
    w.string(plan.domainname, "domainname")
    w.pairs(plan.sysctl, "sysctl")
    w.u32(plan.uid, "uid")
    w.u32(plan.gid, "gid")
    w.u32s(plan.additional_gids, "additional_gids")
    w.opt_u32(plan.umask, "umask")
    w.u32(len(plan.rlimits), "rlimits")
    for resource, soft, hard in plan.rlimits:
        w.u32(resource, "rlimits.resource")
        # -1 is RLIM_INFINITY, as Python's resource module spells it.
        w.u64(soft & _U64_MASK if soft == -1 else soft, "rlimits.soft")
        w.u64(hard & _U64_MASK if hard == -1 else hard, "rlimits.hard")
    w.boolean(plan.no_new_privileges, "no_new_privileges")
    w.opt_u64(plan.cap_bounding, "cap_bounding")
    w.u64(plan.cap_effective, "cap_effective")
    w.u64(plan.cap_permitted, "cap_permitted")
    w.u64(plan.cap_inheritable, "cap_inheritable")
    w.u32s(plan.cap_ambient, "cap_ambient")
    w.boolean(plan.oom_score_adj is not None, "oom_score_adj")
    w.i32(plan.oom_score_adj or 0, "oom_score_adj")
    w.string(plan.cwd, "cwd")
    w.strings(plan.args, "args")
    w.strings(_environment(plan.env), "env")
    w.strings([os.fsencode(f) for f in procs_files], "procs_files")
    w.boolean(have_cgroup2, "have_cgroup2")
    w.u32(last_cap, "last_cap")
    w.boolean(premounted, "premounted")
    w.u32(plan.seccomp_flags, "seccomp_flags")
    w.blob(plan.seccomp or b"", "seccomp", multiple=8, limit=_MAX_SECCOMP)
    w.string(plan.user, "user")
    w.boolean(plan.set_home, "set_home")
    w.boolean(bool(plan.clone_flags & CLONE_NEWUSER), "userns")
    w.boolean(setgroups, "setgroups")
    w.boolean(rootfs_fd, "rootfs_fd")
    w.u64(join_flags | joined_flags(plan) if join_flags is not None else 0, "join_flags")
    w.boolean(plan.bind_root, "bind_root")
    w.string(os.fsencode(plan.exec_fifo) if plan.exec_fifo else None, "exec_fifo")
    w.boolean(plan.terminal, "terminal")
    w.u32(plan.console_width, "console_width")
    w.u32(plan.console_height, "console_height")
    w.boolean(plan.init, "init")
    w.boolean(plan.pause_for_hooks, "pause_for_hooks")
    _hooks(w, plan.create_container_hooks, "create_container_hooks")
    w.string(plan.create_state, "create_state")
    _hooks(w, plan.start_container_hooks, "start_container_hooks")
    w.string(plan.start_state, "start_state")
    magic = _PREMOUNT_MAGIC if premount else _EXEC_MAGIC if join_flags is not None else _MAGIC
    w.parts[0] = magic
    w.parts.append(magic)
    return b"".join(w.parts)


def _hooks(w: _Writer, hooks: Sequence[HookStep], field: str) -> None:
    w.u32(len(hooks), field)
    for h in hooks:
        w.string(h.path, f"{field}.path")
        w.strings(h.args, f"{field}.args")
        w.strings(h.env, f"{field}.env")
        w.u32(h.timeout, f"{field}.timeout")


def _find_compiler() -> str | None:
    import shutil

    return shutil.which("cc") or shutil.which("gcc")


def _helper_name(source: bytes) -> str:
    import hashlib

    digest = hashlib.sha256(source + b"\0" + " ".join(CFLAGS).encode()).hexdigest()
    return f"clib-init-{digest[:16]}"


def _check_private(directory: str) -> None:
    """Refuse a directory that someone else could have put a program in."""
    st = os.stat(directory)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PermissionError(f"{directory}: not owned by us, or writable by others")


def build(directory: str, compiler: str | None = None) -> str:
    """Compile ``_init.c`` into ``directory`` unless it is there already; return its path.

    The file name holds a hash of the source and the flags, so a changed source gets a
    new helper. The helper is compiled under a temporary name and renamed into place, with
    an fcntl lock held, so that processes starting at once compile it once and none runs
    a half-written file.

    Raises:
        OSError: no compiler, a directory that is not ours, or the compiler failed.
    """
    import fcntl
    import subprocess

    with open(_SOURCE, "rb") as f:
        source = f.read()
    path = os.path.join(directory, _helper_name(source))
    with contextlib.suppress(FileNotFoundError):
        _check_private(directory)
        if os.path.isfile(path):
            return path
    cc = compiler or _find_compiler()
    if cc is None:
        raise FileNotFoundError("no C compiler (cc or gcc) on PATH")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    _check_private(directory)
    lock_fd = os.open(
        os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
    )
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if os.path.isfile(path):
            return path
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            done = subprocess.run(
                [cc, *CFLAGS, "-o", tmp, _SOURCE],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                raise OSError(f"{cc} failed on {_SOURCE}: {done.stderr.decode(errors='replace')}")
            os.chmod(tmp, 0o755)
            os.rename(tmp, path)
        except subprocess.TimeoutExpired as e:
            raise OSError(f"{cc} took too long on {_SOURCE}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    finally:
        os.close(lock_fd)
    return path


def _check_runs(helper: str) -> None:
    """Run the helper once, decoding an empty plan: a data root on a ``noexec`` mount,
    say, would otherwise fail every container instead of falling back."""
    import subprocess

    try:
        done = subprocess.run(
            [helper, "--dump"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except subprocess.SubprocessError as e:
        raise OSError(f"{helper} --dump: {e}") from e
    if done.returncode != 0 or done.stdout:
        raise OSError(f"{helper} --dump exited {done.returncode}: {done.stderr!r}")


def helper_path() -> str | None:
    """The compiled helper's path, compiling it on first use; None to use the Python child.

    None when ``CONTAINERLIB_NATIVE_INIT=0`` or when it cannot be built (no ``cc`` or
    ``gcc``, a compiler error): that answer is remembered, and :data:`build_error` says
    why. The helper lives in ``<data root>/helpers``.
    """
    global _helper, _looked_for_helper, build_error
    if os.environ.get("CONTAINERLIB_NATIVE_INIT", "1") == "0":
        return None
    if not _looked_for_helper:
        from containerlib.runtime.specconv import Roots

        try:
            _helper = build(os.path.join(Roots.from_env().data, "helpers"))
            _check_runs(_helper)
        except (OSError, ValueError) as e:
            _helper, build_error = None, str(e)
        _looked_for_helper = True
    return _helper
