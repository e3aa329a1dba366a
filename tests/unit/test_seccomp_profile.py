"""Docker's default seccomp profile and Docker's profile format, resolved to OCI rules.

The tests look at the resolved rules, what a user would find in the container's
``config.json``. Compiling them is tested in test_seccomp_compile.py, and that the
programs filter for real in tests/integration/test_seccomp_filter.py.
"""

from __future__ import annotations

import errno
import json

import pytest

from containerlib.errors import SpecError
from containerlib.spec.defaults import DEFAULT_CAPABILITIES
from containerlib.spec.oci_linux import LinuxSeccomp, LinuxSeccompArg, LinuxSyscall
from containerlib.spec.seccomp_default import docker_default_profile
from containerlib.spec.seccomp_docker import host_architecture, load_profile

X86_64 = "SCMP_ARCH_X86_64"
NEW_KERNEL = (6, 1)
OLD_KERNEL = (4, 4)

REFUSED_BY_DEFAULT = (
    "mount",
    "umount2",
    "keyctl",
    "add_key",
    "request_key",
    "unshare",
    "setns",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "reboot",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "open_by_handle_at",
    "acct",
    "iopl",
    "userfaultfd",
)


def default(
    *extra_caps: str, arch: str = X86_64, kernel: tuple[int, int] = NEW_KERNEL
) -> LinuxSeccomp:
    return docker_default_profile(
        (*DEFAULT_CAPABILITIES, *extra_caps), architecture=arch, kernel=kernel
    )


def unconditional(profile: LinuxSeccomp, action: str = "SCMP_ACT_ALLOW") -> set[str]:
    """Names that a rule without argument conditions gives ``action``."""
    return {n for r in profile.syscalls if r.action == action and not r.args for n in r.names}


def rules_for(profile: LinuxSeccomp, name: str) -> list[LinuxSyscall]:
    return [r for r in profile.syscalls if name in r.names]


# --- Docker's default profile ----------------------------------------------------------


def test_default_profile_header() -> None:
    profile = default()
    assert profile.default_action == "SCMP_ACT_ERRNO"
    assert profile.default_errno_ret == errno.EPERM
    assert profile.architectures == (X86_64, "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    assert profile.listener_path is None


def test_default_caps_allow_ordinary_calls() -> None:
    allowed = unconditional(default())
    for name in ("read", "write", "execve", "openat", "exit_group", "chroot", "arch_prctl"):
        assert name in allowed
    assert len(allowed) > 350


@pytest.mark.parametrize("name", REFUSED_BY_DEFAULT)
def test_default_caps_refuse(name: str) -> None:
    assert rules_for(default(), name) == []


def test_clone_only_without_namespace_flags() -> None:
    (clone,) = rules_for(default(), "clone")
    assert clone.action == "SCMP_ACT_ALLOW"
    assert clone.args == (
        LinuxSeccompArg(index=0, value=0x7E020000, op="SCMP_CMP_MASKED_EQ", value_two=0),
    )


def test_clone3_fails_with_enosys_unless_sys_admin() -> None:
    (clone3,) = rules_for(default(), "clone3")
    assert (clone3.action, clone3.errno_ret) == ("SCMP_ACT_ERRNO", errno.ENOSYS)
    admin = rules_for(default("CAP_SYS_ADMIN"), "clone3")
    assert [(r.action, r.errno_ret) for r in admin] == [("SCMP_ACT_ALLOW", None)]


def test_personality_and_socket_argument_rules() -> None:
    profile = default()
    personas = sorted(r.args[0].value for r in rules_for(profile, "personality"))
    assert personas == [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    sockets = [(r.args[0].op, r.args[0].value) for r in rules_for(profile, "socket")]
    assert sockets == [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]


def test_sys_admin_allows_mount_unshare_and_any_clone() -> None:
    profile = default("CAP_SYS_ADMIN")
    allowed = unconditional(profile)
    assert {"mount", "umount2", "unshare", "setns", "sethostname", "bpf", "clone"} <= allowed
    assert all(not r.args for r in rules_for(profile, "clone"))


def test_capability_names_may_omit_the_prefix() -> None:
    assert default("sys_admin") == default("CAP_SYS_ADMIN")


def test_ptrace_needs_sys_ptrace_before_kernel_4_8() -> None:
    assert "ptrace" in unconditional(default(kernel=NEW_KERNEL))
    assert "ptrace" not in unconditional(default(kernel=OLD_KERNEL))
    assert {"ptrace", "kcmp", "pidfd_getfd"} <= unconditional(
        default("CAP_SYS_PTRACE", kernel=OLD_KERNEL)
    )
    assert "kcmp" not in unconditional(default(kernel=NEW_KERNEL))


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_SYS_TIME", {"settimeofday", "clock_settime"}),
        ("CAP_SYS_NICE", {"mbind", "set_mempolicy"}),
        ("CAP_SYS_RAWIO", {"iopl", "ioperm"}),
        ("CAP_SYS_PACCT", {"acct"}),
        ("CAP_SYS_TTY_CONFIG", {"vhangup"}),
        ("CAP_SYSLOG", {"syslog"}),
        ("CAP_BPF", {"bpf"}),
        ("CAP_PERFMON", {"perf_event_open"}),
        ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
    ],
)
def test_capability_groups(cap: str, names: set[str]) -> None:
    assert not names & unconditional(default())
    assert names <= unconditional(default(cap))
    assert "mount" not in unconditional(default(cap))


