"""The OCI runtime-spec model: round trips, unknown keys, and errors that name the field."""

from __future__ import annotations

import copy
import json
import pickle
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings

from containerlib.errors import SpecError
from containerlib.spec._frozen import FrozenDict
from containerlib.spec.oci import (
    Linux,
    LinuxCapabilities,
    LinuxDevice,
    LinuxIDMapping,
    LinuxNamespace,
    LinuxSeccomp,
    LinuxSyscall,
    Mount,
    POSIXRlimit,
    Process,
    Root,
    Spec,
    User,
)
from tests.unit.strategies import config_dicts, specs

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MINIMAL: dict[str, Any] = {
    "ociVersion": "1.2.0",
    "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
    "root": {"path": "rootfs"},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
    ],
    "linux": {
        "namespaces": [{"type": "pid"}, {"type": "mount"}],
        "resources": {"memory": {"limit": 1024}},
    },
}


def _minimal() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL)


# -- round trips ----------------------------------------------------------------------------


@SETTINGS
@given(config_dicts())
def test_dict_to_spec_to_dict_is_identity(doc: dict[str, Any]) -> None:
    assert Spec.from_dict(doc).to_dict() == doc
    # The same through JSON text, which keeps every key too.
    spec = Spec.from_json(json.dumps(doc))
    assert json.loads(spec.to_json()) == doc
    assert Spec.from_json(spec.to_json(indent=2).encode()) == spec


@SETTINGS
@given(specs())
def test_spec_to_json_to_spec_is_identity(spec: Spec) -> None:
    assert Spec.from_json(spec.to_json()) == spec
    assert Spec.from_dict(spec.to_dict()) == spec
    assert Spec.from_dict(spec.to_dict()).to_dict() == spec.to_dict()


@SETTINGS
@given(specs())
def test_specs_are_hashable_and_picklable(spec: Spec) -> None:
    clone = pickle.loads(pickle.dumps(spec))
    assert clone == spec
    assert hash(clone) == hash(spec)
    assert clone.to_dict() == spec.to_dict()


def _runc_spec(tmp_path: Path, *flags: str) -> str:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not on PATH")
    subprocess.run([runc, "spec", *flags], cwd=tmp_path, check=True, capture_output=True)
    return (tmp_path / "config.json").read_text()


