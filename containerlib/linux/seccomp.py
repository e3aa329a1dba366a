"""Compile an OCI seccomp profile to the BPF program the kernel runs on every system call.

A seccomp filter (seccomp(2)) is a classic BPF program, an array of ``struct sock_filter``
of 8 bytes each, that the kernel runs on each system call of a process to decide whether
it goes ahead, fails with an errno, or kills the process. The system's libseccomp
(seccomp_init(3), seccomp_rule_add(3), seccomp_export_bpf(3)) writes that program from
rules; this module feeds it a :class:`~containerlib.spec.oci_linux.LinuxSeccomp` the way
runc does and returns the raw program, made once in the parent. The container's first
process installs it with ``seccomp(SECCOMP_SET_MODE_FILTER, filter_flags(profile), &prog)``
after ``PR_SET_NO_NEW_PRIVS``, just before ``execve``.

Example:
    >>> from containerlib.spec.oci_linux import LinuxSeccomp, LinuxSyscall
    >>> profile = LinuxSeccomp(
    ...     default_action="SCMP_ACT_ALLOW",
    ...     syscalls=[LinuxSyscall(names=["keyctl"], action="SCMP_ACT_ERRNO")],
    ... )
    >>> program = compile_filter(profile)
    >>> len(program) % SOCK_FILTER_SIZE, program == compile_filter(profile)
    (0, True)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import hashlib
import json
import os
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import attrs

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.linux.seccomp_enosys import enosys_prologue
from containerlib.spec.oci_linux import LinuxSeccomp, LinuxSyscall

__all__ = [
    "SETUP_CALLS",
    "SOCK_FILTER_SIZE",
    "SUPPORTED_ACTIONS",
    "CompiledProfile",
    "SplitFilter",
    "compile_filter",
    "compile_filter_cached",
    "compile_profile",
    "filter_flags",
    "libseccomp_version",
    "split_filter",
]

SOCK_FILTER_SIZE: Final = 8
"""The size of one BPF instruction (``struct sock_filter``) in the compiled program."""

_FIELD: Final = "linux.seccomp"

# Action values from <seccomp.h>; ERRNO and TRACE carry a 16-bit datum.
_ACT_KILL_PROCESS: Final = 0x80000000
_ACT_KILL_THREAD: Final = 0x00000000
_ACT_TRAP: Final = 0x00030000
_ACT_ERRNO: Final = 0x00050000
_ACT_TRACE: Final = 0x7FF00000
_ACT_LOG: Final = 0x7FFC0000
_ACT_ALLOW: Final = 0x7FFF0000

_SIMPLE_ACTIONS: Final = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_LOG": _ACT_LOG,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
}

#: Every action a profile may name here (SCMP_ACT_NOTIFY needs a listener: not yet).
SUPPORTED_ACTIONS: Final = frozenset({*_SIMPLE_ACTIONS, "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})

# enum scmp_compare
_OPERATORS: Final = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
_FLTATR_CTL_NNP: Final = 3
_FLTATR_CTL_TSYNC: Final = 4
_FLTATR_CTL_OPTIMIZE: Final = 8

# The kernel keeps errno values below MAX_ERRNO (include/linux/err.h).
_MAX_ERRNO: Final = 4095
_SYSCALL_ARGS: Final = 6
# The longest program seccomp(2) accepts (BPF_MAXINSNS in include/uapi/linux/bpf_common.h).
_BPF_MAXINSNS: Final = 4096
_NR_SCMP_ERROR: Final = -1

# Flags of seccomp(SECCOMP_SET_MODE_FILTER), include/uapi/linux/seccomp.h. TSYNC is
# accepted and dropped, as runc does: the filter is installed by a single-threaded process.
_FILTER_FLAGS: Final = {
    "SECCOMP_FILTER_FLAG_TSYNC": 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 1 << 5,
}


class _ArgCmp(ctypes.Structure):
    """``struct scmp_arg_cmp``: argument ``arg`` compared by ``op`` with the data."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))


