"""The OCI image-spec model: round trips, digest validation and Docker compatibility."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from containerlib.errors import SpecError
from containerlib.spec._frozen import FrozenDict
from containerlib.spec.image import (
    ANNOTATION_REF_NAME,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    RootFS,
    split_digest,
    validate_digest,
)

SHA = "sha256:" + "a" * 64

# -- strategies ---------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=8)
names = st.text("abcdefghijklmnop.-/:", min_size=1, max_size=12)
digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)
pairs = st.dictionaries(names, texts, max_size=3)
platforms = st.builds(
    Platform,
    architecture=st.sampled_from(["amd64", "arm64", "arm", "s390x"]),
    os=st.sampled_from(["linux", "windows"]),
    variant=st.none() | st.sampled_from(["v7", "v8"]),
    os_version=st.none() | names,
    os_features=st.lists(names, max_size=2),
)
descriptors = st.builds(
    Descriptor,
    media_type=names,
    digest=digests,
    size=st.integers(0, 2**40),
    urls=st.lists(names, max_size=2),
    annotations=pairs,
    platform=st.none() | platforms,
)
manifests = st.builds(
    Manifest,
    media_type=st.sampled_from([MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST, None]),
    config=descriptors,
    layers=st.lists(descriptors, max_size=3),
    annotations=pairs,
)
indexes = st.builds(
    Index,
    media_type=st.sampled_from(
        ["application/vnd.oci.image.index.v1+json", MEDIA_TYPE_DOCKER_MANIFEST_LIST, None]
    ),
    manifests=st.lists(descriptors, max_size=3),
    annotations=pairs,
)
container_configs = st.builds(
    ContainerConfig,
    user=st.none() | names,
    exposed_ports=st.lists(st.sampled_from(["80/tcp", "53/udp"]), unique=True).map(sorted),
    env=st.lists(texts, max_size=3),
    entrypoint=st.none() | st.lists(texts, max_size=2),
    cmd=st.none() | st.lists(texts, max_size=2),
    volumes=st.lists(st.sampled_from(["/data", "/var/log"]), unique=True).map(sorted),
    working_dir=st.none() | names,
    labels=pairs,
    stop_signal=st.none() | st.sampled_from(["SIGTERM", "SIGINT"]),
)
image_configs = st.builds(
    ImageConfig,
    architecture=st.sampled_from(["amd64", "arm64"]),
    os=st.just("linux"),
    variant=st.none() | st.just("v8"),
    created=st.none() | names,
    author=st.none() | names,
    config=st.none() | container_configs,
    rootfs=st.builds(RootFS, diff_ids=st.lists(digests, max_size=3)),
    history=st.lists(
        st.builds(
            History,
            created=st.none() | names,
            created_by=st.none() | texts,
            empty_layer=st.booleans(),
        ),
        max_size=2,
    ),
)


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "strategy"),
    [
        (Platform, platforms),
        (Descriptor, descriptors),
        (Manifest, manifests),
        (Index, indexes),
        (ContainerConfig, container_configs),
        (ImageConfig, image_configs),
    ],
)
def test_round_trip_through_json(cls: Any, strategy: st.SearchStrategy[Any]) -> None:
    @given(strategy)
    def check(value: Any) -> None:
        document = json.loads(json.dumps(value.to_dict()))
        assert cls.from_dict(document) == value
        assert pickle.loads(pickle.dumps(value)) == value
        assert hash(value) == hash(cls.from_dict(document))

    check()


def test_docker_schema2_documents_are_accepted() -> None:
    config = {"mediaType": MEDIA_TYPE_DOCKER_CONFIG, "size": 1469, "digest": SHA}
    layer = {"mediaType": MEDIA_TYPE_DOCKER_LAYER_GZIP, "size": 2, "digest": SHA}
    manifest = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "config": config,
            "layers": [layer],
        }
    )
    assert manifest.layers[0].media_type == MEDIA_TYPE_DOCKER_LAYER_GZIP
    listing = Index.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST_LIST,
            "manifests": [
                {
                    "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
                    "size": 527,
                    "digest": SHA,
                    "platform": {"architecture": "arm", "os": "linux", "variant": "v7"},
                }
            ],
        }
    )
    platform = listing.manifests[0].platform
    assert platform == Platform(architecture="arm", os="linux", variant="v7")


def test_docker_image_config_with_nulls_and_unknown_fields() -> None:
    config = ImageConfig.from_dict(
        {
            "architecture": "amd64",
            "os": "linux",
            "docker_version": "24.0.5",
            "container_config": {"Hostname": "x"},
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": ["sh"],
                "Entrypoint": None,
                "Labels": None,
                "ExposedPorts": {"80/tcp": {}},
                "Volumes": None,
                "WorkingDir": "",
                "OnBuild": None,
            },
            "rootfs": {"type": "layers", "diff_ids": [SHA]},
            "history": [{"created_by": "ADD file", "empty_layer": True}],
        }
    )
    assert config.config is not None
    assert config.config.entrypoint is None
    assert config.config.cmd == ("sh",)
    assert config.config.exposed_ports == ("80/tcp",)
    assert config.history[0].empty_layer
    assert config.platform == Platform(architecture="amd64", os="linux")


def test_empty_entrypoint_differs_from_none() -> None:
    unset = ContainerConfig.from_dict({"Entrypoint": None})
    empty = ContainerConfig.from_dict({"Entrypoint": []})
    assert unset.entrypoint is None
    assert empty.entrypoint == ()
    assert empty.to_dict() == {"Entrypoint": []}


def test_annotations_are_frozen_mappings_whatever_the_order() -> None:
    a = Descriptor(media_type="x/y", digest=SHA, size=0, annotations={"b": "1", "a": "2"})
    b = Descriptor(media_type="x/y", digest=SHA, size=0, annotations=[("a", "2"), ("b", "1")])
    assert a == b
    assert hash(a) == hash(b)
    assert isinstance(a.annotations, FrozenDict)
    assert a.annotations == {"a": "2", "b": "1"}
    assert a.annotations.get("c") is None
    with pytest.raises(SpecError, match="string keys and values"):
        Descriptor(media_type="x/y", digest=SHA, size=0, annotations={"a": 1})  # type: ignore[arg-type]


def test_ref_name_and_digest_parts() -> None:
    d = Descriptor(
        media_type=MEDIA_TYPE_OCI_MANIFEST,
        digest=SHA,
        size=1,
        annotations={ANNOTATION_REF_NAME: "latest"},
    )
    assert d.ref_name == "latest"
    assert (d.algorithm, d.hex) == ("sha256", "a" * 64)
    assert split_digest(SHA) == ("sha256", "a" * 64)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "a" * 63 + "\n",
        "sha512:" + "a" * 64,
        "md5:" + "a" * 32,
        "a" * 64,
        "",
        "sha256:",
        "sha256:" + "g" * 64,
    ],
)
def test_bad_digests_are_rejected_naming_them(digest: str) -> None:
    with pytest.raises(SpecError, match="digest") as info:
        validate_digest(digest)
    assert repr(digest) in str(info.value)
    with pytest.raises(SpecError) as info:
        Descriptor(media_type="x/y", digest=digest, size=0)
    assert info.value.field == "digest"


def test_non_string_digest() -> None:
    with pytest.raises(SpecError, match="must be a string"):
        validate_digest(42)


def test_error_names_the_nested_field() -> None:
    good = {"mediaType": MEDIA_TYPE_OCI_LAYER_GZIP, "digest": SHA, "size": 1}
    document = {
        "schemaVersion": 2,
        "config": {**good, "mediaType": MEDIA_TYPE_OCI_CONFIG},
        "layers": [good, {**good, "digest": "sha256:nope"}],
    }
    with pytest.raises(SpecError) as info:
        Manifest.from_dict(document)
    assert info.value.field == "layers[1].digest"
    assert "sha256:nope" in str(info.value)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"digest": SHA, "size": 1}, "mediaType"),
        ({"mediaType": "a/b", "digest": SHA}, "size"),
        ({"mediaType": "a/b", "digest": SHA, "size": -1}, "size"),
        ({"mediaType": "a/b", "digest": SHA, "size": True}, "size"),
        ({"mediaType": "a/b", "digest": SHA, "size": "1"}, "size"),
        ({"mediaType": "a/b", "digest": SHA, "size": 1, "urls": "x"}, "urls"),
        ({"mediaType": "a/b", "digest": SHA, "size": 1, "annotations": {"k": 1}}, "annotations.k"),
        ({"mediaType": "a/b", "digest": SHA, "size": 1, "platform": {"os": "linux"}}, "platform"),
    ],
)
def test_descriptor_field_errors(document: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        Descriptor.from_dict(document)
    assert info.value.field.startswith(field)


def test_schema_version_and_media_type_are_checked() -> None:
    with pytest.raises(SpecError, match="schema version"):
        Index.from_dict({"schemaVersion": 1, "manifests": []})
    with pytest.raises(SpecError) as info:
        Index.from_dict({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_MANIFEST, "manifests": []})
    assert info.value.field == "mediaType"
    with pytest.raises(SpecError, match="expected a JSON object"):
        Manifest.from_dict([])  # type: ignore[arg-type]


def test_rootfs_type_and_diff_ids_are_checked() -> None:
    with pytest.raises(SpecError, match="rootfs type"):
        RootFS.from_dict({"type": "tarballs", "diff_ids": []})
    with pytest.raises(SpecError) as info:
        ImageConfig.from_dict(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [1]}}
        )
    assert info.value.field == "rootfs.diff_ids[0]"
    with pytest.raises(SpecError) as info:
        ImageConfig.from_dict({"architecture": "amd64", "os": "linux"})
    assert info.value.field == "rootfs"
