"""Compiling seccomp profiles to BPF with the system's libseccomp.

The programs are checked by what they decide: a small classic-BPF interpreter runs them
on ``struct seccomp_data`` for each x86 system call table (x86_64, i386, x32), which the
kernel test in tests/integration/test_seccomp_filter.py can only do for the native one.
libseccomp needs no privilege, so these tests run anywhere it is installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import struct
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given, settings

from containerlib.errors import ContainerSetupError, SpecError
from containerlib.linux import seccomp
from containerlib.linux.seccomp import (
    SOCK_FILTER_SIZE,
    compile_filter,
    compile_filter_cached,
    filter_flags,
    libseccomp_version,
    split_filter,
)
from containerlib.linux.seccomp_enosys import enosys_prologue
from containerlib.spec.defaults import DEFAULT_CAPABILITIES
from containerlib.spec.oci_linux import LinuxSeccomp, LinuxSeccompArg, LinuxSyscall
from containerlib.spec.seccomp_default import docker_default_profile
from containerlib.spec.seccomp_docker import load_profile
from tests.unit.strategies import seccomp_dicts

X86_64 = "SCMP_ARCH_X86_64"


def default(*extra_caps: str) -> LinuxSeccomp:
    return docker_default_profile(
        (*DEFAULT_CAPABILITIES, *extra_caps), architecture=X86_64, kernel=(6, 1)
    )


# --- compiling -------------------------------------------------------------------------


def allow_all_but(*rules: LinuxSyscall, **fields: object) -> LinuxSeccomp:
    return LinuxSeccomp(default_action="SCMP_ACT_ALLOW", syscalls=rules, **fields)  # type: ignore[arg-type]


KEYCTL_EPERM = LinuxSyscall(names=["keyctl"], action="SCMP_ACT_ERRNO")


def test_compiled_program_is_whole_instructions_and_deterministic() -> None:
    profile = default()
    program = compile_filter(profile)
    assert len(program) % SOCK_FILTER_SIZE == 0
    assert len(program) // SOCK_FILTER_SIZE > 100
    assert compile_filter(default()) == program
    assert compile_filter(default("CAP_SYS_ADMIN")) != program


def test_cached_compile_returns_the_same_program() -> None:
    first = compile_filter_cached(default())
    assert compile_filter_cached(default()) is first
    assert first == compile_filter(default())


def test_unknown_syscalls_and_architectures_are_skipped() -> None:
    plain = compile_filter(allow_all_but(KEYCTL_EPERM))
    unknown = LinuxSyscall(names=["keyctl", "no_such_call"], action="SCMP_ACT_ERRNO")
    assert compile_filter(allow_all_but(unknown)) == plain
    assert compile_filter(allow_all_but(KEYCTL_EPERM, architectures=["SCMP_ARCH_VAX"])) == plain
    with_x86 = compile_filter(allow_all_but(KEYCTL_EPERM, architectures=["SCMP_ARCH_X86"]))
    assert len(with_x86) > len(plain)


def test_rule_with_the_default_action_is_skipped() -> None:
    plain = compile_filter(allow_all_but(KEYCTL_EPERM))
    same = LinuxSyscall(names=["read"], action="SCMP_ACT_ALLOW")
    assert compile_filter(allow_all_but(KEYCTL_EPERM, same)) == plain


def test_errno_values_change_the_program() -> None:
    eperm = compile_filter(allow_all_but(KEYCTL_EPERM))
    explicit = attrs.evolve(KEYCTL_EPERM, errno_ret=errno.EPERM)
    enosys = attrs.evolve(KEYCTL_EPERM, errno_ret=errno.ENOSYS)
    assert compile_filter(allow_all_but(explicit)) == eperm
    assert compile_filter(allow_all_but(enosys)) != eperm


@pytest.mark.parametrize(
    "action",
    [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_LOG",
        "SCMP_ACT_ERRNO",
    ],
)
def test_every_action_compiles(action: str) -> None:
    rule = LinuxSyscall(names=["keyctl"], action=action)
    assert len(compile_filter(allow_all_but(rule))) % SOCK_FILTER_SIZE == 0


def test_every_operator_compiles() -> None:
    ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE"]
    ops += ["SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
    programs = {
        compile_filter(
            allow_all_but(
                LinuxSyscall(
                    names=["keyctl"],
                    action="SCMP_ACT_ERRNO",
                    args=[LinuxSeccompArg(index=1, value=5, value_two=1, op=op)],
                )
            )
        )
        for op in ops
    }
    assert len(programs) == len(ops)


def test_notify_is_refused_naming_the_field() -> None:
    notify = LinuxSyscall(names=["keyctl"], action="SCMP_ACT_NOTIFY")
    profile = allow_all_but(KEYCTL_EPERM, notify, listener_path="/run/seccomp.sock")
    with pytest.raises(SpecError) as caught:
        compile_filter(profile)
    assert caught.value.field == "linux.seccomp.listenerPath"
    assert "not supported" in str(caught.value)


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        (
            allow_all_but(KEYCTL_EPERM, attrs.evolve(KEYCTL_EPERM, errno_ret=70000)),
            "linux.seccomp.syscalls[1].errnoRet",
        ),
        (
            LinuxSeccomp(default_action="SCMP_ACT_ERRNO", default_errno_ret=5000),
            "linux.seccomp.defaultErrnoRet",
        ),
        (
            allow_all_but(KEYCTL_EPERM, flags=["SECCOMP_FILTER_FLAG_FANCY"]),
            "linux.seccomp.flags[0]",
        ),
    ],
)
def test_bad_values_name_the_field(profile: LinuxSeccomp, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        compile_filter(profile)
    assert caught.value.field == field


def test_unknown_target_architecture() -> None:
    with pytest.raises(SpecError, match="architecture: unknown architecture 'SCMP_ARCH_VAX'"):
        compile_filter(allow_all_but(KEYCTL_EPERM), architecture="SCMP_ARCH_VAX")


def test_other_target_architecture_gives_another_program() -> None:
    profile = allow_all_but(KEYCTL_EPERM)
    assert compile_filter(profile, architecture="SCMP_ARCH_AARCH64") != compile_filter(profile)


def test_filter_flags() -> None:
    assert filter_flags(allow_all_but()) == 0
    flags = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    assert filter_flags(allow_all_but(flags=flags)) == 0b110
    assert filter_flags(allow_all_but(flags=["SECCOMP_FILTER_FLAG_TSYNC"])) == 0


@pytest.fixture
def no_libseccomp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    seccomp._libseccomp.cache_clear()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libseccomp-missing.so.9")
    yield
    seccomp._libseccomp.cache_clear()


def test_version_is_reported() -> None:
    major, _, _ = libseccomp_version()
    assert major == 2


@pytest.mark.usefixtures("no_libseccomp")
def test_missing_library_says_what_to_install() -> None:
    with pytest.raises(ContainerSetupError) as caught:
        compile_filter(allow_all_but(KEYCTL_EPERM))
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == errno.ENOENT
    assert "libseccomp.so.2" in str(caught.value)
    assert "apt-get install libseccomp2" in str(caught.value)


def test_program_too_long_for_the_kernel() -> None:
    rules = [
        LinuxSyscall(
            names=["personality"],
            action="SCMP_ACT_ERRNO",
            args=[LinuxSeccompArg(index=0, value=v, op="SCMP_CMP_EQ")],
        )
        for v in range(5000)
    ]
    with pytest.raises(SpecError, match="at most 4096") as caught:
        compile_filter(allow_all_but(*rules))
    assert caught.value.field == "linux.seccomp"


@settings(max_examples=60, deadline=None)
@given(seccomp_dicts())
def test_any_oci_profile_loads_as_itself_and_compiles_or_names_the_field(
    data: dict[str, Any],
) -> None:
    oci = LinuxSeccomp.from_dict(data)
    assert load_profile(data, DEFAULT_CAPABILITIES) == oci
    try:
        program = compile_filter(oci)
    except SpecError as e:
        refused: SpecError | None = e
    else:
        refused = None
        assert len(program) % SOCK_FILTER_SIZE == 0
        assert program == compile_filter(oci)
    if refused is not None:
        assert refused.field.startswith("linux.seccomp.")


# --- what the compiled program decides, run in a small classic-BPF interpreter ---------

AUDIT_X86_64 = 0xC000003E
AUDIT_I386 = 0x40000003
AUDIT_AARCH64 = 0xC00000B7
X32_BIT = 0x40000000
TOKENS = {"x86_64": AUDIT_X86_64, "x86": AUDIT_I386, "x32": 0x4000003E}
ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
_resolve = ctypes.CDLL("libseccomp.so.2").seccomp_syscall_resolve_name_arch
_resolve.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
_resolve.restype = ctypes.c_int


def number(arch: str, name: str) -> int:
    found: int = _resolve(TOKENS[arch], name.encode())
    assert found >= 0
    return found


def run_bpf(program: bytes, arch: int, nr: int, *args: int) -> int:
    """What the kernel's seccomp would return for this call (struct seccomp_data)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *args, *([0] * (6 - len(args))))
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    a = pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            (a,) = struct.unpack_from("=I", data, k)
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x06:  # ret #k
            return int(k)
        elif code == 0x05:  # ja k
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # jeq, jgt, jge, jset #k
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")