@functools.cache
def _libseccomp() -> ctypes.CDLL:
    """Load libseccomp once and declare the prototypes this module calls."""
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise ContainerSetupError(
            "load libseccomp.so.2", errno.ENOENT, "", "not found: apt-get install libseccomp2"
        ) from None
    ctx = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctx
    lib.seccomp_release.argtypes = [ctx]
    lib.seccomp_release.restype = None
    lib.seccomp_arch_native.argtypes = []
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    for fn in (lib.seccomp_arch_add, lib.seccomp_arch_remove, lib.seccomp_arch_exist):
        fn.argtypes = [ctx, ctypes.c_uint32]
        fn.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    lib.seccomp_attr_set.argtypes = [ctx, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctx,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctx, ctypes.c_int]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_version.argtypes = []
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    return lib


def libseccomp_version() -> tuple[int, int, int]:
    """Return the version of the system's libseccomp, for example ``(2, 5, 4)``.

    Raises:
        ContainerSetupError: libseccomp.so.2 is not installed (an ``OSError``, ENOENT).
    """
    v = _libseccomp().seccomp_version().contents
    return (v.major, v.minor, v.micro)


def _action(action: str, errno_ret: int | None, index: int | None) -> int:
    """The libseccomp value of the OCI action of rule ``index`` (``None``: the default)."""
    where = f"syscalls[{index}]." if index is not None else "default"
    field = f"{_FIELD}.{where}{'action' if index is not None else 'Action'}"
    if action in _SIMPLE_ACTIONS:
        return _SIMPLE_ACTIONS[action]
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        data = errno.EPERM if errno_ret is None else errno_ret
        if not 0 <= data <= _MAX_ERRNO:
            errno_field = f"{_FIELD}.{where}{'errnoRet' if index is not None else 'ErrnoRet'}"
            raise SpecError(errno_field, f"must be between 0 and {_MAX_ERRNO}, not {data}")
        return (_ACT_ERRNO if action == "SCMP_ACT_ERRNO" else _ACT_TRACE) | data
    if action == "SCMP_ACT_NOTIFY":
        raise SpecError(field, "'SCMP_ACT_NOTIFY' is not supported (no seccomp listener)")
    raise SpecError(field, f"unknown action {action!r}")


def _conditions(rule: LinuxSyscall, index: int) -> list[list[_ArgCmp]]:
    """The argument conditions of ``rule``, grouped into the rules libseccomp is given.

    libseccomp refuses two conditions on the same argument in one rule, so (as runc does)
    when an argument is named twice each condition becomes a rule of its own, which
    matches when *any* of them holds; otherwise all conditions form one rule.
    """
    conds = []
    for j, arg in enumerate(rule.args):
        field = f"{_FIELD}.syscalls[{index}].args[{j}]"
        if arg.op not in _OPERATORS:
            raise SpecError(f"{field}.op", f"unknown operator {arg.op!r}")
        if not 0 <= arg.index < _SYSCALL_ARGS:
            raise SpecError(f"{field}.index", f"must be between 0 and 5, not {arg.index}")
        conds.append(_ArgCmp(arg.index, _OPERATORS[arg.op], arg.value, arg.value_two))
    if not conds:
        return [[]]
    indexes = [c.arg for c in conds]
    if len(set(indexes)) < len(indexes):
        return [[c] for c in conds]
    return [conds]


def filter_flags(profile: LinuxSeccomp) -> int:
    """Return the ``flags`` argument of ``seccomp(SECCOMP_SET_MODE_FILTER, ...)``.

    The flags are not part of the BPF program, so whoever installs it passes them.

    Args:
        profile: the profile whose ``flags`` (``SECCOMP_FILTER_FLAG_LOG``...) to convert.

    Returns:
        The bitwise or of the flags; ``SECCOMP_FILTER_FLAG_TSYNC`` counts as 0 (runc's
        rule: the filter is installed by a single-threaded process).

    Raises:
        SpecError: a flag this library does not know (``linux.seccomp.flags[i]``).
    """
    bits = 0
    for i, flag in enumerate(profile.flags):
        if flag not in _FILTER_FLAGS:
            known = ", ".join(sorted(_FILTER_FLAGS))
            raise SpecError(f"{_FIELD}.flags[{i}]", f"unknown flag {flag!r} (known: {known})")
        bits |= _FILTER_FLAGS[flag]
    return bits


def _arch_token(lib: ctypes.CDLL, name: str) -> int:
    """libseccomp's token for ``SCMP_ARCH_X86_64`` and the like; 0 when unknown."""
    if not name.startswith("SCMP_ARCH_"):
        return 0
    token: int = lib.seccomp_arch_resolve_name(name.removeprefix("SCMP_ARCH_").lower().encode())
    return token


