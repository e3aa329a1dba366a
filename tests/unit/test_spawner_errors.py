"""How the spawner words a cgroup failure (the kernel calls are tested in integration)."""

from __future__ import annotations

import errno

from containerlib.runtime.spawner import _cgroup_detail


def test_a_driver_message_beyond_the_errno_is_kept() -> None:
    e = OSError(errno.ENOTSUP, "the v1 hugetlb controller is not mounted")
    assert _cgroup_detail(e) == "the v1 hugetlb controller is not mounted"


def test_the_errno_text_alone_adds_nothing() -> None:
    assert _cgroup_detail(OSError(errno.EBUSY, "Device or resource busy")) == ""


def test_no_permission_says_what_to_do() -> None:
    detail = _cgroup_detail(OSError(errno.EACCES, "Permission denied"))
    assert "run as root" in detail
    assert "CONTAINERLIB_CGROUP_PARENT" in detail
    named = _cgroup_detail(OSError(errno.EPERM, "mkdir /sys/fs/cgroup/memory/x: not permitted"))
    assert named.startswith("mkdir /sys/fs/cgroup/memory/x: not permitted; ")
