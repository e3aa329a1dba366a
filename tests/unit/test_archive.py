"""Image archives without outside programs: the tar reader and writer, save and load round
trips, the formats other tools write (built here by hand), and hostile archives.

The archives that skopeo and podman write and read are in tests/integration/test_archive.py.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from containerlib.errors import ImageError, ImageNotFound, LayerError, SpecError
from containerlib.image.archive import (
    ANNOTATION_CONTAINERD_NAME,
    load_archive,
    save_archive,
)
from containerlib.image.archive_io import ArchiveReader, TarWriter, normalize_member_name
from containerlib.image.layout import MAX_JSON_BLOB_SIZE, open_layout
from containerlib.spec.image import (
    ANNOTATION_REF_NAME,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    Descriptor,
    Index,
)
from tests.image_builders import (
    BuiltImage,
    build_oci_layout,
    directory,
    file,
    init_layout,
    make_layer,
    whiteout,
)

Member = tuple[tarfile.TarInfo, bytes]

BUSYBOX = "docker.io/library/busybox:latest"


# -- helpers -------------------------------------------------------------------------------


def tar_of(members: list[Member]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def members_of(path: Path) -> list[Member]:
    out = []
    with tarfile.open(path) as archive:
        for info in archive.getmembers():
            stream = archive.extractfile(info) if info.isreg() else None
            out.append((info, stream.read() if stream else b""))
    return out


def member(path: Path, name: str) -> bytes:
    """The data of the member ``name`` of the archive at ``path``."""
    return {info.name: data for info, data in members_of(path)}[name]


def regular(name: str, data: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, b""


def two_layer_image(path: Path, ref: str | None = "latest") -> BuiltImage:
    """A gzip layer and a plain one that deletes a file of the first."""
    bottom = make_layer(
        [directory("etc"), file("etc/motd", b"bottom\n"), file("etc/gone", b"x")],
        compression="gzip",
    )
    empty = make_layer([], compression="none")
    top = make_layer(
        [file("hello", b"hi from the top\n", mode=0o755), whiteout("etc/gone")],
        compression="none",
    )
    return build_oci_layout(path, [bottom, empty, top], ref=ref)


def snapshot(store: Path) -> tuple[bytes, list[str]]:
    """The store's index.json and every file under blobs/, hidden ones included."""
    return (store / "index.json").read_bytes(), sorted(
        str(p.relative_to(store)) for p in (store / "blobs").rglob("*")
    )


@pytest.fixture
def image(tmp_path: Path) -> BuiltImage:
    return two_layer_image(tmp_path / "source")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return init_layout(tmp_path / "store")


# -- the tar reader and writer ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("a/b", "a/b"), ("./a//b/", "a/b"), (".", ""), ("a/./b", "a/b")],
)
def test_member_names_are_normalized(name: str, normalized: str) -> None:
    assert normalize_member_name(name, "member") == normalized


@pytest.mark.parametrize(
    ("name", "message"),
    [("/etc/passwd", "absolute"), ("../x", "'..'"), ("a/../../x", "'..'"), ("a/..", "'..'")],
)
def test_member_names_out_of_the_archive_are_refused(name: str, message: str) -> None:
    with pytest.raises(LayerError, match=message):
        normalize_member_name(name, "member")


