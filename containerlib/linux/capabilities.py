"""Linux capability names and numbers.

Root's power is split into capabilities (capabilities(7)); a process carries five sets of
them: bounding, permitted, effective, inheritable and ambient. This module maps the names
used by the OCI spec (``CAP_CHOWN``) to the bit numbers the kernel uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["CAPABILITIES", "last_cap", "mask"]

CAPABILITIES: Final = {
    name: number
    for number, name in enumerate(
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        ]
    )
}


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def mask(names: Iterable[str], field: str = "capabilities") -> int:
    """Turn ``CAP_*`` names into a bit mask.

    Raises:
        ValueError: an unknown name; the message names ``field`` and the value.
    """
    bits = 0
    for name in names:
        number = CAPABILITIES.get(name.upper().removeprefix("CAP_"))
        if number is None:
            raise ValueError(f"{field}: unknown capability {name!r}")
        bits |= 1 << number
    return bits
