"""The fluent Container: immutable, shareable, and compiled to an OCI spec without I/O.

Nothing here starts a container: ``Container.spec()`` is what ``run()`` executes, so the
tests read the spec a user's settings become, and check that bad input is refused with a
SpecError naming the setting before anything is created.
"""

from __future__ import annotations

import threading
from pathlib import Path

import attrs
import pytest

from containerlib import Container, Image, SpecError
from containerlib.linux import syscalls as sc
from containerlib.runtime.specconv import (
    SET_HOME_ANNOTATION,
    USER_ANNOTATION,
    Roots,
    plan_from_spec,
)
from containerlib.spec import oci
from containerlib.spec.defaults import DEFAULT_CAPABILITIES

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MiB = 1 << 20

IMAGE = Image(layers=("/layers/base", "/layers/top"), name="test-image")
C = Container(IMAGE)


def _env(spec: oci.Spec) -> dict[str, str]:
    assert spec.process is not None
    return dict(item.partition("=")[::2] for item in spec.process.env)


def _mount(spec: oci.Spec, destination: str) -> oci.Mount:
    found = [m for m in spec.mounts if m.destination == destination]
    assert len(found) == 1, f"{destination} is mounted {len(found)} times"
    return found[0]


def _namespaces(spec: oci.Spec) -> set[str]:
    assert spec.linux is not None
    return {ns.type for ns in spec.linux.namespaces}


# -- immutability ----------------------------------------------------------------------------


def test_fluent_methods_return_new_objects_and_leave_the_original(tmp_path: Path) -> None:
    before = C.spec(["true"])
    changed = [
        C.limit(mem="64M", pids=10),
        C.env(A="1"),
        C.workdir("/srv"),
        C.user("1000:1000"),
        C.hostname("box"),
        C.mount(tmp_path, "/data"),
        C.tmpfs("/scratch"),
        C.read_only(),
        C.network("host"),
    ]
    for new in changed:
        assert new is not C
        assert new != C
        assert new.spec(["true"]) != before
    assert C.spec(["true"]) == before


def test_container_cannot_be_changed_in_place() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        C.image = IMAGE  # type: ignore[misc]


def test_equal_containers_are_equal_and_hash_alike() -> None:
    a = C.limit(mem="64M").env(A="1")
    b = C.limit(mem="64M").env(A="1")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, C}) == 2
    assert {a: "cached"}[b] == "cached"


def test_one_container_shared_between_threads() -> None:
    shared = C.limit(mem="64M", pids=16).env(A="1")
    expected = shared.spec(["true"])
    results: list[oci.Spec] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(50):
                results.append(shared.env(I=str(i)).spec(["true"]))
                results.append(shared.spec(["true"]))
        except BaseException as e:  # pragma: no cover - only on failure
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert shared.spec(["true"]) == expected
    assert sum(r == expected for r in results) == 200


# -- what each method compiles to ------------------------------------------------------------


def test_default_spec() -> None:
    spec = C.spec(["echo", "hi"])
    assert spec.process is not None
    assert spec.process.args == ("echo", "hi")
    assert spec.process.terminal is False
    assert spec.process.cwd == "/"
    assert (spec.process.user.uid, spec.process.user.gid) == (0, 0)
    assert _env(spec)["PATH"] == DEFAULT_PATH.partition("=")[2]
    assert spec.root is not None
    assert spec.root.path == "/layers/top"
    assert spec.root.readonly is False
    assert _namespaces(spec) == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert spec.linux is not None
    assert spec.linux.resources is not None
    assert spec.linux.resources.memory is None
    assert spec.linux.resources.pids is None


def test_env_is_merged_over_the_image_env() -> None:
    image = attrs.evolve(IMAGE, env=("PATH=/opt/bin:/bin", "LANG=C.UTF-8", "MODE=image"))
    env = _env(Container(image).env(MODE="mine", EXTRA="x").env(EXTRA="y").spec(["true"]))
    assert env["PATH"] == "/opt/bin:/bin"
    assert env["LANG"] == "C.UTF-8"
    assert env["MODE"] == "mine"
    assert env["EXTRA"] == "y"  # a later call overrides an earlier one


def test_env_without_image_env_has_the_default_path() -> None:
    env = _env(C.env(A="1").spec(["true"]))
    assert env["PATH"] == DEFAULT_PATH.partition("=")[2]
    assert env["A"] == "1"


