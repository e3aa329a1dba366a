"""How the spawner words a cgroup failure and what it writes to a cgroup made ahead of time."""

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


def test_device_rules_written_ahead_of_time_are_not_written_again() -> None:
    from containerlib.linux.cgroups import CgroupLimits
    from containerlib.runtime.warm import Slot, limits_for

    rules = ((False, "a"), (True, "c 1:3 rwm"))
    slot = Slot("id", None, rules)  # type: ignore[arg-type]
    asked = CgroupLimits(memory=64 << 20, devices=rules)
    assert limits_for(slot, asked) == CgroupLimits(memory=64 << 20)
    # Other rules replace them (they start by denying everything)...
    other = CgroupLimits(devices=((False, "a"), (True, "c 1:5 rwm")))
    assert limits_for(slot, other) == other
    # ...and no rules at all give open access back.
    assert limits_for(slot, CgroupLimits()).devices == ((True, "a"),)
