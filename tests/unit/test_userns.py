"""User namespaces without a kernel: id maps, subordinate ranges, and what a spec becomes.

The real thing (a container whose root is another host user, and a non-root user's
containers) is in tests/integration/test_userns.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest

from containerlib import Container, Image, SpecError
from containerlib.linux import syscalls as sc
from containerlib.linux.userns import (
    ROOT_DEFAULT_START,
    check_map,
    default_maps,
    host_id,
    map_text,
    subordinate_ranges,
)
from containerlib.runtime.specconv import Roots, plan_from_spec
from containerlib.spec import oci
from containerlib.spec.defaults import default_spec

IMAGE = Image(layers=("/layers/base",), name="test-image")
ROOTS = Roots(run="/run/t", data="/data", cgroup_parent="t")


def _maps(spec: oci.Spec) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    assert spec.linux is not None
    return (
        [(m.container_id, m.host_id, m.size) for m in spec.linux.uid_mappings],
        [(m.container_id, m.host_id, m.size) for m in spec.linux.gid_mappings],
    )


def _has_userns(spec: oci.Spec) -> bool:
    assert spec.linux is not None
    return spec.linux.namespace("user") is not None


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process looks like uid 1000, gid 100 (no subordinate ids, no newuidmap)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 100)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CONTAINERLIB_CGROUP_PARENT", raising=False)


# -- /etc/subuid and the default maps -------------------------------------------------


def test_subordinate_ranges_match_the_name_or_the_number(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text(
        "alice:100000:65536\n"
        "1001:165536:65536\n"
        "# a comment\n"
        "alice:notanumber:5\n"
        "alice:300000:0\n"
        "alice:231072:1000\n"
        "bob:0:1:extra\n"
    )
    assert subordinate_ranges("alice", 1000, str(f)) == [(100000, 65536), (231072, 1000)]
    assert subordinate_ranges("bob", 1001, str(f)) == [(165536, 65536)]
    assert subordinate_ranges("carol", 1002, str(f)) == []
    assert subordinate_ranges("alice", 1000, str(tmp_path / "missing")) == []


def test_root_takes_the_containerlib_range_then_roots_then_the_default(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the default maps of root are computed for root")
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("root:300000:65536\ncontainerlib:400000:100000\n")
    subgid.write_text("root:500000:65536\n")
    uid_map, gid_map = default_maps(65536, str(subuid), str(subgid))
    assert uid_map == ((0, 400000, 65536),)  # the size asked for, not the whole range
    assert gid_map == ((0, 500000, 65536),)
    uid_map, gid_map = default_maps(1000, str(tmp_path / "none"), str(tmp_path / "none"))
    assert uid_map == gid_map == ((0, ROOT_DEFAULT_START, 1000),)


@pytest.mark.usefixtures("as_user")
def test_a_user_without_newuidmap_maps_its_own_ids_alone(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("1000:100000:65536\n")
    assert default_maps(65536, str(subuid), str(subuid)) == (((0, 1000, 1),), ((0, 100, 1),))


# -- checking and writing maps ----------------------------------------------------------


@pytest.mark.parametrize(
    ("id_map", "problem"),
    [
        ((), "is empty"),
        (((1, 1000, 5),), "does not map id 0"),
        (((0, 1000, 0),), "out of range"),
        (((0, 1000, 10), (5, 5000, 10)), "overlapping"),
        (((0, 1000, 10), (10, 1005, 10)), "overlapping"),
        (tuple((i, 1000 + i, 1) for i in range(341)), "at most 340"),
    ],
)
def test_bad_maps_are_named(id_map: tuple[tuple[int, int, int], ...], problem: str) -> None:
    found = check_map(id_map, "uid map")
    assert found is not None
    assert found.startswith("uid map")
    assert problem in found


def test_good_maps_pass_and_translate() -> None:
    id_map = ((0, 1000, 1), (1, 100000, 65535))
    assert check_map(id_map, "uid map") is None
    assert host_id(id_map, 0) == 1000
    assert host_id(id_map, 33) == 100032
    assert host_id(id_map, 65536) is None
    assert map_text(id_map) == b"0 1000 1\n1 100000 65535\n"


# -- the facade ---------------------------------------------------------------------------


def test_root_runs_without_a_user_namespace_unless_asked() -> None:
    if os.geteuid() != 0:
        pytest.skip("a non-root caller always gets one")
    assert not _has_userns(Container(IMAGE).spec(["true"]))
    spec = Container(IMAGE).userns(uid=200000, size=1000).spec(["true"])
    assert _has_userns(spec)
    assert _maps(spec) == ([(0, 200000, 1000)], [(0, 200000, 1000)])
    spec = Container(IMAGE).userns(uid=200000, gid=300000).spec(["true"])
    assert _maps(spec) == ([(0, 200000, 65536)], [(0, 300000, 65536)])
    assert not _has_userns(Container(IMAGE).userns().userns(False).spec(["true"]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"uid": -1}, "userns uid"),
        ({"gid": 2**32}, "userns gid"),
        ({"size": 0}, "userns size"),
        ({"uid": "1000"}, "userns uid"),
    ],
)
def test_bad_userns_settings_are_refused(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as info:
        Container(IMAGE).userns(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.usefixtures("as_user")
def test_a_non_root_callers_container_has_a_user_namespace_of_its_own_ids() -> None:
    for c in (Container(IMAGE), Container(IMAGE).userns(False)):
        spec = c.spec(["true"])
        assert _has_userns(spec)
        assert _maps(spec) == ([(0, 1000, 1)], [(0, 100, 1)])


@pytest.mark.usefixtures("as_user")
def test_a_rootless_plan_has_no_cgroup_and_no_device_rules() -> None:
    spec = Container(IMAGE).spec(["true"])
    plan = plan_from_spec(spec, container_id="c1", lowerdirs=IMAGE.layers, roots=ROOTS)
    assert plan.clone_flags & sc.CLONE_NEWUSER
    assert plan.uid_map == ((0, 1000, 1),)
    assert plan.gid_map == ((0, 100, 1),)
    assert plan.cgroup_path is None
    assert plan.cgroup_limits.devices == ()
    # devpts would be refused with gid=5, which the namespace does not map.
    devpts = next(m for m in plan.mounts if m.fstype == b"devpts")
    assert devpts.data is not None
    assert b"gid=" not in devpts.data
    assert b"newinstance" in devpts.data


@pytest.mark.usefixtures("as_user")
def test_a_rootless_container_with_limits_asks_for_a_cgroup() -> None:
    spec = Container(IMAGE).limit(mem="64M").spec(["true"])
    plan = plan_from_spec(spec, container_id="c1", lowerdirs=IMAGE.layers, roots=ROOTS)
    assert plan.cgroup_path == "t/c1"
    assert plan.cgroup_limits.memory == 64 << 20


def test_sysfs_is_bound_in_a_user_namespace_without_its_own_network() -> None:
    spec = Container(IMAGE).userns(uid=200000).network("host").spec(["true"])
    plan = plan_from_spec(spec, container_id="c1", lowerdirs=IMAGE.layers, roots=ROOTS)
    sys_mount = next(m for m in plan.mounts if m.target == b"/sys")
    assert sys_mount.fstype is None
    assert sys_mount.source == b"/sys"
    assert sys_mount.remount_flags is not None
    assert sys_mount.remount_flags & sc.MS_RDONLY
    spec = Container(IMAGE).userns(uid=200000).spec(["true"])
    plan = plan_from_spec(spec, container_id="c1", lowerdirs=IMAGE.layers, roots=ROOTS)
    assert next(m for m in plan.mounts if m.target == b"/sys").fstype == b"sysfs"


def test_an_oci_spec_with_maps_that_do_not_map_root_is_refused() -> None:
    spec = default_spec(rootless=True, terminal=False, host_uid=1000, host_gid=100)
    assert spec.linux is not None
    bad = attrs.evolve(
        spec,
        linux=attrs.evolve(
            spec.linux,
            uid_mappings=(oci.LinuxIDMapping(container_id=1, host_id=1000, size=1),),
        ),
    )
    with pytest.raises(SpecError) as info:
        plan_from_spec(bad, container_id="c1", lowerdirs=IMAGE.layers, roots=ROOTS)
    assert info.value.field == "linux.uidMappings"
    assert "does not map id 0" in str(info.value)
    plan = plan_from_spec(spec, container_id="c1", lowerdirs=IMAGE.layers, roots=ROOTS)
    assert plan.uid_map == ((0, 1000, 1),)
