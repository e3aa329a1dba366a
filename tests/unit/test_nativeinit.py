"""The native init helper's plan format, tested against the real C parser.

``clib-init --dump`` decodes a plan from stdin and prints it as JSON; each test encodes a
:class:`~containerlib.runtime.plan.Plan` with :func:`nativeinit.encode`, has the helper
decode it, and compares. Malformed input must be refused with exit code 125 and a message
naming what is wrong. No privilege needed; the helper is compiled with the machine's ``cc``.
"""

from __future__ import annotations

import doctest
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from containerlib.linux import syscalls as sc
from containerlib.runtime import nativeinit
from containerlib.runtime.plan import DeviceStep, HookStep, MountStep, Plan

SETUP_FAILED = 125


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> str:
    if nativeinit._find_compiler() is None:
        pytest.skip("no C compiler (cc or gcc) on this machine")
    return nativeinit.build(str(tmp_path_factory.mktemp("helpers") / "helpers"))


def dump(helper: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([helper, "--dump"], input=data, capture_output=True, check=False)


def decode(helper: str, data: bytes) -> Any:
    done = dump(helper, data)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _s(value: bytes | None) -> str | None:
    """Bytes as --dump writes them: each byte one code point (latin-1)."""
    return None if value is None else value.decode("latin-1")


def expected(
    plan: Plan,
    procs_files: list[str],
    have_cgroup2: bool,
    last_cap: int,
    premounted: bool = False,
) -> Any:
    """What --dump must print for ``plan``, written from the Plan's fields."""
    env: dict[bytes, bytes] = {}
    for item in plan.env:
        key, _, value = item.partition(b"=")
        env[key] = value
    return {
        "rootfs": plan.rootfs,
        "rw_dir": plan.rw_dir,
        "lowerdirs": list(plan.lowerdirs),
        "readonly_root": plan.readonly_root,
        "rootfs_propagation": plan.rootfs_propagation,
        "new_cgroupns": plan.new_cgroupns,
        "namespace_paths": [[flag, path] for flag, path in plan.namespace_paths],
        "join_fds": False,
        "mounts": [
            {
                "target": _s(m.target),
                "source": _s(m.source),
                "fstype": _s(m.fstype),
                "flags": m.flags,
                "data": _s(m.data),
                "remount_flags": m.remount_flags,
                "propagation": m.propagation,
                "is_file": m.is_file,
                "cgroup": m.cgroup,
            }
            for m in plan.mounts
        ],
        "devices": [
            {
                "path": _s(d.path),
                "mode": d.mode,
                "major": d.major,
                "minor": d.minor,
                "uid": d.uid,
                "gid": d.gid,
            }
            for d in plan.devices
        ],
        "dev_symlinks": [[_s(a), _s(b)] for a, b in plan.dev_symlinks],
        "masked_paths": [_s(p) for p in plan.masked_paths],
        "readonly_paths": [_s(p) for p in plan.readonly_paths],
        "hostname": _s(plan.hostname),
        "domainname": _s(plan.domainname),
        "sysctl": [[_s(k), _s(v)] for k, v in plan.sysctl],
        "uid": plan.uid,
        "gid": plan.gid,
        "additional_gids": list(plan.additional_gids),
        "umask": plan.umask,
        "rlimits": [
            [r, s % 2**64, h % 2**64]  # -1, Python's RLIM_INFINITY, is all ones
            for r, s, h in plan.rlimits
        ],
        "no_new_privileges": plan.no_new_privileges,
        "cap_bounding": plan.cap_bounding,
        "cap_effective": plan.cap_effective,
        "cap_permitted": plan.cap_permitted,
        "cap_inheritable": plan.cap_inheritable,
        "cap_ambient": list(plan.cap_ambient),
        "oom_score_adj": plan.oom_score_adj,
        "cwd": _s(plan.cwd),
        "args": [_s(a) for a in plan.args],
        "env": [_s(k + b"=" + v) for k, v in env.items()],
        "procs_files": procs_files,
        "have_cgroup2": have_cgroup2,
        "last_cap": last_cap,
        "premounted": premounted,
        "seccomp_flags": plan.seccomp_flags,
        "seccomp_len": len(plan.seccomp or b""),
        "user": _s(plan.user),
        "set_home": plan.set_home,
        "userns": bool(plan.clone_flags & sc.CLONE_NEWUSER),
        "setgroups": True,
        "rootfs_fd": False,
        "join_flags": 0,
        "bind_root": plan.bind_root,
        "exec_fifo": plan.exec_fifo,
        "terminal": plan.terminal,
        "console_width": plan.console_width,
        "console_height": plan.console_height,
        "init": plan.init,
        "pause_for_hooks": plan.pause_for_hooks,
        "create_container_hooks": _hooks(plan.create_container_hooks),
        "create_state": _s(plan.create_state),
        "start_container_hooks": _hooks(plan.start_container_hooks),
        "start_state": _s(plan.start_state),
    }


def _hooks(hooks: tuple[HookStep, ...]) -> list[dict[str, Any]]:
    return [
        {
            "path": _s(h.path),
            "argv": [_s(a) for a in h.args] or [_s(h.path)],  # no args: the path alone
            "env": [_s(e) for e in h.env],
            "timeout": h.timeout,
        }
        for h in hooks
    ]


MINIMAL = Plan(
    container_id="c1",
    rw_dir="/var/lib/containerlib/containers/c1",
    lowerdirs=("/layers/a",),
    clone_flags=sc.CLONE_NEWNS,
    args=(b"true",),
)

FULL = Plan(
    container_id="c2",
    rw_dir="/var/lib/containerlib/containers/c2",
    lowerdirs=("/layers/top", "/layers/mid", "/layers/base"),
    readonly_root=True,
    rootfs_propagation=sc.MS_SLAVE | sc.MS_REC,
    clone_flags=sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWNET,
    new_cgroupns=True,
    mounts=(
        MountStep(target=b"/proc", source=b"proc", fstype=b"proc", flags=sc.MS_NOSUID),
        MountStep(
            target=b"/dev",
            source=b"tmpfs",
            fstype=b"tmpfs",
            flags=sc.MS_NOSUID,
            data=b"mode=755,size=65536k",
        ),
        MountStep(
            target=b"/data/in.txt",
            source=b"/host/in.txt",
            fstype=None,
            flags=sc.MS_BIND | sc.MS_REC,
            remount_flags=sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY,
            propagation=sc.MS_PRIVATE | sc.MS_REC,
            is_file=True,
        ),
        MountStep(
            target=b"/sys/fs/cgroup",
            source=b"cgroup",
            fstype=b"cgroup2",
            flags=sc.MS_RDONLY,
            remount_flags=0,
            cgroup=True,
        ),
    ),
    devices=(
        DeviceStep(path=b"null", mode=stat.S_IFCHR | 0o666, major=1, minor=3),
        DeviceStep(path=b"fifo", mode=stat.S_IFIFO | 0o620, major=0, minor=0, uid=7, gid=8),
    ),
    dev_symlinks=((b"/proc/self/fd", b"fd"), (b"pts/ptmx", b"ptmx")),
    masked_paths=(b"/proc/kcore", b"/sys/firmware"),
    readonly_paths=(b"/proc/sys", b"/proc/bus"),
    hostname=b"box",
    domainname=b"",
    sysctl=((b"net.ipv4.ip_forward", b"1"), (b"kernel.msgmax", b"65536")),
    uid=1000,
    gid=1001,
    additional_gids=(10, 20, 2**32 - 2),
    umask=0o027,
    rlimits=((7, 1024, 4096), (3, -1, -1)),
    no_new_privileges=True,
    seccomp=bytes(range(8)) * 3,
    seccomp_flags=2,
    user=b"app:staff",
    set_home=True,
    cap_bounding=0xA80425FB,
    cap_effective=(1 << 64) - 1,
    cap_permitted=0xA80425FB,
    cap_inheritable=1 << 63,
    cap_ambient=(0, 40),
    oom_score_adj=-999,
    cwd=b"/work dir/\xc3\xa9\xff",
    args=(b"sh", b"-c", b'echo "$X"\n\ttab\\', b""),
    env=(b"PATH=/bin", b"X=1", b"NOVALUE", b"X=2", b"EMPTY="),
    pause_for_hooks=True,
    create_container_hooks=(
        HookStep(path=b"/hooks/a", args=(b"a", b"--x"), env=(b"K=V",), timeout=5),
        HookStep(path=b"/hooks/b"),
    ),
    create_state=b'{"status": "creating"}',
    start_container_hooks=(HookStep(path=b"/bin/s", env=(b"A=1", b"B=2"), timeout=1),),
    start_state=b'{"status": "created"}',
)


def test_a_seccomp_filter_that_is_no_bpf_program_is_refused_by_encode() -> None:
    with pytest.raises(ValueError, match="seccomp: 7 bytes"):
        nativeinit.encode(attrs.evolve(MINIMAL, seccomp=b"x" * 7), [], False, 40)


@pytest.mark.parametrize(
    ("plan", "files", "cg2", "last_cap"),
    [
        (MINIMAL, [], False, 40),
        (FULL, ["/sys/fs/cgroup/memory/a/cgroup.procs", "/sys/fs/cgroup/x/cgroup.procs"], True, 63),
    ],
    ids=["minimal", "full"],
)
def test_the_helper_reads_what_encode_writes(
    helper: str, plan: Plan, files: list[str], cg2: bool, last_cap: int
) -> None:
    data = nativeinit.encode(plan, files, cg2, last_cap)
    assert decode(helper, data) == expected(plan, files, cg2, last_cap)


def test_an_exec_message_names_the_namespaces_to_join(helper: str) -> None:
    flags = sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWCGROUP
    data = nativeinit.encode(
        MINIMAL, ["/sys/fs/cgroup/pids/c1/cgroup.procs"], False, 40, join_flags=flags
    )
    assert data[:4] == data[-4:] == b"CLIX"
    want = expected(MINIMAL, ["/sys/fs/cgroup/pids/c1/cgroup.procs"], False, 40)
    want.update(join_flags=flags)
    assert decode(helper, data) == want


JOINING = attrs.evolve(
    MINIMAL,
    namespace_paths=((sc.CLONE_NEWNET, "/proc/42/ns/net"), (sc.CLONE_NEWUTS, "/run/netns/x")),
)


@pytest.mark.parametrize("join_fds", [False, True], ids=["paths", "descriptors"])
def test_the_namespaces_to_join_and_whether_descriptors_come(helper: str, join_fds: bool) -> None:
    data = nativeinit.encode(JOINING, [], False, 40, join_fds=join_fds)
    want = expected(JOINING, [], False, 40)
    want.update(join_fds=join_fds)
    assert want["namespace_paths"] == [
        [sc.CLONE_NEWNET, "/proc/42/ns/net"],
        [sc.CLONE_NEWUTS, "/run/netns/x"],
    ]
    assert decode(helper, data) == want


def test_an_exec_joins_the_namespaces_the_container_joined_too(helper: str) -> None:
    # The first process is in them, not in new ones: the exec joins it there.
    data = nativeinit.encode(JOINING, [], False, 40, join_flags=sc.CLONE_NEWPID)
    assert decode(helper, data)["join_flags"] == sc.CLONE_NEWPID | sc.CLONE_NEWNET | sc.CLONE_NEWUTS


def test_only_network_uts_and_ipc_namespaces_can_be_joined(helper: str) -> None:
    plan = attrs.evolve(MINIMAL, namespace_paths=((sc.CLONE_NEWPID, "/proc/1/ns/pid"),))
    message = refused(helper, nativeinit.encode(plan, [], False, 40))
    assert "namespace_paths.flag: 0x20000000 is not a namespace to join" in message


def test_a_user_namespace_plan_says_what_the_namespace_allows(helper: str) -> None:
    plan = attrs.evolve(MINIMAL, clone_flags=sc.CLONE_NEWNS | sc.CLONE_NEWUSER)
    data = nativeinit.encode(plan, [], False, 40, setgroups=False, rootfs_fd=True)
    want = expected(plan, [], False, 40)
    want.update(setgroups=False, rootfs_fd=True, userns=True)
    assert decode(helper, data) == want


@pytest.mark.parametrize("premount", [False, True], ids=["plan", "premount message"])
def test_the_premounted_flag_and_the_premount_message(helper: str, premount: bool) -> None:
    data = nativeinit.encode(FULL, [], True, 40, premounted=True, premount=premount)
    assert data[:4] == (b"CLPM" if premount else b"CLIP")
    assert data[-4:] == data[:4]
    assert decode(helper, data) == expected(FULL, [], True, 40, premounted=True)


def test_env_is_sent_as_execve_gets_it_from_the_python_child() -> None:
    # One entry a name, the last value at the first one's place, a bare name as NAME=.
    assert nativeinit._environment([b"PATH=/bin", b"X=1", b"NOVALUE", b"X=2", b"A=b=c"]) == [
        b"PATH=/bin",
        b"X=2",
        b"NOVALUE=",
        b"A=b=c",
    ]


_bytes = st.binary(min_size=0, max_size=12).filter(lambda b: b"\0" not in b)
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_opt = st.one_of(st.none(), _bytes)
_mounts = st.builds(
    MountStep,
    target=_bytes,
    source=_opt,
    fstype=_opt,
    flags=_u64,
    data=_opt,
    remount_flags=st.one_of(st.none(), _u64),
    propagation=_u64,
    is_file=st.booleans(),
    cgroup=st.booleans(),
)
_devices = st.builds(DeviceStep, path=_bytes, mode=_u32, major=_u32, minor=_u32, uid=_u32, gid=_u32)
_pairs = st.lists(st.tuples(_bytes, _bytes), max_size=3).map(tuple)
_path = st.text(
    st.characters(exclude_characters="\0", exclude_categories=("Cs",)), min_size=1, max_size=10
)
_plans = st.builds(
    Plan,
    container_id=st.just("c"),
    rw_dir=_path,
    lowerdirs=st.lists(_path, min_size=1, max_size=3).map(tuple),
    readonly_root=st.booleans(),
    rootfs_propagation=_u64,
    clone_flags=st.just(0),
    new_cgroupns=st.booleans(),
    mounts=st.lists(_mounts, max_size=3).map(tuple),
    devices=st.lists(_devices, max_size=2).map(tuple),
    dev_symlinks=_pairs,
    masked_paths=st.lists(_bytes, max_size=3).map(tuple),
    readonly_paths=st.lists(_bytes, max_size=3).map(tuple),
    hostname=_opt,
    domainname=_opt,
    sysctl=_pairs,
    uid=_u32,
    gid=_u32,
    additional_gids=st.lists(_u32, max_size=4).map(tuple),
    umask=st.one_of(st.none(), st.integers(0, 0o777)),
    rlimits=st.lists(st.tuples(st.integers(0, 15), _u64, _u64), max_size=3).map(tuple),
    no_new_privileges=st.booleans(),
    cap_bounding=st.one_of(st.none(), _u64),
    cap_effective=_u64,
    cap_permitted=_u64,
    cap_inheritable=_u64,
    cap_ambient=st.lists(st.integers(0, 63), max_size=3).map(tuple),
    oom_score_adj=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    cwd=_bytes,
    args=st.lists(_bytes, min_size=1, max_size=4).map(tuple),
    env=st.lists(_bytes, max_size=4).map(tuple),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=_plans,
    files=st.lists(_path, max_size=3),
    cg2=st.booleans(),
    last_cap=st.integers(0, 63),
)
def test_generated_plans_round_trip(
    helper: str, plan: Plan, files: list[str], cg2: bool, last_cap: int
) -> None:
    data = nativeinit.encode(plan, files, cg2, last_cap)
    want = expected(plan, files, cg2, last_cap)
    # Paths given as str travel as their file-system encoding.
    for key in ("rootfs", "rw_dir"):
        want[key] = _s(os.fsencode(want[key]))
    want["lowerdirs"] = [_s(os.fsencode(p)) for p in want["lowerdirs"]]
    want["procs_files"] = [_s(os.fsencode(p)) for p in want["procs_files"]]
    assert decode(helper, data) == want


def refused(helper: str, data: bytes) -> str:
    done = dump(helper, data)
    assert done.returncode == SETUP_FAILED, (done.returncode, done.stdout)
    assert done.stdout == b""
    return done.stderr.decode()


def test_every_truncation_is_refused(helper: str) -> None:
    data = nativeinit.encode(FULL, ["/a/cgroup.procs"], True, 40)
    # Every cut in the first and last 64 bytes, and every 7th in between.
    cuts = sorted({*range(1, 64), *range(64, len(data) - 64, 7), *range(len(data) - 64, len(data))})
    for cut in cuts:
        message = refused(helper, data[:cut])
        assert message.startswith("clib-init: read the plan: "), (cut, message)
        assert message.endswith(": Bad message\n"), (cut, message)


def test_bytes_after_the_end_are_refused(helper: str) -> None:
    data = nativeinit.encode(MINIMAL, [], False, 40)
    assert "4 bytes after the end" in refused(helper, data + b"\0\0\0\0")


def test_an_empty_message_means_nothing_to_do(helper: str) -> None:
    done = dump(helper, b"")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_an_oversized_plan_is_refused(helper: str) -> None:
    plan = Plan(
        container_id="c",
        rw_dir="/w",
        lowerdirs=("/l",),
        clone_flags=0,
        args=(b"x" * nativeinit.MAX_PLAN,),
    )
    message = refused(helper, nativeinit.encode(plan, [], False, 40))
    assert message == "clib-init: receive the plan: Message too long\n"


def test_too_many_entries_are_refused(helper: str) -> None:
    plan = Plan(
        container_id="c",
        rw_dir="/w",
        lowerdirs=("/l",),
        clone_flags=0,
        masked_paths=(b"/p",) * 1025,
        args=(b"true",),
    )
    message = refused(helper, nativeinit.encode(plan, [], False, 40))
    assert "masked_paths: 1025 entries, at most 1024" in message


def _patch(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


def test_bad_header_fields_are_refused(helper: str) -> None:
    data = nativeinit.encode(MINIMAL, [], False, 40)
    assert "bad magic" in refused(helper, b"XLIP" + data[4:])
    assert "version 4, this helper reads version 6" in refused(helper, _patch(data, 4, 4))
    assert "bad final magic" in refused(helper, data[:-4] + b"CLIX")


def test_bad_values_are_refused(helper: str) -> None:
    data = nativeinit.encode(MINIMAL, [], False, 40)
    rootfs = MINIMAL.rootfs.encode()
    # The rootfs string's length, then its bytes: a NUL inside, a missing final NUL.
    at = 8
    inner_nul = (
        data[: at + 4] + rootfs[:3] + b"\0" + rootfs[4:] + b"\0" + data[at + 5 + len(rootfs) :]
    )
    assert "rootfs: not one NUL-terminated string" in refused(helper, inner_nul)
    no_nul = data[: at + 4 + len(rootfs)] + b"X" + data[at + 5 + len(rootfs) :]
    assert "rootfs: not one NUL-terminated string" in refused(helper, no_nul)
    assert "rootfs: missing" in refused(helper, _patch(data, at, 0))
    huge = _patch(data, at, 2**32 - 1)
    assert "rootfs: truncated" in refused(helper, huge)
    # At the end, before the final magic: pause_for_hooks, the createContainer hooks (a
    # count), create_state (None: a 0 length), the startContainer hooks and start_state.
    assert "start_state: truncated" in refused(helper, _patch(data, len(data) - 8, 99))
    many = _patch(data, len(data) - 12, 65)
    assert "start_container_hooks: 65 entries, at most 64" in refused(helper, many)
    assert "create_state: truncated" in refused(helper, _patch(data, len(data) - 16, 99))
    # One hook, whose path is then the 0 of create_state.
    assert "create_container_hooks: missing" in refused(helper, _patch(data, len(data) - 20, 1))
    assert "pause_for_hooks: 2 is not a boolean" in refused(helper, _patch(data, len(data) - 24, 2))
    end = len(data) - 20
    # Before those: init, terminal, console_width and console_height,
    # exec_fifo (None: a 0 length), bind_root, then
    # join_flags (u64), rootfs_fd, setgroups,
    # userns and set_home (booleans) and user (None: a 0 length).
    assert "init: 2 is not a boolean" in refused(helper, _patch(data, end - 8, 2))
    assert "terminal: 2 is not a boolean" in refused(helper, _patch(data, end - 20, 2))
    assert "exec_fifo: truncated" in refused(helper, _patch(data, end - 24, 99))
    assert "bind_root: 2 is not a boolean" in refused(helper, _patch(data, end - 28, 2))
    assert "rootfs_fd: 2 is not a boolean" in refused(helper, _patch(data, end - 40, 2))
    assert "setgroups: 2 is not a boolean" in refused(helper, _patch(data, end - 44, 2))
    assert "userns: 2 is not a boolean" in refused(helper, _patch(data, end - 48, 2))
    assert "set_home: 2 is not a boolean" in refused(helper, _patch(data, end - 52, 2))
    # Without a filter, seccomp is an empty byte string (its length, 0); seccomp_flags
    # before it.
    assert "seccomp: 12 bytes" in refused(helper, _patch(data, end - 60, 12))
    assert "seccomp: truncated" in refused(helper, _patch(data, end - 60, 800))
    # premounted, a boolean, before them.
    assert "premounted: 2 is not a boolean" in refused(helper, _patch(data, end - 68, 2))
    # last_cap comes before it.
    assert "last_cap: 64 is past 63" in refused(helper, _patch(data, end - 72, 64))
    # have_cgroup2, a boolean, before that.
    assert "have_cgroup2: 2 is not a boolean" in refused(helper, _patch(data, end - 76, 2))


def test_args_must_not_be_empty(helper: str) -> None:
    plan = Plan(container_id="c", rw_dir="/w", lowerdirs=("/l",), clone_flags=0, args=())
    assert "args: empty" in refused(helper, nativeinit.encode(plan, [], False, 40))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cwd": b"/a\0b"}, "cwd"),
        ({"hostname": b"a\0"}, "hostname"),
        ({"uid": 2**32}, "uid"),
        ({"uid": -1}, "uid"),
        ({"oom_score_adj": 2**31}, "oom_score_adj"),
        ({"rlimits": ((7, -2, 0),)}, "rlimits.soft"),
        ({"devices": (DeviceStep(path=b"x", mode=0, major=-1, minor=0),)}, "devices.major"),
    ],
)
def test_encode_refuses_what_the_format_cannot_carry(change: dict[str, Any], field: str) -> None:
    import attrs

    plan = attrs.evolve(MINIMAL, **change)
    with pytest.raises(ValueError, match=rf"^{field}: "):
        nativeinit.encode(plan, [], False, 40)


