"""Hypothesis strategies for the OCI runtime-spec model.

Two families, written from the spec text rather than from the model's code:

* ``*_dicts()`` build valid ``config.json`` data as :func:`json.loads` returns it, with
  optional keys present or not, explicit defaults (``"terminal": false``) and unknown keys
  (``xFoo``) at every level;
* :func:`specs` builds valid :class:`~containerlib.spec.oci.Spec` objects through the
  constructors, so their JSON form comes from the defaults alone.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from containerlib.spec import oci

__all__ = [
    "config_dicts",
    "json_values",
    "linux_dicts",
    "mount_dicts",
    "process_dicts",
    "resources_dicts",
    "seccomp_dicts",
    "specs",
]

Strategy = st.SearchStrategy

u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
limit_bytes = st.integers(-1, 2**63 - 1)
text = st.text(st.characters(exclude_characters="\0", exclude_categories=("Cs",)), max_size=8)
name = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8)
abs_path = st.from_regex(r"/([a-z0-9._-]{1,8}(/[a-z0-9._-]{1,8}){0,2})?", fullmatch=True)
cap = st.sampled_from(["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_BPF"])
namespace_type = st.sampled_from(oci.NAMESPACE_TYPES)
# SCMP_ACT_NOTIFY needs a listener; it is tested on its own.
seccomp_action = st.sampled_from([a for a in oci.SECCOMP_ACTIONS if a != "SCMP_ACT_NOTIFY"])
cpu_list = st.lists(st.tuples(st.integers(0, 64), st.integers(0, 8)), max_size=3).map(
    lambda parts: ",".join(f"{a}-{a + n}" if n else str(a) for a, n in parts)
)


def lists(elements: Strategy[Any], min_size: int = 0) -> Strategy[list[Any]]:
    return st.lists(elements, min_size=min_size, max_size=2)


def json_values() -> Strategy[Any]:
    """Any JSON value, as :func:`json.loads` returns it (no NaN or infinities)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=6,
    )


# No key of the spec starts with "x", so these are always unknown to the model.
unknown_keys = st.from_regex(r"x[A-Z][a-zA-Z0-9]{0,6}", fullmatch=True)


def obj(
    required: dict[str, Strategy[Any]] | None = None, **optional: Strategy[Any]
) -> Strategy[dict[str, Any]]:
    """A JSON object with the ``required`` keys, any of the ``optional`` ones, and unknowns."""
    known = st.fixed_dictionaries(required or {}, optional=optional)
    unknown = st.dictionaries(unknown_keys, json_values(), max_size=2)
    return st.tuples(known, unknown).map(lambda t: {**t[0], **t[1]})


# -- config.json data -----------------------------------------------------------------------

user_dicts = obj(
    {"uid": u32, "gid": u32},
    umask=st.integers(0, 0o777),
    additionalGids=lists(u32),
    username=text,
)
capabilities_dicts = obj(
    bounding=lists(cap),
    effective=lists(cap),
    inheritable=lists(cap),
    permitted=lists(cap),
    ambient=lists(cap),
)


@st.composite
def rlimit_dicts(draw: st.DrawFn) -> dict[str, Any]:
    soft, hard = sorted(draw(st.tuples(u64, u64)))
    kind = draw(st.sampled_from(["RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE"]))
    return {**draw(obj()), "type": kind, "hard": hard, "soft": soft}


scheduler_dicts = obj(
    {"policy": st.sampled_from(["SCHED_OTHER", "SCHED_FIFO", "SCHED_DEADLINE"])},
    nice=st.integers(-20, 19),
    priority=i32,
    flags=lists(st.sampled_from(["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM"])),
    runtime=u64,
    deadline=u64,
    period=u64,
)


def process_dicts() -> Strategy[dict[str, Any]]:
    return obj(
        {"user": user_dicts, "cwd": abs_path},
        terminal=st.booleans(),
        consoleSize=obj({"height": u32, "width": u32}),
        args=lists(text),
        commandLine=text,
        env=lists(text),
        capabilities=capabilities_dicts,
        rlimits=lists(rlimit_dicts()),
        noNewPrivileges=st.booleans(),
        apparmorProfile=text,
        oomScoreAdj=st.integers(-1000, 1000),
        scheduler=scheduler_dicts,
        selinuxLabel=text,
        ioPriority=obj(
            {
                "class": st.sampled_from(
                    ["IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"]
                ),
                "priority": st.integers(0, 7),
            }
        ),
    )


