"""Pushing to real registries: Debian's docker-registry (open, and behind htpasswd Basic
auth) checked with skopeo and by pulling back, and a small registry in a thread that
misbehaves on purpose. No container runs here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

from containerlib import ImageError, LayerError, SpecError
from containerlib.image.layout import host_platform, open_layout, open_manifest
from containerlib.image.registry import Credentials, pull, push
from containerlib.spec.image import MEDIA_TYPE_DOCKER_MANIFEST, Descriptor, Platform
from tests.image_builders import (
    add_to_index,
    busybox_layout,
    file,
    init_layout,
    make_layer,
    write_image,
    write_index_blob,
)
from tests.registry_server import (
    DOCKER_REGISTRY,
    HTPASSWD,
    FakeRegistry,
    docker_registry,
    fake_registry,
    skopeo_copy,
)

pytestmark = pytest.mark.skipif(
    DOCKER_REGISTRY is None or not os.access("/usr/bin/skopeo", os.X_OK),
    reason="needs docker-registry and skopeo (apt-get install docker-registry skopeo)",
)

USER, PASSWORD = "pusher", "s3cret pass"


@pytest.fixture(autouse=True)
def no_stored_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No docker or podman credential file of this machine takes part."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with docker_registry(tmp_path_factory.mktemp("open")) as address:
        yield address


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if HTPASSWD is None:
        pytest.skip("needs htpasswd for bcrypt entries (apt-get install apache2-utils)")
    with docker_registry(tmp_path_factory.mktemp("secured"), users={USER: PASSWORD}) as address:
        yield address


@attrs.frozen
class Sent:
    """A request the client sent: its method, URL and headers."""

    method: str
    url: httpx.URL
    headers: httpx.Headers


class Recording(httpx.BaseTransport):
    """The real transport, with a list of what went through it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[Sent] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(Sent(request.method, request.url, request.headers))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def uploads(self) -> list[Sent]:
        """The requests that carried blob bytes: PATCH and PUT of upload sessions."""
        return [
            s for s in self.sent if s.method in ("PATCH", "PUT") and "/blobs/uploads/" in s.url.path
        ]


def build_image(layout: Path, seed: str = "") -> Descriptor:
    """A three-layer image (gzip, plain tar, and one more gzip) in ``layout``, named
    ``built``."""
    init_layout(layout)
    layers = [
        make_layer([file("a", b"first layer" + seed.encode())]),
        make_layer([file("b", os.urandom(300_000) + seed.encode())], compression="none"),
        make_layer([file("c/d", b"third" * 1000 + seed.encode())]),
    ]
    manifest = write_image(layout, layers)
    add_to_index(layout, manifest, "built")
    return manifest


def skopeo_digest(image: str, *extra: str) -> str:
    result = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{image}"],
        capture_output=True,
        text=True,
        check=True,
    )
    digest: str = json.loads(result.stdout)["Digest"]
    return digest


def blob_bytes(layout: Path, descriptor: Descriptor) -> bytes:
    return (layout / "blobs" / "sha256" / descriptor.hex).read_bytes()


def same_image(source: Path, copy: Path, manifest: Descriptor) -> None:
    """``copy`` holds the manifest, config and layers of ``source``, byte for byte."""
    pushed = open_manifest(source, manifest)
    pulled = open_layout(copy, manifest.digest)
    assert pulled.manifest_digest == manifest.digest
    for blob in (pushed.manifest.config, *pushed.layers):
        assert blob_bytes(copy, blob) == blob_bytes(source, blob)
    assert blob_bytes(copy, manifest) == blob_bytes(source, manifest)


def test_push_then_pull_back(registry: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source)
    seen: dict[str, int] = {}
    pushed = push(
        source,
        manifest,
        f"{registry}/team/app:1",
        progress=lambda d, n: seen.__setitem__(d.digest, n),
    )
    assert pushed.digest == manifest.digest
    assert pushed.media_type == manifest.media_type
    image = open_layout(source, manifest.digest)
    assert seen == {b.digest: b.size for b in (image.manifest.config, *image.layers)}
    assert skopeo_digest(f"{registry}/team/app:1") == manifest.digest

    copy = tmp_path / "copy"
    assert pull(f"{registry}/team/app:1", copy).digest == manifest.digest
    same_image(source, copy, manifest)


