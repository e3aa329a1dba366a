"""Docker's default seccomp profile, as data, resolved for a container's capabilities.

Docker filters the system calls of every container that is not privileged: about 360 are
allowed, some only with arguments that cannot reach the host's kernel features (``clone``
without namespace flags, ``personality`` with the usual domains, ``socket`` but not
``AF_VSOCK``), and the rest fail with EPERM unless the container holds the capability
that the call needs anyway (``mount`` with ``CAP_SYS_ADMIN``, ``ptrace`` with
``CAP_SYS_PTRACE`` on kernels before 4.8). ``clone3`` fails with ENOSYS so that C
libraries fall back to ``clone``, whose flags the filter can see. This module holds the
policy of moby's ``profiles/seccomp/default.json`` as Python data; see seccomp(2).

Example:
    >>> from containerlib.spec.defaults import DEFAULT_CAPABILITIES
    >>> profile = docker_default_profile(DEFAULT_CAPABILITIES, architecture="SCMP_ARCH_X86_64")
    >>> profile.default_action, profile.default_errno_ret, profile.architectures
    ('SCMP_ACT_ERRNO', 1, ('SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'))
    >>> allowed = {n for r in profile.syscalls if r.action == "SCMP_ACT_ALLOW" for n in r.names}
    >>> "read" in allowed, "mount" in allowed
    (True, False)
"""

from __future__ import annotations

import errno
from collections.abc import Collection
from typing import Final

from containerlib.spec.oci_linux import LinuxSeccomp, LinuxSeccompArg, LinuxSyscall
from containerlib.spec.seccomp_docker import ConditionalRule, RuleCondition, resolve_profile

__all__ = [
    "DOCKER_ARCH_MAP",
    "DOCKER_DEFAULT_RULES",
    "docker_default_profile",
]

DOCKER_ARCH_MAP: Final[dict[str, tuple[str, ...]]] = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_MIPS64N32": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"),
    "SCMP_ARCH_MIPSEL64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "SCMP_ARCH_MIPSEL64N32": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_RISCV64": (),
    "SCMP_ARCH_LOONGARCH64": (),
}
"""The architectures Docker filters, by host architecture: a 64-bit host's filter also
covers the 32-bit (and x32) system call tables a process there can use."""

# The names as words of one string: 361 one-name lines would bury the rules below.
_ALWAYS_ALLOWED: Final = tuple(
    """
    accept accept4 access adjtimex alarm bind brk cachestat capget capset
    chdir chmod chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
    clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range
    connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl
    epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve
    execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
    fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64
    fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64
    fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
    futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid
    getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername
    getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
    getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
    get_thread_area gettid gettimeofday getuid getuid32 getxattr getxattrat
    inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
    io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
    ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
    lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
    lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier
    memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap
    mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
    mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd
    msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
    openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
    pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
    process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
    readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
    remap_file_pages removexattr removexattrat rename renameat renameat2 restart_syscall
    riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
    rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
    sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
    sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
    setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
    setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
    setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
    setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64
    statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
    timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
    timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
    timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
    uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid
    write writev
""".split()  # noqa: SIM905
)

_ALLOW: Final = "SCMP_ACT_ALLOW"
# The namespace flags of clone(2) (CLONE_NEWNS ... CLONE_NEWNET, and CLONE_NEWTIME is
# not among them as in Docker): clone is allowed when none of them is set.
_CLONE_NAMESPACE_FLAGS: Final = 0x7E020000
# socket(2) address families 38 (AF_ALG) and 40 (AF_VSOCK) stay refused.
_AF_KCM_ALLOWED: Final = 39
# personality(2) domains Docker allows: PER_LINUX, PER_LINUX32, UNAME26,
# UNAME26|PER_LINUX32, and 0xffffffff, which only queries the current one.
_PERSONALITIES: Final = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def _allow(*names: str, **when: RuleCondition) -> ConditionalRule:
    return ConditionalRule(rule=LinuxSyscall(names=names, action=_ALLOW), **when)


def _allow_if(cap: str, *names: str) -> ConditionalRule:
    return _allow(*names, includes=RuleCondition(caps=(cap,)))


def _allow_on(arches: tuple[str, ...], *names: str) -> ConditionalRule:
    return _allow(*names, includes=RuleCondition(arches=arches))


def _allow_arg(
    name: str, index: int, op: str, value: int, **when: RuleCondition
) -> ConditionalRule:
    arg = LinuxSeccompArg(index=index, value=value, op=op)
    return ConditionalRule(rule=LinuxSyscall(names=(name,), action=_ALLOW, args=(arg,)), **when)