def test_chroot_follows_sys_chroot() -> None:
    without = [c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT"]
    profile = docker_default_profile(without, architecture=X86_64, kernel=NEW_KERNEL)
    assert "chroot" not in unconditional(profile)


def test_other_architectures() -> None:
    arm = default(arch="SCMP_ARCH_AARCH64")
    assert arm.architectures == ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert "set_tls" in unconditional(arm)
    assert "arch_prctl" not in unconditional(arm)
    s390 = default(arch="SCMP_ARCH_S390X")
    (clone,) = rules_for(s390, "clone")
    assert clone.args[0].index == 1
    assert default(arch="SCMP_ARCH_RISCV64").architectures == ("SCMP_ARCH_RISCV64",)


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(SpecError, match="architecture: unknown architecture 'SCMP_ARCH_VAX'"):
        default(arch="SCMP_ARCH_VAX")


def test_host_defaults_are_used() -> None:
    profile = docker_default_profile(DEFAULT_CAPABILITIES)
    assert profile.architectures[0] == host_architecture()


# --- Docker's profile format -----------------------------------------------------------

DOCKER_JSON = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": X86_64, "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": None},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
        {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {
            "names": ["sync"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_BOOT"]},
        },
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["statx"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.1"}},
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 38,
            "excludes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_BOOT"]},
        },
        {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        {"names": ["uname"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.1"}},
    ],
}


def names(profile: LinuxSeccomp) -> list[str]:
    return [n for r in profile.syscalls for n in r.names]


def test_load_docker_profile_resolves_conditions() -> None:
    profile = load_profile(DOCKER_JSON, ["CAP_CHOWN"], architecture=X86_64, kernel=(5, 10))
    assert profile.architectures == (X86_64, "SCMP_ARCH_X86")
    assert names(profile) == ["read", "write", "arch_prctl", "statx", "clone3"]
    assert profile.syscalls[-1].errno_ret == errno.ENOSYS
    assert all(not r.extra for r in profile.syscalls)


def test_load_docker_profile_other_host_and_caps() -> None:
    profile = load_profile(
        json.dumps(DOCKER_JSON),
        ["CAP_SYS_ADMIN", "CAP_SYS_BOOT"],
        architecture="SCMP_ARCH_AARCH64",
        kernel=(4, 19),
    )
    assert profile.architectures == ("SCMP_ARCH_AARCH64",)
    assert names(profile) == ["read", "write", "mount", "sync", "gettid", "uname"]


def test_load_docker_profile_includes_need_every_cap() -> None:
    profile = load_profile(
        json.dumps(DOCKER_JSON).encode(), ["CAP_SYS_ADMIN"], architecture=X86_64, kernel=(6, 1)
    )
    assert "mount" in names(profile)
    assert "sync" not in names(profile)
    assert "clone3" not in names(profile)


def test_load_oci_profile_unchanged() -> None:
    oci = LinuxSeccomp(
        default_action="SCMP_ACT_ALLOW",
        architectures=["SCMP_ARCH_AARCH64"],
        flags=["SECCOMP_FILTER_FLAG_LOG"],
        syscalls=[
            LinuxSyscall(
                names=["personality"],
                action="SCMP_ACT_ERRNO",
                args=[LinuxSeccompArg(index=0, value=8, op="SCMP_CMP_NE")],
            )
        ],
    )
    assert load_profile(oci.to_dict(), [], architecture=X86_64) == oci


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"defaultAction": "SCMP_ACT_MAYBE"}, "defaultAction"),
        ({"defaultAction": None}, "defaultAction"),
        (
            {"architectures": [X86_64], "archMap": [{"architecture": X86_64}]},
            "archMap",
        ),
        ({"archMap": [{"subArchitectures": []}]}, "archMap[0].architecture"),
        ({"syscalls": {"names": ["read"]}}, "syscalls"),
        ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOPE"}]}, "syscalls[0].action"),
        ({"syscalls": [{"names": ["read"]}]}, "syscalls[0].action"),
        ({"syscalls": ["read"]}, "syscalls[0]"),
        (
            {"syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]},
            "syscalls[0].name",
        ),
        (
            {
                "syscalls": [
                    {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["b"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}},
                ]
            },
            "syscalls[1].includes.minKernel",
        ),
        (
            {"syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "excludes": {"cap": []}}]},
            "syscalls[0].excludes.cap",
        ),
        (
            {"syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": "X"}}]},
            "syscalls[0].includes.caps",
        ),
        (
            {
                "syscalls": [
                    {
                        "names": ["a"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}],
                    }
                ]
            },
            "syscalls[0].args[0].index",
        ),
        (
            {
                "syscalls": [
                    {
                        "names": ["a"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SORT_OF"}],
                    }
                ]
            },
            "syscalls[0].args[0].op",
        ),
    ],
)
def test_bad_profiles_name_the_field(change: dict[str, object], field: str) -> None:
    data = {"defaultAction": "SCMP_ACT_ERRNO", **change}
    with pytest.raises(SpecError) as caught:
        load_profile(data, DEFAULT_CAPABILITIES, architecture=X86_64, kernel=NEW_KERNEL)
    assert caught.value.field == field


def test_not_json_or_not_an_object() -> None:
    with pytest.raises(SpecError, match="not JSON"):
        load_profile("{", [])
    with pytest.raises(SpecError, match="must be a JSON object, not list"):
        load_profile("[]", [])
    with pytest.raises(SpecError, match="capabilities: must be a collection of names"):
        load_profile({"defaultAction": "SCMP_ACT_ALLOW"}, "CAP_SYS_ADMIN")
