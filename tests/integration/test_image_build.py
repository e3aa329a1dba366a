"""Building images in Python: add, run, config, tag, on the real kernel.

Each build step stores a layer (or only a config) in the image store; the tests run the
result, read the store with skopeo, and compare containerlib's unpacked, stacked layers
with ``umoci unpack`` of the same image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib import Container, ContainerError, Image, SpecError
from containerlib.image.builtin import find_static_busybox
from containerlib.image.layout import open_layout
from tests.image_builders import busybox_layout
from tests.integration.conftest import needs_root

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("state")]

SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")


def store_of(roots: dict[str, str]) -> Path:
    return Path(roots["CONTAINERLIB_DATA_ROOT"]) / "images"


def index_names(roots: dict[str, str]) -> list[str]:
    index = json.loads((store_of(roots) / "index.json").read_bytes())
    return [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in index["manifests"]
    ]


def partial_files(roots: dict[str, str]) -> list[Path]:
    return [p for p in (store_of(roots) / "blobs" / "sha256").iterdir() if p.name.startswith(".")]


def build_dirs(roots: dict[str, str]) -> list[Path]:
    tmp = Path(roots["CONTAINERLIB_DATA_ROOT"]) / "tmp"
    return list(tmp.glob("build-*")) if tmp.exists() else []


def test_add_run_config_and_run_the_result(
    image: Image, tmp_path: Path, roots: dict[str, str]
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.sh").write_text("echo main $GREETING\n")
    (tmp_path / "app" / "main.sh").chmod(0o700)
    (tmp_path / "app" / "sub").mkdir()
    (tmp_path / "app" / "sub" / "data").write_bytes(b"x" * 5000)
    built = (
        image.add(tmp_path / "app", "/opt/app")
        .add(b"hello\n", "/etc/greeting")
        .run("echo made > /made; rm /etc/group; chmod 755 /opt/app/main.sh")
        .config(
            entrypoint=["/bin/sh"],
            cmd=["/opt/app/main.sh"],
            env={"GREETING": "there"},
            workdir="/opt/app",
            labels={"team": "core"},
            expose=[8080, "53/udp"],
        )
    )
    assert built.digest is not None
    assert built.digest.startswith("sha256:")
    # The image's defaults drive the container, as docker run does.
    assert Container(built).run(check=True).stdout == b"main there\n"
    out = Container(built).run(
        ["-c", "pwd; cat /made /etc/greeting; ls /etc; stat -c '%a %u' main.sh sub/data"],
        check=True,
    )
    assert out.stdout.decode().split("\n") == [
        "/opt/app",
        "made",
        "hello",
        "greeting",
        # containerlib's own files, bind-mounted as Docker does
        "hostname",
        "hosts",
        "passwd",
        "resolv.conf",
        "755 0",
        "644 0",
        "",
    ]
    # The base image is unchanged: each step made a new image.
    assert Container(image).run(["cat", "/etc/group"], check=True).stdout.startswith(b"root:")
    assert not build_dirs(roots)
    assert not partial_files(roots)


def test_a_deleted_directory_recreated_hides_the_lower_contents(image: Image) -> None:
    """``rm -rf /dir && mkdir /dir`` makes an opaque directory in the upper layer; the
    committed layer carries it as ``.wh..wh..opq`` and the lower files stay hidden."""
    base = image.run("mkdir -p /srv/old && touch /srv/old/a /srv/old/b /srv/keep")
    built = base.run("rm -rf /srv/old && mkdir /srv/old && touch /srv/old/new")
    out = Container(built).run(["ls", "/srv", "/srv/old"], check=True).stdout.decode()
    assert out.split() == ["/srv:", "keep", "old", "/srv/old:", "new"]


def test_config_entrypoint_resets_the_inherited_cmd(image: Image) -> None:
    with_cmd = image.config(cmd=["echo", "from cmd"])
    assert Container(with_cmd).run(check=True).stdout == b"from cmd\n"
    with_entrypoint = with_cmd.config(entrypoint=["echo", "entry"])
    assert with_entrypoint.cmd == ()
    assert Container(with_entrypoint).run(check=True).stdout == b"entry\n"
    both = with_entrypoint.config(cmd="ignored by echo")
    assert both.cmd == ("/bin/sh", "-c", "ignored by echo")
    assert Container(both).run(check=True).stdout == b"entry /bin/sh -c ignored by echo\n"


def test_scratch_plus_a_static_binary(tmp_path: Path) -> None:
    built = (
        Image.scratch()
        .add(find_static_busybox(), "/bin/busybox", mode=0o755)
        .config(entrypoint=["/bin/busybox"])
    )
    result = Container(built).run(["echo", "from scratch"], check=True)
    assert result.stdout == b"from scratch\n"


def test_a_failing_step_makes_no_image_and_leaves_nothing(
    image: Image, roots: dict[str, str]
) -> None:
    before = (
        sorted(p.name for p in (store_of(roots) / "blobs" / "sha256").iterdir())
        if (store_of(roots) / "blobs").exists()
        else []
    )
    with pytest.raises(ContainerError, match=r"exit code 3.*broken") as caught:
        image.run("echo broken >&2; exit 3")
    assert caught.value.result.exit_code == 3
    assert not build_dirs(roots)
    after = sorted(p.name for p in (store_of(roots) / "blobs" / "sha256").iterdir())
    # From a plain directory the base image is written first; the failed step adds nothing
    # but that base (a layer, its config and manifest).
    assert len(set(after) - set(before)) <= 3
    assert not partial_files(roots)


def test_bad_input_is_refused_before_anything_is_stored(image: Image, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="dest"):
        image.add(b"x", "relative/path")
    with pytest.raises(FileNotFoundError):
        image.add(tmp_path / "missing", "/x")
    with pytest.raises(SpecError, match="expose"):
        image.config(expose=["http"])
    with pytest.raises(SpecError, match="workdir"):
        image.config(workdir="srv")
    with pytest.raises(SpecError):
        image.tag("Not A Reference!")


def test_tag_names_it_in_the_store_for_skopeo_and_from_registry(
    image: Image, roots: dict[str, str]
) -> None:
    built = image.add(b"tagged\n", "/tagged").config(cmd=["cat", "/tagged"])
    tagged = built.tag("127.0.0.1:5999/team/app:1.0")
    assert tagged.digest == built.digest
    assert tagged.name == "127.0.0.1:5999/team/app:1.0"
    assert "127.0.0.1:5999/team/app:1.0" in index_names(roots)
    again = Image.from_registry("127.0.0.1:5999/team/app:1.0", pull="never")
    assert again.digest == built.digest
    assert Container(again).run(check=True).stdout == b"tagged\n"
    listed = {i.name: i for i in Image.list()}
    assert listed["127.0.0.1:5999/team/app:1.0"].digest == built.digest
    if SKOPEO is not None:
        shown = subprocess.run(
            [SKOPEO, "inspect", f"oci:{store_of(roots)}:127.0.0.1:5999/team/app:1.0"],
            capture_output=True,
            text=True,
            check=True,
        )
        info = json.loads(shown.stdout)
        assert info["Digest"] == built.digest
        assert len(info["Layers"]) == 2
    Image.remove("127.0.0.1:5999/team/app:1.0")
    assert "127.0.0.1:5999/team/app:1.0" not in index_names(roots)


def test_build_on_an_image_from_another_layout(tmp_path: Path, roots: dict[str, str]) -> None:
    """The base's blobs come into the store, so the built image stands on its own."""
    busybox_layout(tmp_path / "layout")
    base = Image.from_oci_layout(tmp_path / "layout", "latest")
    built = base.add(b"on top\n", "/top").tag("localhost/on-layout:1")
    shutil.rmtree(tmp_path / "layout")
    resolved = open_layout(store_of(roots), "localhost/on-layout:1")
    assert len(resolved.layers) == 2
    assert Container(built).run(["cat", "/top"], check=True).stdout == b"on top\n"