def test_a_multi_platform_image_pushes_every_platform(registry: str, tmp_path: Path) -> None:
    """An index goes with each platform's manifest (by digest) and its blobs; pulling
    back gives each platform its own image."""
    source = tmp_path / "source"
    host = build_image(source, seed="host")
    arm64 = Platform(architecture="arm64", os="linux", variant="v8")
    arm_layers = [make_layer([file("arch", b"arm64")]), make_layer([file("x", b"x")])]
    arm = write_image(source, arm_layers, platform=arm64)
    index = write_index_blob(source, [attrs.evolve(host, platform=host_platform()), arm])
    pushed = push(source, index, f"{registry}/team/multi:1")
    assert pushed.digest == index.digest
    assert skopeo_digest(f"{registry}/team/multi:1") == index.digest
    listed = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/team/multi:1"],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(listed).hexdigest() == index.hex
    for platform, manifest in ((None, host), (arm64, arm)):
        copy = tmp_path / f"copy-{manifest.hex[:8]}"
        assert pull(f"{registry}/team/multi:1", copy, platform=platform).digest == manifest.digest
        same_image(source, copy, manifest)


def test_an_index_missing_a_platform_is_refused_before_any_request(tmp_path: Path) -> None:
    source = tmp_path / "source"
    host = build_image(source)
    absent = Descriptor(
        media_type=host.media_type,
        digest="sha256:" + "0" * 64,
        size=10,
        platform=Platform(architecture="arm64", os="linux"),
    )
    index = write_index_blob(source, [host, absent])
    with pytest.raises(LayerError, match="0000000000"):
        push(source, index, "127.0.0.1:1/team/none:1")


def test_pushing_again_sends_no_blob(registry: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "again")
    push(source, manifest, f"{registry}/team/again:1")
    seen: list[int] = []
    recording = Recording()
    push(
        source,
        manifest,
        f"{registry}/team/again:2",
        progress=lambda d, n: seen.append(n),
        transport=recording,
    )
    assert seen == []
    assert recording.uploads() == []
    assert [s.method for s in recording.sent].count("HEAD") == 4  # the config and 3 layers
    assert skopeo_digest(f"{registry}/team/again:2") == manifest.digest


def test_chunked_upload(registry: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "chunks")
    recording = Recording()
    push(
        source,
        manifest,
        f"{registry}/team/chunked:1",
        transport=recording,
        chunk_size=64 * 1024,
    )
    patches = [s for s in recording.uploads() if s.method == "PATCH"]
    big = max(open_layout(source, manifest.digest).layers, key=lambda d: d.size)
    assert len(patches) >= big.size // (64 * 1024)
    ranges = [s.headers["content-range"] for s in patches]
    assert f"0-{64 * 1024 - 1}" in ranges
    assert f"{64 * 1024}-{2 * 64 * 1024 - 1}" in ranges
    # The blob itself went in the PATCHes: each PUT that closed a session was empty.
    assert all(s.headers["content-length"] == "0" for s in recording.uploads() if s.method == "PUT")
    copy = tmp_path / "copy"
    pull(f"{registry}/team/chunked:1", copy)
    same_image(source, copy, manifest)


def test_a_second_repository_mounts_the_blobs(registry: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "mount")
    add_to_index(source, manifest, f"{registry}/team/base:1")
    push(source, manifest, f"{registry}/team/base:1")

    recording = Recording()
    seen: list[int] = []
    push(
        source,
        manifest,
        f"{registry}/other/app:1",
        transport=recording,
        progress=lambda d, n: seen.append(n),
    )
    assert recording.uploads() == []
    assert seen == []
    mounts = [s for s in recording.sent if s.method == "POST"]
    assert len(mounts) == 4
    assert all(s.url.params["from"] == "team/base" for s in mounts)
    assert skopeo_digest(f"{registry}/other/app:1") == manifest.digest
    copy = tmp_path / "copy"
    pull(f"{registry}/other/app:1", copy)
    same_image(source, copy, manifest)


