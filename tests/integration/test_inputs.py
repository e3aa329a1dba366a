"""Bad input is refused with a clear error before anything is created; images from OCI
layouts; the command line."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from containerlib import Container, ContainerSetupError, Image, ImageNotFound, SpecError
from containerlib.spec.image import ContainerConfig
from tests.image_builders import build_oci_layout, busybox_layout, file, make_layer

from .conftest import ROOT, cgroups_left, needs_root

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]


def nothing_created(roots: dict[str, str]) -> bool:
    run = Path(roots["CONTAINERLIB_RUN_ROOT"])
    rw = Path(roots["CONTAINERLIB_DATA_ROOT"]) / "containers"
    return (
        not cgroups_left()
        and not (run.exists() and any(run.iterdir()))
        and not (rw.exists() and any(rw.iterdir()))
    )


def test_missing_rootfs_is_named(roots: dict[str, str]) -> None:
    with pytest.raises(FileNotFoundError, match="/no/such/rootfs"):
        Container("/no/such/rootfs").run(["true"])
    with pytest.raises(FileNotFoundError, match="/no/such/rootfs"):
        Image.from_rootfs("/no/such/rootfs")
    assert nothing_created(roots)


@pytest.mark.parametrize(
    ("make", "field", "shown"),
    [
        (lambda c: c.mount("/tmp", "relative/target"), "mount.target", "relative/target"),
        (lambda c: c.tmpfs("scratch"), "tmpfs.target", "scratch"),
        (lambda c: c.limit(mem="lots"), "mem", "lots"),
        (lambda c: c.limit(pids=0), "pids", "0"),
        (lambda c: c.workdir("tmp"), "workdir", "tmp"),
        (lambda c: c.user("root ish"), "user", "root ish"),
        (lambda c: c.hostname("bad/name"), "hostname", "bad/name"),
        (lambda c: c.network("overlay"), "network", "overlay"),
    ],
)
def test_bad_options_raise_spec_error_naming_them(
    image: Image, roots: dict[str, str], make: object, field: str, shown: str
) -> None:
    with pytest.raises(SpecError) as info:
        make(Container(image))  # type: ignore[operator]
    assert info.value.field == field
    assert shown in str(info.value)
    assert nothing_created(roots)


@pytest.mark.parametrize("cmd", [[], "echo hi", ["echo", 3], ["a\0b"]])
def test_bad_commands(image: Image, roots: dict[str, str], cmd: object) -> None:
    with pytest.raises(SpecError, match="cmd"):
        Container(image).run(cmd)  # type: ignore[arg-type]
    assert nothing_created(roots)


@pytest.mark.parametrize("cid", ["a/b", "../x", "", ".hidden", "x" * 200, "a b"])
def test_bad_ids(image: Image, roots: dict[str, str], cid: str) -> None:
    with pytest.raises(SpecError, match="id"):
        Container(image).run(["true"], id=cid)
    assert nothing_created(roots)


def test_missing_bind_source_is_named(image: Image, roots: dict[str, str]) -> None:
    with pytest.raises(FileNotFoundError, match="/no/such/dir"):
        Container(image).mount("/no/such/dir", "/data").run(["true"])
    assert nothing_created(roots)


def test_an_id_in_use_is_refused(image: Image, roots: dict[str, str]) -> None:
    first = Container(image).start(["sh", "-c", "echo mine > /f; sleep 30"], id="same-id")
    with first:
        upper = Path(roots["CONTAINERLIB_DATA_ROOT"]) / "containers" / "same-id" / "upper"
        deadline = time.monotonic() + 10
        while not (upper / "f").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ContainerSetupError, match="same-id") as info:
            Container(image).run(["true"], id="same-id")
        assert info.value.errno == errno.EEXIST
        # The running container's writable layer is untouched.
        assert (upper / "f").read_text() == "mine\n"
    r = Container(image).run(["echo", "again"], id="same-id")
    assert r.stdout == b"again\n"
    assert r.id == "same-id"


def test_setup_failure_names_the_step_and_leaves_nothing(
    image: Image, roots: dict[str, str]
) -> None:
    # /bin/sh is a symlink in the image; a mount point cannot be made below a file.
    with pytest.raises(ContainerSetupError) as info:
        Container(image).tmpfs("/etc/passwd/x").run(["true"])
    assert "/etc/passwd/x" in str(info.value)
    assert info.value.errno is not None
    assert nothing_created(roots)


def test_oci_layout_image(tmp_path: Path, roots: dict[str, str]) -> None:
    busybox_layout(tmp_path / "layout", ref="1.0")
    image = Image.from_oci_layout(tmp_path / "layout", ref="1.0", cache=tmp_path / "cache")
    r = Container(image).run(["sh", "-c", "echo from a layout; ls /bin/busybox"])
    assert r.exit_code == 0
    assert r.stdout == b"from a layout\n/bin/busybox\n"
    # The layer was unpacked once, and a second image of the same layout reuses it.
    again = Image.from_oci_layout(tmp_path / "layout", ref="1.0", cache=tmp_path / "cache")
    assert again.layers == image.layers
    with pytest.raises(ImageNotFound, match=r"2\.0"):
        Image.from_oci_layout(tmp_path / "layout", ref="2.0", cache=tmp_path / "cache")


def test_image_config_gives_defaults(tmp_path: Path, busybox: Path, roots: dict[str, str]) -> None:
    base = busybox_layout(tmp_path / "layout")
    top = make_layer([file("srv/hello.txt", b"hello from layer 2\n")])
    layout = build_oci_layout(
        tmp_path / "two",
        [*base.layers, top],
        config=ContainerConfig(
            cmd=("cat", "hello.txt"), env=("PATH=/bin", "WHO=image"), working_dir="/srv"
        ),
    )
    image = Image.from_oci_layout(layout.path, cache=tmp_path / "cache")
    assert Container(image).run().stdout == b"hello from layer 2\n"
    r = Container(image).env(WHO="caller").run(["sh", "-c", "echo $WHO"])
    assert r.stdout == b"caller\n"


def test_cli_run_passes_the_exit_code_through(busybox: Path, roots: dict[str, str]) -> None:
    cli = [sys.executable, "-m", "containerlib.cli"]
    # Limits need a cgroup: root's (rootless, no cgroup is delegated here).
    limits = ["--memory", "64M", "--pids", "32"] if ROOT else []
    r = subprocess.run(
        [
            *cli,
            "run",
            *limits,
            str(busybox),
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
        capture_output=True,
        check=False,
        env=os.environ,
    )
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    r = subprocess.run(
        [*cli, "run", "--memory", "lots", str(busybox), "--", "true"],
        capture_output=True,
        check=False,
    )
    assert r.returncode == 125
    assert b"lots" in r.stderr
    r = subprocess.run(
        [*cli, "run", "-i", str(busybox), "--", "cat"],
        input=b"piped",
        capture_output=True,
        check=False,
    )
    assert r.stdout == b"piped"


def test_cli_forwards_signals_and_times_out(busybox: Path, roots: dict[str, str]) -> None:
    cli = [sys.executable, "-m", "containerlib.cli", "run"]
    script = 'trap "echo got TERM; exit 5" TERM; echo ready; while :; do sleep 0.05; done'
    with subprocess.Popen(
        [*cli, str(busybox), "--", "sh", "-c", script], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.terminate()
        assert proc.stdout.read() == b"got TERM\n"
        assert proc.wait(timeout=10) == 5
    r = subprocess.run(
        [*cli, "--timeout", "0.5", str(busybox), "--", "sleep", "30"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert r.returncode == 137
    assert b"timed out" in r.stderr


@needs_root("another uid inside, which a user namespace that maps one id lacks")
def test_cli_security_options(busybox: Path, roots: dict[str, str], tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "containerlib.cli", "run"]
    probe = ["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status; ulimit -n; id -un"]

    def run(*options: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*cli, *options, str(busybox), "--", *probe], capture_output=True, check=False
        )

    r = run(
        "--cap-drop", "ALL", "--cap-add", "KILL", "--security-opt", "seccomp=unconfined",
        "--ulimit", "nofile=100:200", "--user", "nobody", "--sysctl", "kernel.shmmni=99",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == [
        "CapEff:", "0000000000000000", "Seccomp:", "0", "100", "nobody",
    ]  # fmt: skip
    profile = tmp_path / "profile.json"
    profile.write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW",'
        ' "syscalls": [{"names": ["getuid", "geteuid"], "action": "SCMP_ACT_ERRNO"}]}'
    )
    r = run("--security-opt", f"seccomp={profile}")
    assert b"Seccomp:\t2" in r.stdout
    bad = run("--security-opt", "apparmor=x")
    assert bad.returncode == 125
    assert b"security-opt" in bad.stderr
