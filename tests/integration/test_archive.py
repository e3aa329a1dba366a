"""Image archives with the real tools: what save_archive writes, podman loads and runs,
skopeo inspects and umoci unpacks; what skopeo and podman write, load_archive imports.

podman runs with a private storage root, run root and temporary directory under the test's
tmp_path (vfs driver, so no mounts), runc as its runtime and cgroupfs, and is skipped with
podman's own message if it cannot run a container on this host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containerlib.image.archive import load_archive, save_archive
from containerlib.image.layout import open_layout
from containerlib.spec.image import Descriptor
from tests.image_builders import (
    BuiltImage,
    add_to_index,
    busybox_layout,
    file,
    init_layout,
    make_layer,
    whiteout,
    write_image,
)

pytestmark = pytest.mark.skipif(
    shutil.which("skopeo") is None or shutil.which("umoci") is None,
    reason="needs skopeo and umoci (apt-get install skopeo umoci)",
)

Podman = Callable[..., str]

BUSYBOX = "docker.io/library/busybox:latest"
MULTI = "127.0.0.1:5000/team/multi:1"
# /run/containers/networks is where podman 4.3 always puts netavark's state, whatever
# --network-config-dir says; the tests remove it if they made it.
NETAVARK_RUN_DIR = Path("/run/containers/networks")
RUN_FLAGS = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
    "--network",
    "none",
]


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return busybox_layout(tmp_path_factory.mktemp("busybox") / "layout")


@pytest.fixture(scope="module")
def multi(busybox: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """busybox, then an uncompressed layer that adds /hello and deletes /etc/group."""
    path = tmp_path_factory.mktemp("multi") / "layout"
    init_layout(path)
    top = make_layer(
        [file("hello", b"hi from the top\n", mode=0o755), whiteout("etc/group")],
        compression="none",
    )
    layers = (*busybox.layers, top)
    manifest = write_image(path, layers)
    add_to_index(path, manifest, "multi")
    return BuiltImage(path, manifest, layers)


def run_tool(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {result.returncode}: {result.stderr}")
    return result.stdout


@contextlib.contextmanager
def podman_root() -> Iterator[Podman]:
    """A podman with all its state in a new directory, removed at the end with what podman
    stored. The directory is in /tmp, not tmp_path: podman refuses a run root of more
    than 50 characters."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("needs podman and runc (apt-get install podman runc)")
    made_run_dir = not NETAVARK_RUN_DIR.exists()
    base = Path(tempfile.mkdtemp(prefix="clib-podman-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(base / "tmp")}
    (base / "tmp").mkdir(parents=True)
    flags = [
        "--root",
        str(base / "root"),
        "--runroot",
        str(base / "run"),
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--runtime",
        "runc",
        "--events-backend",
        "file",
        "--tmpdir",
        str(base / "libpod"),
        "--network-config-dir",
        str(base / "net"),
    ]

    def podman(*args: str | Path) -> str:
        return run_tool("podman", *flags, *args, env=env)

    try:
        yield podman
    finally:
        with contextlib.suppress(RuntimeError):
            podman("rm", "--all", "--force")
        with contextlib.suppress(RuntimeError):
            podman("rmi", "--all", "--force")
        # Rootless, podman keeps its user namespace in a "pause" process that outlives
        # it: one this test started, so this test ends it.
        for pid_file in base.glob("**/pause.pid"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        assert not [line for line in mounts if str(base) in line]
        shutil.rmtree(base)
        if made_run_dir:
            with contextlib.suppress(OSError):
                NETAVARK_RUN_DIR.rmdir()  # only if empty: someone else may be using it


@pytest.fixture(scope="module")
def podman_works(busybox: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless podman can run a container here, with an archive skopeo made."""
    base = tmp_path_factory.mktemp("podman-probe")
    archive = base / "probe.tar"
    run_tool("skopeo", "copy", "--quiet", f"oci:{busybox.path}:latest", f"docker-archive:{archive}")
    with podman_root() as podman:
        try:
            podman("load", "--input", archive)
            image = podman("images", "--quiet").split()[0]
            out = podman("run", "--rm", *RUN_FLAGS, image, "echo", "hi")
        except RuntimeError as e:
            pytest.skip(f"podman cannot run containers on this host: {e}")
    assert out == "hi\n"


@pytest.fixture
def podman(podman_works: None) -> Iterator[Podman]:
    with podman_root() as podman:
        yield podman


def loaded_names(output: str) -> list[str]:
    """The names in ``podman load``'s "Loaded image(s): a,b" lines."""
    names = []
    for line in output.splitlines():
        if line.startswith("Loaded image"):
            names += line.partition(": ")[2].split(",")
    return names


# -- what save_archive writes, read by the tools ---------------------------------------------


def test_podman_runs_a_saved_docker_archive(
    busybox: BuiltImage, podman: Podman, tmp_path: Path
) -> None:
    archive = tmp_path / "busybox.tar"
    save_archive(busybox.path, busybox.manifest, archive, names=["busybox:latest"])
    # podman reads Docker's short names as its own: localhost/busybox.
    assert loaded_names(podman("load", "--input", archive)) == ["localhost/busybox:latest"]
    assert podman("run", "--rm", *RUN_FLAGS, "busybox:latest", "echo", "hi") == "hi\n"


def test_podman_runs_a_saved_multi_layer_image(
    multi: BuiltImage, podman: Podman, tmp_path: Path
) -> None:
    archive = tmp_path / "multi.tar"
    save_archive(multi.path, multi.manifest, archive, names=[MULTI])
    assert loaded_names(podman("load", "--input", archive)) == [MULTI]
    script = "cat /hello; test -e /etc/group && echo group || echo no group"
    assert podman("run", "--rm", *RUN_FLAGS, MULTI, "sh", "-c", script) == (
        "hi from the top\nno group\n"
    )
    inspected = json.loads(podman("image", "inspect", MULTI))[0]
    assert inspected["RootFS"]["Layers"] == list(multi.diff_ids)


def test_podman_runs_a_saved_oci_archive(
    busybox: BuiltImage, podman: Podman, tmp_path: Path
) -> None:
    archive = tmp_path / "busybox-oci.tar"
    save_archive(busybox.path, busybox.manifest, archive, format="oci", names=["team/app:2"])
    assert loaded_names(podman("load", "--input", archive)) == ["docker.io/team/app:2"]
    assert podman("run", "--rm", *RUN_FLAGS, "docker.io/team/app:2", "echo", "hi") == "hi\n"


def test_skopeo_inspects_the_saved_archives(multi: BuiltImage, tmp_path: Path) -> None:
    oci, docker = tmp_path / "oci.tar", tmp_path / "docker.tar"
    save_archive(multi.path, multi.manifest, oci, format="oci", names=[MULTI, "busybox"])
    save_archive(multi.path, multi.manifest, docker, names=[MULTI, "busybox"])

    seen = json.loads(run_tool("skopeo", "inspect", f"oci-archive:{oci}:{BUSYBOX}"))
    assert seen["Digest"] == multi.manifest.digest
    assert seen["Layers"] == [layer.digest for layer in multi.layers]
    raw = run_tool("skopeo", "inspect", "--raw", f"oci-archive:{oci}:{MULTI}")
    assert json.loads(raw) == json.loads(
        (multi.path / "blobs" / "sha256" / multi.manifest.digest.partition(":")[2]).read_bytes()
    )

    seen = json.loads(run_tool("skopeo", "inspect", f"docker-archive:{docker}"))
    assert seen["Layers"] == list(multi.diff_ids)  # uncompressed: the blob is the diff ID
    config = json.loads(run_tool("skopeo", "inspect", "--config", f"docker-archive:{docker}"))
    assert config["rootfs"]["diff_ids"] == list(multi.diff_ids)


def test_umoci_unpacks_the_saved_oci_archive(multi: BuiltImage, tmp_path: Path) -> None:
    archive = tmp_path / "multi.tar"
    save_archive(multi.path, multi.manifest, archive, format="oci", names=[MULTI])
    layout = tmp_path / "layout"
    layout.mkdir()
    run_tool("tar", "-xf", archive, "-C", layout)
    assert run_tool("umoci", "ls", "--layout", layout).split() == [MULTI]
    bundle = tmp_path / "bundle"
    run_tool("umoci", "unpack", "--rootless", "--image", f"{layout}:{MULTI}", bundle)
    rootfs = bundle / "rootfs"
    assert (rootfs / "hello").read_bytes() == b"hi from the top\n"
    assert not (rootfs / "etc" / "group").exists()
    assert (rootfs / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()


# -- what the tools write, read by load_archive -----------------------------------------------


def test_load_a_docker_archive_skopeo_wrote(multi: BuiltImage, tmp_path: Path) -> None:
    archive = tmp_path / "skopeo-docker.tar"
    run_tool(
        "skopeo", "copy", "--quiet", f"oci:{multi.path}:multi", f"docker-archive:{archive}:app:3"
    )
    store = init_layout(tmp_path / "store")

    (added,) = load_archive(archive, store)

    assert added.ref_name == "docker.io/library/app:3"
    loaded = open_layout(store, "docker.io/library/app:3")
    source = open_layout(multi.path, "multi")
    assert loaded.diff_ids == multi.diff_ids
    assert loaded.manifest.config.digest == source.manifest.config.digest
    assert loaded.manifest_digest == added.digest


@pytest.mark.parametrize(
    ("suffix", "name"),
    [(":team/app:4", "docker.io/team/app:4"), ("", None)],
    ids=["named", "unnamed"],
)
def test_load_an_oci_archive_skopeo_wrote(
    suffix: str, name: str | None, multi: BuiltImage, tmp_path: Path
) -> None:
    archive = tmp_path / "skopeo-oci.tar"
    run_tool(
        "skopeo", "copy", "--quiet", f"oci:{multi.path}:multi", f"oci-archive:{archive}{suffix}"
    )
    store = init_layout(tmp_path / "store")

    # skopeo gzips the uncompressed layer on the way: a new manifest, the same diff IDs.
    seen = json.loads(run_tool("skopeo", "inspect", f"oci-archive:{archive}"))

    (added,) = load_archive(archive, store)

    assert added.ref_name == name
    assert added.digest == seen["Digest"]
    loaded = open_layout(store, name or added.digest)
    assert loaded.diff_ids == multi.diff_ids
    assert [layer.digest for layer in loaded.layers] == seen["Layers"]


@pytest.mark.parametrize("format", ["docker-archive", "oci-archive"])
def test_load_archives_podman_saved(
    format: str, multi: BuiltImage, podman: Podman, tmp_path: Path
) -> None:
    first = tmp_path / "first.tar"
    save_archive(multi.path, multi.manifest, first, names=[MULTI])
    podman("load", "--input", first)
    archive = tmp_path / "podman.tar"
    podman("save", "--format", format, "--output", archive, MULTI)
    store = init_layout(tmp_path / "store")

    added = load_archive(archive, store)

    assert [d.ref_name for d in added] == [MULTI]
    assert open_layout(store, MULTI).diff_ids == multi.diff_ids


def test_round_trip_through_podman_keeps_the_image(
    multi: BuiltImage, podman: Podman, tmp_path: Path
) -> None:
    """save -> podman load -> podman save -> load: the config, so the image ID, survives."""
    archive = tmp_path / "out.tar"
    save_archive(multi.path, multi.manifest, archive, names=[MULTI])
    podman("load", "--input", archive)
    again = tmp_path / "again.tar"
    podman("save", "--output", again, MULTI)
    store = init_layout(tmp_path / "store")
    (added,) = load_archive(again, store)
    loaded: Descriptor = added
    assert open_layout(store, MULTI).manifest.config.digest == (
        open_layout(multi.path, "multi").manifest.config.digest
    )
    assert loaded.ref_name == MULTI
