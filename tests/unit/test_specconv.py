"""From an OCI spec to the plan the forked child carries out: flags, masks, limits, refusals."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import attrs
import pytest

from containerlib.errors import SpecError
from containerlib.linux import syscalls as sc
from containerlib.linux.cgroups import CgroupLimits, DeviceValue
from containerlib.runtime import specconv
from containerlib.runtime.plan import HookStep, Plan
from containerlib.runtime.specconv import (
    Roots,
    check_id,
    hook_steps,
    mount_flags,
    plan_from_spec,
)
from containerlib.spec import oci
from containerlib.spec.defaults import DEFAULT_CAPABILITIES, default_spec

BASE = default_spec(terminal=False, args=("sh",))
ROOTS = Roots(run="/run/test-containerlib", data="/var/lib/test-containerlib", cgroup_parent="cl")

#: What Docker's 14 default capabilities are as a kernel bit mask.
DOCKER_CAPS_MASK = 0xA80425FB


def _plan(spec: oci.Spec = BASE, *, cid: str = "c1", roots: Roots = ROOTS) -> Plan:
    return plan_from_spec(
        spec, container_id=cid, lowerdirs=("/layers/top", "/layers/base"), roots=roots
    )


def _linux(spec: oci.Spec = BASE, **changes: Any) -> oci.Spec:
    assert spec.linux is not None
    return attrs.evolve(spec, linux=attrs.evolve(spec.linux, **changes))


def _process(spec: oci.Spec = BASE, **changes: Any) -> oci.Spec:
    assert spec.process is not None
    return attrs.evolve(spec, process=attrs.evolve(spec.process, **changes))


def _resources(**changes: Any) -> oci.Spec:
    assert BASE.linux is not None
    assert BASE.linux.resources is not None
    return _linux(resources=attrs.evolve(BASE.linux.resources, **changes))


def _namespaces(*types: str) -> tuple[oci.LinuxNamespace, ...]:
    return tuple(oci.LinuxNamespace(type=t) for t in types)


def _with_mount(mount: oci.Mount) -> tuple[oci.Spec, int]:
    return attrs.evolve(BASE, mounts=(*BASE.mounts, mount)), len(BASE.mounts)


# -- mount options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "flags"),
    [
        ((), 0),
        (("ro",), sc.MS_RDONLY),
        (("rw",), 0),
        (("ro", "rw"), 0),
        (("rw", "ro"), sc.MS_RDONLY),
        (("nosuid", "nodev", "noexec"), sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC),
        (("nosuid", "suid"), 0),
        (("noexec", "exec", "nodev", "dev"), 0),
        (("sync", "dirsync"), sc.MS_SYNCHRONOUS | sc.MS_DIRSYNC),
        (("noatime", "nodiratime"), sc.MS_NOATIME | sc.MS_NODIRATIME),
        (("relatime",), sc.MS_RELATIME),
        (("strictatime",), sc.MS_STRICTATIME),
        (("nosymfollow",), sc.MS_NOSYMFOLLOW),
        (("bind",), sc.MS_BIND),
        (("rbind",), sc.MS_BIND | sc.MS_REC),
        (("rbind", "ro", "nosuid"), sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY | sc.MS_NOSUID),
    ],
)
def test_mount_flag_options(options: tuple[str, ...], flags: int) -> None:
    assert mount_flags(options, "mounts[0].options") == (flags, 0, None)


@pytest.mark.parametrize(
    ("option", "propagation"),
    [
        ("private", sc.MS_PRIVATE),
        ("rprivate", sc.MS_PRIVATE | sc.MS_REC),
        ("shared", sc.MS_SHARED),
        ("rshared", sc.MS_SHARED | sc.MS_REC),
        ("slave", sc.MS_SLAVE),
        ("rslave", sc.MS_SLAVE | sc.MS_REC),
        ("unbindable", sc.MS_UNBINDABLE),
        ("runbindable", sc.MS_UNBINDABLE | sc.MS_REC),
    ],
)
def test_mount_propagation_options_are_kept_apart_from_the_flags(
    option: str, propagation: int
) -> None:
    assert mount_flags(("rbind", option), "m") == (sc.MS_BIND | sc.MS_REC, propagation, None)


def test_mount_data_options_are_joined_in_order() -> None:
    options = ("nosuid", "strictatime", "mode=755", "size=65536k", "gid=5")
    flags, propagation, data = mount_flags(options, "m")
    assert flags == sc.MS_NOSUID | sc.MS_STRICTATIME
    assert propagation == 0
    assert data == b"mode=755,size=65536k,gid=5"


def test_runc_only_options_are_not_passed_to_the_kernel() -> None:
    assert mount_flags(("tmpcopyup", "nodev", "defaults"), "m") == (sc.MS_NODEV, 0, None)
    assert mount_flags(("tmpcopyup",), "m") == (0, 0, None)


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
def test_id_mapped_mount_options_are_refused(option: str) -> None:
    with pytest.raises(SpecError, match=option) as info:
        mount_flags(("rbind", option), "mounts[3].options")
    assert info.value.field == "mounts[3].options"


# -- plan_from_spec: namespaces, paths, capabilities ---------------------------------------


def test_default_spec_namespaces_become_clone_flags() -> None:
    plan = _plan()
    assert plan.clone_flags == (
        sc.CLONE_NEWPID | sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS | sc.CLONE_NEWNS
    )
    assert plan.new_cgroupns is False
    assert plan.args == (b"sh",)
    assert plan.cwd == b"/"
    assert plan.env == (b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    assert plan.no_new_privileges is True
    assert plan.readonly_root is True
    assert plan.lowerdirs == ("/layers/top", "/layers/base")


def test_state_and_writable_layer_go_under_the_roots() -> None:
    plan = _plan(cid="abc")
    assert plan.container_id == "abc"
    assert plan.rootfs == "/var/lib/test-containerlib/containers/abc/rootfs"
    assert plan.rw_dir == "/var/lib/test-containerlib/containers/abc"


def test_cgroup_namespace_and_host_network() -> None:
    spec = _linux(namespaces=_namespaces("pid", "mount", "cgroup"))
    plan = _plan(attrs.evolve(spec, hostname=None))
    # No CLONE_NEWNET: the container uses the host's network.
    assert plan.clone_flags == sc.CLONE_NEWPID | sc.CLONE_NEWNS
    assert plan.new_cgroupns is True


def test_time_namespace_flag() -> None:
    plan = _plan(_linux(namespaces=_namespaces("mount", "uts", "time")))
    assert plan.clone_flags == sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWTIME


def test_a_mount_namespace_is_required() -> None:
    spec = _linux(namespaces=_namespaces("pid", "uts"))
    with pytest.raises(SpecError) as info:
        _plan(spec)
    assert info.value.field == "linux.namespaces"


def test_masked_and_readonly_paths_are_carried_over() -> None:
    assert BASE.linux is not None
    plan = _plan()
    assert plan.masked_paths == tuple(p.encode() for p in BASE.linux.masked_paths)
    assert b"/proc/kcore" in plan.masked_paths
    assert plan.readonly_paths == tuple(p.encode() for p in BASE.linux.readonly_paths)
    assert b"/proc/sys" in plan.readonly_paths


def test_docker_capabilities_become_the_docker_mask() -> None:
    caps = oci.LinuxCapabilities(
        bounding=DEFAULT_CAPABILITIES,
        effective=DEFAULT_CAPABILITIES,
        permitted=DEFAULT_CAPABILITIES,
        inheritable=(),
        ambient=(),
    )
    plan = _plan(_process(capabilities=caps))
    assert plan.cap_bounding == DOCKER_CAPS_MASK
    assert plan.cap_effective == DOCKER_CAPS_MASK
    assert plan.cap_permitted == DOCKER_CAPS_MASK
    assert plan.cap_inheritable == 0
    assert plan.cap_ambient == ()


def test_runc_template_capabilities_and_ambient_numbers() -> None:
    # runc spec keeps CAP_AUDIT_WRITE (29), CAP_KILL (5) and CAP_NET_BIND_SERVICE (10).
    plan = _plan()
    expected = (1 << 29) | (1 << 5) | (1 << 10)
    assert plan.cap_bounding == plan.cap_effective == plan.cap_permitted == expected
    assert sorted(plan.cap_ambient) == [5, 10, 29]


def test_hostname_is_set_only_with_a_uts_namespace() -> None:
    assert _plan().hostname == b"runc"
    no_uts = attrs.evolve(_linux(namespaces=_namespaces("pid", "mount")), hostname=None)
    assert _plan(no_uts).hostname is None
    # Asking for a hostname without a uts namespace would rename the host: refused.
    with pytest.raises(SpecError) as info:
        _plan(attrs.evolve(no_uts, hostname="box"))
    assert info.value.field == "hostname"


def test_user_and_rlimits() -> None:
    spec = _process(
        user=oci.User(uid=1000, gid=100, additional_gids=(10, 20), umask=0o027),
        rlimits=(oci.POSIXRlimit(type="RLIMIT_NOFILE", soft=512, hard=1024),),
        cwd="/work",
    )
    plan = _plan(spec)
    assert (plan.uid, plan.gid, plan.additional_gids, plan.umask) == (1000, 100, (10, 20), 0o027)
    assert plan.rlimits == ((7, 512, 1024),)  # RLIMIT_NOFILE is 7 on Linux
    assert plan.cwd == b"/work"


def test_unknown_rlimit_is_refused() -> None:
    spec = _process(rlimits=(oci.POSIXRlimit(type="RLIMIT_BOGUS", soft=1, hard=1),))
    with pytest.raises(SpecError, match="RLIMIT_BOGUS") as info:
        _plan(spec)
    assert info.value.field == "process.rlimits[0].type"


# -- cgroups --------------------------------------------------------------------------------


def test_cgroup_path_is_parent_slash_id_by_default() -> None:
    assert _plan(cid="3f2a").cgroup_path == "cl/3f2a"
    assert _plan(cid="3f2a", roots=Roots()).cgroup_path == "containerlib/3f2a"


def test_cgroups_path_of_the_spec_wins() -> None:
    assert _plan(_linux(cgroups_path="/ci/job-7")).cgroup_path == "ci/job-7"
    assert _plan(_linux(cgroups_path="mine/x")).cgroup_path == "mine/x"


def test_cgroups_path_leading_out_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        _plan(_linux(cgroups_path="/ci/../../etc"))
    assert info.value.field == "linux.cgroupsPath"


def test_memory_and_pids_limits() -> None:
    spec = _resources(
        memory=oci.LinuxMemory(limit=64 << 20, swap=128 << 20), pids=oci.LinuxPids(limit=32)
    )
    limits = _plan(spec).cgroup_limits
    assert (limits.memory, limits.memory_swap, limits.pids) == (64 << 20, 128 << 20, 32)


def test_minus_one_lifts_a_limit_and_zero_pids_leaves_it() -> None:
    spec = _resources(memory=oci.LinuxMemory(limit=-1, swap=-1), pids=oci.LinuxPids(limit=-1))
    limits = _plan(spec).cgroup_limits
    # No memory limit; swap and pids lifted ("max"), which in a new cgroup is the default.
    assert (limits.memory, limits.memory_swap, limits.pids) == (None, -1, -1)
    assert _plan(_resources(pids=oci.LinuxPids(limit=0))).cgroup_limits.pids is None
    quota = _resources(cpu=oci.LinuxCPU(quota=-1, period=100000))
    assert _plan(quota).cgroup_limits.cpu_quota == -1


def test_every_supported_resource_reaches_the_cgroup_driver() -> None:
    spec = _resources(
        memory=oci.LinuxMemory(limit=64 << 20, reservation=32 << 20, swap=128 << 20),
        cpu=oci.LinuxCPU(shares=512, quota=50000, period=100000, cpus="0-1", mems="0"),
        pids=oci.LinuxPids(limit=99),
        block_io=oci.LinuxBlockIO(
            weight=300,
            weight_device=(oci.LinuxWeightDevice(major=8, minor=0, weight=500),),
            throttle_read_bps_device=(oci.LinuxThrottleDevice(major=8, minor=0, rate=1 << 20),),
            throttle_write_bps_device=(oci.LinuxThrottleDevice(major=8, minor=16, rate=2 << 20),),
            throttle_read_iops_device=(oci.LinuxThrottleDevice(major=8, minor=0, rate=100),),
            throttle_write_iops_device=(oci.LinuxThrottleDevice(major=8, minor=0, rate=200),),
        ),
        hugepage_limits=(oci.LinuxHugepageLimit(page_size="2MB", limit=4 << 20),),
        network=oci.LinuxNetwork(
            class_id=0x100001, priorities=(oci.LinuxInterfacePriority(name="eth0", priority=5),)
        ),
    )
    limits = attrs.evolve(_plan(spec).cgroup_limits, devices=())
    assert limits == CgroupLimits(
        memory=64 << 20,
        memory_reservation=32 << 20,
        memory_swap=128 << 20,
        cpu_quota=50000,
        cpu_period=100000,
        cpu_shares=512,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        pids=99,
        blkio_weight=300,
        blkio_weight_device=(DeviceValue(8, 0, 500),),
        read_bps=(DeviceValue(8, 0, 1 << 20),),
        write_bps=(DeviceValue(8, 16, 2 << 20),),
        read_iops=(DeviceValue(8, 0, 100),),
        write_iops=(DeviceValue(8, 0, 200),),
        hugetlb=(("2MB", 4 << 20),),
        net_cls_classid=0x100001,
        net_prio_ifpriomap=(("eth0", 5),),
    )


def test_no_resources_no_limits() -> None:
    assert _plan(_linux(resources=None)).cgroup_limits == CgroupLimits()


def test_device_rules_deny_all_then_the_default_allow_list() -> None:
    rules = _plan().cgroup_limits.devices
    assert rules[0] == (False, "a")
    allowed = rules[1:]
    assert all(allow for allow, _ in allowed)
    for rule in ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm"):
        assert (True, rule) in allowed  # null, zero, full, random, urandom, tty
    assert (True, "c 136:* rwm") in allowed  # the pty slaves
    assert (True, "c 5:2 rwm") in allowed  # ptmx


def test_device_rules_of_the_spec_come_before_the_defaults() -> None:
    tun = oci.LinuxDeviceCgroup(allow=True, type="c", major=10, minor=200, access="rwm")
    any_block = oci.LinuxDeviceCgroup(allow=True, type="b", access="r")
    deny = oci.LinuxDeviceCgroup(allow=False, access="rwm")
    rules = _plan(_resources(devices=(deny, tun, any_block))).cgroup_limits.devices
    assert rules[:3] == ((False, "a"), (True, "c 10:200 rwm"), (True, "b *:* r"))
    assert (True, "c 1:3 rwm") in rules[3:]


# -- mounts and devices -------------------------------------------------------------------


def test_default_mounts_become_steps() -> None:
    steps = {m.target: m for m in _plan().mounts}
    proc = steps[b"/proc"]
    assert (proc.fstype, proc.source, proc.flags, proc.data) == (b"proc", b"proc", 0, None)
    dev = steps[b"/dev"]
    assert dev.fstype == b"tmpfs"
    assert dev.flags == sc.MS_NOSUID | sc.MS_STRICTATIME
    assert dev.data == b"mode=755,size=65536k"
    sysfs = steps[b"/sys"]
    assert sysfs.flags == sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV | sc.MS_RDONLY
    cgroup = steps[b"/sys/fs/cgroup"]
    assert cgroup.cgroup is True
    assert cgroup.flags & sc.MS_RDONLY


def test_a_tmpfs_dev_gets_the_default_device_nodes() -> None:
    plan = _plan()
    assert {d.path: (d.major, d.minor) for d in plan.devices} == {
        b"null": (1, 3),
        b"zero": (1, 5),
        b"full": (1, 7),
        b"random": (1, 8),
        b"urandom": (1, 9),
        b"tty": (5, 0),
    }
    assert (b"/proc/self/fd", b"fd") in plan.dev_symlinks


def test_bind_mount_of_a_directory(tmp_path: Path) -> None:
    spec, i = _with_mount(
        oci.Mount(destination="/data", type="bind", source=str(tmp_path), options=("rbind", "ro"))
    )
    step = _plan(spec).mounts[i]
    assert step.target == b"/data"
    assert step.source == os.fsencode(tmp_path)
    assert step.fstype is None
    assert step.flags == sc.MS_BIND | sc.MS_REC
    # Bind mounts ignore flags on the first call: a remount applies them.
    assert step.remount_flags == sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY
    assert step.is_file is False


def test_read_write_bind_mount_needs_no_remount(tmp_path: Path) -> None:
    spec, i = _with_mount(
        oci.Mount(destination="/data", source=str(tmp_path), options=("bind", "rw"))
    )
    step = _plan(spec).mounts[i]
    assert step.flags == sc.MS_BIND
    assert step.remount_flags is None


def test_bind_mount_of_a_file(tmp_path: Path) -> None:
    f = tmp_path / "resolv.conf"
    f.write_text("nameserver 127.0.0.1\n")
    spec, i = _with_mount(
        oci.Mount(
            destination="/etc/resolv.conf",
            type="bind",
            source=str(f),
            options=("rbind", "nosuid", "ro"),
        )
    )
    step = _plan(spec).mounts[i]
    assert step.is_file is True
    assert step.remount_flags == sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID


def test_bind_mount_of_a_missing_source_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    spec, i = _with_mount(
        oci.Mount(destination="/data", type="bind", source=str(missing), options=("rbind",))
    )
    with pytest.raises(FileNotFoundError) as info:
        _plan(spec)
    assert info.value.errno == errno.ENOENT
    assert str(missing) in str(info.value)
    assert f"mounts[{i}].source" in str(info.value)


def test_bind_mount_of_a_relative_source_is_refused() -> None:
    spec, i = _with_mount(
        oci.Mount(destination="/data", type="bind", source="data", options=("rbind",))
    )
    with pytest.raises(SpecError) as info:
        _plan(spec)
    assert info.value.field == f"mounts[{i}].source"


def test_mount_without_type_that_is_no_bind_mount_is_refused() -> None:
    spec, i = _with_mount(oci.Mount(destination="/data", source="somewhere"))
    with pytest.raises(SpecError) as info:
        _plan(spec)
    assert info.value.field == f"mounts[{i}].type"


def test_devices_of_the_spec_become_nodes() -> None:
    dev = oci.LinuxDevice(path="/dev/fuse", type="c", major=10, minor=229, file_mode=0o600)
    plan = _plan(_linux(devices=(dev,)))
    fuse = [d for d in plan.devices if d.path == b"fuse"]
    assert len(fuse) == 1
    assert (fuse[0].major, fuse[0].minor, fuse[0].mode & 0o7777) == (10, 229, 0o600)


def test_device_outside_dev_is_refused() -> None:
    dev = oci.LinuxDevice(path="/etc/shadow", type="c", major=1, minor=3)
    with pytest.raises(SpecError) as info:
        _plan(_linux(devices=(dev,)))
    assert info.value.field == "linux.devices[0].path"


# -- what the runtime cannot do yet is refused, never dropped ------------------------------


UNSUPPORTED = {
    "hooks": attrs.evolve(BASE, hooks=oci.Hooks(prestart=(oci.Hook(path="/bin/true"),))),
    "process.apparmorProfile": _process(apparmor_profile="docker-default"),
    "process.selinuxLabel": _process(selinux_label="system_u:system_r:container_t:s0"),
    "process.ioPriority": _process(
        io_priority=oci.LinuxIOPriority(class_="IOPRIO_CLASS_RT", priority=1)
    ),
    "linux.seccomp.listenerPath": _linux(
        seccomp=oci.LinuxSeccomp(default_action="SCMP_ACT_ALLOW", listener_path="/run/s.sock")
    ),
    # A PID namespace joined holds only the process's children: not done.
    "linux.namespaces[0].path": _linux(
        namespaces=(
            oci.LinuxNamespace(type="pid", path="/proc/1/ns/pid"),
            oci.LinuxNamespace(type="network"),
            oci.LinuxNamespace(type="mount"),
            oci.LinuxNamespace(type="uts"),
        )
    ),
    "linux.personality": _linux(personality=oci.LinuxPersonality(domain="LINUX32")),
    "linux.resources.cpu.realtimeRuntime": _resources(cpu=oci.LinuxCPU(realtime_runtime=950)),
    "linux.resources.cpu.burst": _resources(cpu=oci.LinuxCPU(quota=50000, burst=1000)),
    "linux.resources.blockIO.leafWeight": _resources(
        block_io=oci.LinuxBlockIO(weight=300, leaf_weight=200)
    ),
    "linux.resources.memory.kernel": _resources(memory=oci.LinuxMemory(kernel=64 << 20)),
    "linux.resources.memory.swappiness": _resources(memory=oci.LinuxMemory(swappiness=10)),
}


@pytest.mark.parametrize("field", sorted(UNSUPPORTED))
def test_unsupported_fields_are_refused_by_name(field: str) -> None:
    with pytest.raises(SpecError) as info:
        _plan(UNSUPPORTED[field])
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def _joining(*extra: oci.LinuxNamespace) -> oci.Spec:
    return _linux(
        namespaces=(
            oci.LinuxNamespace(type="pid"),
            oci.LinuxNamespace(type="network", path="/proc/42/ns/net"),
            oci.LinuxNamespace(type="mount"),
            oci.LinuxNamespace(type="uts", path="/run/uts/x"),
            *extra,
        )
    )


def test_namespaces_with_a_path_are_joined_not_made() -> None:
    plan = _plan(_joining(oci.LinuxNamespace(type="ipc")))
    assert plan.namespace_paths == (
        (sc.CLONE_NEWNET, "/proc/42/ns/net"),
        (sc.CLONE_NEWUTS, "/run/uts/x"),
    )
    assert plan.clone_flags == sc.CLONE_NEWPID | sc.CLONE_NEWNS | sc.CLONE_NEWIPC
    # As runc: the hostname is set in a joined uts namespace too.
    assert BASE.hostname
    assert plan.hostname == BASE.hostname.encode()


def test_a_mount_namespace_cannot_be_joined() -> None:
    mount = oci.LinuxNamespace(type="mount", path="/proc/1/ns/mnt")
    spec = _linux(namespaces=(mount, oci.LinuxNamespace(type="uts")))
    with pytest.raises(SpecError) as info:
        _plan(spec)
    assert info.value.field == "linux.namespaces[0].path"
    assert "joining a mount namespace by path is not supported" in str(info.value)


def test_a_user_namespace_of_its_own_cannot_join() -> None:
    user = oci.LinuxNamespace(type="user")
    maps = (oci.LinuxIDMapping(container_id=0, host_id=100000, size=65536),)
    spec = _linux(_joining(user), uid_mappings=maps, gid_mappings=maps)
    with pytest.raises(SpecError) as info:
        _plan(spec)
    assert info.value.field == "linux.namespaces[1].path"
    assert "only namespaces that its user namespace owns" in str(info.value)


def test_swappiness_zero_is_refused_too() -> None:
    with pytest.raises(SpecError) as info:
        _plan(_resources(memory=oci.LinuxMemory(swappiness=0)))
    assert info.value.field == "linux.resources.memory.swappiness"


def test_empty_hooks_object_asks_for_nothing() -> None:
    doc = BASE.to_dict()
    doc["hooks"] = {}
    assert _plan(oci.Spec.from_dict(doc)).args == (b"sh",)


# -- ids and roots --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cid", ["a", "3f2a9c", "web-1", "job_7.retry+2", "A" * 128, "0", "a..b", "x."]
)
def test_check_id_accepts(cid: str) -> None:
    assert check_id(cid) == cid


@pytest.mark.parametrize(
    "cid",
    ["", ".", "..", ".hidden", "-rf", "a/b", "../etc", "a b", "a\n", "a\0", "é", "A" * 129],
)
def test_check_id_rejects(cid: str) -> None:
    with pytest.raises(SpecError) as info:
        check_id(cid)
    assert info.value.field == "id"
    assert repr(cid) in str(info.value)


def test_check_id_rejects_what_is_no_string() -> None:
    with pytest.raises(SpecError):
        check_id(42)  # type: ignore[arg-type]


def test_plan_from_spec_checks_the_id() -> None:
    with pytest.raises(SpecError) as info:
        _plan(cid="../../etc")
    assert info.value.field == "id"


def test_roots_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONTAINERLIB_RUN_ROOT", "CONTAINERLIB_DATA_ROOT", "CONTAINERLIB_CGROUP_PARENT"):
        monkeypatch.delenv(name, raising=False)
    assert Roots.from_env() == Roots(
        run="/run/containerlib", data="/var/lib/containerlib", cgroup_parent="containerlib"
    )


def test_roots_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONTAINERLIB_RUN_ROOT", str(tmp_path / "run"))
    monkeypatch.setenv("CONTAINERLIB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("CONTAINERLIB_CGROUP_PARENT", "ci/containerlib")
    roots = Roots.from_env()
    assert roots == Roots(
        run=str(tmp_path / "run"), data=str(tmp_path / "data"), cgroup_parent="ci/containerlib"
    )
    assert _plan(cid="x", roots=roots).cgroup_path == "ci/containerlib/x"


@pytest.mark.parametrize("name", ["CONTAINERLIB_RUN_ROOT", "CONTAINERLIB_DATA_ROOT"])
def test_relative_root_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "relative/dir")
    with pytest.raises(SpecError) as info:
        Roots.from_env()
    assert info.value.field == name


def test_a_terminal_and_its_size_reach_the_plan() -> None:
    spec = default_spec(args=("sh",))  # runc spec's template asks for a terminal
    assert spec.process is not None
    sized = attrs.evolve(
        spec, process=attrs.evolve(spec.process, console_size=oci.Box(height=24, width=80))
    )
    plan = _plan(sized)
    assert (plan.terminal, plan.console_width, plan.console_height) == (True, 80, 24)
    assert not _plan(BASE).terminal


def test_hook_steps_carry_path_args_env_and_timeout() -> None:
    hooks = (
        oci.Hook(path="/usr/bin/h", args=("h", "--now"), env=("A=1", "B="), timeout=7),
        oci.Hook(path="/bin/true"),
    )
    assert hook_steps(hooks) == (
        HookStep(path=b"/usr/bin/h", args=(b"h", b"--now"), env=(b"A=1", b"B="), timeout=7),
        HookStep(path=b"/bin/true", args=(), env=(), timeout=0),  # no timeout: 0
    )


def test_a_hook_timeout_past_the_plan_format_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        hook_steps((oci.Hook(path="/bin/true"), oci.Hook(path="/bin/x", timeout=2**32)))
    assert info.value.field == "hooks[1].timeout"


def test_plan_from_spec_still_refuses_hooks() -> None:
    # The spawner's path has no hooks: only containerlib-runtime runs them.
    hooked = attrs.evolve(BASE, hooks=oci.Hooks(start_container=(oci.Hook(path="/bin/true"),)))
    with pytest.raises(SpecError) as info:
        _plan(hooked)
    assert info.value.field == "hooks"


def test_the_hook_steps_example() -> None:
    import doctest

    assert doctest.testmod(specconv).failed == 0
