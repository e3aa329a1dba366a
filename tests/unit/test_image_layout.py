"""Reading OCI layouts: which manifest is chosen, and how a broken layout fails."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import attrs
import pytest

from containerlib.errors import ImageNotFound, LayerError
from containerlib.image.layout import blob_path, host_platform, open_blob, open_layout, read_blob
from containerlib.spec.image import (
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_MANIFEST,
    ContainerConfig,
    Descriptor,
    Index,
    Platform,
)
from tests.image_builders import (
    Layer,
    add_to_index,
    build_oci_layout,
    file,
    init_layout,
    make_layer,
    write_blob,
    write_image,
    write_index_blob,
    write_json_blob,
)

AMD64 = Platform(architecture="amd64", os="linux")
ARM64 = Platform(architecture="arm64", os="linux")
ARMV7 = Platform(architecture="arm", os="linux", variant="v7")


def _layer(text: str) -> list[Layer]:
    return [make_layer([file("id", text.encode())])]


def _blob(layout: Path, descriptor: Descriptor) -> Path:
    return layout / "blobs" / "sha256" / descriptor.hex


# -- choosing the image -------------------------------------------------------------------


def test_single_image_needs_no_ref(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path, [[file("a", b"1")], [file("b", b"2")]])
    image = open_layout(tmp_path)
    assert image.layout == tmp_path
    assert image.manifest_digest == built.manifest.digest
    assert image.diff_ids == built.diff_ids
    assert [d.digest for d in image.layers] == [x.digest for x in built.layers]
    assert image.config.config == ContainerConfig(
        env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("sh",)
    )


@pytest.mark.parametrize("ref", ["latest", "busybox:latest", "example.org/x/busybox:latest"])
def test_ref_matches_the_name_or_its_tag(tmp_path: Path, ref: str) -> None:
    build_oci_layout(tmp_path, [[file("a")]], ref="latest")
    wanted = build_oci_layout(tmp_path, [[file("b")]], ref="1.36")
    assert open_layout(tmp_path, ref).manifest_digest != wanted.manifest.digest
    assert open_layout(tmp_path, "1.36").manifest_digest == wanted.manifest.digest


def test_ref_matches_a_full_name_annotation(tmp_path: Path) -> None:
    wanted = build_oci_layout(tmp_path, [[file("a")]], ref="busybox:latest")
    build_oci_layout(tmp_path, [[file("b")]], ref="alpine:latest")
    assert open_layout(tmp_path, "busybox:latest").manifest_digest == wanted.manifest.digest
    with pytest.raises(ImageNotFound, match="'latest'"):
        open_layout(tmp_path, "latest")


def test_ref_can_be_a_digest(tmp_path: Path) -> None:
    build_oci_layout(tmp_path, [[file("a")]], ref="a")
    wanted = build_oci_layout(tmp_path, [[file("b")]], ref="b")
    digest = wanted.manifest.digest
    assert open_layout(tmp_path, digest).manifest_digest == digest
    assert open_layout(tmp_path, f"busybox@{digest}").manifest_digest == digest


def test_a_digest_that_several_names_share_opens(tmp_path: Path) -> None:
    wanted = build_oci_layout(tmp_path, [[file("a")]], ref="1")
    # A second tag of the same image; as a registry pull writes them, without platforms.
    add_to_index(tmp_path, wanted.manifest, "latest")
    index = json.loads((tmp_path / "index.json").read_text())
    for entry in index["manifests"]:
        entry.pop("platform", None)
    (tmp_path / "index.json").write_text(json.dumps(index))
    digest = wanted.manifest.digest
    assert open_layout(tmp_path, digest).manifest_digest == digest
    assert open_layout(tmp_path, "latest").manifest_digest == digest


def test_several_images_and_no_ref_lists_the_names(tmp_path: Path) -> None:
    build_oci_layout(tmp_path, [[file("a")]], ref="one")
    build_oci_layout(tmp_path, [[file("b")]], ref="two")
    with pytest.raises(ImageNotFound, match=r"name one of \['one', 'two'\]"):
        open_layout(tmp_path)


def test_unknown_ref_names_it_and_the_names_present(tmp_path: Path) -> None:
    build_oci_layout(tmp_path, [[file("a")]], ref="one")
    with pytest.raises(ImageNotFound, match=r"no image 'nope' .*\['one'\]"):
        open_layout(tmp_path, "nope")


def test_empty_layout(tmp_path: Path) -> None:
    init_layout(tmp_path)
    with pytest.raises(ImageNotFound, match="holds no images"):
        open_layout(tmp_path)


def test_missing_layout_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match=str(tmp_path / "nothing")):
        open_layout(tmp_path / "nothing")
    with pytest.raises(ImageNotFound, match="no oci-layout file"):
        open_layout(tmp_path)


def test_layout_version_must_be_1_0_0(tmp_path: Path) -> None:
    build_oci_layout(tmp_path, [[file("a")]])
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(LayerError, match="layout version"):
        open_layout(tmp_path)
    (tmp_path / "oci-layout").write_text("{nope")
    with pytest.raises(LayerError, match="invalid JSON"):
        open_layout(tmp_path)


# -- platforms ----------------------------------------------------------------------------


def _multi_platform(layout: Path, media_type: str | None = None) -> dict[str, Descriptor]:
    init_layout(layout)
    images = {
        "amd64": write_image(layout, _layer("amd64"), platform=AMD64),
        "arm64": write_image(layout, _layer("arm64"), platform=ARM64),
        "arm": write_image(layout, _layer("armv7"), platform=ARMV7),
    }
    index = write_index_blob(layout, list(images.values()))
    if media_type is not None:
        document = Index(media_type=media_type, manifests=list(images.values())).to_dict()
        index = write_json_blob(layout, document, media_type)
    add_to_index(layout, index, "latest")
    return images


@pytest.mark.parametrize("media_type", [None, MEDIA_TYPE_DOCKER_MANIFEST_LIST])
def test_nested_index_chooses_the_platform(tmp_path: Path, media_type: str | None) -> None:
    images = _multi_platform(tmp_path, media_type)
    assert open_layout(tmp_path, "latest", ARM64).manifest_digest == images["arm64"].digest
    assert open_layout(tmp_path, "latest", AMD64).manifest_digest == images["amd64"].digest
    arm = open_layout(tmp_path, "latest", Platform(architecture="arm", os="linux"))
    assert arm.manifest_digest == images["arm"].digest
    assert arm.config.variant == "v7"
    host = host_platform().architecture
    if host in images:
        assert open_layout(tmp_path).manifest_digest == images[host].digest


def test_arm64_variant_v8_matches_an_unnamed_variant(tmp_path: Path) -> None:
    images = _multi_platform(tmp_path)
    v8 = Platform(architecture="arm64", os="linux", variant="v8")
    assert open_layout(tmp_path, platform=v8).manifest_digest == images["arm64"].digest


def test_no_manifest_for_the_platform(tmp_path: Path) -> None:
    _multi_platform(tmp_path)
    wanted = Platform(architecture="riscv64", os="linux")
    with pytest.raises(ImageNotFound, match=r"linux/riscv64.*linux/amd64"):
        open_layout(tmp_path, "latest", wanted)


def test_top_level_entries_of_one_name_are_chosen_by_platform(tmp_path: Path) -> None:
    init_layout(tmp_path)
    amd = write_image(tmp_path, _layer("a"), platform=AMD64)
    arm = write_image(tmp_path, _layer("b"), platform=ARM64)
    add_to_index(tmp_path, amd, "latest")
    add_to_index(tmp_path, arm, "latest")
    assert open_layout(tmp_path, "latest", ARM64).manifest_digest == arm.digest
    assert open_layout(tmp_path, None, AMD64).manifest_digest == amd.digest


@pytest.mark.parametrize(
    ("machine", "architecture", "variant"),
    [("x86_64", "amd64", None), ("aarch64", "arm64", None), ("armv7l", "arm", "v7")],
)
def test_host_platform_uses_goarch_names(
    monkeypatch: pytest.MonkeyPatch, machine: str, architecture: str, variant: str | None
) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert host_platform() == Platform(architecture=architecture, os="linux", variant=variant)


# -- broken layouts -----------------------------------------------------------------------


def test_corrupt_manifest_json_names_the_blob(tmp_path: Path) -> None:
    init_layout(tmp_path)
    bad = write_blob(tmp_path, b"{not json", MEDIA_TYPE_OCI_MANIFEST)
    add_to_index(tmp_path, bad, "latest")
    with pytest.raises(LayerError, match=f"manifest blob {bad.digest}: invalid JSON"):
        open_layout(tmp_path)


def test_manifest_that_is_not_a_manifest(tmp_path: Path) -> None:
    init_layout(tmp_path)
    bad = write_json_blob(tmp_path, {"schemaVersion": 2, "layers": []}, MEDIA_TYPE_OCI_MANIFEST)
    add_to_index(tmp_path, bad, "latest")
    with pytest.raises(LayerError, match=rf"manifest blob {bad.digest}: config"):
        open_layout(tmp_path)


def test_digest_mismatch_names_the_blob(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path, [[file("a")]])
    path = _blob(tmp_path, built.manifest)
    data = bytearray(path.read_bytes())
    data[-2:-1] = b" "
    path.write_bytes(bytes(data))
    with pytest.raises(LayerError, match=f"blob {built.manifest.digest} does not match"):
        open_layout(tmp_path)


@pytest.mark.parametrize("delta", [-1, 1])
def test_size_mismatch_names_the_blob(tmp_path: Path, delta: int) -> None:
    built = build_oci_layout(tmp_path, [[file("a")]])
    path = _blob(tmp_path, built.manifest)
    data = path.read_bytes()
    path.write_bytes(data[:delta] if delta < 0 else data + b"\n")
    with pytest.raises(LayerError, match=built.manifest.digest):
        open_layout(tmp_path)


def test_missing_blob_names_it(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path, [[file("a")]])
    image = open_layout(tmp_path)
    _blob(tmp_path, image.manifest.config).unlink()
    with pytest.raises(LayerError, match=f"blob {image.manifest.config.digest} is missing"):
        open_layout(tmp_path)
    _blob(tmp_path, built.manifest).unlink()
    with pytest.raises(LayerError, match=f"blob {built.manifest.digest} is missing"):
        open_layout(tmp_path)


def test_blob_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path, [[file("a")]])
    path = _blob(tmp_path, built.manifest)
    moved = tmp_path / "elsewhere"
    path.rename(moved)
    path.symlink_to(moved)
    with pytest.raises(LayerError, match=f"open blob {built.manifest.digest}"):
        open_layout(tmp_path)


def test_traversal_digest_is_rejected_before_any_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_oci_layout(tmp_path, [[file("a")]])
    index = json.loads((tmp_path / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    (tmp_path / "index.json").write_text(json.dumps(index))
    opened: list[str] = []
    real_open = os.open

    def spy(path: str, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    with pytest.raises(LayerError, match=r"sha256:\.\./\.\./"):
        open_layout(tmp_path)
    assert not [p for p in opened if "passwd" in p]
    with pytest.raises(LayerError, match="malformed digest"):
        blob_path(tmp_path, "sha256:../../etc/passwd")


def test_index_json_problems(tmp_path: Path) -> None:
    build_oci_layout(tmp_path, [[file("a")]])
    (tmp_path / "index.json").write_text('{"schemaVersion": 2, "manifests": {}}')
    with pytest.raises(LayerError, match=r"index.json: manifests"):
        open_layout(tmp_path)
    (tmp_path / "index.json").write_bytes(b"\xff\xfe")
    with pytest.raises(LayerError, match="invalid JSON"):
        open_layout(tmp_path)
    (tmp_path / "index.json").unlink()
    with pytest.raises(LayerError, match=r"no index\.json"):
        open_layout(tmp_path)


def test_diff_ids_must_match_the_layers(tmp_path: Path) -> None:
    build_oci_layout(tmp_path, [[file("a")], [file("b")]], diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(LayerError, match=r"2 layers but its config .* lists 1 diff IDs"):
        open_layout(tmp_path)


def test_unsupported_layer_media_type(tmp_path: Path) -> None:
    odd = attrs.evolve(make_layer([file("a")]), media_type="application/vnd.example.layer+tar")
    build_oci_layout(tmp_path, [odd])
    with pytest.raises(LayerError, match=r"unsupported media type 'application/vnd\.example"):
        open_layout(tmp_path)


def test_config_of_the_wrong_media_type(tmp_path: Path) -> None:
    init_layout(tmp_path)
    config = write_json_blob(tmp_path, {"a": 1}, "application/vnd.example.config+json")
    manifest = {"schemaVersion": 2, "config": config.to_dict(), "layers": []}
    add_to_index(tmp_path, write_json_blob(tmp_path, manifest, MEDIA_TYPE_OCI_MANIFEST))
    with pytest.raises(LayerError, match="is not an image config"):
        open_layout(tmp_path)


def test_bad_config_names_the_blob(tmp_path: Path) -> None:
    init_layout(tmp_path)
    config = write_json_blob(tmp_path, {"os": "linux"}, MEDIA_TYPE_OCI_CONFIG)
    manifest = {"schemaVersion": 2, "config": config.to_dict(), "layers": []}
    add_to_index(tmp_path, write_json_blob(tmp_path, manifest, MEDIA_TYPE_OCI_MANIFEST))
    with pytest.raises(LayerError, match=f"config blob {config.digest}: rootfs"):
        open_layout(tmp_path)


def test_manifest_media_type_must_agree_with_its_descriptor(tmp_path: Path) -> None:
    built = build_oci_layout(tmp_path, [[file("a")]])
    document = json.loads(_blob(tmp_path, built.manifest).read_bytes())
    document["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    init_layout(other := tmp_path / "other")
    for blob in (tmp_path / "blobs" / "sha256").iterdir():
        (other / "blobs" / "sha256" / blob.name).write_bytes(blob.read_bytes())
    add_to_index(other, write_json_blob(other, document, MEDIA_TYPE_OCI_MANIFEST))
    with pytest.raises(LayerError, match="says media type"):
        open_layout(other)


def test_index_pointing_at_a_layer_is_refused(tmp_path: Path) -> None:
    init_layout(tmp_path)
    add_to_index(tmp_path, write_blob(tmp_path, b"x", "application/octet-stream"))
    with pytest.raises(LayerError, match="expected an image manifest or index"):
        open_layout(tmp_path)


# -- blobs --------------------------------------------------------------------------------


def test_blob_reader_refuses_more_than_the_descriptor_says(tmp_path: Path) -> None:
    init_layout(tmp_path)
    d = write_blob(tmp_path, b"0123456789", "application/octet-stream")
    short = Descriptor(media_type=d.media_type, digest=d.digest, size=4)
    with open_blob(tmp_path, short) as reader, pytest.raises(LayerError, match="larger than"):
        reader.read()
    with pytest.raises(LayerError, match="more than the 4 allowed"):
        read_blob(tmp_path, d, max_size=4)
    assert read_blob(tmp_path, d) == b"0123456789"


def test_blob_reader_verify_reads_the_rest(tmp_path: Path) -> None:
    init_layout(tmp_path)
    d = write_blob(tmp_path, b"0123456789", "application/octet-stream")
    with open_blob(tmp_path, d) as reader:
        assert reader.read(3) == b"012"
        reader.verify()
    _blob(tmp_path, d).write_bytes(b"01234")
    with open_blob(tmp_path, d) as reader, pytest.raises(LayerError, match="truncated"):
        reader.verify()


def test_index_json_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    build_oci_layout(tmp_path, [[file("a")]])
    (tmp_path / "index.json").unlink()
    os.mkfifo(tmp_path / "index.json")
    with pytest.raises(LayerError, match="not a regular file"):
        open_layout(tmp_path)


def test_oversized_index_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_oci_layout(tmp_path, [[file("a")]])
    monkeypatch.setattr("containerlib.image.layout.MAX_JSON_BLOB_SIZE", 10)
    with pytest.raises(LayerError, match="larger than 10 bytes"):
        open_layout(tmp_path)
