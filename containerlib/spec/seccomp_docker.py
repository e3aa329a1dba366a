"""Docker's seccomp profile format, resolved to an OCI :class:`LinuxSeccomp`.

Docker's profiles (``docker run --security-opt seccomp=profile.json``) extend the OCI
``linux.seccomp`` object with rules that apply only on some hosts or to some containers:
each rule may carry ``includes`` and ``excludes`` conditions on the container's
capabilities, the host's architecture and its kernel version, and ``archMap`` lists the
architectures to filter, by host architecture. Resolving a profile for one container on
one host keeps the rules whose conditions hold and gives a plain OCI profile, which
:func:`containerlib.linux.seccomp.compile_filter` compiles. See seccomp(2) and Docker's
"Seccomp security profiles" page.

Example:
    >>> profile = load_profile(
    ...     {
    ...         "defaultAction": "SCMP_ACT_ERRNO",
    ...         "syscalls": [
    ...             {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
    ...             {"name": "mount", "action": "SCMP_ACT_ALLOW",
    ...              "includes": {"caps": ["CAP_SYS_ADMIN"]}},
    ...         ],
    ...     },
    ...     capabilities=["CAP_CHOWN"],
    ... )
    >>> [rule.names for rule in profile.syscalls]
    [('read', 'write')]
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import attrs

from containerlib.errors import SpecError
from containerlib.spec._oci_fields import as_tuple
from containerlib.spec.oci_linux import LinuxSeccomp, LinuxSyscall

__all__ = [
    "ConditionalRule",
    "RuleCondition",
    "host_architecture",
    "host_kernel",
    "load_profile",
    "resolve_profile",
]

# The architecture names Docker's ``includes``/``excludes`` use (Go's, mostly), by the
# ``SCMP_ARCH_*`` name of the same architecture.
_DOCKER_ARCH: Final = {
    "SCMP_ARCH_X86_64": "amd64",
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_AARCH64": "arm64",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loong64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
}

# uname(2)'s machine field, by the ``SCMP_ARCH_*`` name of the architecture.
_MACHINES: Final = {
    "x86_64": "SCMP_ARCH_X86_64",
    "amd64": "SCMP_ARCH_X86_64",
    "i386": "SCMP_ARCH_X86",
    "i486": "SCMP_ARCH_X86",
    "i586": "SCMP_ARCH_X86",
    "i686": "SCMP_ARCH_X86",
    "aarch64": "SCMP_ARCH_AARCH64",
    "arm64": "SCMP_ARCH_AARCH64",
    "armv6l": "SCMP_ARCH_ARM",
    "armv7l": "SCMP_ARCH_ARM",
    "armv8l": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "ppc64": "SCMP_ARCH_PPC64",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
    "loongarch64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
}

_KERNEL: Final = re.compile(r"(\d+)\.(\d+)")


def host_architecture() -> str:
    """Return this host's architecture as an ``SCMP_ARCH_*`` name (``SCMP_ARCH_X86_64``).

    Raises:
        SpecError: uname(2) reports a machine this module has no name for.
    """
    machine = platform.machine()
    if machine not in _MACHINES:
        raise SpecError("architecture", f"unknown host machine {machine!r}")
    return _MACHINES[machine]


def host_kernel() -> tuple[int, int]:
    """Return the running kernel's version and major revision, ``(6, 8)`` for 6.8.12."""
    return _parse_kernel(os.uname().release, "kernel")


def _parse_kernel(text: str, field: str) -> tuple[int, int]:
    found = _KERNEL.match(text)
    if found is None:
        raise SpecError(field, f"must be a kernel version like '4.8', not {text!r}")
    return (int(found[1]), int(found[2]))


@attrs.frozen(kw_only=True)
class RuleCondition:
    """Docker's ``includes``/``excludes``: capabilities, architectures, a kernel version.

    Attributes:
        caps: capability names (``CAP_SYS_ADMIN``).
        arches: architectures in Docker's names (``amd64``, ``arm64``, ``s390x``).
        min_kernel: the lowest ``(version, major revision)`` of the kernel, or ``None``.
    """

    caps: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    arches: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    min_kernel: tuple[int, int] | None = None


