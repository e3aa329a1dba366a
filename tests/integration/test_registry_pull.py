"""Pulling from real registries: Debian's docker-registry filled by skopeo, and a small
registry in a thread that misbehaves on purpose. Only the tests that run a container
need root (the integration conftest)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from containerlib import Container, Image, ImageError, ImageNotFound, LayerError, SpecError
from containerlib.image.layout import host_platform, open_layout
from containerlib.image.registry import Credentials, pull
from containerlib.spec.image import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
)
from tests.image_builders import (
    add_to_index,
    busybox_layout,
    write_image,
    write_index_blob,
)
from tests.registry_server import (
    DOCKER_REGISTRY,
    FakeRegistry,
    docker_registry,
    fake_registry,
    skopeo_copy,
)

pytestmark = pytest.mark.skipif(
    DOCKER_REGISTRY is None or not os.access("/usr/bin/skopeo", os.X_OK),
    reason="needs docker-registry and skopeo (apt-get install docker-registry skopeo)",
)

ARM64 = Platform(architecture="arm64", os="linux", variant="v8")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry holding ``test/busybox:1`` (OCI), ``test/busybox:docker``
    (Docker schema2) and ``test/multi:1`` (an index for the host and arm64)."""
    base = tmp_path_factory.mktemp("registry")
    source = base / "source"
    layers = busybox_layout(source, ref="1").layers
    host = write_image(source, layers)
    arm = write_image(source, layers, platform=ARM64)
    add_to_index(source, write_index_blob(source, [host, arm]), "multi")
    with docker_registry(base / "server") as address:
        skopeo_copy(f"oci:{source}:1", f"docker://{address}/test/busybox:1")
        skopeo_copy(
            f"oci:{source}:1", f"docker://{address}/test/busybox:docker", "--format", "v2s2"
        )
        skopeo_copy(f"oci:{source}:multi", f"docker://{address}/test/multi:1", "--all")
        yield address