def test_the_usage_is_checked(helper: str) -> None:
    for args in ([], ["3"], ["x", "0"], ["3", "-1"], ["3", "0", "extra"]):
        done = subprocess.run([helper, *args], capture_output=True, check=False)
        assert done.returncode == SETUP_FAILED
        assert b"usage: clib-init FD FLAGS" in done.stderr


def test_the_source_compiles_cleanly_as_c11(helper: str, tmp_path: Path) -> None:
    cc = nativeinit._find_compiler()
    assert cc is not None
    source = Path(nativeinit.__file__).with_name("_init.c")
    done = subprocess.run(
        [cc, "-std=c11", *nativeinit.CFLAGS, "-o", str(tmp_path / "h"), str(source)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_build_compiles_once_into_a_private_directory(helper: str, tmp_path: Path) -> None:
    directory = tmp_path / "data" / "helpers"
    script = (
        "import sys; from containerlib.runtime import nativeinit; "
        "print(nativeinit.build(sys.argv[1]))"
    )
    # Three processes at once: one compiles, the others wait for the lock and find it.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    paths = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.parent == directory
    assert path.name.startswith("clib-init-")
    assert len(path.name) == len("clib-init-") + 16
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert sorted(p.name for p in directory.iterdir()) == [".lock", path.name]
    mtime = path.stat().st_mtime_ns
    assert nativeinit.build(str(directory)) == str(path)
    assert path.stat().st_mtime_ns == mtime


def test_build_refuses_a_directory_others_can_write(tmp_path: Path) -> None:
    directory = tmp_path / "helpers"
    directory.mkdir()
    directory.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by others"):
        nativeinit.build(str(directory))


def test_a_failing_compiler_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="failed"):
        nativeinit.build(str(tmp_path / "helpers"), compiler="false")
    assert os.listdir(tmp_path / "helpers") == [".lock"]


@pytest.fixture
def fresh_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """helper_path() as in a new process, with its own data root."""
    monkeypatch.setattr(nativeinit, "_helper", None)
    monkeypatch.setattr(nativeinit, "_looked_for_helper", False)
    monkeypatch.setattr(nativeinit, "build_error", None)
    monkeypatch.setenv("CONTAINERLIB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("CONTAINERLIB_NATIVE_INIT", raising=False)
    return tmp_path / "data"


def test_helper_path_builds_into_the_data_root(helper: str, fresh_lookup: Path) -> None:
    path = nativeinit.helper_path()
    assert path is not None
    assert Path(path).parent == fresh_lookup / "helpers"
    assert nativeinit.helper_path() == path


def test_native_init_0_forces_the_python_child(
    fresh_lookup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTAINERLIB_NATIVE_INIT", "0")
    assert nativeinit.helper_path() is None
    assert not fresh_lookup.exists()


def test_without_a_compiler_the_python_child_is_used_and_that_is_remembered(
    fresh_lookup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def no_compiler() -> None:
        calls.append(1)

    monkeypatch.setattr(nativeinit, "_find_compiler", no_compiler)
    assert nativeinit.helper_path() is None
    assert nativeinit.helper_path() is None
    assert calls == [1]
    assert nativeinit.build_error == "no C compiler (cc or gcc) on PATH"


def test_a_helper_that_cannot_run_is_not_used(
    helper: str, fresh_lookup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a data root mounted noexec: the file is there but exec fails.
    monkeypatch.setattr(nativeinit, "build", lambda directory: "/dev/null")
    assert nativeinit.helper_path() is None
    assert nativeinit.build_error is not None


def test_the_docstring_example() -> None:
    result = doctest.testmod(nativeinit)
    assert result.attempted > 0
    assert result.failed == 0