@attrs.frozen(kw_only=True)
class ConditionalRule:
    """An OCI seccomp rule that applies only when ``includes`` holds and ``excludes`` not.

    Attributes:
        rule: the rule as it goes into the resolved profile.
        includes: every part must hold: all its caps held, the host's arch listed and
            the kernel at least ``min_kernel``.
        excludes: the rule is left out if any part holds: any of its caps held, the
            host's arch listed, or the kernel at least ``min_kernel``.
    """

    rule: LinuxSyscall
    includes: RuleCondition | None = None
    excludes: RuleCondition | None = None

    def applies(self, caps: Collection[str], arch: str, kernel: tuple[int, int]) -> bool:
        """Whether the rule applies to a container holding ``caps`` on this host.

        Args:
            caps: the container's (bounding) capabilities, as ``CAP_*`` names.
            arch: the host's architecture in Docker's names (``amd64``).
            kernel: the host kernel's ``(version, major revision)``.

        Returns:
            True when the rule belongs in the resolved profile.
        """
        if (ex := self.excludes) is not None:
            if arch in ex.arches or any(c in caps for c in ex.caps):
                return False
            if ex.min_kernel is not None and kernel >= ex.min_kernel:
                return False
        if (inc := self.includes) is not None:
            if inc.arches and arch not in inc.arches:
                return False
            if not all(c in caps for c in inc.caps):
                return False
            if inc.min_kernel is not None and kernel < inc.min_kernel:
                return False
        return True


def _capability_set(capabilities: Collection[str]) -> frozenset[str]:
    if isinstance(capabilities, str):
        raise SpecError("capabilities", "must be a collection of names, not a string")
    names = set()
    for cap in capabilities:
        if not isinstance(cap, str) or not cap:
            raise SpecError("capabilities", f"must hold capability names, not {cap!r}")
        upper = cap.upper()
        names.add(upper if upper.startswith("CAP_") else f"CAP_{upper}")
    return frozenset(names)