@contextmanager
def _filter_context(lib: ctypes.CDLL, default_action: int) -> Iterator[int]:
    ctx = lib.seccomp_init(default_action)
    if not ctx:
        raise ContainerSetupError("seccomp_init", errno.EINVAL, "", "libseccomp refused it")
    try:
        yield ctx
    finally:
        lib.seccomp_release(ctx)


def _check(rc: int, step: str) -> None:
    if rc < 0:
        raise ContainerSetupError(step, -rc, "")


def _validate(profile: LinuxSeccomp) -> tuple[int, list[tuple[int, list[list[_ArgCmp]]]]]:
    """Check the whole profile before libseccomp is touched; return the numeric actions."""
    if profile.listener_path is not None:
        raise SpecError(f"{_FIELD}.listenerPath", "seccomp user notification is not supported")
    default = _action(profile.default_action, profile.default_errno_ret, None)
    filter_flags(profile)
    rules = []
    for i, rule in enumerate(profile.syscalls):
        for j, name in enumerate(rule.names):
            if "\0" in name:
                raise SpecError(f"{_FIELD}.syscalls[{i}].names[{j}]", f"has a NUL: {name!r}")
        rules.append((_action(rule.action, rule.errno_ret, i), _conditions(rule, i)))
    return default, rules


def compile_filter(profile: LinuxSeccomp, *, architecture: str | None = None) -> bytes:
    """Compile ``profile`` to a seccomp BPF program with the system's libseccomp.

    It follows runc: system calls that libseccomp or this architecture do not know are
    skipped, as are rules whose action is the default action; several conditions on
    the same argument become separate rules; architectures of ``profile.architectures``
    that libseccomp knows are added (x86 and x32 beside x86_64), others are skipped.
    When the default action refuses, calls numbered above every call the profile names
    get ENOSYS instead (:mod:`.seccomp_enosys`), so C libraries fall back to older calls.
    The filter does not set no_new_privs itself: the runtime does that before installing
    it.

    Args:
        profile: the seccomp part of an OCI spec.
        architecture: the filter's native architecture as an ``SCMP_ARCH_*`` name;
            the host's when omitted.

    Returns:
        The program: ``struct sock_filter`` items of :data:`SOCK_FILTER_SIZE` bytes each,
        in host byte order, ready for ``struct sock_fprog``.

    Raises:
        SpecError: an action or operator that cannot be compiled (``SCMP_ACT_NOTIFY``, a
            listener), an errno out of range, an unknown flag or architecture, or a
            program longer than the kernel takes; the message names the field, such as
            ``linux.seccomp.syscalls[3].action``.
        ContainerSetupError: libseccomp.so.2 is missing (an ``OSError``, ENOENT), or it
            failed to build the program.
    """
    default, rules = _validate(profile)
    lib = _libseccomp()
    target = lib.seccomp_arch_native()
    if architecture is not None:
        target = _arch_token(lib, architecture)
        if not target:
            raise SpecError("architecture", f"unknown architecture {architecture!r}")
    with _filter_context(lib, default) as ctx:
        _check(lib.seccomp_attr_set(ctx, _FLTATR_CTL_NNP, 0), "seccomp_attr_set NNP")
        _check(lib.seccomp_attr_set(ctx, _FLTATR_CTL_TSYNC, 0), "seccomp_attr_set TSYNC")
        if target != lib.seccomp_arch_native():
            _check(lib.seccomp_arch_add(ctx, target), f"seccomp_arch_add {architecture}")
            _check(lib.seccomp_arch_remove(ctx, lib.seccomp_arch_native()), "seccomp_arch_remove")
        arches = [target]
        for name in profile.architectures:
            token = _arch_token(lib, name)
            if token and lib.seccomp_arch_exist(ctx, token) == -errno.EEXIST:
                _check(lib.seccomp_arch_add(ctx, token), f"seccomp_arch_add {name}")
                arches.append(token)
        if sum(len(rule.names) for rule in profile.syscalls) > 32:
            # A binary tree of system call numbers instead of a linear list, as runc
            # asks for long profiles; older libseccomp lacks it, which is harmless.
            lib.seccomp_attr_set(ctx, _FLTATR_CTL_OPTIMIZE, 2)
        for i, (rule, (action, groups)) in enumerate(zip(profile.syscalls, rules, strict=True)):
            if action == default:
                continue
            for name in rule.names:
                _add_rule(lib, ctx, name, action, groups, i)
        program = _export(lib, ctx)
    if _refuses_unknown_calls(default):
        program = enosys_prologue(_highest_numbers(lib, profile, arches)) + program
    _check_length(program)
    return program