idmap_dicts = obj({"containerID": u32, "hostID": u32, "size": st.integers(1, 2**32 - 1)})


def mount_dicts() -> Strategy[dict[str, Any]]:
    return obj(
        {"destination": abs_path},
        type=text,
        source=text,
        options=lists(text),
        uidMappings=lists(idmap_dicts),
        gidMappings=lists(idmap_dicts),
    )


hook_dicts = obj(
    {"path": abs_path}, args=lists(text), env=lists(text), timeout=st.integers(1, 2**63 - 1)
)
hooks_dicts = obj(
    prestart=lists(hook_dicts),
    createRuntime=lists(hook_dicts),
    createContainer=lists(hook_dicts),
    startContainer=lists(hook_dicts),
    poststart=lists(hook_dicts),
    poststop=lists(hook_dicts),
)


@st.composite
def device_dicts(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from("cbup"))
    numbers = {"major": i64, "minor": i64}
    if kind == "p":
        return {**draw(obj(path=abs_path, **numbers)), "path": draw(abs_path), "type": "p"}
    extra = draw(obj(numbers, fileMode=st.integers(0, 0o7777), uid=u32, gid=u32))
    return {**extra, "path": draw(abs_path), "type": kind}


throttle_dicts = obj({"major": i64, "minor": i64, "rate": u64})


def resources_dicts() -> Strategy[dict[str, Any]]:
    access = st.sets(st.sampled_from("rwm")).map(lambda s: "".join(sorted(s)))
    return obj(
        devices=lists(
            obj(
                {"allow": st.booleans()},
                type=st.sampled_from("abc"),
                major=i64,
                minor=i64,
                access=access,
            )
        ),
        memory=obj(
            limit=limit_bytes,
            reservation=limit_bytes,
            swap=limit_bytes,
            kernel=limit_bytes,
            kernelTCP=limit_bytes,
            swappiness=u64,
            disableOOMKiller=st.booleans(),
            useHierarchy=st.booleans(),
            checkBeforeUpdate=st.booleans(),
        ),
        cpu=obj(
            shares=u64,
            quota=i64,
            burst=u64,
            period=u64,
            realtimeRuntime=i64,
            realtimePeriod=u64,
            cpus=cpu_list,
            mems=cpu_list,
            idle=i64,
        ),
        pids=obj({"limit": limit_bytes}),
        blockIO=obj(
            weight=u16,
            leafWeight=u16,
            weightDevice=lists(obj({"major": i64, "minor": i64}, weight=u16, leafWeight=u16)),
            throttleReadBpsDevice=lists(throttle_dicts),
            throttleWriteBpsDevice=lists(throttle_dicts),
            throttleReadIOPSDevice=lists(throttle_dicts),
            throttleWriteIOPSDevice=lists(throttle_dicts),
        ),
        hugepageLimits=lists(obj({"pageSize": st.sampled_from(["2MB", "1GB"]), "limit": u64})),
        network=obj(classID=u32, priorities=lists(obj({"name": name, "priority": u32}))),
        rdma=st.dictionaries(name, obj(hcaHandles=u32, hcaObjects=u32), max_size=2),
        unified=st.dictionaries(name, text, max_size=2),
    )