def test_push_a_pulled_docker_image(registry: str, tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox_layout(busybox, ref="1")
    skopeo_copy(f"oci:{busybox}:1", f"docker://{registry}/src/busybox:1", "--format", "v2s2")
    pulled = tmp_path / "pulled"
    manifest = pull(f"{registry}/src/busybox:1", pulled)
    assert manifest.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    # Pulled under its tag alone: no full name, so nothing to mount from; uploaded.
    recording = Recording()
    pushed = push(pulled, manifest, f"{registry}/copies/busybox:latest", transport=recording)
    assert pushed.media_type == MEDIA_TYPE_DOCKER_MANIFEST
    assert skopeo_digest(f"{registry}/copies/busybox") == manifest.digest
    manifest_put = [s for s in recording.sent if "/manifests/" in s.url.path]
    assert manifest_put[-1].headers["content-type"] == MEDIA_TYPE_DOCKER_MANIFEST
    again = tmp_path / "again"
    pull(f"{registry}/copies/busybox:latest", again)
    same_image(pulled, again, manifest)


def test_basic_auth_with_htpasswd(secured: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "auth")
    reference = f"{secured}/team/private:1"
    with pytest.raises(ImageError, match=rf"push {secured}/team/private:1: denied: .*credentials"):
        push(source, manifest, reference)
    with pytest.raises(ImageError, match=r"push .*: denied: the registry refused the credentials"):
        push(source, manifest, reference, credentials=Credentials(username=USER, password="wrong"))
    push(source, manifest, reference, credentials=Credentials(username=USER, password=PASSWORD))
    creds = f"--creds={USER}:{PASSWORD}"
    assert skopeo_digest(reference, creds) == manifest.digest
    copy = tmp_path / "copy"
    with pytest.raises(ImageError, match="denied"):
        pull(reference, copy)
    pull(reference, copy, credentials=Credentials(username=USER, password=PASSWORD))
    same_image(source, copy, manifest)


def test_credentials_from_the_docker_config(secured: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "config")
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = tmp_path / "docker-config" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {secured: {"auth": auth}}}))
    push(source, manifest, f"{secured}/team/fromconfig:1")
    copy = tmp_path / "copy"
    pull(f"{secured}/team/fromconfig:1", copy)
    same_image(source, copy, manifest)


def test_a_layer_missing_from_the_layout_fails_before_any_request(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "missing")
    layer = open_layout(source, manifest.digest).layers[1]
    (source / "blobs" / "sha256" / layer.hex).unlink()
    with fake_registry() as server:
        with pytest.raises(LayerError, match=f"{layer.digest} is missing"):
            push(source, manifest, f"{server.url[7:]}/test/app:1")
        assert server.requests == []


def test_bad_arguments(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "args")
    with pytest.raises(SpecError, match="chunk_size"):
        push(source, manifest, "127.0.0.1:1/test/app:1", chunk_size=0)
    with pytest.raises(SpecError, match="reference"):
        push(source, manifest, f"127.0.0.1:1/test/app@sha256:{'0' * 64}")
    with pytest.raises(SpecError, match="Test/App"):
        push(source, manifest, "127.0.0.1:1/Test/App:1")


# -- a registry that misbehaves ---------------------------------------------------------


def _blob_puts(server: FakeRegistry) -> list[str]:
    return [r.path for r in server.requests if r.method == "PUT" and "/blobs/uploads/" in r.path]


def test_a_corrupt_blob_never_reaches_the_registry_whole(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "corrupt")
    layer = open_layout(source, manifest.digest).layers[1]
    path = source / "blobs" / "sha256" / layer.hex
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with fake_registry() as server:
        for chunk_size in (None, 100_000):
            with pytest.raises(LayerError, match=f"{layer.digest} does not match"):
                push(source, manifest, f"{server.url[7:]}/test/app:1", chunk_size=chunk_size)
            assert layer.digest not in server.blobs
            assert server.pushed == {}
        received = [len(r.body) for r in server.requests if r.method in ("PUT", "PATCH")]
        assert received
        assert all(n < layer.size for n in received)