def test_env_entries_are_unique() -> None:
    spec = C.env(PATH="/mine").spec(["true"])
    assert spec.process is not None
    keys = [item.partition("=")[0] for item in spec.process.env]
    assert len(keys) == len(set(keys))
    assert _env(spec)["PATH"] == "/mine"


def test_home_follows_the_user_unless_set() -> None:
    assert _env(C.spec(["true"]))["HOME"] == "/root"
    assert _env(C.user("1000:1000").spec(["true"]))["HOME"] == "/"
    assert _env(C.env(HOME="/home/me").spec(["true"]))["HOME"] == "/home/me"
    # A user to look up in the container gets HOME from its entry there.
    spec = C.user("app").spec(["true"])
    assert "HOME" not in _env(spec)
    assert spec.annotations[SET_HOME_ANNOTATION] == "1"
    spec = C.user("app").env(HOME="/h").spec(["true"])
    assert SET_HOME_ANNOTATION not in spec.annotations


@pytest.mark.parametrize("name", ["A=B", ""], ids=["equals-sign", "empty"])
def test_env_name_that_cannot_be_a_variable_is_refused(name: str) -> None:
    with pytest.raises(SpecError) as info:
        C.env(**{name: "1"})
    assert info.value.field == f"env.{name}"


def test_workdir() -> None:
    spec = C.workdir("/srv/app").spec(["true"])
    assert spec.process is not None
    assert spec.process.cwd == "/srv/app"


def test_user() -> None:
    spec = C.user("1000:100").spec(["true"])
    assert spec.process is not None
    assert (spec.process.user.uid, spec.process.user.gid) == (1000, 100)
    assert USER_ANNOTATION not in spec.annotations
    # Anything else is looked up in the container's /etc/passwd, as docker run --user.
    for user in (65534, "nobody", "app:staff", "1000:staff"):
        spec = C.user(user).spec(["true"])
        assert spec.annotations[USER_ANNOTATION] == str(user)


def test_hostname() -> None:
    spec = C.hostname("build-7").spec(["true"])
    assert spec.hostname == "build-7"
    assert "uts" in _namespaces(spec)
    assert _env(spec)["HOSTNAME"] == "build-7"


def test_bind_mounts_are_read_only_unless_asked(tmp_path: Path) -> None:
    spec = C.mount(tmp_path, "/in").mount(str(tmp_path), "/out", read_only=False).spec(["true"])
    ro = _mount(spec, "/in")
    rw = _mount(spec, "/out")
    assert (ro.type, ro.source) == ("bind", str(tmp_path))
    assert "ro" in ro.options
    assert "rw" not in ro.options
    assert "rw" in rw.options
    assert "ro" not in rw.options
    assert {"bind", "rbind"} & set(ro.options)


def test_tmpfs_size() -> None:
    spec = C.tmpfs("/scratch", size="64M").tmpfs("/cache").spec(["true"])
    scratch = _mount(spec, "/scratch")
    assert scratch.type == "tmpfs"
    assert f"size={64 * MiB}" in scratch.options
    assert {"nosuid", "nodev"} <= set(scratch.options)
    assert not any(o.startswith("size=") for o in _mount(spec, "/cache").options)


def test_read_only_root() -> None:
    spec = C.read_only().spec(["true"])
    assert spec.root is not None
    assert spec.root.readonly is True
    spec = C.read_only().read_only(False).spec(["true"])
    assert spec.root is not None
    assert spec.root.readonly is False


def test_host_network_drops_the_network_namespace() -> None:
    assert "network" not in _namespaces(C.network("host").spec(["true"]))
    assert "network" in _namespaces(C.network("host").network("none").spec(["true"]))


def test_limit() -> None:
    spec = C.limit(mem="512M", pids=64).spec(["true"])
    assert spec.linux is not None
    assert spec.linux.resources is not None
    assert spec.linux.resources.memory is not None
    assert spec.linux.resources.memory.limit == 512 * MiB
    assert spec.linux.resources.pids is not None
    assert spec.linux.resources.pids.limit == 64


def test_limit_keeps_what_an_earlier_call_set() -> None:
    spec = C.limit(mem="1g").limit(pids=8).spec(["true"])
    assert spec.linux is not None
    assert spec.linux.resources is not None
    assert spec.linux.resources.memory is not None
    assert spec.linux.resources.memory.limit == 1024 * MiB
    assert spec.linux.resources.pids is not None
    assert spec.linux.resources.pids.limit == 8


