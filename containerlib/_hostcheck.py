"""Can this host run containerlib's containers? A quick look, with what to change.

A container needs namespaces (for a non-root user, a user namespace first: see
user_namespaces(7)), overlayfs for its root file system (the kernel's
``Documentation/filesystems/overlayfs.rst``) and, for root, cgroups (cgroups(7)). Each check
reads a file under ``/proc`` or ``/sys``, but for a non-root user's, which starts one small
process that makes a user namespace: the sysctls do not tell everything (an AppArmor
policy, the seccomp filter of an outer container). The pytest plugin asks once per session
and skips, with the answer as the reason, the tests that need containers.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["host_problems"]

_CAP_SYS_ADMIN = 21
_CLONE_NEWUSER = 0x10000000

# Run by a fresh interpreter as the user: make a user namespace and map the user in it,
# as a rootless container's first step does. Exits with the errno of the step that failed.
_USERNS_PROBE = f"""
import ctypes, os, sys
uid = os.geteuid()
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare({_CLONE_NEWUSER}) != 0:
    sys.exit(ctypes.get_errno())
try:
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {{uid}} 1")
except OSError as e:
    sys.exit(100 + (e.errno or 0))
"""


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _effective_caps() -> int:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _has_overlayfs() -> bool:
    if "\toverlay\n" in (_read("/proc/filesystems") or ""):
        return True
    # Not loaded yet: the kernel loads the module at the first overlay mount.
    release = os.uname().release
    return Path(f"/lib/modules/{release}/kernel/fs/overlayfs").is_dir()


def _userns_problem() -> str | None:
    if (_read("/proc/sys/user/max_user_namespaces") or "").strip() == "0":
        return "user namespaces are disabled (sysctl user.max_user_namespaces=0)"
    if (_read("/proc/sys/kernel/unprivileged_userns_clone") or "").strip() == "0":
        return (
            "user namespaces are disabled for non-root users "
            "(sysctl kernel.unprivileged_userns_clone=0)"
        )
    if (_read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") or "").strip() == "1":
        return (
            "AppArmor restricts user namespaces for non-root users "
            "(sysctl kernel.apparmor_restrict_unprivileged_userns=1)"
        )
    return _userns_problem_by_trying()


def _userns_problem_by_trying() -> str | None:
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _USERNS_PROBE],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not test for user namespaces: {e}"
    if done.returncode == 0:
        return None
    step, code = ("map the user into it", done.returncode - 100)
    if done.returncode < 100:
        step, code = ("make one", done.returncode)
    reason = os.strerror(code) if code > 0 else f"exit status {done.returncode}"
    return f"a non-root user cannot use user namespaces here ({step}: {reason})"


@functools.cache
def host_problems(*, root: bool = False) -> tuple[str, ...]:
    """Why this host cannot run containers for this process; empty if it can. Looked at
    once per process.

    Args:
        root: the containers need root (bridge networks, joined namespaces): a non-root
            user is a problem too.

    Returns:
        One sentence per problem, saying what to change.

    Example:
        >>> host_problems(root=True) if os.geteuid() != 0 else ("needs root",)  # doctest: +SKIP
        ('needs root, and this process runs as uid 65534',)
    """
    if sys.platform != "linux":
        return (f"containerlib runs containers on Linux only, not on {sys.platform}",)
    found: list[str] = []
    euid = os.geteuid()
    if root and euid != 0:
        found.append(f"needs root, and this process runs as uid {euid}")
    if euid == 0 and not (_effective_caps() >> _CAP_SYS_ADMIN) & 1:
        found.append(
            "root without CAP_SYS_ADMIN (inside an unprivileged container?) cannot make "
            "namespaces or mounts: give it the capability, or run as a non-root user"
        )
    if not _has_overlayfs():
        found.append("the kernel has no overlayfs: load it with modprobe overlay")
    if euid == 0 and not any(Path("/sys/fs/cgroup").glob("*")):
        found.append("no cgroup file system is mounted on /sys/fs/cgroup")
    if euid != 0 and not root:
        problem = _userns_problem()
        if problem is not None:
            found.append(problem)
    return tuple(found)