def _refuses_unknown_calls(default: int) -> bool:
    """Whether calls the profile does not name fail (with other than ENOSYS) or kill.

    Only then does the ENOSYS prologue change anything: after an allowing default action
    an unknown call must go ahead, and runc leaves such profiles alone too.
    """
    allowing = default in (_ACT_ALLOW, _ACT_LOG) or default & 0xFFFF0000 == _ACT_TRACE
    return not allowing and default != _ACT_ERRNO | errno.ENOSYS


def _highest_numbers(lib: ctypes.CDLL, profile: LinuxSeccomp, arches: list[int]) -> dict[int, int]:
    """For each architecture token, the highest system call number the profile names."""
    names = {name.encode() for rule in profile.syscalls for name in rule.names}
    highest = {}
    for token in arches:
        numbers = [lib.seccomp_syscall_resolve_name_arch(token, name) for name in names]
        known = [n for n in numbers if n >= 0]
        if known:
            highest[token] = max(known)
    return highest


def _add_rule(
    lib: ctypes.CDLL, ctx: int, name: str, action: int, groups: Sequence[list[_ArgCmp]], i: int
) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number == _NR_SCMP_ERROR:
        return
    for conds in groups:
        array = (_ArgCmp * max(len(conds), 1))(*conds)
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(conds), array)
        if rc < 0:
            raise SpecError(
                f"{_FIELD}.syscalls[{i}]",
                f"libseccomp refused the rule for {name!r}: {os.strerror(-rc)}",
            )


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("containerlib-seccomp", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        size = os.fstat(fd).st_size
        program = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if len(program) != size or size % SOCK_FILTER_SIZE:
        raise ContainerSetupError("seccomp_export_bpf", errno.EIO, "", f"a program of {size} bytes")
    return program


def _check_length(program: bytes) -> None:
    count = len(program) // SOCK_FILTER_SIZE
    if count > _BPF_MAXINSNS:
        raise SpecError(
            _FIELD,
            f"the filter compiles to {count} instructions; the kernel "
            f"takes at most {_BPF_MAXINSNS}: use fewer rules or architectures",
        )


@functools.lru_cache(maxsize=64)
def _compile_cached(profile: LinuxSeccomp, architecture: str | None) -> bytes:
    return compile_filter(profile, architecture=architecture)


def compile_filter_cached(profile: LinuxSeccomp, *, architecture: str | None = None) -> bytes:
    """Like :func:`compile_filter`, remembering the last 64 programs by profile.

    Profiles are frozen and hashable, so the default profile of a given capability set
    is compiled once per process, however many containers use it.

    Args:
        profile: the seccomp part of an OCI spec.
        architecture: as for :func:`compile_filter`.

    Returns:
        The program, as :func:`compile_filter` returns it.

    Raises:
        SpecError: as :func:`compile_filter`.
        ContainerSetupError: as :func:`compile_filter`.
    """
    return _compile_cached(profile, architecture)


#: What a container's first process calls between the end of its premount and its exec
#: that a profile may refuse (``_init.c``'s setup: the cgroup namespace, the remaining
#: mounts, pivot_root, the masks, the host and domain names).
SETUP_CALLS: Final = (
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "unshare",
    "sethostname",
    "setdomainname",
)


@attrs.frozen
class SplitFilter:
    """A profile as two filters whose sum is the profile: ``early`` is the profile but
    for allowing :data:`SETUP_CALLS`, and can be installed in a warm process before the
    setup, off the start's path; ``late`` refuses just those calls as the profile does,
    and is small enough (a few dozen instructions) to install at the start. The kernel
    applies every filter a process has and takes the strictest answer, so the two
    together answer every call as the profile alone would.

    Attributes:
        early: the program installed ahead of time.
        late: the program installed at the start.
    """

    early: bytes
    late: bytes


def _split_profiles(profile: LinuxSeccomp) -> tuple[LinuxSeccomp, LinuxSeccomp] | None:
    if profile.default_action == "SCMP_ACT_ALLOW" or profile.listener_path:
        return None
    refused = []
    for name in SETUP_CALLS:
        rules = [r for r in profile.syscalls if name in r.names]
        if not rules:
            refused.append(name)
        elif not any(r.action == "SCMP_ACT_ALLOW" and not r.args for r in rules):
            return None  # conditional, or refused in its own way: keep it whole
    if not refused:
        return None
    allow = LinuxSyscall(names=tuple(refused), action="SCMP_ACT_ALLOW")
    early = attrs.evolve(profile, syscalls=(*profile.syscalls, allow))
    late = LinuxSeccomp(
        default_action="SCMP_ACT_ALLOW",
        architectures=profile.architectures,
        syscalls=(
            LinuxSyscall(
                names=tuple(refused),
                action=profile.default_action,
                errno_ret=profile.default_errno_ret,
            ),
        ),
    )
    return early, late


@functools.lru_cache(maxsize=64)
def split_filter(profile: LinuxSeccomp) -> SplitFilter | None:
    """The profile as an early and a late filter (see :class:`SplitFilter`), compiled;
    None when it cannot be split exactly (a profile that allows by default, or that
    answers one of :data:`SETUP_CALLS` otherwise than by its default or a plain allow).

    Raises:
        SpecError: as :func:`compile_filter`.
    """
    profiles = _split_profiles(profile)
    if profiles is None:
        return None
    early, late = profiles
    return SplitFilter(early=compile_filter(early), late=compile_filter(late))


@attrs.frozen
class CompiledProfile:
    """A profile compiled for this host: the whole program, and its split if it has one.

    Attributes:
        whole: the program of the whole profile.
        split: its early and late parts (see :class:`SplitFilter`), or None.
    """

    whole: bytes
    split: SplitFilter | None


_CACHE_VERSION: Final = b"containerlib seccomp cache 1\n"
_memory: dict[str, CompiledProfile] = {}


def _cache_key(profile: LinuxSeccomp) -> str:
    """What the compiled programs depend on: the profile, libseccomp, the machine."""
    text = json.dumps(profile.to_dict(), sort_keys=True, separators=(",", ":"))
    origin = f"{libseccomp_version()} {os.uname().machine} {os.uname().release}"
    return hashlib.sha256(_CACHE_VERSION + origin.encode() + b"\n" + text.encode()).hexdigest()


def _read_programs(path: str) -> list[bytes] | None:
    """The programs stored at ``path`` (u32 count, then u32 length and bytes each), or
    None if the file is missing or not one of ours."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return None
    programs: list[bytes] = []
    try:
        (count,) = struct.unpack_from("<I", data, 0)
        at = 4
        for _ in range(count):
            (length,) = struct.unpack_from("<I", data, at)
            at += 4
            program = data[at : at + length]
            if len(program) != length or length % SOCK_FILTER_SIZE:
                return None
            programs.append(program)
            at += length
    except struct.error:
        return None
    return programs if at == len(data) else None


def _write_programs(path: str, programs: Sequence[bytes]) -> None:
    data = struct.pack("<I", len(programs)) + b"".join(
        struct.pack("<I", len(p)) + p for p in programs
    )
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "wb") as f:
        f.write(data)
    os.replace(temp, path)


def compile_profile(profile: LinuxSeccomp, cache_dir: str | None = None) -> CompiledProfile:
    """The whole program of ``profile`` and its split, compiled once per process and, with
    ``cache_dir``, kept there (one file per profile, named by a hash of the profile, the
    libseccomp version and the machine): compiling Docker's profile and its two parts
    takes libseccomp about 40 ms, reading them back a tenth of a millisecond, which a
    command-line run, a new process each time, would otherwise pay every time.

    Raises:
        SpecError: as :func:`compile_filter`.
    """
    key = _cache_key(profile)
    found = _memory.get(key)
    if found is not None:
        return found
    path = os.path.join(cache_dir, key) if cache_dir is not None else None
    programs = _read_programs(path) if path is not None else None
    if programs is not None and len(programs) in (1, 3):
        split = SplitFilter(early=programs[1], late=programs[2]) if len(programs) == 3 else None
        found = CompiledProfile(whole=programs[0], split=split)
    else:
        whole = compile_filter_cached(profile)
        split = split_filter(profile)
        found = CompiledProfile(whole=whole, split=split)
        if path is not None:
            parts = [whole] if split is None else [whole, split.early, split.late]
            with contextlib.suppress(OSError):
                _write_programs(path, parts)
    _memory[key] = found
    return found