def seccomp_dicts() -> Strategy[dict[str, Any]]:
    op = st.sampled_from(oci.SECCOMP_OPERATORS)
    arg = obj({"index": st.integers(0, 5), "value": u64, "op": op}, valueTwo=u64)
    syscall = obj(
        {"names": lists(name, min_size=1), "action": seccomp_action},
        errnoRet=u32,
        args=lists(arg),
    )
    return obj(
        {"defaultAction": seccomp_action},
        defaultErrnoRet=u32,
        architectures=lists(st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"])),
        flags=lists(st.sampled_from(["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"])),
        listenerPath=abs_path,
        listenerMetadata=text,
        syscalls=lists(syscall),
    )


def linux_dicts() -> Strategy[dict[str, Any]]:
    return obj(
        uidMappings=lists(idmap_dicts),
        gidMappings=lists(idmap_dicts),
        sysctl=st.dictionaries(name, text, max_size=2),
        resources=resources_dicts(),
        cgroupsPath=text,
        namespaces=lists(obj({"type": namespace_type}, path=abs_path)),
        devices=lists(device_dicts()),
        seccomp=seccomp_dicts(),
        rootfsPropagation=text,
        maskedPaths=lists(text),
        readonlyPaths=lists(text),
        mountLabel=text,
        personality=obj({"domain": st.sampled_from(["LINUX", "LINUX32"])}, flags=lists(text)),
    )


def config_dicts() -> Strategy[dict[str, Any]]:
    """A valid ``config.json`` as :func:`json.loads` returns it."""
    return obj(
        {"ociVersion": st.sampled_from(["1.2.0", "1.0.2-dev", "1.1.0"])},
        process=process_dicts(),
        root=obj({"path": text}, readonly=st.booleans()),
        hostname=text,
        domainname=text,
        mounts=lists(mount_dicts()),
        hooks=hooks_dicts,
        annotations=st.dictionaries(name, text, max_size=2),
        linux=linux_dicts(),
    )


# -- Spec objects ---------------------------------------------------------------------------


def build(cls: type[Any], required: dict[str, Strategy[Any]] | None = None, **optional: Any) -> Any:
    """``cls`` built from the ``required`` keyword arguments and any of the ``optional``."""
    return st.fixed_dictionaries(required or {}, optional=optional).map(lambda kw: cls(**kw))


idmaps = build(
    oci.LinuxIDMapping,
    {"container_id": u32, "host_id": u32, "size": st.integers(1, 2**32 - 1)},
)


@st.composite
def rlimits(draw: st.DrawFn) -> oci.POSIXRlimit:
    soft, hard = sorted(draw(st.tuples(u64, u64)))
    return oci.POSIXRlimit(type="RLIMIT_NOFILE", hard=hard, soft=soft)


def specs() -> Strategy[oci.Spec]:
    """A valid :class:`~containerlib.spec.oci.Spec`, built through its constructors."""
    process = build(
        oci.Process,
        terminal=st.booleans(),
        user=build(oci.User, uid=u32, gid=u32, additional_gids=st.tuples(u32)),
        args=st.lists(text, max_size=3),
        env=st.lists(text, max_size=3).map(tuple),
        cwd=abs_path,
        capabilities=build(oci.LinuxCapabilities, bounding=lists(cap), ambient=lists(cap)),
        rlimits=lists(rlimits()),
        no_new_privileges=st.booleans(),
        oom_score_adj=st.integers(-1000, 1000),
    )
    resources = build(
        oci.LinuxResources,
        devices=lists(build(oci.LinuxDeviceCgroup, {"allow": st.booleans()}, access=st.just("rw"))),
        memory=build(oci.LinuxMemory, limit=limit_bytes, swap=limit_bytes),
        cpu=build(oci.LinuxCPU, quota=i64, period=u64, cpus=cpu_list),
        pids=build(oci.LinuxPids, {"limit": limit_bytes}),
        unified=st.dictionaries(name, text, max_size=2),
    )
    linux = build(
        oci.Linux,
        uid_mappings=lists(idmaps),
        gid_mappings=lists(idmaps),
        sysctl=st.dictionaries(name, text, max_size=2),
        resources=resources,
        cgroups_path=text,
        namespaces=lists(build(oci.LinuxNamespace, {"type": namespace_type}, path=abs_path)),
        masked_paths=lists(abs_path),
        extra=st.dictionaries(unknown_keys, json_values(), max_size=2),
    )
    return build(
        oci.Spec,
        oci_version=st.sampled_from(["1.2.0", "1.0.2-dev"]),
        process=process,
        root=build(oci.Root, {"path": text}, readonly=st.booleans()),
        hostname=text,
        mounts=lists(build(oci.Mount, {"destination": abs_path}, type=text, options=lists(text))),
        hooks=build(oci.Hooks, poststop=lists(build(oci.Hook, {"path": abs_path}))),
        annotations=st.dictionaries(name, text, max_size=2),
        linux=linux,
        extra=st.dictionaries(unknown_keys, json_values(), max_size=2),
    )
