"""Compiled seccomp programs, installed in a forked child, filter its system calls.

Each test compiles a profile in the parent, forks, and the child installs the program the
way the container's init does (PR_SET_NO_NEW_PRIVS, then PR_SET_SECCOMP with the
``struct sock_fprog``), makes raw system calls through ``syscall(2)`` and reports each
result and errno through a pipe before ``_exit``. Every call is given arguments that
make it fail harmlessly if the filter lets it through (EFAULT, EINVAL...), so a broken
filter cannot touch the host.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import struct
import time
from collections.abc import Sequence

import pytest

from containerlib.linux.seccomp import compile_filter, compile_filter_cached
from containerlib.spec.defaults import DEFAULT_CAPABILITIES
from containerlib.spec.oci_linux import LinuxSeccomp, LinuxSeccompArg, LinuxSyscall
from containerlib.spec.seccomp_default import docker_default_profile
from tests.integration.conftest import needs_root

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CLONE_NEWUSER = 0x10000000
CLONE_FS = 0x200
CLONE_SIGHAND = 0x800
ADDR_NO_RANDOMIZE = 0x0040000
PTRACE_GETREGS = 12
BAD_KEYCTL_OP = 9999

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.restype = ctypes.c_int
libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_void_p,
    ctypes.c_ulong,
    ctypes.c_ulong,
]

_seccomp = ctypes.CDLL("libseccomp.so.2")
_seccomp.seccomp_syscall_resolve_name.restype = ctypes.c_int
_seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]


def nr(name: str) -> int:
    """The host's number of system call ``name``."""
    number: int = _seccomp.seccomp_syscall_resolve_name(name.encode())
    assert number >= 0, f"{name} is not a system call here"
    return number


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


Call = tuple[str | int, tuple[int, ...]]
"""A system call by name or by number, and its arguments."""


def run_filtered(program: bytes, calls: Sequence[Call]) -> tuple[list[tuple[int, int]], int]:
    """Install ``program`` in a forked child, make ``calls`` there, report what happened.

    Returns:
        For each call that returned, ``(result, errno)``; and the child's wait status.
    """
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    numbers = [
        (nr(name) if isinstance(name, str) else name, tuple(ctypes.c_long(a) for a in args))
        for name, args in calls
    ]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 0
        try:
            os.close(read_end)
            # A killed child must not write a core of the test process.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
            if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0):
                raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
            for number, args in numbers:
                ctypes.set_errno(0)
                result = libc.syscall(ctypes.c_long(number), *args)
                os.write(write_end, struct.pack("=qq", result, ctypes.get_errno()))
        except BaseException:
            status = 100
        finally:
            os._exit(status)
    os.close(write_end)
    data = b""
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    results = [struct.unpack_from("=qq", data, i) for i in range(0, len(data), 16)]
    return results, wait_status


def errnos(program: bytes, calls: Sequence[Call]) -> dict[str | int, int]:
    """The errno each call left (0 when it succeeded), checking the child exited."""
    results, status = run_filtered(program, calls)
    assert os.WIFEXITED(status), f"child ended with status {status:#x}"
    assert os.WEXITSTATUS(status) == 0, "the child could not install the filter"
    assert len(results) == len(calls)
    return {name: err for (name, _), (_, err) in zip(calls, results, strict=True)}


@pytest.fixture(scope="module")
def default_program() -> bytes:
    profile = docker_default_profile(DEFAULT_CAPABILITIES)
    start = time.perf_counter()
    program = compile_filter(profile)
    took = time.perf_counter() - start
    print(f"compile_filter(Docker default): {took * 1e3:.1f} ms, {len(program) // 8} insns")
    return program


# Arguments that make each call fail (or do nothing) if it is allowed.
HARMLESS: dict[str, tuple[int, ...]] = {
    "keyctl": (BAD_KEYCTL_OP, 0, 0, 0, 0),
    "add_key": (0, 0, 0, 0, 0),
    "unshare": (CLONE_NEWUSER,),
    "mount": (0, 0, 0, 0, 0),
    "umount2": (0, 0),
    "kexec_load": (0, 0, 0, 0x0000FF00),
    "init_module": (0, 0, 0),
    "bpf": (0xFFFF, 0, 0),
    "perf_event_open": (0, 0, -1, -1, 0),
    "reboot": (0, 0, 0, 0),
    "swapon": (0, 0),
    "settimeofday": (0, 0),
    "clone3": (0, 0),
}


def test_default_profile_allows_ordinary_calls(default_program: bytes) -> None:
    results, status = run_filtered(default_program, [("getpid", ()), ("getppid", ())])
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 0
    (pid, pid_err), (ppid, ppid_err) = results
    assert pid_err == 0
    assert pid > 0
    assert ppid == os.getpid()
    assert ppid_err == 0


@pytest.mark.parametrize(
    "name",
    [
        "keyctl",
        "add_key",
        "unshare",
        "mount",
        "umount2",
        "kexec_load",
        "init_module",
        "bpf",
        "perf_event_open",
        "reboot",
        "swapon",
        "settimeofday",
    ],
)
def test_default_profile_refuses_with_eperm(default_program: bytes, name: str) -> None:
    assert errnos(default_program, [(name, HARMLESS[name])]) == {name: errno.EPERM}


