"""Whole-spec rules: each names the field at fault and quotes the value."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from containerlib.errors import SpecError
from containerlib.spec.defaults import default_spec
from containerlib.spec.oci import (
    Linux,
    LinuxIDMapping,
    LinuxMemory,
    LinuxNamespace,
    LinuxResources,
    Mount,
    Spec,
)
from containerlib.spec.validate import CHECKS, validate

BASE = default_spec()
IDMAP = (LinuxIDMapping(container_id=0, host_id=100000, size=65536),)


def _linux(**changes: Any) -> Callable[[Spec], Spec]:
    def change(spec: Spec) -> Spec:
        assert spec.linux is not None
        return attrs.evolve(spec, linux=attrs.evolve(spec.linux, **changes))

    return change


def _process(**changes: Any) -> Callable[[Spec], Spec]:
    def change(spec: Spec) -> Spec:
        assert spec.process is not None
        return attrs.evolve(spec, process=attrs.evolve(spec.process, **changes))

    return change


def _spec(**changes: Any) -> Callable[[Spec], Spec]:
    return lambda spec: attrs.evolve(spec, **changes)


def _namespaces(*types: str) -> tuple[LinuxNamespace, ...]:
    return tuple(LinuxNamespace(type=t) for t in types)


def _memory(limit: int | None, swap: int | None) -> Callable[[Spec], Spec]:
    return _linux(resources=LinuxResources(memory=LinuxMemory(limit=limit, swap=swap)))


def test_runc_default_specs_are_valid() -> None:
    validate(default_spec())
    validate(default_spec(rootless=True))


@pytest.mark.parametrize(
    ("change", "field", "fragments"),
    [
        # root
        (_spec(root=None), "root", ["is required"]),
        (lambda s: attrs.evolve(s, root=attrs.evolve(s.root, path="")), "root.path", ["empty"]),
        # process
        (_spec(process=None), "process", ["is required"]),
        (_process(args=()), "process.args", ["must name the program", "empty"]),
        (_process(cwd="work"), "process.cwd", ["absolute", "'work'"]),
        # namespaces
        (
            _linux(namespaces=_namespaces("pid", "uts", "pid")),
            "linux.namespaces[2].type",
            ["'pid' is listed twice", "linux.namespaces[0]"],
        ),
        # user namespace and id maps
        (_linux(uid_mappings=IDMAP), "linux.uidMappings", ["no user namespace"]),
        (_linux(gid_mappings=IDMAP), "linux.gidMappings", ["no user namespace"]),
        (
            _linux(namespaces=_namespaces("pid", "mount", "uts", "user"), gid_mappings=IDMAP),
            "linux.uidMappings",
            ["new user namespace"],
        ),
        (
            _linux(namespaces=_namespaces("pid", "mount", "uts", "user"), uid_mappings=IDMAP),
            "linux.gidMappings",
            ["new user namespace"],
        ),
        (
            _spec(mounts=(Mount(destination="/data", type="bind", uid_mappings=IDMAP),)),
            "mounts[0].gidMappings",
            ["'/data'"],
        ),
        # hostname
        (_linux(namespaces=_namespaces("pid", "mount")), "hostname", ["'runc'", "uts namespace"]),
        (
            lambda s: attrs.evolve(
                s,
                hostname=None,
                domainname="example.org",
                linux=attrs.evolve(s.linux, namespaces=()),
            ),
            "domainname",
            ["'example.org'", "uts namespace"],
        ),
        # sysctl
        (
            _linux(sysctl={"vm.swappiness": "10"}),
            "linux.sysctl['vm.swappiness']",
            ["'vm.swappiness' is not namespaced"],
        ),
        (
            _linux(sysctl={"kernel.shmmax": "1"}, namespaces=_namespaces("pid", "uts", "mount")),
            "linux.sysctl['kernel.shmmax']",
            ["'kernel.shmmax'", "ipc namespace"],
        ),
        (
            _linux(sysctl={"fs.mqueue.msg_max": "1"}, namespaces=_namespaces("uts")),
            "linux.sysctl['fs.mqueue.msg_max']",
            ["ipc namespace"],
        ),
        (
            _linux(sysctl={"net/ipv4/ip_forward": "1"}, namespaces=_namespaces("uts")),
            "linux.sysctl['net/ipv4/ip_forward']",
            ["'net/ipv4/ip_forward'", "network namespace"],
        ),
        (
            _linux(sysctl={"kernel.hostname": "x"}),
            "linux.sysctl['kernel.hostname']",
            ["hostname field"],
        ),
        # rootfs propagation
        (
            _linux(rootfs_propagation="sideways"),
            "linux.rootfsPropagation",
            ["'sideways'", "rprivate"],
        ),
        # masked and read-only paths
        (
            _linux(masked_paths=("/proc/kcore", "proc/keys")),
            "linux.maskedPaths[1]",
            ["absolute", "'proc/keys'"],
        ),
        (_linux(readonly_paths=("sys",)), "linux.readonlyPaths[0]", ["absolute", "'sys'"]),
        # memory and swap
        (
            _memory(limit=1024, swap=512),
            "linux.resources.memory.swap",
            ["memory.limit (1024)", "not 512"],
        ),
        (_memory(limit=1024, swap=0), "linux.resources.memory.swap", ["not 0"]),
        # cgroups path
        (_linux(cgroups_path="a/../../b"), "linux.cgroupsPath", ["'..'", "'a/../../b'"]),
        (_linux(cgroups_path="/sys/../etc"), "linux.cgroupsPath", ["'/sys/../etc'"]),
    ],
)
def test_rule_names_the_field_and_value(
    change: Callable[[Spec], Spec], field: str, fragments: list[str]
) -> None:
    spec = change(BASE)
    with pytest.raises(SpecError) as info:
        validate(spec)
    assert info.value.field == field
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    "change",
    [
        _spec(linux=None, hostname=None),
        _process(cwd="/home/user"),
        _linux(
            namespaces=_namespaces("pid", "user", "mount", "uts"),
            uid_mappings=IDMAP,
            gid_mappings=IDMAP,
        ),
        _linux(
            namespaces=(*_namespaces("uts"), LinuxNamespace(type="user", path="/proc/1/ns/user"))
        ),
        _spec(mounts=(Mount(destination="/d", uid_mappings=IDMAP, gid_mappings=IDMAP),)),
        _linux(sysctl={"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.a": "1"}),
        _linux(sysctl={"kernel.domainname": "example.org"}),
        _linux(rootfs_propagation="rslave"),
        _linux(rootfs_propagation=""),
        _memory(limit=1024, swap=-1),
        _memory(limit=1024, swap=1024),
        _memory(limit=-1, swap=4096),
        _memory(limit=None, swap=10),
        _linux(cgroups_path="/containerlib/3f2a"),
        _linux(cgroups_path="containerlib/3f2a"),
        _linux(cgroups_path="system.slice:containerlib:3f2a"),
        _linux(cgroups_path="a/..b/c.."),
    ],
)
def test_valid_variations_pass(change: Callable[[Spec], Spec]) -> None:
    validate(change(BASE))


def test_every_check_is_run() -> None:
    # The package exports the validate() function under the module's name.
    validate_module = importlib.import_module("containerlib.spec.validate")
    checks = {
        name
        for name, fn in inspect.getmembers(validate_module, inspect.isfunction)
        if name.startswith("check_")
    }
    assert checks == {fn.__name__ for fn in CHECKS}


def test_linux_less_spec_with_a_hostname_is_refused() -> None:
    spec = Spec(process=BASE.process, root=BASE.root, hostname="box")
    with pytest.raises(SpecError, match=r"^hostname: setting 'box' needs a uts namespace$"):
        validate(spec)
    validate(attrs.evolve(spec, hostname=None, linux=Linux()))