def test_retries_after_500(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "retry")
    with fake_registry() as server:
        server.faults = {"HEAD": [500], "POST": [503], "PUT": [500, 500], "PATCH": [500]}
        pushed = push(source, manifest, f"{server.url[7:]}/test/app:1", chunk_size=200_000)
        assert all(not left for left in server.faults.values())
        assert server.pushed[("test/app", "1")] == (
            manifest.media_type,
            blob_bytes(source, manifest),
        )
        assert pushed.digest == manifest.digest
        for blob in (*open_layout(source, manifest.digest).layers,):
            assert server.blobs[blob.digest] == blob_bytes(source, blob)
        server.faults = {"PUT": [500] * 4}
        with pytest.raises(ImageError, match=r"push .*test/app:2: put manifest .*injected 500"):
            push(source, manifest, f"{server.url[7:]}/test/app:2")  # HEAD finds the blobs...
        # ...so the manifest PUT is the one that failed four times.
        assert [r.method for r in server.requests[-4:]] == ["PUT"] * 4


def test_a_lost_upload_session_starts_again(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "lost")
    with fake_registry() as server:
        server.faults = {"PATCH": [416], "PUT": [404]}
        push(source, manifest, f"{server.url[7:]}/test/app:1", chunk_size=200_000)
        image = open_layout(source, manifest.digest)
        for blob in (image.manifest.config, *image.layers):
            assert server.blobs[blob.digest] == blob_bytes(source, blob)


def test_absolute_locations_keep_their_query(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "absolute")
    with fake_registry() as server:
        server.absolute_locations = True
        server.chunk_min = 150_000
        push(source, manifest, f"{server.url[7:]}/test/app:1", chunk_size=1000)
        patches = [r for r in server.requests if r.method == "PATCH"]
        # The registry's minimum chunk size wins over a smaller one asked for.
        assert patches
        assert max(len(r.body) for r in patches) == 150_000
        assert all("_state=" in p for p in _blob_puts(server))
        assert all("digest=sha256%3A" in p or "digest=sha256:" in p for p in _blob_puts(server))


def test_denied(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "denied")
    with fake_registry() as server:
        server.faults = {"POST": [403]}
        with pytest.raises(ImageError, match=r"push .*test/app:1: denied: .*injected 403 \(403\)"):
            push(source, manifest, f"{server.url[7:]}/test/app:1")
        assert server.pushed == {}


def test_bearer_token_for_push_and_mount(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "bearer")
    with fake_registry() as server:
        add_to_index(source, manifest, f"{server.url[7:]}/test/base:1")
        server.token = "push-token"
        push(
            source,
            manifest,
            f"{server.url[7:]}/test/app:1",
            credentials=Credentials(username="me", password="pw"),
        )
        tokens = [r for r in server.requests if r.path.startswith("/token")]
        assert len(tokens) == 1
        scopes = httpx.URL(tokens[0].path).params.get_list("scope")
        assert "repository:test/app:pull,push" in scopes
        assert "repository:test/base:pull" in scopes
        assert server.pushed[("test/app", "1")][1] == blob_bytes(source, manifest)


def test_identity_token_is_traded_for_an_access_token(tmp_path: Path) -> None:
    source = tmp_path / "source"
    manifest = build_image(source, "identity")
    with fake_registry() as server:
        server.token = "access"
        push(
            source,
            manifest,
            f"{server.url[7:]}/test/app:1",
            credentials=Credentials(username="<token>", password="", identity_token="refresh"),
        )
        (token,) = [r for r in server.requests if r.path.startswith("/token")]
        assert token.method == "POST"
        form = httpx.QueryParams(token.body.decode())
        assert form["grant_type"] == "refresh_token"
        assert form["refresh_token"] == "refresh"
        assert "repository:test/app:pull,push" in form["scope"].split()
        assert "Authorization" not in token.headers
        assert hashlib.sha256(server.pushed[("test/app", "1")][1]).hexdigest() == manifest.hex