# -- the same tree as umoci's ---------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``: type, mode, owner, size, content digest, link target,
    and user xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            xattrs = tuple(
                sorted(
                    (x, os.getxattr(path, x, follow_symlinks=False))
                    for x in os.listxattr(path, follow_symlinks=False)
                    if x.startswith("user.")
                )
            )
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            out[rel] = (
                stat.S_IFMT(st.st_mode),
                st.st_mode & 0o7777,
                st.st_uid,
                st.st_gid,
                size,
                content,
                xattrs,
            )
    return out


@pytest.fixture
def overlay_of() -> Iterator[object]:
    mounted: list[Path] = []

    def mount(image: Image, where: Path) -> Path:
        where.mkdir()
        lower = ":".join(reversed(image.layers))
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(where)],
            check=True,
        )
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.skipif(UMOCI is None or SKOPEO is None, reason="needs umoci and skopeo")
@needs_root("umoci unpack keeps owners (without --rootless)")
def test_umoci_unpacks_the_same_tree(
    image: Image, tmp_path: Path, roots: dict[str, str], overlay_of: object
) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "file").write_bytes(b"content\n")
    os.link(src / "d" / "file", src / "d" / "hardlink")
    (src / "d" / "link").symlink_to("file")
    (src / "d" / "exec").write_bytes(b"#!/bin/sh\n")
    (src / "d" / "exec").chmod(0o4755)
    os.setxattr(src / "d" / "file", "user.note", b"kept")
    os.mkfifo(src / "d" / "fifo")
    built = (
        image.add(src, "/srv", owner=None)
        .run("rm /srv/d/exec /etc/group && mkdir /srv/new && echo x > /srv/new/x")
        .run("rm -rf /srv/new && mkdir /srv/new && ln -s /nowhere /srv/new/dangling")
        .tag("localhost/umoci-check:1")
    )
    layout = tmp_path / "plain"
    subprocess.run(
        [
            SKOPEO,
            "copy",
            "--quiet",
            f"oci:{store_of(roots)}:localhost/umoci-check:1",
            f"oci:{layout}:t",
        ],
        check=True,
    )
    bundle = tmp_path / "bundle"
    subprocess.run(
        [UMOCI, "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True
    )
    assert callable(overlay_of)
    ours = tree(overlay_of(built, tmp_path / "merged"))
    theirs = tree(bundle / "rootfs")
    assert ours.keys() == theirs.keys()
    assert ours == theirs
    assert "srv/d/exec" not in ours
    assert "etc/group" not in ours
    assert ours["srv/new/dangling"][5] == "/nowhere"
    assert ours["srv/d/file"][6] == (("user.note", b"kept"),)