@pytest.fixture(scope="module")
def docker_x86_64() -> bytes:
    return compile_filter(default(), architecture=X86_64)


@pytest.mark.parametrize(
    ("arch", "audit", "bit"),
    [("x86_64", AUDIT_X86_64, 0), ("x86", AUDIT_I386, 0), ("x32", AUDIT_X86_64, X32_BIT)],
)
def test_every_x86_table_is_filtered(docker_x86_64: bytes, arch: str, audit: int, bit: int) -> None:
    assert run_bpf(docker_x86_64, audit, number(arch, "read")) == ALLOW
    assert run_bpf(docker_x86_64, audit, number(arch, "keyctl")) == EPERM
    assert run_bpf(docker_x86_64, audit, number(arch, "mount")) == EPERM
    assert run_bpf(docker_x86_64, audit, number(arch, "clone3")) == ENOSYS
    assert run_bpf(docker_x86_64, audit, bit | 0xFFF) == ENOSYS


def test_calls_newer_than_the_profile_get_enosys(docker_x86_64: bytes) -> None:
    assert run_bpf(docker_x86_64, AUDIT_X86_64, 1000) == ENOSYS
    # A number the profile does not name but below its newest stays refused.
    assert run_bpf(docker_x86_64, AUDIT_X86_64, number("x86_64", "kexec_load")) == EPERM
    # An allowing default lets unknown calls through: no ENOSYS there.
    allowing = compile_filter(allow_all_but(KEYCTL_EPERM))
    assert run_bpf(allowing, AUDIT_X86_64, 1000) == ALLOW
    assert run_bpf(allowing, AUDIT_X86_64, number("x86_64", "keyctl")) == EPERM


