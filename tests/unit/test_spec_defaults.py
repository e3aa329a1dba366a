"""Default configurations: runc spec's template and Docker's security defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from containerlib.errors import SpecError
from containerlib.spec.defaults import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    default_mounts,
    default_spec,
)
from containerlib.spec.oci import OCI_VERSION, LinuxCapabilities


def _runc_spec(tmp_path: Path, *flags: str) -> dict[str, Any]:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not on PATH")
    subprocess.run([runc, "spec", *flags], cwd=tmp_path, check=True, capture_output=True)
    doc: dict[str, Any] = json.loads((tmp_path / "config.json").read_text())
    return doc


@pytest.mark.parametrize("rootless", [False, True], ids=["default", "rootless"])
def test_default_spec_is_what_runc_spec_prints(tmp_path: Path, rootless: bool) -> None:
    expected = _runc_spec(tmp_path, *(["--rootless"] if rootless else []))
    # runc writes the spec version it was built against; ours is the model's.
    expected["ociVersion"] = OCI_VERSION
    assert default_spec(rootless=rootless).to_dict() == expected


def test_rootless_maps_root_to_the_given_ids() -> None:
    spec = default_spec(rootless=True, host_uid=1000, host_gid=100)
    assert spec.linux is not None
    assert [(m.container_id, m.host_id, m.size) for m in spec.linux.uid_mappings] == [(0, 1000, 1)]
    assert [(m.container_id, m.host_id, m.size) for m in spec.linux.gid_mappings] == [(0, 100, 1)]
    assert spec.linux.namespace("user") is not None
    assert spec.linux.namespace("network") is None
    default = default_spec(rootless=True)
    assert default.linux is not None
    assert default.linux.uid_mappings[0].host_id == os.geteuid()


def test_args_and_terminal() -> None:
    spec = default_spec(args=["echo", "hi"], terminal=False)
    assert spec.process is not None
    assert spec.process.args == ("echo", "hi")
    assert spec.process.terminal is False
    assert not any(e.startswith("TERM=") for e in spec.process.env)
    with pytest.raises(SpecError, match=r"^args: must be a list of strings, not the string 'sh'$"):
        default_spec(args="sh")


def test_docker_capabilities() -> None:
    assert len(DEFAULT_CAPABILITIES) == 14
    assert len(set(DEFAULT_CAPABILITIES)) == 14
    assert {"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_AUDIT_WRITE"} <= set(
        DEFAULT_CAPABILITIES
    )
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES
    LinuxCapabilities(bounding=DEFAULT_CAPABILITIES)  # each is a valid name


def test_docker_masked_and_readonly_paths() -> None:
    assert {"/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/acpi"} <= set(DEFAULT_MASKED_PATHS)
    assert set(DEFAULT_READONLY_PATHS) == {
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    }
    for path in DEFAULT_MASKED_PATHS + DEFAULT_READONLY_PATHS:
        assert path.startswith(("/proc/", "/sys/"))
    assert not set(DEFAULT_MASKED_PATHS) & set(DEFAULT_READONLY_PATHS)


def test_default_mounts() -> None:
    mounts = {m.destination: m for m in default_mounts()}
    assert list(mounts) == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    assert mounts["/dev/pts"].options == (
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    )
    assert "size=65536k" in mounts["/dev/shm"].options
    assert mounts["/sys"].type == "sysfs"
    assert {"ro", "nosuid", "noexec", "nodev"} <= set(mounts["/sys"].options)
    assert mounts["/sys/fs/cgroup"].type == "cgroup"
    assert "ro" in mounts["/sys/fs/cgroup"].options
    rootless = {m.destination: m for m in default_mounts(rootless=True)}
    assert "gid=5" not in rootless["/dev/pts"].options
    assert rootless["/sys"].options[0] == "rbind"