DOCKER_DEFAULT_RULES: Final[tuple[ConditionalRule, ...]] = (
    _allow(*_ALWAYS_ALLOWED),
    _allow(
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        includes=RuleCondition(min_kernel=(4, 8)),
    ),
    _allow_arg("socket", 0, "SCMP_CMP_LT", 38),
    _allow_arg("socket", 0, "SCMP_CMP_EQ", _AF_KCM_ALLOWED),
    _allow_arg("socket", 0, "SCMP_CMP_GT", 40),
    *(_allow_arg("personality", 0, "SCMP_CMP_EQ", p) for p in _PERSONALITIES),
    _allow_on(("ppc64le",), "sync_file_range2", "swapcontext"),
    _allow_on(
        ("arm", "arm64"),
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "sync_file_range2",
        "breakpoint",
        "cacheflush",
        "set_tls",
    ),
    _allow_on(("amd64", "x32"), "arch_prctl"),
    _allow_on(("amd64", "x32", "x86"), "modify_ldt"),
    _allow_on(("s390", "s390x"), "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    _allow_on(("riscv64",), "riscv_flush_icache"),
    _allow_if("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    _allow_if(
        "CAP_SYS_ADMIN",
        "bpf",
        "clone",
        "clone3",
        "fanotify_init",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "lookup_dcookie",
        "lsm_get_self_attr",
        "lsm_list_modules",
        "lsm_set_self_attr",
        "mount",
        "mount_setattr",
        "move_mount",
        "open_tree",
        "perf_event_open",
        "quotactl",
        "quotactl_fd",
        "setdomainname",
        "sethostname",
        "setns",
        "syslog",
        "umount",
        "umount2",
        "unshare",
    ),
    _allow_arg(
        "clone",
        0,
        "SCMP_CMP_MASKED_EQ",
        _CLONE_NAMESPACE_FLAGS,
        excludes=RuleCondition(caps=("CAP_SYS_ADMIN",), arches=("s390", "s390x")),
    ),
    # s390 passes clone's flags second.
    _allow_arg(
        "clone",
        1,
        "SCMP_CMP_MASKED_EQ",
        _CLONE_NAMESPACE_FLAGS,
        includes=RuleCondition(arches=("s390", "s390x")),
        excludes=RuleCondition(caps=("CAP_SYS_ADMIN",)),
    ),
    # clone3 passes its flags in memory, out of the filter's sight: refuse it with ENOSYS,
    # so that the C library falls back to clone, rather than EPERM, which it reports.
    ConditionalRule(
        rule=LinuxSyscall(names=("clone3",), action="SCMP_ACT_ERRNO", errno_ret=errno.ENOSYS),
        excludes=RuleCondition(caps=("CAP_SYS_ADMIN",)),
    ),
    _allow_if("CAP_SYS_BOOT", "reboot"),
    _allow_if("CAP_SYS_CHROOT", "chroot"),
    _allow_if("CAP_SYS_MODULE", "delete_module", "init_module", "finit_module"),
    _allow_if("CAP_SYS_PACCT", "acct"),
    _allow_if(
        "CAP_SYS_PTRACE",
        "kcmp",
        "pidfd_getfd",
        "process_madvise",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
    ),
    _allow_if("CAP_SYS_RAWIO", "iopl", "ioperm"),
    _allow_if("CAP_SYS_TIME", "settimeofday", "stime", "clock_settime", "clock_settime64"),
    _allow_if("CAP_SYS_TTY_CONFIG", "vhangup"),
    _allow_if("CAP_SYS_NICE", "get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    _allow_if("CAP_SYSLOG", "syslog"),
    _allow_if("CAP_BPF", "bpf"),
    _allow_if("CAP_PERFMON", "perf_event_open"),
)
"""Docker's default rules with their conditions, in the order of its ``default.json``."""

_BASE: Final = LinuxSeccomp(default_action="SCMP_ACT_ERRNO", default_errno_ret=errno.EPERM)


def docker_default_profile(
    capabilities: Collection[str],
    *,
    architecture: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> LinuxSeccomp:
    """Return Docker's default seccomp profile for a container holding ``capabilities``.

    System calls not allowed fail with EPERM; those that need a capability are allowed
    when the container holds it (Docker looks at the bounding set), as Docker does.

    Args:
        capabilities: the container's capabilities, ``CAP_*`` names such as
            :data:`~containerlib.spec.defaults.DEFAULT_CAPABILITIES`.
        architecture: the host architecture as an ``SCMP_ARCH_*`` name; this host's
            when omitted.
        kernel: the host kernel's ``(version, major revision)``; the running one's when
            omitted (``ptrace`` is allowed to all from 4.8, as in Docker).

    Returns:
        A plain OCI profile, for :func:`containerlib.linux.seccomp.compile_filter`.

    Raises:
        SpecError: an unknown architecture or a capability list that is not one.
    """
    return resolve_profile(
        _BASE,
        DOCKER_DEFAULT_RULES,
        capabilities,
        arch_map=DOCKER_ARCH_MAP,
        architecture=architecture,
        kernel=kernel,
    )