def test_foreign_architecture_is_killed(docker_x86_64: bytes) -> None:
    assert run_bpf(docker_x86_64, AUDIT_AARCH64, 0) in (0x00000000, 0x80000000)


def test_argument_rules_in_the_program(docker_x86_64: bytes) -> None:
    personality = number("x86_64", "personality")
    assert run_bpf(docker_x86_64, AUDIT_X86_64, personality, 0xFFFFFFFF) == ALLOW
    assert run_bpf(docker_x86_64, AUDIT_X86_64, personality, 0x0040000) == EPERM
    clone = number("x86_64", "clone")
    assert run_bpf(docker_x86_64, AUDIT_X86_64, clone, 0x11) == ALLOW
    assert run_bpf(docker_x86_64, AUDIT_X86_64, clone, 0x10000011) == EPERM
    socket = number("x86_64", "socket")
    assert run_bpf(docker_x86_64, AUDIT_X86_64, socket, 2) == ALLOW
    assert run_bpf(docker_x86_64, AUDIT_X86_64, socket, 40) == EPERM
    i386_personality = number("x86", "personality")
    assert run_bpf(docker_x86_64, AUDIT_I386, i386_personality, 0x8) == ALLOW
    assert run_bpf(docker_x86_64, AUDIT_I386, i386_personality, 0x0040000) == EPERM


