"""A BPF prologue that answers ENOSYS for system calls newer than a seccomp profile.

A profile names the system calls it knows; one that the kernel added later gets the
default action, usually EPERM. C libraries try a new call first and fall back to an older
one only on ENOSYS, so EPERM breaks them (glibc's ``clone3``, ``fchmodat2``...). Like
runc, the program is prefixed with a few instructions that, for each architecture of the
filter, return ENOSYS when the call number is above the highest one the profile names for
that architecture, and otherwise jump to libseccomp's program. Calls the profile names
are untouched, and ENOSYS never lets a call run. Classic BPF is described in
Documentation/networking/filter.rst, ``struct seccomp_data`` in seccomp(2).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

__all__ = ["AUDIT_ARCH_X86_64", "SCMP_ARCH_X32", "X32_SYSCALL_BIT", "enosys_prologue"]

AUDIT_ARCH_X86_64: Final = 0xC000003E
"""``seccomp_data.arch`` of both x86_64 and x32 processes."""
SCMP_ARCH_X32: Final = 0x4000003E
"""libseccomp's token for x32; every other token is the architecture's AUDIT_ARCH value."""
X32_SYSCALL_BIT: Final = 0x40000000
"""Set in the number of every x32 system call."""

# s390 multiplexes old calls through number 0, so a number says nothing there (runc
# leaves them out too); their calls go straight to libseccomp's program.
_SKIPPED: Final = frozenset({0x16, 0x80000016})

_LD_W_ABS: Final = 0x20
_JEQ_K: Final = 0x15
_JGT_K: Final = 0x25
_JSET_K: Final = 0x45
_JA: Final = 0x05
_RET_K: Final = 0x06
_OFFSET_NR: Final = 0
_OFFSET_ARCH: Final = 4
_RET_ENOSYS: Final = 0x00050000 | 38

# An instruction before its jumps are resolved: (code, k, true label, false label).
_Insn = tuple[int, int, str, str]


def _checks(maxima: Mapping[int, int]) -> list[_Insn]:
    """The per-architecture checks, jumping to labels ``enosys`` and ``program``."""
    insns: list[_Insn] = [(_LD_W_ABS, _OFFSET_ARCH, "", "")]
    audits = sorted({AUDIT_ARCH_X86_64 if t == SCMP_ARCH_X32 else t for t in maxima} - _SKIPPED)
    for n, audit in enumerate(audits):
        following = f"arch{n + 1}"
        insns.append((_JEQ_K, audit, "", following))
        insns.append((_LD_W_ABS, _OFFSET_NR, "", ""))
        if audit == AUDIT_ARCH_X86_64:
            insns.append((_JSET_K, X32_SYSCALL_BIT, "x32", ""))
            insns += _above(maxima.get(AUDIT_ARCH_X86_64))
            insns.append((-1, 0, "x32", ""))
            insns += _above(maxima.get(SCMP_ARCH_X32))
        else:
            insns += _above(maxima[audit])
        insns.append((-1, 0, following, ""))
    insns.append((_JA, 0, "program", ""))
    insns.append((-1, 0, "enosys", ""))
    insns.append((_RET_K, _RET_ENOSYS, "", ""))
    return insns


def _above(highest: int | None) -> list[_Insn]:
    if highest is None:
        return [(_JA, 0, "program", "")]
    return [(_JGT_K, highest, "enosys", ""), (_JA, 0, "program", "")]


def _assemble(insns: list[_Insn]) -> bytes:
    """Resolve the labels (pseudo-instructions with code -1) and pack the program."""
    labels: dict[str, int] = {}
    real: list[_Insn] = []
    for code, k, label, other in insns:
        if code == -1:
            labels[label] = len(real)
        else:
            real.append((code, k, label, other))
    labels["program"] = len(real)
    out = bytearray()
    for pc, (code, k, true, false) in enumerate(real):
        jt = labels[true] - pc - 1 if true else 0
        jf = labels[false] - pc - 1 if false else 0
        if code == _JA:
            out += struct.pack("=HBBI", code, 0, 0, jt)
            continue
        if not (0 <= jt <= 255 and 0 <= jf <= 255):  # pragma: no cover - a few dozen insns
            raise RuntimeError(f"seccomp prologue: jump out of range at {pc}")
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


def enosys_prologue(maxima: Mapping[int, int]) -> bytes:
    """Return the instructions to put before libseccomp's program.

    Args:
        maxima: for each libseccomp architecture token of the filter, the highest
            system call number the profile names on it (x32 numbers carry
            :data:`X32_SYSCALL_BIT`). Architectures left out get no check.

    Returns:
        The prologue, ``struct sock_filter`` items in host byte order; empty when no
        architecture can be checked.
    """
    if not set(maxima) - _SKIPPED:
        return b""
    return _assemble(_checks(maxima))