def blob_files(layout: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``blobs/``, with its inode and mtime."""
    return {
        str(p.relative_to(layout)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (layout / "blobs").rglob("*")
        if p.is_file()
    }


def check_blobs(layout: Path) -> None:
    for path in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


@pytest.mark.root
@pytest.mark.usefixtures("state")
def test_pull_and_run(registry: str, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    seen: list[tuple[str, int]] = []
    descriptor = pull(
        f"{registry}/test/busybox:1", layout, progress=lambda d, n: seen.append((d.digest, n))
    )
    assert descriptor.media_type == MEDIA_TYPE_OCI_MANIFEST
    assert descriptor.ref_name is None  # the returned descriptor is the stored manifest's
    check_blobs(layout)
    assert seen
    index = json.loads((layout / "index.json").read_bytes())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "1"
    ]
    assert not [p for p in (layout / "blobs" / "sha256").iterdir() if p.name.startswith(".")]
    image = Image.from_oci_layout(layout, ref="1", cache=tmp_path / "cache")
    assert Container(image).run(["echo", "hi"]).stdout == b"hi\n"

    # Pulling again downloads nothing and leaves every blob file as it was.
    before = blob_files(layout)
    seen.clear()
    again = pull(
        f"{registry}/test/busybox:1", layout, progress=lambda d, n: seen.append((d.digest, n))
    )
    assert again == descriptor
    assert seen == []
    assert blob_files(layout) == before
    assert len(json.loads((layout / "index.json").read_bytes())["manifests"]) == 1


@pytest.mark.root
@pytest.mark.usefixtures("state")
def test_docker_schema2_is_stored_as_is_and_runs(registry: str, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    descriptor = pull(f"{registry}/test/busybox:docker", layout)
    assert descriptor.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    check_blobs(layout)
    image = Image.from_oci_layout(layout, ref="docker", cache=tmp_path / "cache")
    assert Container(image).run(["echo", "hi"]).stdout == b"hi\n"


def test_pull_by_digest_and_retag(registry: str, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    first = pull(f"{registry}/test/busybox:1", layout)
    by_digest = pull(f"{registry}/test/busybox@{first.digest}", layout)
    assert by_digest.digest == first.digest
    # A second tag of another image replaces nothing; pulling the first tag again
    # replaces its own entry.
    pull(f"{registry}/test/busybox:docker", layout)
    pull(f"{registry}/test/busybox:1", layout)
    names = [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in json.loads((layout / "index.json").read_bytes())["manifests"]
    ]
    assert sorted(n for n in names if n) == ["1", "docker"]
    assert open_layout(layout, first.digest).manifest_digest == first.digest


def test_multi_platform_index_picks_the_platform(registry: str, tmp_path: Path) -> None:
    host = pull(f"{registry}/test/multi:1", tmp_path / "host")
    assert host.platform == host_platform()
    assert open_layout(tmp_path / "host", "1").config.architecture == host_platform().architecture
    arm = pull(f"{registry}/test/multi:1", tmp_path / "arm", platform=ARM64)
    assert arm.digest != host.digest
    assert open_layout(tmp_path / "arm", "1", platform=ARM64).config.architecture == "arm64"
    with pytest.raises(ImageNotFound, match=r"s390x.*linux/amd64.*linux/arm64"):
        pull(
            f"{registry}/test/multi:1",
            tmp_path / "none",
            platform=Platform(architecture="s390x", os="linux"),
        )


def test_missing_tag_and_repository(registry: str, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match=r"pull 127\.0\.0\.1:\d+/test/busybox:2: .*404"):
        pull(f"{registry}/test/busybox:2", tmp_path / "layout")
    with pytest.raises(ImageNotFound, match="404"):
        pull(f"{registry}/test/nothing:1", tmp_path / "layout")


def test_bad_reference_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="Test/Busybox"):
        pull("127.0.0.1:1/Test/Busybox:1", tmp_path / "layout")
    assert not (tmp_path / "layout").exists()


def test_https_unless_local_or_insecure(tmp_path: Path) -> None:
    with fake_registry("127.0.0.2") as server:
        _serve_image(server)
        address = server.url.removeprefix("http://")
        # 127.0.0.2 is not this machine's name for itself: https, which the server refuses.
        with pytest.raises(ImageError, match=r"pull 127\.0\.0\.2"):
            pull(f"{address}/test/app:1", tmp_path / "a")
        pull(f"{address}/test/app:1", tmp_path / "b", insecure=[address])
        check_blobs(tmp_path / "b")


# -- a registry that misbehaves ---------------------------------------------------------


def _serve_image(server: FakeRegistry, layer: bytes = b"layer bytes " * 1000) -> Descriptor:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    config_digest = server.add_blob(config)
    layer_digest = server.add_blob(layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_OCI_CONFIG,
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {"mediaType": MEDIA_TYPE_OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}
        ],
    }
    server.add_manifest("1", manifest, MEDIA_TYPE_OCI_MANIFEST)
    return Descriptor(media_type=MEDIA_TYPE_OCI_LAYER_GZIP, digest=layer_digest, size=len(layer))


def _leftovers(layout: Path) -> list[str]:
    blobs = layout / "blobs" / "sha256"
    return sorted(p.name for p in blobs.iterdir()) if blobs.exists() else []


def test_a_blob_that_fails_its_digest_is_not_kept(tmp_path: Path) -> None:
    with fake_registry() as server:
        layer = _serve_image(server)
        server.blobs[layer.digest] = b"X" * layer.size
        with pytest.raises(LayerError, match=f"{layer.digest}.*does not match"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
    assert layer.hex not in _leftovers(tmp_path / "layout")
    assert not [n for n in _leftovers(tmp_path / "layout") if n.startswith(".")]
    assert json.loads((tmp_path / "layout" / "index.json").read_bytes())["manifests"] == []


def test_a_truncated_blob_is_not_kept(tmp_path: Path) -> None:
    with fake_registry() as server:
        layer = _serve_image(server)
        server.truncated.add(layer.digest)
        with pytest.raises(LayerError, match=layer.digest):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
        blob_gets = [r for r in server.requests if layer.digest in r.path]
    assert len(blob_gets) == 4  # the first try and three retries
    assert layer.hex not in _leftovers(tmp_path / "layout")
    assert not [n for n in _leftovers(tmp_path / "layout") if n.startswith(".")]


def test_a_short_body_without_length_is_an_error(tmp_path: Path) -> None:
    with fake_registry() as server:
        layer = _serve_image(server)
        server.blobs[layer.digest] = server.blobs[layer.digest][:-10]
        with pytest.raises(LayerError, match=f"{layer.digest} is truncated"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
    assert layer.hex not in _leftovers(tmp_path / "layout")


def test_bearer_token_stays_with_the_registry_across_redirects(tmp_path: Path) -> None:
    with fake_registry() as server, fake_registry("127.0.0.2") as storage:
        layer = _serve_image(server)
        storage.blobs.update(server.blobs)
        server.token = "s3cret-token"
        server.redirect_blobs_to = storage.url
        pull(
            f"{server.url[7:]}/test/app:1",
            tmp_path / "layout",
            credentials=Credentials(username="me", password="pw"),
        )
        check_blobs(tmp_path / "layout")
        assert layer.hex in _leftovers(tmp_path / "layout")
        token_requests = [r for r in server.requests if r.path.startswith("/token")]
        assert len(token_requests) == 1
        assert "scope=repository%3Atest%2Fapp%3Apull" in token_requests[0].path
        assert "service=fake" in token_requests[0].path
        assert token_requests[0].headers["Authorization"].startswith("Basic ")
        authorized = [r for r in server.requests if r.path.startswith("/v2/test/")]
        assert all(r.headers.get("Authorization") == "Bearer s3cret-token" for r in authorized[1:])
        assert len(storage.requests) == 2  # the config and the layer
        assert all("Authorization" not in r.headers for r in storage.requests)


def test_credentials_are_not_sent_to_another_host(tmp_path: Path) -> None:
    # The same host under another name is another origin, too.
    with fake_registry() as server:
        _serve_image(server)
        server.token = "t"
        server.redirect_blobs_to = server.url.replace("127.0.0.1", "localhost")
        with fake_registry() as other:
            server.redirect_blobs_to = other.url.replace("127.0.0.1", "localhost")
            other.blobs.update(server.blobs)
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
            assert other.requests
            assert all("Authorization" not in r.headers for r in other.requests)


def test_basic_auth(tmp_path: Path) -> None:
    with fake_registry() as server:
        _serve_image(server)
        server.basic = "Basic " + base64.b64encode(b"me:pw").decode()
        with pytest.raises(ImageError, match=r"pull .*test/app:1: .*credentials"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
        with pytest.raises(ImageError, match="refused the credentials"):
            pull(
                f"{server.url[7:]}/test/app:1",
                tmp_path / "layout",
                credentials=Credentials(username="me", password="wrong"),
            )
        pull(
            f"{server.url[7:]}/test/app:1",
            tmp_path / "layout",
            credentials=Credentials(username="me", password="pw"),
        )
    check_blobs(tmp_path / "layout")


def test_retries_when_the_registry_is_busy(tmp_path: Path) -> None:
    with fake_registry() as server:
        _serve_image(server)
        server.unavailable = 3
        pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
        assert [r.path for r in server.requests[:4]] == ["/v2/"] * 4
        server.unavailable = 4
        with pytest.raises(ImageError, match=r"/v2/: 503|no v2 registry: 503"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "other")


def test_a_500_then_success_is_retried(tmp_path: Path) -> None:
    with fake_registry() as server:
        _serve_image(server)
        server.faults["GET"] = [500, 500]
        pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
        assert [r.path for r in server.requests[:3]] == ["/v2/"] * 3
        server.faults["GET"] = [500] * 4
        with pytest.raises(ImageError, match="500"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "other")
        assert (
            not (tmp_path / "other" / "index.json").exists()
            or not json.loads((tmp_path / "other" / "index.json").read_bytes())["manifests"]
        )


@pytest.mark.root
@pytest.mark.usefixtures("state")
def test_a_container_named_by_reference_pulls_once_into_the_store(
    registry: str, roots: dict[str, str]
) -> None:
    reference = f"{registry}/test/busybox:1"
    # Not a path here: a reference, pulled into the store under its full name.
    assert Container(reference).run(["echo", "hi"]).stdout == b"hi\n"
    store = Path(roots["CONTAINERLIB_DATA_ROOT"]) / "images"
    index = json.loads((store / "index.json").read_bytes())
    # (Other tests of the session may have left images in the store.)
    names = [
        m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in index["manifests"]
    ]
    assert names.count(reference) == 1
    # The second time it comes from the store: no blob is written again.
    before = blob_files(store)
    assert Container(reference).run(["echo", "again"]).stdout == b"again\n"
    assert blob_files(store) == before
    assert Image.from_registry(reference, pull="never").layers
    with pytest.raises(ImageNotFound, match="test/busybox:2"):
        Image.from_registry(f"{registry}/test/busybox:2", pull="never")


@pytest.mark.root
@pytest.mark.usefixtures("state")
def test_cli_pull_then_run(registry: str) -> None:
    cli = [sys.executable, "-m", "containerlib.cli"]
    reference = f"{registry}/test/busybox:docker"
    pulled = subprocess.run([*cli, "pull", reference], capture_output=True, check=False)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.decode().strip() == reference
    ran = subprocess.run(
        [*cli, "run", reference, "--", "echo", "hi"], capture_output=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == b"hi\n"
    missing = subprocess.run(
        [*cli, "pull", f"{registry}/test/none:1"], capture_output=True, check=False
    )
    assert missing.returncode == 125
    assert b"test/none:1" in missing.stderr


@pytest.mark.root
@pytest.mark.usefixtures("state")
def test_remove_an_image_keeps_the_blobs_another_one_uses(
    registry: str, roots: dict[str, str]
) -> None:
    oci, docker = f"{registry}/test/busybox:1", f"{registry}/test/busybox:docker"
    for reference in (oci, docker):
        Image.from_registry(reference)  # pulled unless an earlier test did
    listed = {image.name: image for image in Image.list()}
    assert {oci, docker} <= listed.keys()
    assert listed[oci].size > 1_000_000  # busybox's layer
    store = Path(roots["CONTAINERLIB_DATA_ROOT"]) / "images"
    shared = set(blob_files(store))
    Image.remove(docker)
    assert docker not in [image.name for image in Image.list()]
    left = set(blob_files(store))
    assert left < shared  # the Docker manifest went, the layers the other image uses stay
    check_blobs(store)
    assert Container(oci).run(["echo", "still"]).stdout == b"still\n"
    with pytest.raises(ImageNotFound, match="busybox:docker"):
        Image.remove(docker)
    # The CLI lists and removes the same way.
    cli = [sys.executable, "-m", "containerlib.cli"]
    listing = subprocess.run([*cli, "images"], capture_output=True, check=True).stdout.decode()
    assert oci in listing
    subprocess.run([*cli, "rmi", oci], capture_output=True, check=True)
    assert oci not in [image.name for image in Image.list()]


# -- parallel and resumed downloads, stored credentials -------------------------------------


@pytest.fixture
def no_stored_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credential file of this machine takes part; returns the docker config dir."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))
    return tmp_path / "docker-config"


def _serve_layers(server: FakeRegistry, layers: list[bytes]) -> list[Descriptor]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    descriptors = [
        Descriptor(
            media_type=MEDIA_TYPE_OCI_LAYER_GZIP, digest=server.add_blob(data), size=len(data)
        )
        for data in layers
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_OCI_CONFIG,
            "digest": server.add_blob(config),
            "size": len(config),
        },
        "layers": [d.to_dict() for d in descriptors],
    }
    server.add_manifest("1", manifest, MEDIA_TYPE_OCI_MANIFEST)
    return descriptors


def _blob_gets(server: FakeRegistry, layer: Descriptor) -> list[dict[str, str]]:
    return [r.headers for r in server.requests if r.method == "GET" and layer.digest in r.path]


@pytest.mark.parametrize("ranges", [True, False])
def test_a_download_that_breaks_off_resumes(tmp_path: Path, ranges: bool) -> None:
    with fake_registry() as server:
        (layer,) = _serve_layers(server, [os.urandom(200_000)])
        server.cut_once[layer.digest] = 70_000
        server.ranges = ranges
        seen: list[int] = []
        pull(
            f"{server.url[7:]}/test/app:1",
            tmp_path / "layout",
            progress=lambda d, n: seen.append(n) if d == layer else None,
        )
        first, second = _blob_gets(server, layer)
    assert "Range" not in first
    assert second["Range"] == "bytes=70000-"
    assert seen[-1] == layer.size
    after_break = seen[seen.index(70_000) + 1 :]
    if ranges:  # the rest was appended to what had come
        assert min(after_break) > 70_000
    else:  # the registry sent all of it again: counted from 0 again
        assert min(after_break) < 70_000
    check_blobs(tmp_path / "layout")
    assert (tmp_path / "layout" / "blobs" / "sha256" / layer.hex).read_bytes() == server.blobs[
        layer.digest
    ]
    assert not [n for n in _leftovers(tmp_path / "layout") if n.startswith(".")]


def test_a_resumed_blob_is_verified_whole(tmp_path: Path) -> None:
    # The first part is the right one, the rest (sent after the break) is not.
    with fake_registry() as server:
        (layer,) = _serve_layers(server, [os.urandom(200_000)])
        good = server.blobs[layer.digest]
        server.cut_once[layer.digest] = 70_000
        server.blobs[layer.digest] = good[:70_000] + bytes(len(good) - 70_000)
        with pytest.raises(LayerError, match=f"{layer.digest} does not match its digest"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
        assert _blob_gets(server, layer)[1]["Range"] == "bytes=70000-"
    assert layer.hex not in _leftovers(tmp_path / "layout")
    assert not [n for n in _leftovers(tmp_path / "layout") if n.startswith(".")]


def test_layers_download_in_parallel(tmp_path: Path) -> None:
    with fake_registry() as server:
        _serve_layers(server, [b"one" * 1000, b"two" * 1000])
        # The config and both layers must be asked for at once to pass the gate.
        server.gate = threading.Barrier(3)
        threads: set[str] = set()
        pull(
            f"{server.url[7:]}/test/app:1",
            tmp_path / "layout",
            progress=lambda d, n: threads.add(threading.current_thread().name),
        )
    check_blobs(tmp_path / "layout")
    assert len(_leftovers(tmp_path / "layout")) == 4  # the manifest too
    assert threads
    assert all(name.startswith("containerlib-pull") for name in threads)


def test_one_failed_layer_stops_the_pull_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    with fake_registry() as server:
        layers = _serve_layers(server, [os.urandom(300_000) for _ in range(5)])
        bad = layers[2]
        server.blobs[bad.digest] = bytes(bad.size)
        with pytest.raises(LayerError, match=f"{bad.digest} does not match"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
    left = _leftovers(tmp_path / "layout")
    assert bad.hex not in left
    assert not [n for n in left if n.startswith(".")]
    check_blobs(tmp_path / "layout")  # whatever else was stored is whole
    assert json.loads((tmp_path / "layout" / "index.json").read_bytes())["manifests"] == []


def test_credentials_from_the_docker_config(tmp_path: Path, no_stored_credentials: Path) -> None:
    with fake_registry() as server:
        _serve_image(server)
        server.basic = "Basic " + base64.b64encode(b"me:pw").decode()
        no_stored_credentials.mkdir()
        auth = base64.b64encode(b"me:pw").decode()
        (no_stored_credentials / "config.json").write_text(
            json.dumps({"auths": {server.url[7:]: {"auth": auth}}})
        )
        pull(f"{server.url[7:]}/test/app:1", tmp_path / "layout")
        # Looked up only because the registry asked; a registry that does not ask never
        # makes a malformed file matter.
        (no_stored_credentials / "config.json").write_text("{broken")
        with pytest.raises(ImageError, match=r"config\.json: not valid JSON"):
            pull(f"{server.url[7:]}/test/app:1", tmp_path / "other")
        server.basic = None
        pull(f"{server.url[7:]}/test/app:1", tmp_path / "third")
    check_blobs(tmp_path / "layout")