def test_native_only_filter_kills_other_tables() -> None:
    profile = LinuxSeccomp(
        default_action="SCMP_ACT_ERRNO",
        syscalls=[LinuxSyscall(names=["read", "write", "exit_group"], action="SCMP_ACT_ALLOW")],
    )
    program = compile_filter(profile, architecture=X86_64)
    killed = (0x00000000, 0x80000000)
    assert run_bpf(program, AUDIT_X86_64, number("x86_64", "write")) == ALLOW
    assert run_bpf(program, AUDIT_X86_64, number("x86_64", "close")) == EPERM
    assert run_bpf(program, AUDIT_X86_64, 1000) == ENOSYS
    assert run_bpf(program, AUDIT_X86_64, X32_BIT | 1) in killed
    assert run_bpf(program, AUDIT_I386, number("x86", "write")) in killed


def test_no_prologue_without_a_checkable_architecture() -> None:
    assert enosys_prologue({}) == b""
    assert enosys_prologue({0x80000016: 10}) == b""
    assert len(enosys_prologue({AUDIT_AARCH64: 10})) % SOCK_FILTER_SIZE == 0


# -- the profile in two parts ------------------------------------------------------------


def _strictest(early: int, late: int) -> int:
    """What the kernel answers with two filters: the lowest action (as a signed 32-bit
    value: KILL_PROCESS is the most negative), and for the same action the data of the
    filter installed last."""

    def action(ret: int) -> int:
        value = ret & 0xFFFF0000
        return value - (1 << 32) if value >= 1 << 31 else value

    return late if action(late) <= action(early) else early


@pytest.mark.parametrize("caps", [(), ("CAP_SYS_ADMIN",), ("CAP_SYS_PTRACE",)])
def test_early_and_late_together_answer_as_the_profile(caps: tuple[str, ...]) -> None:
    profile = default(*caps)
    split = split_filter(profile)
    assert split is not None
    whole = compile_filter(profile)
    assert len(split.late) // 8 < 64  # the part on the start's path is small
    arg_sets: list[tuple[int, ...]] = [(), (0x10000000,), (0x7E020000,), (0xFFFFFFFF,), (8,)]
    for audit, bit in ((AUDIT_X86_64, 0), (AUDIT_I386, 0), (AUDIT_X86_64, X32_BIT)):
        for nr in range(0, 460):
            for args in arg_sets:
                expected = run_bpf(whole, audit, bit | nr, *args)
                got = _strictest(
                    run_bpf(split.early, audit, bit | nr, *args),
                    run_bpf(split.late, audit, bit | nr, *args),
                )
                assert got == expected, (audit, nr, args)
    # The early part lets the setup's own calls through; the sum does not.
    mount = number("x86_64", "mount")
    assert run_bpf(split.early, AUDIT_X86_64, mount) == ALLOW
    if not caps:
        assert run_bpf(split.late, AUDIT_X86_64, mount) == EPERM


def test_profiles_that_cannot_be_split_exactly() -> None:
    assert (
        split_filter(allow_all_but(LinuxSyscall(names=("mount",), action="SCMP_ACT_ERRNO"))) is None
    )
    conditional = attrs.evolve(
        default(),
        syscalls=(
            *default().syscalls,
            LinuxSyscall(
                names=("unshare",),
                action="SCMP_ACT_ALLOW",
                args=(LinuxSeccompArg(index=0, value=0, op="SCMP_CMP_EQ"),),
            ),
        ),
    )
    assert split_filter(conditional) is None


def test_compiled_profiles_are_kept_on_disk(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = default()
    monkeypatch.setattr(seccomp, "_memory", {})  # as in a process that never compiled it
    first = seccomp.compile_profile(profile, str(tmp_path))
    assert first.whole == compile_filter(profile)
    assert first.split is not None
    (stored,) = list(tmp_path.iterdir())
    # A new process: nothing in memory, and libseccomp must not be needed again.
    monkeypatch.setattr(seccomp, "_memory", {})
    monkeypatch.setattr(seccomp, "compile_filter_cached", None)
    again = seccomp.compile_profile(profile, str(tmp_path))
    assert again == first
    # A damaged file is not trusted: compiled afresh (and written again).
    monkeypatch.undo()
    monkeypatch.setattr(seccomp, "_memory", {})
    stored.write_bytes(stored.read_bytes()[:-3])
    assert seccomp.compile_profile(profile, str(tmp_path)) == first
    assert seccomp._read_programs(str(stored)) is not None
    # Another profile, another file.
    seccomp.compile_profile(default("CAP_SYS_ADMIN"), str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2