@pytest.mark.parametrize("flags", [(), ("--rootless",)], ids=["default", "rootless"])
def test_runc_spec_output_loads_and_dumps_back_identical(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    text = _runc_spec(tmp_path, *flags)
    spec = Spec.from_json(text)
    assert spec.to_dict() == json.loads(text)
    # Fields are written in the spec's order, so even the text comes back byte for byte.
    assert spec.to_json(indent="\t") == text


# -- what is written ------------------------------------------------------------------------


def test_defaults_are_left_out_and_required_fields_written() -> None:
    assert Process().to_dict() == {"user": {"uid": 0, "gid": 0}, "cwd": "/"}
    assert Spec().to_dict() == {"ociVersion": "1.2.0"}
    assert Root(path="rootfs").to_dict() == {"path": "rootfs"}


def test_explicit_defaults_in_a_document_are_kept() -> None:
    doc = _minimal()
    doc["process"].update(terminal=False, env=[], noNewPrivileges=False)
    doc["root"]["readonly"] = False
    doc["annotations"] = {}
    doc["linux"]["maskedPaths"] = []
    spec = Spec.from_dict(doc)
    assert spec.to_dict() == doc
    # Explicit keys are not part of equality: the two specs mean the same.
    assert spec == Spec.from_dict(_minimal())


def test_explicit_keys_survive_evolve() -> None:
    doc = _minimal()
    doc["process"]["terminal"] = False
    spec = Spec.from_dict(doc)
    process = attrs.evolve(spec.process, args=("echo", "hi"))
    assert process.to_dict()["terminal"] is False
    assert process.to_dict()["args"] == ["echo", "hi"]


def test_null_for_an_optional_field_means_omitted() -> None:
    doc = _minimal()
    doc["hostname"] = None
    doc["process"]["capabilities"] = None
    spec = Spec.from_dict(doc)
    assert spec.hostname is None
    assert spec.process is not None
    assert spec.process.capabilities is None
    assert spec.to_dict() == MINIMAL


def test_unknown_keys_survive_at_every_level() -> None:
    doc = _minimal()
    doc["vm"] = {"hypervisor": {"path": "/usr/bin/qemu"}, "kernel": {"path": "/k"}}
    doc["process"]["xFuture"] = [1, {"a": None}]
    doc["linux"]["intelRdt"] = {"closID": "guaranteed", "enableCMT": True}
    doc["linux"]["resources"]["memory"]["xNew"] = 1.5
    spec = Spec.from_dict(doc)
    assert spec.extra["vm"]["kernel"] == {"path": "/k"}
    assert spec.linux is not None
    assert "intelRdt" in spec.linux.extra
    assert spec.to_dict() == doc
    hash(spec)  # unknown values are frozen, so the spec stays hashable
    assert isinstance(spec.extra["vm"], FrozenDict)
    assert spec.process is not None
    assert spec.process.extra["xFuture"] == (1, {"a": None})


def test_to_json_writes_unicode_and_indents() -> None:
    spec = Spec(hostname="hôte")
    assert '"hostname": "hôte"' in spec.to_json()
    assert spec.to_json(indent="\t") == '{\n\t"ociVersion": "1.2.0",\n\t"hostname": "hôte"\n}'


def test_repr_shows_only_what_differs_from_the_default() -> None:
    assert repr(Process(args=("sh",))) == "Process(args=('sh',))"
    assert repr(Root(path="r")) == "Root(path='r')"
    assert repr(LinuxNamespace(type="pid")) == "LinuxNamespace(type='pid')"


# -- building objects -----------------------------------------------------------------------


def test_lists_and_dicts_are_frozen_on_the_way_in() -> None:
    process = Process(args=["sh", "-c", "true"], env=["A=1"])
    assert process.args == ("sh", "-c", "true")
    spec = Spec(annotations={"a": "b"})
    assert isinstance(spec.annotations, FrozenDict)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        process.args = ()  # type: ignore[misc]
    same = Process(args=("sh", "-c", "true"), env=("A=1",))
    assert hash(Spec(process=process)) == hash(Spec(process=same))


@pytest.mark.parametrize(
    ("build", "field", "fragment"),
    [
        (lambda: Process(args=("sh", 1)), "args[1]", "must be a string, not int"),
        (lambda: Process(args="sh"), "args", "must be a list, not str"),
        (lambda: Process(cwd=None), "cwd", "must be a string, not NoneType"),
        (lambda: Process(no_new_privileges=1), "no_new_privileges", "must be a boolean, not int"),
        (lambda: Process(user={"uid": 0}), "user", "must be a User, not dict"),
        (lambda: Process(oom_score_adj=1001), "oom_score_adj", "at most 1000, not 1001"),
        (lambda: Process(env=("A=\0",)), "env[0]", "must not contain a NUL byte"),
        (lambda: User(uid=-1), "uid", "must not be negative, not -1"),
        (lambda: User(uid=True), "uid", "must be an integer, not bool"),
        (lambda: User(gid=2**32), "gid", "must be at most 4294967295, not 4294967296"),
        (lambda: Mount(destination="tmp"), "destination", "must be an absolute path, not 'tmp'"),
        (lambda: LinuxNamespace(type="net"), "type", "not 'net'"),
        (lambda: LinuxNamespace(type="pid", path="ns"), "path", "absolute path, not 'ns'"),
        (
            lambda: LinuxIDMapping(container_id=0, host_id=0, size=-5),
            "size",
            "must be positive, not -5",
        ),
        (
            lambda: POSIXRlimit(type="RLIMIT_NOFILE", hard=10, soft=20),
            "soft",
            "must not exceed hard (10), not 20",
        ),
        (lambda: POSIXRlimit(type="nofile", hard=1, soft=1), "type", "not 'nofile'"),
        (lambda: LinuxCapabilities(bounding=("chown",)), "bounding[0]", "not 'chown'"),
        (
            lambda: LinuxDevice(path="/dev/null", type="c"),
            "major",
            "is required for a device of type 'c'",
        ),
        (lambda: LinuxSyscall(names=(), action="SCMP_ACT_ALLOW"), "names", "at least one"),
        (
            lambda: LinuxSeccomp(
                default_action="SCMP_ACT_ALLOW",
                syscalls=(LinuxSyscall(names=("read",), action="SCMP_ACT_NOTIFY"),),
            ),
            "syscalls[0].action",
            "needs a listener_path",
        ),
        (lambda: Spec(annotations={"": "x"}), "annotations", "must not be empty"),
        (lambda: Spec(annotations={"a": 1}), "annotations['a']", "must be a string, not int"),
        (lambda: Spec(extra={"process": {}}), "extra", "'process' is a known field"),
        (lambda: Spec(extra={"x": {1, 2}}), "extra['x']", "must be JSON data, not set"),
        (lambda: Spec(extra={"x": float("nan")}), "extra['x']", "must be JSON data, not nan"),
        (lambda: Spec(oci_version=""), "oci_version", "must not be empty"),
        (lambda: Linux(namespaces=(LinuxNamespace(type="pid"), "ipc")), "namespaces[1]", "str"),
    ],
)
def test_building_a_bad_object_names_the_field_and_value(
    build: Any, field: str, fragment: str
) -> None:
    with pytest.raises(SpecError) as info:
        build()
    assert info.value.field == field
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{field}: ")


# -- loading documents ----------------------------------------------------------------------


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    if value is _DELETE:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (("process", "args"), ["sh", "-c", 3], "process.args[2]", "must be a string, not int"),
        (
            ("linux", "resources", "memory", "limit"),
            "1g",
            "linux.resources.memory.limit",
            "must be an integer, not str",
        ),
        (
            ("mounts", 3, "destination"),
            "tmp",
            "mounts[3].destination",
            "must be an absolute path, not 'tmp'",
        ),
        (
            ("linux", "namespaces", 1, "type"),
            "net",
            "linux.namespaces[1].type",
            "must be one of 'pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time';"
            " not 'net'",
        ),
        (
            ("process", "noNewPrivileges"),
            "yes",
            "process.noNewPrivileges",
            "must be a boolean, not str",
        ),
        (("process", "user", "uid"), -1, "process.user.uid", "must not be negative, not -1"),
        (("process", "user"), _DELETE, "process.user", "is required"),
        (("root", "path"), _DELETE, "root.path", "is required"),
        (("ociVersion",), _DELETE, "ociVersion", "is required"),
        (("root",), "rootfs", "root", "must be an object, not str"),
        (("mounts",), {"destination": "/x"}, "mounts", "must be a list, not dict"),
        (
            ("linux", "sysctl"),
            {"net.ipv4.ip_forward": 1},
            "linux.sysctl['net.ipv4.ip_forward']",
            "must be a string, not int",
        ),
        (
            ("linux", "uidMappings"),
            [{"containerID": 0, "hostID": 1000, "size": 0}],
            "linux.uidMappings[0].size",
            "must be positive, not 0",
        ),
        (
            ("process", "rlimits"),
            [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}],
            "process.rlimits[0].soft",
            "must not exceed hard (1), not 2",
        ),
        (
            ("linux", "devices"),
            [{"path": "/dev/fuse", "type": "c", "minor": 229}],
            "linux.devices[0].major",
            "is required for a device of type 'c'",
        ),
        (
            ("linux", "resources", "devices"),
            [{"allow": True, "access": "rwx"}],
            "linux.resources.devices[0].access",
            "must be made of 'r', 'w' and 'm', each at most once, not 'rwx'",
        ),
        (
            ("linux", "resources", "cpu"),
            {"cpus": "3-1"},
            "linux.resources.cpu.cpus",
            "must be a list like '0-3,7', not '3-1'",
        ),
        (("process", "terminal"), None, None, None),  # null: omitted, not an error
    ],
)
def test_loading_a_bad_document_names_the_json_path(
    path: tuple[Any, ...], value: Any, field: str | None, message: str | None
) -> None:
    doc = _minimal()
    _set(doc, path, value)
    if field is None:
        Spec.from_dict(doc)
        return
    with pytest.raises(SpecError) as info:
        Spec.from_dict(doc)
    assert info.value.field == field
    assert str(info.value) == f"{field}: {message}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{", "config.json is not valid JSON"),
        ('{"ociVersion": NaN}', "NaN is not a number in JSON"),
        (b"\xff", "config.json is not valid JSON"),
        ("[]", "must be an object, not list"),
    ],
)
def test_from_json_rejects_what_is_not_a_json_object(text: str | bytes, fragment: str) -> None:
    with pytest.raises(SpecError, match=re.escape(fragment)):
        Spec.from_json(text)


def test_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^mounts\[0\]\.destination: "):
        Spec.from_dict({"ociVersion": "1.2.0", "mounts": [{"destination": "x"}]})


def test_from_dict_takes_tuples_where_json_has_lists() -> None:
    doc = {"ociVersion": "1.2.0", "mounts": ({"destination": "/x", "options": ("ro",)},)}
    spec = Spec.from_dict(doc)
    assert spec.mounts == (Mount(destination="/x", options=("ro",)),)
    assert spec.to_dict() == {
        "ociVersion": "1.2.0",
        "mounts": [{"destination": "/x", "options": ["ro"]}],
    }