@needs_root("the control makes the calls with root's privileges on the host")
def test_unfiltered_calls_fail_otherwise() -> None:
    """The control: without the filter none of the calls above fails with EPERM as root,
    so the EPERMs above come from the filter. kexec_load and init_module are left out:
    a host may switch them off (kexec_load_disabled, modules_disabled) with EPERM."""
    allow_all = compile_filter(LinuxSeccomp(default_action="SCMP_ACT_ALLOW"))
    host_may_refuse = {"unshare", "kexec_load", "init_module"}
    calls = [(name, args) for name, args in HARMLESS.items() if name not in host_may_refuse]
    seen = errnos(allow_all, calls)
    assert seen.pop("settimeofday") == 0
    assert {name: err for name, err in seen.items() if err in (0, errno.EPERM)} == {}


def test_calls_newer_than_the_profile_give_enosys(default_program: bytes) -> None:
    """A number above every call the profile names fails as if the kernel lacked it,
    not with the default EPERM, so that C libraries fall back to older calls."""
    assert errnos(default_program, [(1000, ())]) == {1000: errno.ENOSYS}


def test_clone3_gives_enosys_so_libc_falls_back(default_program: bytes) -> None:
    assert errnos(default_program, [("clone3", HARMLESS["clone3"])]) == {"clone3": errno.ENOSYS}


def test_cap_sys_admin_opens_unshare_and_clone3() -> None:
    profile = docker_default_profile((*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    seen = errnos(compile_filter(profile), [("unshare", (CLONE_NEWUSER,)), ("clone3", (0, 0))])
    assert seen == {"unshare": 0, "clone3": errno.EINVAL}


def test_ptrace_follows_the_kernel_rule() -> None:
    call = [("ptrace", (PTRACE_GETREGS, 1, 0, 0))]
    # Docker allows ptrace to every container from kernel 4.8, which closed the
    # seccomp bypass through it; on older kernels it needs CAP_SYS_PTRACE.
    new = compile_filter(docker_default_profile(DEFAULT_CAPABILITIES, kernel=(6, 1)))
    old = compile_filter(docker_default_profile(DEFAULT_CAPABILITIES, kernel=(4, 4)))
    old_traced = docker_default_profile((*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"), kernel=(4, 4))
    assert errnos(new, call) == {"ptrace": errno.ESRCH}
    assert errnos(old, call) == {"ptrace": errno.EPERM}
    assert errnos(compile_filter(old_traced), call) == {"ptrace": errno.ESRCH}


def test_personality_argument_rule(default_program: bytes) -> None:
    results, status = run_filtered(
        default_program,
        [("personality", (0xFFFFFFFF,)), ("personality", (ADDR_NO_RANDOMIZE,))],
    )
    assert os.WIFEXITED(status)
    (query, query_err), (_, set_err) = results
    assert query_err == 0
    assert query >= 0
    assert set_err == errno.EPERM


def test_clone_is_allowed_without_namespace_flags(default_program: bytes) -> None:
    """Both flag sets are invalid, so a clone that gets through fails with EINVAL."""
    namespace = CLONE_NEWUSER | CLONE_FS
    plain = CLONE_SIGHAND
    seen = [
        err
        for _, err in run_filtered(
            default_program, [("clone", (namespace, 0, 0, 0, 0)), ("clone", (plain, 0, 0, 0, 0))]
        )[0]
    ]
    assert seen == [errno.EPERM, errno.EINVAL]


def test_kill_process_action_kills_with_sigsys() -> None:
    profile = LinuxSeccomp(
        default_action="SCMP_ACT_ALLOW",
        syscalls=[LinuxSyscall(names=["getppid"], action="SCMP_ACT_KILL_PROCESS")],
    )
    results, status = run_filtered(compile_filter(profile), [("getpid", ()), ("getppid", ())])
    assert len(results) == 1
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGSYS


def test_errno_ret_and_same_argument_conditions() -> None:
    """Two conditions on one argument match either value (runc splits them into two
    rules); conditions on different arguments must all hold."""
    either = LinuxSyscall(
        names=["keyctl"],
        action="SCMP_ACT_ERRNO",
        errno_ret=errno.EXDEV,
        args=[
            LinuxSeccompArg(index=0, value=BAD_KEYCTL_OP, op="SCMP_CMP_EQ"),
            LinuxSeccompArg(index=0, value=BAD_KEYCTL_OP + 1, op="SCMP_CMP_EQ"),
        ],
    )
    both = LinuxSyscall(
        names=["personality"],
        action="SCMP_ACT_ERRNO",
        errno_ret=errno.EDOM,
        args=[LinuxSeccompArg(index=0, value=0xFF, value_two=0x08, op="SCMP_CMP_MASKED_EQ")],
    )
    profile = LinuxSeccomp(default_action="SCMP_ACT_ALLOW", syscalls=[either, both])
    results, status = run_filtered(
        compile_filter(profile),
        [
            ("keyctl", (BAD_KEYCTL_OP, 0, 0, 0, 0)),
            ("keyctl", (BAD_KEYCTL_OP + 1, 0, 0, 0, 0)),
            ("keyctl", (BAD_KEYCTL_OP + 2, 0, 0, 0, 0)),
            ("personality", (0x108,)),
            ("personality", (0xFFFFFFFF,)),
        ],
    )
    assert os.WIFEXITED(status)
    assert [err for _, err in results] == [
        errno.EXDEV,
        errno.EXDEV,
        errno.EOPNOTSUPP,
        errno.EDOM,
        0,
    ]


def test_cached_program_is_the_same_object_and_works(default_program: bytes) -> None:
    profile = docker_default_profile(DEFAULT_CAPABILITIES)
    first = compile_filter_cached(profile)
    assert compile_filter_cached(docker_default_profile(DEFAULT_CAPABILITIES)) is first
    assert first == default_program
    assert errnos(first, [("keyctl", HARMLESS["keyctl"])]) == {"keyctl": errno.EPERM}