def test_proc_is_mounted_nosuid_noexec_nodev() -> None:
    assert {"nosuid", "noexec", "nodev"} <= set(_mount(C.spec(["true"]), "/proc").options)


def test_docker_security_defaults() -> None:
    spec = C.spec(["true"])
    assert spec.process is not None
    assert spec.process.no_new_privileges is True
    caps = spec.process.capabilities
    assert caps is not None
    assert set(caps.bounding) == set(DEFAULT_CAPABILITIES)
    assert set(caps.effective) == set(DEFAULT_CAPABILITIES)
    assert set(caps.permitted) == set(DEFAULT_CAPABILITIES)
    assert caps.ambient == ()
    assert "CAP_SYS_ADMIN" not in caps.bounding
    assert spec.linux is not None
    assert "/proc/kcore" in spec.linux.masked_paths
    assert "/proc/sys" in spec.linux.readonly_paths


def test_the_spec_compiles_to_a_plan(tmp_path: Path) -> None:
    # The spec a Container makes is one the runtime accepts, with Docker's capability mask.
    c = (
        Container(tmp_path)
        .limit(mem="64M", pids=10)
        .mount(tmp_path, "/data")
        .tmpfs("/scratch", size="1M")
        .user("1000:1000")
        .read_only()
    )
    roots = Roots(run=str(tmp_path / "run"), data=str(tmp_path / "data"))
    plan = plan_from_spec(c.spec(["id"]), container_id="x1", lowerdirs=c.image.layers, roots=roots)
    assert plan.args == (b"id",)
    assert plan.cap_bounding == 0xA80425FB
    assert plan.no_new_privileges is True
    assert plan.readonly_root is True
    assert (plan.uid, plan.gid) == (1000, 1000)
    assert plan.cgroup_limits.memory == 64 * MiB
    assert plan.cgroup_limits.pids == 10
    assert plan.clone_flags & sc.CLONE_NEWNET
    data = [m for m in plan.mounts if m.target == b"/data"]
    assert len(data) == 1
    assert data[0].remount_flags is not None
    assert data[0].remount_flags & sc.MS_RDONLY
    assert not (tmp_path / "run").exists()  # compiling creates nothing


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: C.limit(mem="lots"), "mem"),
        (lambda: C.limit(mem=-1), "mem"),
        (lambda: C.limit(mem="1k"), "mem"),
        (lambda: C.limit(pids=0), "pids"),
        (lambda: C.limit(pids=-5), "pids"),
        (lambda: C.limit(pids="ten"), "pids"),
        (lambda: C.limit(mem="0"), "mem"),
        (lambda: C.limit(mem="-1"), "mem"),
        (lambda: C.limit(mem="1.5.2g"), "mem"),
        (lambda: C.limit(cpus=-1), "cpus"),
        (lambda: C.limit(cpus="all"), "cpus"),
        (lambda: C.limit(cpus=0.0001), "cpus"),  # a quota under the kernel's 1 ms
        (lambda: C.limit(cpu_shares=1), "cpu_shares"),
        (lambda: C.limit(cpuset_cpus="first"), "cpuset_cpus"),
        (lambda: C.limit(cpuset_mems="0-"), "cpuset_mems"),
        (lambda: C.limit(blkio_weight=5), "blkio_weight"),
        (lambda: C.limit(swap="1g"), "swap"),  # memory plus swap needs the memory
        (lambda: C.limit(mem="1g", swap="512m"), "swap"),
        (lambda: C.limit(mem="64m", mem_reservation="1g"), "mem_reservation"),
        (lambda: C.limit(device_write_bps={"sda": "1mb"}), "device_write_bps"),
        (lambda: C.limit(device_read_iops={"/dev/sda": 0}), "device_read_iops"),
        (lambda: C.limit(hugetlb={"2M": "1g"}), "hugetlb"),
        (
            lambda: C.limit(device_read_bps={"/no/such/disk": "1mb"}).spec(["true"]),
            "device_read_bps",
        ),
        (lambda: C.limit(device_read_bps={"/dev/null": "1mb"}).spec(["true"]), "device_read_bps"),
        (lambda: C.workdir("srv"), "workdir"),
        (lambda: C.mount("/tmp", "data"), "mount.target"),
        (lambda: C.mount("relative", "/data"), "mount.source"),
        (lambda: C.tmpfs("scratch"), "tmpfs.target"),
        (lambda: C.tmpfs("/scratch", size="huge"), "tmpfs.size"),
        (lambda: C.user("a b"), "user"),
        (lambda: C.user("a:b:c"), "user"),
        (lambda: C.user("-1"), "user"),
        (lambda: C.user("4294967295"), "user"),
        (lambda: C.hostname("a/b"), "hostname"),
        (lambda: C.hostname(""), "hostname"),
        (lambda: C.network("overlay"), "network"),
        (lambda: C.env(A="\0"), "env.A"),
        (lambda: C.spec([]), "cmd"),
        (lambda: C.spec("echo hi"), "cmd"),
        (lambda: C.spec(b"echo"), "cmd"),
        (lambda: C.spec(["echo", 1]), "cmd[1]"),
        (lambda: C.spec(["echo", "a\0b"]), "cmd[1]"),
        (C.spec, "cmd"),  # the image has no default command
        (lambda: Container(42), "image"),
    ],
)
def test_bad_values_are_refused_by_name(make: object, field: str) -> None:
    with pytest.raises(SpecError) as info:
        make()  # type: ignore[operator]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_refused_values_leave_the_container_as_it_was() -> None:
    c = C.limit(mem="64M")
    with pytest.raises(SpecError):
        c.limit(mem="lots")
    assert c == C.limit(mem="64M")