def resolve_profile(
    base: LinuxSeccomp,
    rules: Sequence[ConditionalRule],
    capabilities: Collection[str],
    *,
    arch_map: Mapping[str, Sequence[str]] | None = None,
    architecture: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> LinuxSeccomp:
    """Keep the ``rules`` that apply to a container with ``capabilities`` on this host.

    Args:
        base: the profile's default action, errno, flags and architectures.
        rules: the rules with their conditions, in order.
        capabilities: the container's capabilities (``CAP_SYS_ADMIN`` or ``SYS_ADMIN``).
        arch_map: Docker's ``archMap``: for a host architecture, the sub-architectures to
            filter too. When given, the profile's architectures are the host's entry.
        architecture: the host architecture as an ``SCMP_ARCH_*`` name; this host's when
            omitted.
        kernel: the host kernel's ``(version, major revision)``; the running one's when
            omitted.

    Returns:
        ``base`` with the rules that apply and, given an ``arch_map``, its architectures.

    Raises:
        SpecError: an unknown architecture or a bad capability list.
    """
    caps = _capability_set(capabilities)
    scmp_arch = architecture if architecture is not None else host_architecture()
    if scmp_arch not in _DOCKER_ARCH:
        raise SpecError("architecture", f"unknown architecture {scmp_arch!r}")
    arch = _DOCKER_ARCH[scmp_arch]
    version = kernel if kernel is not None else host_kernel()
    kept = tuple(r.rule for r in rules if r.applies(caps, arch, version))
    if arch_map is None:
        return attrs.evolve(base, syscalls=kept)
    arches: tuple[str, ...] = ()
    if scmp_arch in arch_map:
        arches = (scmp_arch, *arch_map[scmp_arch])
    return attrs.evolve(base, syscalls=kept, architectures=arches)


def _strings(raw: Any, field: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or not all(isinstance(s, str) for s in raw):
        raise SpecError(field, f"must be a list of strings, not {raw!r}")
    return tuple(raw)


def _condition(raw: Any, field: str) -> RuleCondition | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError(field, f"must be an object, not {type(raw).__name__}")
    unknown = set(raw) - {"caps", "arches", "minKernel"}
    if unknown:
        raise SpecError(f"{field}.{sorted(unknown)[0]}", "is not a condition Docker knows")
    min_kernel = None
    if raw.get("minKernel") not in (None, ""):
        text = raw["minKernel"]
        if not isinstance(text, str) or not re.fullmatch(r"\d+\.\d+", text):
            raise SpecError(f"{field}.minKernel", f"must be like '4.8', not {text!r}")
        min_kernel = _parse_kernel(text, f"{field}.minKernel")
    return RuleCondition(
        caps=_strings(raw.get("caps"), f"{field}.caps"),
        arches=_strings(raw.get("arches"), f"{field}.arches"),
        min_kernel=min_kernel,
    )


def _rule(raw: Any, field: str) -> ConditionalRule:
    if not isinstance(raw, Mapping):
        raise SpecError(field, f"must be an object, not {type(raw).__name__}")
    oci = {k: v for k, v in raw.items() if k not in ("name", "comment", "includes", "excludes")}
    if raw.get("name"):
        if raw.get("names"):
            raise SpecError(f"{field}.name", "must not be given with 'names'")
        oci["names"] = [raw["name"]]
    if "comment" in raw and not isinstance(raw["comment"], str):
        raise SpecError(f"{field}.comment", "must be a string")
    return ConditionalRule(
        rule=LinuxSyscall.load_at(oci, field),
        includes=_condition(raw.get("includes"), f"{field}.includes"),
        excludes=_condition(raw.get("excludes"), f"{field}.excludes"),
    )


def _arch_map(raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, list | tuple):
        raise SpecError("archMap", f"must be a list, not {type(raw).__name__}")
    out = {}
    for i, entry in enumerate(raw):
        field = f"archMap[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("architecture"), str):
            raise SpecError(f"{field}.architecture", "is required and must be a string")
        out[entry["architecture"]] = _strings(
            entry.get("subArchitectures"), f"{field}.subArchitectures"
        )
    return out


def load_profile(
    data: Mapping[str, Any] | str | bytes,
    capabilities: Collection[str],
    *,
    architecture: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> LinuxSeccomp:
    """Read a seccomp profile in Docker's format (or the plain OCI one) for a container.

    Docker's additions are resolved: ``name`` is a one-name ``names``, ``archMap``
    gives the architectures of the host's entry, and rules whose ``includes`` do not
    hold (or whose ``excludes`` do) for ``capabilities`` on this host are left out;
    ``comment`` is dropped. A profile in the OCI format comes back as it is.

    Args:
        data: the profile: JSON text or bytes, or the object :func:`json.loads` made.
        capabilities: the container's capabilities, ``CAP_*`` names.
        architecture: the host architecture as an ``SCMP_ARCH_*`` name; this host's
            when omitted.
        kernel: the host kernel's ``(version, major revision)``; the running one's when
            omitted.

    Returns:
        The resolved profile, ready for :func:`containerlib.linux.seccomp.compile_filter`.

    Raises:
        SpecError: the data is not JSON or not a valid profile; ``field`` is the JSON
            path of the bad value, for example ``syscalls[3].includes.minKernel``.
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as e:
            raise SpecError("", f"the seccomp profile is not JSON: {e}") from None
    if not isinstance(data, Mapping):
        raise SpecError("", f"a seccomp profile must be a JSON object, not {type(data).__name__}")
    top = {k: v for k, v in data.items() if k not in ("syscalls", "archMap")}
    arch_map = None
    if data.get("archMap"):
        if data.get("architectures"):
            raise SpecError("archMap", "must not be given with 'architectures'")
        arch_map = _arch_map(data["archMap"])
    base = LinuxSeccomp.load_at(top, "")
    raw_rules = data.get("syscalls") or []
    if not isinstance(raw_rules, list | tuple):
        raise SpecError("syscalls", f"must be a list, not {type(raw_rules).__name__}")
    rules = [_rule(raw, f"syscalls[{i}]") for i, raw in enumerate(raw_rules)]
    return resolve_profile(
        base, rules, capabilities, arch_map=arch_map, architecture=architecture, kernel=kernel
    )