class _Chunks:
    """A stream that hands out its data a little at a time, as a decompressor does."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(min(size, 4099) if size > 0 else 4099)


def test_tar_writer_fills_in_sizes_that_gnu_tar_reads(tmp_path: Path) -> None:
    big = bytes(range(256)) * 12_289  # not a multiple of 512
    path = tmp_path / "out.tar"
    with path.open("wb") as out:
        writer = TarWriter(out)
        writer.add_directory("d")
        assert writer.add_stream("d/big", _Chunks(big)) == len(big)
        writer.add_bytes("small", b"hello")
        assert writer.add_stream("empty", _Chunks(b"")) == 0
        writer.close()
    assert path.stat().st_size % tarfile.RECORDSIZE == 0
    listing = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line.split()[2] for line in listing] == ["0", str(len(big)), "5", "0"]
    assert [line.split()[-1] for line in listing] == ["d/", "d/big", "small", "empty"]
    extracted = subprocess.run(["tar", "-xOf", str(path), "d/big"], capture_output=True, check=True)
    assert extracted.stdout == big


def test_reader_follows_links_inside_the_archive() -> None:
    data = tar_of(
        [
            regular("blobs/real", b"content"),
            special("a/layer.tar", tarfile.SYMTYPE, "../blobs/real"),
            special("hard", tarfile.LNKTYPE, "blobs/real"),
            special("./dir", tarfile.DIRTYPE),
        ]
    )
    with ArchiveReader(io.BytesIO(data), "x.tar") as archive:
        assert archive.read("a/layer.tar", "layer", 100) == b"content"
        assert archive.read("./hard", "layer", 100) == b"content"
        with pytest.raises(LayerError, match=r"x\.tar: config 'dir' is not a regular file"):
            archive.read("dir", "config", 100)
        with pytest.raises(LayerError, match="'missing' is not in the archive"):
            archive.member("missing", "config")
        with pytest.raises(LayerError, match="more than the 3 allowed"):
            archive.read("blobs/real", "config", 3)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([regular("/abs", b"")], "member '/abs' is an absolute path"),
        ([regular("a/../../x", b"")], r"member 'a/../../x' leads out of the archive"),
        ([special("dev", tarfile.CHRTYPE)], "member 'dev' is a character device"),
        ([special("blk", tarfile.BLKTYPE)], "member 'blk' is a block device"),
        ([special("pipe", tarfile.FIFOTYPE)], "member 'pipe' is a named pipe"),
        ([special("l", tarfile.SYMTYPE, "/etc/passwd")], "points to the absolute '/etc/passwd'"),
        ([special("a/l", tarfile.SYMTYPE, "../../x")], r"'a/l' -> '../../x' leads out"),
        ([special("h", tarfile.LNKTYPE, "/etc/passwd")], "hard link 'h' to '/etc/passwd'"),
        ([special("h", tarfile.LNKTYPE, "nothing")], "points to 'nothing', which is not in"),
        ([regular("m", b"1"), regular("./m", b"2")], "two members named 'm'"),
    ],
)
def test_reader_refuses_what_no_image_archive_holds(members: list[Member], message: str) -> None:
    with pytest.raises(LayerError, match=message):
        ArchiveReader(io.BytesIO(tar_of(members)), "x.tar")


def test_reader_refuses_a_truncated_or_foreign_file() -> None:
    data = tar_of([regular("a", b"x" * 5000), regular("b", b"y" * 5000)])
    with pytest.raises(LayerError, match=r"x\.tar is truncated"):
        ArchiveReader(io.BytesIO(data[:7000]), "x.tar")
    with pytest.raises(LayerError, match=r"x\.tar is not a tar archive"):
        ArchiveReader(io.BytesIO(b"PK\x03\x04 a zip file" * 100), "x.tar")


# -- round trips -----------------------------------------------------------------------------


def test_docker_round_trip_keeps_config_and_diff_ids(
    image: BuiltImage, store: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "out.tar"
    save_archive(image.path, image.manifest, archive, names=["busybox:latest", "busybox:1"])
    manifest = json.loads(member(archive, "manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:latest", "busybox:1"]
    source = open_layout(image.path, "latest")
    assert manifest[0]["Config"] == f"{source.manifest.config.hex}.json"
    repositories = json.loads(member(archive, "repositories"))
    top = manifest[0]["Layers"][-1].partition("/")[0]
    assert repositories == {"busybox": {"latest": top, "1": top}}
    with tarfile.open(archive) as t:
        for path, diff_id in zip(manifest[0]["Layers"], image.diff_ids, strict=True):
            layer = t.extractfile(path).read()  # type: ignore[union-attr]
            assert f"sha256:{hashlib.sha256(layer).hexdigest()}" == diff_id

    added = load_archive(archive, store)

    assert [d.ref_name for d in added] == [BUSYBOX, "docker.io/library/busybox:1"]
    loaded = open_layout(store, BUSYBOX)
    assert loaded.manifest.config.digest == source.manifest.config.digest
    assert loaded.manifest.config.media_type == MEDIA_TYPE_OCI_CONFIG
    assert loaded.diff_ids == image.diff_ids
    assert {layer.media_type for layer in loaded.layers} == {MEDIA_TYPE_OCI_LAYER}
    assert added[0].digest == loaded.manifest_digest
    assert added[0].platform == source.config.platform


def test_oci_round_trip_keeps_every_blob(image: BuiltImage, store: Path, tmp_path: Path) -> None:
    archive = tmp_path / "out.tar"
    save_archive(image.path, image.manifest, archive, format="oci", names=["a/b:1", "busybox"])
    index = Index.from_dict(json.loads(member(archive, "index.json")))
    assert [dict(d.annotations) for d in index.manifests] == [
        {ANNOTATION_REF_NAME: n, ANNOTATION_CONTAINERD_NAME: n}
        for n in ("docker.io/a/b:1", BUSYBOX)
    ]
    for info, data in members_of(archive):
        if info.name.startswith("blobs/sha256/") and info.isreg():
            original = image.path / info.name
            assert data == original.read_bytes()

    added = load_archive(archive, store)

    assert {d.digest for d in added} == {image.manifest.digest}
    assert open_layout(store, "docker.io/a/b:1").diff_ids == image.diff_ids
    assert open_layout(store, BUSYBOX).layers == open_layout(image.path).layers


@pytest.mark.parametrize(
    "compress",
    [lambda b: gzip.compress(b, compresslevel=1), bz2.compress, lzma.compress],
    ids=["gzip", "bzip2", "xz"],
)
def test_compressed_archives_are_told_by_their_magic(
    compress: Callable[[bytes], bytes], image: BuiltImage, store: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.tar"
    save_archive(image.path, image.manifest, plain, names=["busybox"])
    packed = tmp_path / "image.tar"  # no telling suffix
    packed.write_bytes(compress(plain.read_bytes()))
    assert [d.ref_name for d in load_archive(packed, store)] == [BUSYBOX]
    assert open_layout(store, BUSYBOX).diff_ids == image.diff_ids
    assert sorted(p.name for p in store.iterdir()) == ["blobs", "index.json", "oci-layout"]


def test_gzip_layers_of_a_docker_archive_stay_gzip(
    image: BuiltImage, store: Path, tmp_path: Path
) -> None:
    """docker save with the containerd image store keeps layers compressed."""
    source = open_layout(image.path)
    blob = (
        image.path / "blobs" / "sha256" / source.layers[0].digest.partition(":")[2]
    ).read_bytes()
    config = (image.path / "blobs" / "sha256" / source.manifest.config.hex).read_bytes()
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l.tar.gz"]}]
    only_bottom = json.loads(config)
    only_bottom["rootfs"]["diff_ids"] = only_bottom["rootfs"]["diff_ids"][:1]
    archive = tmp_path / "a.tar"
    archive.write_bytes(
        tar_of(
            [
                regular("l.tar.gz", blob),
                regular("c.json", json.dumps(only_bottom).encode()),
                regular("manifest.json", json.dumps(manifest).encode()),
            ]
        )
    )
    (added,) = load_archive(archive, store)
    loaded = open_layout(store, "docker.io/library/x:1")
    assert loaded.layers[0].media_type == MEDIA_TYPE_OCI_LAYER_GZIP
    assert loaded.layers[0].digest == source.layers[0].digest
    assert loaded.diff_ids == image.diff_ids[:1]
    assert added.digest == loaded.manifest_digest


def test_docker_25_archives_are_read_as_oci_layouts(
    image: BuiltImage, store: Path, tmp_path: Path
) -> None:
    """Docker 25+ writes an OCI layout plus manifest.json; containerd's name annotation
    wins over the bare tag in ref.name."""
    oci = tmp_path / "oci.tar"
    save_archive(image.path, image.manifest, oci, format="oci")
    members = []
    for info, data in members_of(oci):
        if info.name != "index.json":
            members.append((info, data))
            continue
        index = json.loads(data)
        index["manifests"][0]["annotations"] = {
            ANNOTATION_CONTAINERD_NAME: "docker.io/library/app:2",
            ANNOTATION_REF_NAME: "2",
        }
        members.append(regular("index.json", json.dumps(index).encode()))
    members.append(regular("manifest.json", b'[{"Config":"x","RepoTags":["other:1"],"Layers":[]}]'))
    archive = tmp_path / "docker25.tar"
    archive.write_bytes(tar_of(members))
    (added,) = load_archive(archive, store)
    assert added.ref_name == "docker.io/library/app:2"
    assert added.digest == image.manifest.digest


def test_unnamed_images_are_kept_by_digest(image: BuiltImage, store: Path, tmp_path: Path) -> None:
    oci, docker = tmp_path / "oci.tar", tmp_path / "docker.tar"
    save_archive(image.path, image.manifest, oci, format="oci")
    save_archive(image.path, image.manifest, docker)
    assert json.loads(member(docker, "manifest.json"))[0]["RepoTags"] == []
    assert "repositories" not in [info.name for info, _ in members_of(docker)]

    (from_oci,) = load_archive(oci, store)
    (from_docker,) = load_archive(docker, store)
    assert from_oci.ref_name is None
    assert from_docker.ref_name is None
    assert open_layout(store, from_oci.digest).diff_ids == image.diff_ids
    assert open_layout(store, from_docker.digest).diff_ids == image.diff_ids
    again = load_archive(oci, store)
    assert again == [from_oci]
    assert len(json.loads((store / "index.json").read_text())["manifests"]) == 2


def test_a_bare_tag_names_no_image(store: Path, tmp_path: Path) -> None:
    built = two_layer_image(tmp_path / "src", ref="latest")
    layout_tar = tmp_path / "layout.tar"
    with tarfile.open(layout_tar, "w") as t:
        t.add(built.path, arcname=".")
    (added,) = load_archive(layout_tar, store)
    assert added.ref_name is None
    assert added.digest == built.manifest.digest


def test_loading_a_name_again_moves_it(store: Path, tmp_path: Path) -> None:
    first = build_oci_layout(tmp_path / "one", [[file("a", b"1")]])
    second = build_oci_layout(tmp_path / "two", [[file("a", b"2")]])
    for built, name in ((first, "one.tar"), (second, "two.tar")):
        save_archive(built.path, built.manifest, tmp_path / name, names=["app:1"])
    load_archive(tmp_path / "one.tar", store)
    load_archive(tmp_path / "two.tar", store)
    index = json.loads((store / "index.json").read_text())["manifests"]
    assert [d["annotations"][ANNOTATION_REF_NAME] for d in index] == ["docker.io/library/app:1"]
    assert open_layout(store, "docker.io/library/app:1").diff_ids == second.diff_ids


def test_load_makes_the_store(image: BuiltImage, tmp_path: Path) -> None:
    save_archive(image.path, image.manifest, tmp_path / "a.tar", names=["a:1"])
    load_archive(tmp_path / "a.tar", tmp_path / "new" / "store")
    assert open_layout(tmp_path / "new" / "store", "docker.io/library/a:1")


# -- saving: errors --------------------------------------------------------------------------


def test_save_refuses_bad_arguments_before_writing(image: BuiltImage, tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    with pytest.raises(SpecError, match="format: unknown archive format 'tar'"):
        save_archive(image.path, image.manifest, dest, format="tar")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="names: invalid image reference 'Bad:Name'"):
        save_archive(image.path, image.manifest, dest, names=["Bad:Name"])
    with pytest.raises(SpecError, match="not the string"):
        save_archive(image.path, image.manifest, dest, names="busybox")
    index = Descriptor(
        media_type="application/vnd.oci.image.index.v1+json", digest=image.manifest.digest, size=1
    )
    with pytest.raises(ImageError, match="is not an image manifest"):
        save_archive(image.path, index, dest)
    with pytest.raises(ImageError, match="it is a directory"):
        save_archive(image.path, image.manifest, tmp_path)
    with pytest.raises(ImageError, match="No such file or directory"):
        save_archive(image.path, image.manifest, tmp_path / "missing" / "out.tar")
    assert not dest.exists()


@pytest.mark.parametrize("format", ["docker", "oci"])
def test_save_of_a_corrupt_layer_leaves_nothing(
    format: str, image: BuiltImage, tmp_path: Path
) -> None:
    layer = image.layers[-1]
    blob = image.path / "blobs" / "sha256" / layer.digest.partition(":")[2]
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.tar").write_bytes(b"the previous archive")
    with pytest.raises(LayerError, match=f"blob {layer.digest} does not match its digest"):
        save_archive(image.path, image.manifest, out / "old.tar", format=format, names=["a:1"])  # type: ignore[arg-type]
    assert [p.name for p in out.iterdir()] == ["old.tar"]
    assert (out / "old.tar").read_bytes() == b"the previous archive"


def test_save_checks_the_diff_ids(tmp_path: Path) -> None:
    layer = make_layer([file("a", b"1")])
    lying = build_oci_layout(tmp_path / "src", [layer], diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(LayerError, match="but the config's diff ID is sha256:000"):
        save_archive(lying.path, lying.manifest, tmp_path / "out.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# -- loading hostile archives ------------------------------------------------------------------


@pytest.fixture
def docker_members(image: BuiltImage, tmp_path: Path) -> list[Member]:
    archive = tmp_path / "good.tar"
    save_archive(image.path, image.manifest, archive, names=["busybox"])
    return members_of(archive)


@pytest.fixture
def oci_members(image: BuiltImage, tmp_path: Path) -> list[Member]:
    archive = tmp_path / "good-oci.tar"
    save_archive(image.path, image.manifest, archive, format="oci", names=["busybox"])
    return members_of(archive)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sentinel"
    path.write_bytes(b"untouched")
    yield path
    assert path.read_bytes() == b"untouched"


def with_manifest(members: list[Member], edit: Callable[[dict[str, object]], None]) -> list[Member]:
    out = []
    for info, data in members:
        if info.name != "manifest.json":
            out.append((info, data))
            continue
        document = json.loads(data)
        edit(document[0])
        out.append(regular("manifest.json", json.dumps(document).encode()))
    return out


def replaced(members: list[Member], name_end: str, new: Member) -> list[Member]:
    return [new if info.name.endswith(name_end) else (info, data) for info, data in members]


def first_layer(members: list[Member]) -> str:
    return next(info.name for info, _ in members if info.name.endswith("layer.tar"))


def hostile_cases(docker: list[Member], oci: list[Member]) -> dict[str, tuple[bytes, str]]:
    layer = first_layer(docker)
    blob = next(i.name for i, d in oci if i.name.startswith("blobs/") and i.size > 1000)
    flipped = [(i, d[:-1] + bytes([d[-1] ^ 1]) if i.name == blob else d) for i, d in oci]
    # Swapped contents, the header made anew (TarInfo objects are shared between cases).
    bad_diff = replaced(docker, layer, regular(layer, b"\0" * 1024))
    last_layer = [i.name for i, _ in docker if i.name.endswith("layer.tar")][-1]
    bad_last = replaced(docker, last_layer, regular(last_layer, tar_of([regular("x", b"y")])))
    return {
        "dotdot member": (tar_of([*docker, regular("../sentinel", b"evil")]), "leads out"),
        "absolute member": (tar_of([*docker, regular("/tmp/sentinel", b"evil")]), "absolute"),
        "symlink layer out": (
            tar_of(replaced(docker, layer, special(layer, tarfile.SYMTYPE, "../../sentinel"))),
            "leads out of the archive",
        ),
        "symlink layer absolute": (
            tar_of(replaced(docker, layer, special(layer, tarfile.SYMTYPE, "/etc/passwd"))),
            "points to the absolute '/etc/passwd'",
        ),
        "hardlink out": (
            tar_of(replaced(docker, layer, special(layer, tarfile.LNKTYPE, "../sentinel"))),
            "leads out of the archive",
        ),
        "device": (tar_of([*docker, special("dev/sda", tarfile.BLKTYPE)]), "is a block device"),
        "manifest points outside": (
            tar_of(with_manifest(docker, lambda m: m.update(Layers=["../../etc/passwd"] * 3))),
            r"manifest.json\[0\].Layers\[0\] '../../etc/passwd' leads out of the archive",
        ),
        "config points outside": (
            tar_of(with_manifest(docker, lambda m: m.update(Config="/etc/passwd"))),
            r"manifest.json\[0\].Config '/etc/passwd' is an absolute path",
        ),
        "missing layer": (
            tar_of(with_manifest(docker, lambda m: m.update(Layers=["a", "b", "c"]))),
            r"manifest.json\[0\].Layers\[0\] 'a' is not in the archive",
        ),
        "wrong blob digest": (tar_of(flipped), "does not match its digest"),
        "layer is not its diff id": (tar_of(bad_diff), "but the config's diff ID is"),
        "last layer is not its diff id": (tar_of(bad_last), "but the config's diff ID is"),
        "duplicate manifest": (
            tar_of([*docker, regular("manifest.json", b"[]")]),
            "two members named 'manifest.json'",
        ),
        "huge manifest": (
            tar_of(
                replaced(
                    docker,
                    "manifest.json",
                    regular("manifest.json", b" " * (MAX_JSON_BLOB_SIZE + 1)),
                )
            ),
            f"document 'manifest.json' is {MAX_JSON_BLOB_SIZE + 1} bytes, more than the",
        ),
        "manifest not a list": (
            tar_of(replaced(docker, "manifest.json", regular("manifest.json", b'{"a": 1}'))),
            "manifest.json: expected a JSON list, got dict",
        ),
        "bad repo tag": (
            tar_of(with_manifest(docker, lambda m: m.update(RepoTags=["UPPER/case:1"]))),
            "image name 'UPPER/case:1' is not an image reference",
        ),
        "truncated": (tar_of(docker)[: len(tar_of(docker)) // 2], "truncated"),
        "truncated gzip": (gzip.compress(tar_of(docker))[:-100], "truncated"),
        "not an image archive": (tar_of([regular("hello", b"hi")]), "is not an image archive"),
    }


CASES = [
    "dotdot member",
    "absolute member",
    "symlink layer out",
    "symlink layer absolute",
    "hardlink out",
    "device",
    "manifest points outside",
    "config points outside",
    "missing layer",
    "wrong blob digest",
    "layer is not its diff id",
    "last layer is not its diff id",
    "duplicate manifest",
    "huge manifest",
    "manifest not a list",
    "bad repo tag",
    "truncated",
    "truncated gzip",
    "not an image archive",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_archives_change_nothing(
    case: str,
    docker_members: list[Member],
    oci_members: list[Member],
    store: Path,
    sentinel: Path,
    tmp_path: Path,
) -> None:
    data, message = hostile_cases(docker_members, oci_members)[case]
    archive = tmp_path / "hostile.tar"
    archive.write_bytes(data)
    # The store already holds an image, so "unchanged" means something.
    other = build_oci_layout(tmp_path / "other", [[file("other", b"1")]])
    save_archive(other.path, other.manifest, tmp_path / "other.tar", names=["other:1"])
    load_archive(tmp_path / "other.tar", store)
    before = snapshot(store)
    outside = sorted(str(p) for p in tmp_path.rglob("*") if store not in p.parents)

    with pytest.raises((LayerError, ImageError), match=message) as caught:
        load_archive(archive, store)

    assert str(archive) in str(caught.value)
    assert snapshot(store) == before
    assert sorted(str(p) for p in tmp_path.rglob("*") if store not in p.parents) == outside


def test_an_archive_without_images_is_refused(store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar"
    empty.write_bytes(
        tar_of(
            [
                regular("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                regular("index.json", b'{"schemaVersion": 2, "manifests": []}'),
            ]
        )
    )
    with pytest.raises(ImageError, match=r"index\.json lists no images"):
        load_archive(empty, store)
    empty.write_bytes(tar_of([regular("manifest.json", b"[]")]))
    with pytest.raises(ImageError, match=r"manifest\.json lists no images"):
        load_archive(empty, store)


def test_a_missing_archive_is_not_found(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="no such file"):
        load_archive(tmp_path / "nothing.tar", store)


def test_a_compressed_archive_that_would_fill_the_disk_stops_early(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from containerlib.image import archive_load

    store.mkdir(parents=True, exist_ok=True)
    free = os.statvfs(store)
    # As if only 1 MB were left above the reserve.
    monkeypatch.setattr(archive_load, "SPOOL_RESERVE", free.f_bavail * free.f_frsize - 1_000_000)
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(bytes(20_000_000)))
    before = sorted(p.name for p in store.rglob("*"))
    with pytest.raises(ImageError, match="would take more than"):
        load_archive(bomb, store)
    assert sorted(p.name for p in store.rglob("*")) == before