# -- the image's configuration ----------------------------------------------------------------


def test_image_cmd_is_the_default_command() -> None:
    image = attrs.evolve(IMAGE, cmd=("sh", "-c", "echo hi"))
    spec = Container(image).spec()
    assert spec.process is not None
    assert spec.process.args == ("sh", "-c", "echo hi")
    spec = Container(image).spec(["ls"])
    assert spec.process is not None
    assert spec.process.args == ("ls",)  # a command replaces the image's cmd


def test_image_entrypoint_is_kept_and_given_the_arguments() -> None:
    image = attrs.evolve(IMAGE, entrypoint=("/bin/tini", "--"), cmd=("serve",))
    spec = Container(image).spec()
    assert spec.process is not None
    assert spec.process.args == ("/bin/tini", "--", "serve")
    spec = Container(image).spec(["check", "--all"])
    assert spec.process is not None
    assert spec.process.args == ("/bin/tini", "--", "check", "--all")


def test_image_workdir_and_user() -> None:
    image = attrs.evolve(IMAGE, workdir="/app", user="1000:2000")
    spec = Container(image).spec(["true"])
    assert spec.process is not None
    assert spec.process.cwd == "/app"
    assert (spec.process.user.uid, spec.process.user.gid) == (1000, 2000)
    spec = Container(image).workdir("/tmp").user("5:5").spec(["true"])
    assert spec.process is not None
    assert spec.process.cwd == "/tmp"
    assert spec.process.user.uid == 5


def test_image_user_name_is_looked_up_in_the_container() -> None:
    spec = Container(attrs.evolve(IMAGE, user="nobody")).spec(["true"])
    assert spec.annotations[USER_ANNOTATION] == "nobody"
    with pytest.raises(SpecError, match="image user"):
        Container(attrs.evolve(IMAGE, user="no body")).spec(["true"])


def test_topmost_layer_is_the_root() -> None:
    spec = Container(IMAGE).spec(["true"])
    assert spec.root is not None
    assert spec.root.path == IMAGE.layers[-1]


# -- Image.from_rootfs and Container(path) ----------------------------------------------------


def test_from_rootfs(tmp_path: Path) -> None:
    image = Image.from_rootfs(tmp_path)
    assert image.layers == (str(tmp_path),)
    assert (image.entrypoint, image.cmd, image.env) == ((), (), ())


def test_from_rootfs_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        Image.from_rootfs(missing)


def test_from_rootfs_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(NotADirectoryError, match="file"):
        Image.from_rootfs(f)


def test_from_rootfs_makes_a_relative_path_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rootfs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert Image.from_rootfs("rootfs").layers == (str(tmp_path / "rootfs"),)


@pytest.mark.parametrize("as_type", [str, Path], ids=["str", "Path"])
def test_container_accepts_a_path(tmp_path: Path, as_type: type) -> None:
    c = Container(as_type(tmp_path))
    assert c.image == Image.from_rootfs(tmp_path)
    assert c == Container(Image.from_rootfs(tmp_path))
    spec = c.spec(["true"])
    assert spec.root is not None
    assert spec.root.path == str(tmp_path)


def test_container_of_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Container(tmp_path / "missing")
